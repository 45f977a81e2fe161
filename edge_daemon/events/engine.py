"""What the daemon calls: the rules checked against a model, and the tracker after a (re)load."""

from __future__ import annotations

import time
from typing import Optional

from ..config import Config
from ..labels import LabelMap
from ..sinks.base import EventNotice
from . import events_dir
from .history import seed
from .labels import LabelIndex
from .rules import Rule, Tracker, compile_rules


def rules_for(cfg: Config, labels: LabelMap) -> list[Rule]:
    """``events.rules`` with their labels checked against a model's (ConfigError if unknown)."""
    if not cfg.events.rules:
        return []
    index = LabelIndex(len(labels.labels) + labels.offset, labels.label)
    return compile_rules(cfg.events.rules, index, cfg.file)


def tracker_for(
    old: Optional[Tracker], rules: list[Rule], cfg: Config, model: str, model_sha256: str
) -> tuple[Optional[Tracker], tuple[EventNotice, ...]]:
    """The tracker for a model just loaded, and the end notices of the events that closes.

    The first one is seeded from the database (next id, today's counts): one
    read at start. Later ones carry on from ``old`` (see ``Tracker.successor``).
    """
    now = time.time()
    if not rules:
        return None, old.close_all(now) if old is not None else ()
    if old is None:
        next_id, today = seed(events_dir(cfg), now)
        return Tracker(rules, model, model_sha256, next_id, today), ()
    return old.successor(rules, model, model_sha256)
