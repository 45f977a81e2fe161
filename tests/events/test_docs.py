"""docs/events.md's feeder config is valid and its labels exist in ImageNet's labels."""

from __future__ import annotations

import re

from edge_daemon.config import parse_config
from edge_daemon.events.labels import LabelIndex
from edge_daemon.events.rules import compile_rules
from edge_daemon.labels import parse_labels
from tests.helpers import LABELS, REPO, shared_file


def test_the_feeder_example_config_loads_and_its_labels_resolve() -> None:
    text = (REPO / "docs" / "events.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    cfg = parse_config(block.group(1), name="docs/events.md")
    lines = parse_labels(shared_file(LABELS).read_text(), "labels")
    rules = compile_rules(cfg.events.rules, LabelIndex(len(lines), lines.__getitem__))
    assert [r.name for r in rules] == ["birds", "cat", "squirrel"]
    assert [len(r.indices) for r in rules] == [59, 5, 1]
