"""config/edge-daemon.yaml is the reference: it must list every key at its default."""

from __future__ import annotations

import dataclasses

import yaml

from edge_daemon.config import SECTIONS, Config, load_config
from tests.helpers import REPO

REFERENCE = REPO / "config" / "edge-daemon.yaml"


def test_reference_config_lists_every_key() -> None:
    data = yaml.safe_load(REFERENCE.read_text())
    for section, cls in SECTIONS.items():
        documented = set(data[section])
        declared = {f.name for f in dataclasses.fields(cls)}
        assert documented == declared, f"{section}: reference differs from the schema"


def test_reference_config_values_are_the_defaults() -> None:
    loaded = load_config(REFERENCE)
    base = REFERENCE.parent
    # Built-in defaults resolve relative paths the same way, against base.
    from edge_daemon.config import parse_config

    defaults = parse_config("", base=base)
    assert dataclasses.replace(loaded, file=None) == dataclasses.replace(defaults, file=None)
    assert isinstance(loaded, Config)


def test_every_key_is_explained_by_a_comment() -> None:
    """Each key (or a group of adjacent keys) sits under a comment block."""
    lines = REFERENCE.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("  ") or line.lstrip().startswith("#"):
            continue
        j = i - 1
        while j >= 0 and lines[j].startswith("  ") and not lines[j].lstrip().startswith("#"):
            j -= 1  # keys documented together, such as mean and std
        assert j >= 0 and lines[j].lstrip().startswith("#"), f"line {i + 1}: {line.strip()}"
