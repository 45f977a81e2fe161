"""Which model outputs a rule's ``labels`` name, checked against the model's labels.

An entry matches a label line as a whole (``goldfinch, Carduelis carduelis``)
or by any one of its comma-separated names (``goldfinch`` or ``Carduelis
carduelis``), ignoring case and spaces around commas. Besides names:

- ``#N``: output N of the model (for a name two lines share, such as ImageNet's
  two ``crane`` lines).
- ``@birds``, ``@cats``, ``@dogs``: ImageNet's bird classes (59), domestic cats
  (5) and dog breeds (118). Each group is a few runs of consecutive classes,
  written as their first and last names, so it works with any labels file in
  ImageNet's order (1000 or 1001 lines); another labels file gets an error.
- ``@any``: every label except ``background``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

# Runs of consecutive ImageNet classes: (first, last) by first name.
GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "birds": (
        ("cock", "great grey owl"),
        ("black grouse", "black swan"),
        ("white stork", "albatross"),
    ),
    "cats": (("tabby", "Egyptian cat"),),
    "dogs": (("Chihuahua", "Mexican hairless"),),
}


class LabelError(ValueError):
    """A rule names a label the model does not have (the message says what to write)."""


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def label_names(line: str) -> list[str]:
    """A label line's names: the whole line, then each comma-separated name."""
    parts = [p.strip() for p in line.split(",") if p.strip()]
    return [line.strip(), *parts]


class LabelIndex:
    """Looks up names in a model's labels (``label(i)`` for i in range(count))."""

    def __init__(self, count: int, label: Callable[[int], str]) -> None:
        self.count = count
        self.lines = [label(i) for i in range(count)]
        self._by_name: dict[str, list[int]] = {}
        for i, line in enumerate(self.lines):
            for name in label_names(line):
                found = self._by_name.setdefault(_norm(name), [])
                if i not in found:
                    found.append(i)

    def _first(self, name: str) -> int | None:
        found = self._by_name.get(_norm(name))
        return found[0] if found else None

    def _closest(self, entry: str) -> str | None:
        names = [n for line in self.lines for n in label_names(line)]
        near = difflib.get_close_matches(entry, names, n=1, cutoff=0.6)
        if not near:
            lowered = {n.casefold(): n for n in names}
            near = [
                lowered[n] for n in difflib.get_close_matches(entry.casefold(), list(lowered), n=1)
            ]
        return near[0] if near else None

    def resolve(self, entry: str) -> list[int]:
        """The outputs ``entry`` names; LabelError when there are none."""
        text = entry.strip()
        if text.startswith("#"):
            number = text[1:]
            if not number.isdigit() or int(number) >= self.count:
                raise LabelError(
                    f"{entry!r} is not an output of the model (use #0 to #{self.count - 1})"
                )
            return [int(number)]
        if text.startswith("@"):
            return self._group(text[1:])
        found = self._by_name.get(_norm(text))
        if found:
            return list(found)
        close = self._closest(text)
        hint = f' (did you mean "{close}"?)' if close else ""
        raise LabelError(f'unknown label "{text}"{hint}; write a name from the labels file')

    def _group(self, name: str) -> list[int]:
        if name == "any":
            return [i for i, line in enumerate(self.lines) if _norm(line) != "background"]
        runs = GROUPS.get(name)
        if runs is None:
            known = ", ".join(f"@{g}" for g in ("any", *GROUPS))
            raise LabelError(f'unknown group "@{name}"; groups are {known}')
        out: list[int] = []
        for first, last in runs:
            lo, hi = self._first(first), self._first(last)
            if lo is None or hi is None or hi < lo:
                raise LabelError(
                    f'"@{name}" needs ImageNet\'s labels (no "{first}" ... "{last}" here);'
                    " list the labels by name instead"
                )
            out.extend(range(lo, hi + 1))
        return out

    def resolve_all(self, entries: Iterable[str]) -> tuple[int, ...]:
        """Every output the entries name, in index order, each once."""
        found: set[int] = set()
        for entry in entries:
            found.update(self.resolve(entry))
        return tuple(sorted(found))


def first_name(line: str) -> str:
    """The first name of a label line (``goldfinch`` of ``goldfinch, Carduelis carduelis``)."""
    return line.split(",")[0].strip() or line
