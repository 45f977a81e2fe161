"""Label files and how their lines line up with a model's output classes."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from .errors import ModelError

log = logging.getLogger(__name__)

# "0 cat" or "0: cat" (the index, then the label).
_INDEXED = re.compile(r"^\s*(\d+)\s*(?::\s*|\s+)(\S.*?)\s*$")


def parse_labels(text: str, source: str) -> list[str]:
    """Labels from a file's text: one per line, or ``N label`` / ``N: label`` lines.

    The indexed form is used only when every non-blank line has it, so a
    plain label that happens to start with a digit is never misread.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ModelError(f"{source}: the labels file is empty; give one label per line")
    matches = [_INDEXED.match(line) for line in lines if line.strip()]
    if all(matches):
        indexed: dict[int, str] = {}
        for m in matches:
            assert m is not None
            index = int(m.group(1))
            if index in indexed:
                raise ModelError(f"{source}: label index {index} appears twice; fix the file")
            indexed[index] = m.group(2)
        if max(indexed) > 100_000:
            raise ModelError(f"{source}: label index {max(indexed)} is implausibly large")
        return [indexed.get(i, str(i)) for i in range(max(indexed) + 1)]
    return [line.strip() for line in lines]


@dataclass(frozen=True)
class LabelMap:
    """Labels aligned to a model's outputs: ``label(i)`` names output ``i``."""

    labels: tuple[str, ...]
    offset: int  # 1 when the model has a background class 0 the file lacks
    source: str

    def label(self, index: int) -> str:
        i = index - self.offset
        if i < 0:
            return "background"
        return self.labels[i]


def align_labels(
    labels: list[str], outputs: int, source: str, model: str, *, background: bool = True
) -> LabelMap:
    """Line labels up with the model's output count, or explain why they cannot be.

    Equal counts index directly. One output more than labels means the model
    has a background class 0 that the file leaves out (MobileNet's 1001 vs
    1000): shift by one and say so, unless ``background`` is False (a taught
    model has no background class). Anything else is an error: shifting on a
    guess would silently mislabel every prediction.
    """
    if len(labels) == outputs:
        return LabelMap(tuple(labels), 0, source)
    if len(labels) + 1 == outputs and background:
        log.info(
            "%s has %d outputs and %s has %d labels: treating output 0 as a background"
            " class and shifting labels by one",
            model,
            outputs,
            source,
            len(labels),
        )
        return LabelMap(tuple(labels), 1, source)
    raise ModelError(
        f"{source}: {len(labels)} labels do not match the {outputs} outputs of {model};"
        " use the labels file that belongs to this model"
    )
