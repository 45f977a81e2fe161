"""docs/teach.md's event rule is a valid config, and the commands it shows exist."""

from __future__ import annotations

import re

from edge_daemon.cli import build_parser
from edge_daemon.config import parse_config
from tests.helpers import REPO


def test_the_garage_rule_in_the_docs_is_a_valid_config() -> None:
    text = (REPO / "docs" / "teach.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        cfg = parse_config(block, name="docs/teach.md")
        assert cfg.events.rules[0].labels == ["open", "half"]


def test_every_teach_command_in_the_docs_parses() -> None:
    text = (REPO / "docs" / "teach.md").read_text() + (REPO / "README.md").read_text()
    parser = build_parser()
    commands = re.findall(r"`edge-daemon (teach [^`]*)`", text)
    commands += re.findall(r"^\$ edge-daemon (teach .*)$", text, re.M)
    assert len(commands) >= 5
    for command in commands:
        argv = [w.strip('"') for w in re.findall(r'"[^"]*"|\S+', command.split("#")[0])]
        args = parser.parse_args(argv)
        assert args.teach_command in ("add", "list", "remove", "train")
