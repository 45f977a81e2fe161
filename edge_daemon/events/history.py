"""Reading the event history: what the CLI and the HTTP API call. Read-only.

``EventHistory(events_dir)`` opens ``events.db`` read-only for each call, so a
reader never holds the daemon up and never sees a half-written event (WAL):

- ``list(since=, until=, rule=, label=, limit=, offset=, newest_first=)``
- ``get(id)``
- ``snapshot_file(event, thumbnail=False)``: the snapshot's path, only if it
  resolves inside events.dir (a row can never point a reader elsewhere)
- ``summary(now)``: events per label per day, first sighting of each label today

Events are dicts with ``rules.FIELDS`` (plus ``thumbnail``); ``start`` and
``end`` are Unix times, ``snapshot`` is relative to events.dir.
``as_json(event)`` gives the form ``--json`` and the API print.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Union

from ..sinks.prediction_log import iso_utc
from .labels import first_name, label_names
from .rules import FIELDS
from .store import SCHEMA_VERSION, connect, db_path

_COLUMNS = ", ".join(f'"{f}"' for f in FIELDS) + ", thumbnail"


def as_json(event: dict[str, Any], events_dir: Optional[str] = None) -> dict[str, Any]:
    """An event as ``--json`` and the API show it: times in ISO 8601 UTC; with
    ``events_dir`` the snapshot as an absolute path."""
    out = {f: event.get(f) for f in FIELDS}
    out["start"] = iso_utc(event["start"])
    out["end"] = iso_utc(event["end"]) if event.get("end") is not None else None
    out["score"] = round(float(event["score"]), 6)
    out["cut_short"] = bool(event.get("cut_short"))
    if events_dir is not None and out["snapshot"]:
        out["snapshot"] = os.path.join(os.path.abspath(events_dir), out["snapshot"])
    return out


def _row(row: sqlite3.Row) -> dict[str, Any]:
    ev = {f: row[f] for f in FIELDS}
    ev["cut_short"] = bool(ev["cut_short"])
    ev["thumbnail"] = row["thumbnail"]
    return ev


def matches_label(line: str, wanted: str) -> bool:
    """Whether a label line is ``wanted`` (whole line or one of its names, any case)."""
    key = " ".join(wanted.split()).casefold()
    return any(" ".join(n.split()).casefold() == key for n in label_names(line))


class EventHistory:
    """Read-only queries over ``events_dir/events.db``."""

    def __init__(self, events_dir: str) -> None:
        self.dir = events_dir
        self.path = db_path(events_dir)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Optional[sqlite3.Connection]]:
        if not os.path.exists(self.path):
            yield None
            return
        conn = connect(self.path, readonly=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            yield conn if version == SCHEMA_VERSION else None  # being created right now
        finally:
            conn.close()

    def list(
        self,
        *,
        since: Optional[float] = None,
        until: Optional[float] = None,
        rule: Optional[str] = None,
        label: Optional[str] = None,
        limit: Optional[int] = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Events that started in [since, until), oldest first (or newest first)."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("start >= ?")
            params.append(since)
        if until is not None:
            where.append("start < ?")
            params.append(until)
        if rule is not None:
            where.append("rule = ?")
            params.append(rule)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start DESC, id DESC" if newest_first else " ORDER BY start, id"
        out: list[dict[str, Any]] = []
        with self._conn() as conn:
            if conn is None:
                return []
            skipped = 0
            for row in conn.execute(sql, params):
                if label is not None and not matches_label(row["label"], label):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(_row(row))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        with self._conn() as conn:
            if conn is None:
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return _row(row) if row is not None else None

    def snapshot_file(
        self, event: Union[int, dict[str, Any]], *, thumbnail: bool = False
    ) -> Optional[Path]:
        """The event's snapshot (or thumbnail) file, if it exists inside events.dir."""
        ev = self.get(event) if isinstance(event, int) else event
        if ev is None:
            return None
        return resolve_inside(self.dir, ev.get("thumbnail" if thumbnail else "snapshot"))

    def summary(self, now: Optional[float] = None) -> dict[str, Any]:
        """``days``: {day: {label: count}} (local days, newest first); ``today``: the
        first sighting of each label today, in order."""
        now = datetime.now().timestamp() if now is None else now
        today = datetime.fromtimestamp(now).date().isoformat()
        days: dict[str, dict[str, int]] = {}
        first: dict[str, dict[str, Any]] = {}
        for ev in self.list():
            day = datetime.fromtimestamp(ev["start"]).date().isoformat()
            name = first_name(ev["label"])
            counts = days.setdefault(day, {})
            counts[name] = counts.get(name, 0) + 1
            if day == today and name not in first:
                first[name] = {"label": name, "id": ev["id"], "start": iso_utc(ev["start"])}
        ordered = {d: dict(sorted(days[d].items())) for d in sorted(days, reverse=True)}
        return {"days": ordered, "today": today, "first_today": list(first.values())}


def resolve_inside(events_dir: str, name: Optional[str]) -> Optional[Path]:
    """``events_dir/name`` if it is an existing file that stays inside events_dir, else None.

    Absolute names, ``..`` and symbolic links that lead out are refused.
    """
    if not name or os.path.isabs(name) or "\x00" in name:
        return None
    root = os.path.realpath(events_dir)
    full = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, full]) != root or full == root:
        return None
    return Path(full) if os.path.isfile(full) else None


def seed(events_dir: str, now: Optional[float] = None) -> tuple[int, dict[str, int]]:
    """The next event id and today's events per label, read once when the daemon starts.

    A missing or unusable database gives (1, {}): the events sink reports why.
    """
    path = db_path(events_dir)
    if not os.path.exists(path):
        return 1, {}
    now = datetime.now().timestamp() if now is None else now
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        conn = connect(path, readonly=True)
    except Exception:
        return 1, {}
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < 1:
            return 1, {}
        next_id = (
            int(
                conn.execute(
                    "SELECT max(coalesce((SELECT max(id) FROM events), 0),"
                    " coalesce((SELECT value FROM meta WHERE key = 'last_id'), 0))"
                ).fetchone()[0]
            )
            + 1
        )
        today: dict[str, int] = {}
        for (label,) in conn.execute(
            'SELECT label FROM events WHERE start >= ? AND "end" IS NOT NULL',
            (midnight.timestamp(),),
        ):
            name = first_name(label)
            today[name] = today.get(name, 0) + 1
        return next_id, today
    except sqlite3.Error:
        return 1, {}
    finally:
        conn.close()
