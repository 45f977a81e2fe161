"""The read-only view of the event history that /api/events serves.

The events store implements ``EventsQuery``; until one is plugged in,
``NoEvents`` answers an empty history. Event dicts carry the fields the
store names (id, rule, label, index, start, end, score, frames, snapshot,
model, model_sha256, cut_short).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Protocol


class EventsQuery(Protocol):
    """What the HTTP API asks of the events store (all calls from server threads)."""

    def list(self, *, limit: int, before: Optional[int] = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events (ids below ``before`` when given), newest first."""
        ...

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        """One event, or None."""
        ...

    def snapshot(self, event_id: int) -> Optional[Path]:
        """The event's snapshot JPEG, a file under ``folder()``, or None."""
        ...

    def folder(self) -> Optional[Path]:
        """events.dir: the only folder snapshots are served from."""
        ...


class NoEvents:
    """No events store: an empty history."""

    def list(self, *, limit: int, before: Optional[int] = None) -> list[dict[str, Any]]:
        return []

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        return None

    def snapshot(self, event_id: int) -> Optional[Path]:
        return None

    def folder(self) -> Optional[Path]:
        return None
