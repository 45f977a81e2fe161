"""The read-only view of the event history that /api/events serves.

``EventsQuery`` is what the API asks; ``NoEvents`` answers an empty history
(no events store, or events off); ``StoreEvents`` adapts the events store's
reader (``edge_daemon.events.history.EventHistory``: ``list``, ``get``,
``snapshot_file``, with ``as_json`` for the API's form of an event).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Protocol


class EventsQuery(Protocol):
    """What the HTTP API asks of the events store (all calls from server threads)."""

    def list(
        self,
        *,
        limit: int,
        offset: int = 0,
        rule: Optional[str] = None,
        label: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """Events newest first, as the API shows them."""
        ...

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        """One event as the API shows it, or None."""
        ...

    def snapshot(self, event_id: int, *, thumbnail: bool = False) -> Optional[Path]:
        """The event's snapshot (or its thumbnail) JPEG, a file under ``folder()``, or None."""
        ...

    def folder(self) -> Optional[Path]:
        """events.dir: the only folder snapshots are served from."""
        ...


class NoEvents:
    """No events store: an empty history."""

    def list(
        self,
        *,
        limit: int,
        offset: int = 0,
        rule: Optional[str] = None,
        label: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        return []

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        return None

    def snapshot(self, event_id: int, *, thumbnail: bool = False) -> Optional[Path]:
        return None

    def folder(self) -> Optional[Path]:
        return None


class StoreEvents:
    """``EventsQuery`` over the events store's read-only history."""

    def __init__(
        self, history: Any, as_json: Callable[[dict[str, Any]], dict[str, Any]], folder: str
    ) -> None:
        self.history = history
        self.as_json = as_json
        self._folder = Path(folder)

    def list(
        self,
        *,
        limit: int,
        offset: int = 0,
        rule: Optional[str] = None,
        label: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        found = self.history.list(
            limit=limit, offset=offset, rule=rule, label=label, newest_first=True
        )
        return [self.as_json(e) for e in found]

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        event = self.history.get(event_id)
        return self.as_json(event) if event is not None else None

    def snapshot(self, event_id: int, *, thumbnail: bool = False) -> Optional[Path]:
        event = self.history.get(event_id)
        if event is None:
            return None
        found: Optional[Path] = None
        if thumbnail:
            found = self.history.snapshot_file(event, thumbnail=True)
        return found or self.history.snapshot_file(event)

    def folder(self) -> Optional[Path]:
        return self._folder


def events_folder(cfg: Any) -> Optional[str]:
    """events.dir of ``cfg``, or None in a build without the events store."""
    try:
        from ..events import events_dir  # type: ignore[attr-defined]
    except ImportError:
        return None
    folder: str = events_dir(cfg)
    return folder


def events_query(cfg: Any) -> EventsQuery:
    """The event history of ``cfg``'s events store; an empty one in a build without it."""
    folder = events_folder(cfg)
    if folder is None:
        return NoEvents()
    from ..events.history import EventHistory, as_json  # type: ignore[import-not-found]

    return StoreEvents(EventHistory(folder), as_json, folder)
