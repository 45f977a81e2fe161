"""The events sink: writes event rows to SQLite and best frames as JPEG, on its own thread.

The inference thread only files each notice (and a copy of the frame when it
is an event's best so far) under the event's id; the writer thread wakes at
once for a start or an end and otherwise every ``FLUSH_INTERVAL`` seconds,
writes the rows that changed in one transaction, and encodes an open event's
best frame at most every ``SNAPSHOT_INTERVAL`` seconds (and at its end).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..config import Config
from ..errors import EventsError
from ..sinks.base import Classified, EventNotice, Sink, SinkContext, SinkHealth
from . import events_dir, snapshots, store
from .labels import first_name

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
SNAPSHOT_INTERVAL = 2.0
RETENTION_INTERVAL = 600.0
# Events remembered while the database refuses writes; beyond this the oldest ended go.
MAX_PENDING = 10_000


@dataclass
class _Pending:
    event: dict[str, Any]
    new: bool = False  # the row is not in the database yet
    dirty: bool = True
    urgent: bool = False
    image: Optional[np.ndarray] = None  # the best frame, not saved yet
    saved_at: float = -1e9  # monotonic time of the last snapshot written
    recorded: bool = False  # the row names its snapshot files
    gone: bool = False  # deleted by the user while open


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full; free some space (snapshots resume by themselves)"
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return "the disk is full; free some space (rows wait in memory meanwhile)"
    return store.describe(exc)


class EventsSink(Sink):
    """Keeps events in ``events_dir/events.db`` and their best frames as JPEG files."""

    name = "events"
    recovered = "events: writing events and snapshots again"

    def __init__(
        self,
        events_dir: str,
        *,
        snapshots: bool = True,
        thumbnail: int = 0,
        jpeg_quality: int = 85,
        keep_days: float = 30.0,
        max_bytes: int = 500_000_000,
    ) -> None:
        self.dir = events_dir
        self.snapshots = snapshots
        self.thumbnail = thumbnail
        self.jpeg_quality = jpeg_quality
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        self._pending: dict[int, _Pending] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._db_error: Optional[str] = None
        self._write_error: Optional[str] = None
        self._snap_error: Optional[str] = None
        self._snap_need = 0  # bytes of the snapshot a full disk refused
        self.cut_short = 0  # events a kill left open, closed at start
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> Optional[EventsSink]:
        """The sink for ``cfg.events``; None when no rule is configured."""
        e = cfg.events
        if not e.rules:
            return None
        return cls(
            events_dir(cfg),
            snapshots=e.snapshots,
            thumbnail=e.thumbnail,
            jpeg_quality=e.jpeg_quality,
            keep_days=e.keep_days,
            max_bytes=e.max_bytes,
        )

    # -- inference thread ------------------------------------------------------
    def classified(self, item: Classified) -> None:
        if item.events:
            self._file(item.events, item.image)

    def events_ended(self, notices: Sequence[EventNotice]) -> None:
        self._file(notices, None)

    def _file(self, notices: Sequence[EventNotice], image: Optional[np.ndarray]) -> None:
        with self._cond:
            for notice in notices:
                ev = notice.event
                p = self._pending.get(ev["id"])
                if p is None:
                    p = self._pending[ev["id"]] = _Pending(dict(ev), new=notice.type == "start")
                else:
                    p.event = dict(ev)
                p.dirty = True
                if notice.type != "update":
                    p.urgent = True
                if notice.best and self.snapshots and image is not None:
                    p.image = image.copy()
            if any(p.urgent for p in self._pending.values()):
                self._cond.notify()

    def health(self) -> SinkHealth:
        error = self._db_error or self._write_error or self._snap_error
        return SinkHealth("failing", error) if error else SinkHealth()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Whether the database was opened (or refused) within ``timeout``."""
        return self._ready.wait(timeout)

    def flushed(self) -> bool:
        """Nothing is waiting to be written (for tests and close)."""
        with self._cond:
            return not any(p.dirty or p.image is not None for p in self._pending.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(10.0)

    # -- writer thread ---------------------------------------------------------
    def _open(self) -> Optional[sqlite3.Connection]:
        try:
            conn = store.open_writer(self.dir)
        except EventsError as exc:
            self._db_error = str(exc)
            return None
        try:
            self.cut_short = store.startup(conn)
            if self.cut_short:
                log.info(
                    "%d event(s) left open by an earlier stop closed, marked cut short",
                    self.cut_short,
                )
            snapshots.sweep(self.dir)
            self._housekeeping(conn)
        except (sqlite3.Error, OSError) as exc:
            self._write_error = f"{store.db_path(self.dir)}: {_why(exc)}"
        return conn

    def _housekeeping(self, conn: sqlite3.Connection) -> None:
        removed = store.apply_retention(
            conn, self.dir, keep_days=self.keep_days, max_bytes=self.max_bytes
        )
        if removed:
            log.info("retention: %d old event(s) deleted with their snapshots", removed)
        store.ensure_reserve(conn)

    def _run(self) -> None:
        conn = self._open()
        self._ready.set()
        if conn is None:
            self._drain_forever()
            return
        next_housekeeping = time.monotonic() + RETENTION_INTERVAL
        try:
            while True:
                with self._cond:
                    if not self._closed and not any(p.urgent for p in self._pending.values()):
                        self._cond.wait(FLUSH_INTERVAL)
                    closing = self._closed
                    if closing:
                        self._cut_open_events()
                    batch = self._take()
                self._write(conn, batch)
                if closing:
                    return
                self._check_space()
                now = time.monotonic()
                if now >= next_housekeeping:
                    next_housekeeping = now + RETENTION_INTERVAL
                    with contextlib.suppress(sqlite3.Error, OSError):
                        self._housekeeping(conn)  # a full disk: the next round tries again
        finally:
            conn.close()

    def _check_space(self) -> None:
        """After a full disk: clear the error once there is room again, even before
        the next event needs it."""
        if self._snap_error is None or not self._snap_need:
            return
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return
        if st.f_bavail * st.f_frsize >= 2 * self._snap_need:
            self._snap_error = None
            self._snap_need = 0

    def _drain_forever(self) -> None:
        """Without a database: forget notices as they come, until closed."""
        while True:
            with self._cond:
                self._pending.clear()
                if self._closed:
                    return
                self._cond.wait(FLUSH_INTERVAL)

    def _cut_open_events(self) -> None:
        """At a stop: open events end at their last sighting, cut short."""
        for p in self._pending.values():
            ev = p.event
            if ev.get("end") is None:
                ev["end"] = ev.get("last_seen") or ev["start"]
                ev["cut_short"] = True
                p.dirty = p.urgent = True

    def _take(self) -> list[tuple[int, _Pending, dict[str, Any], bool, Optional[np.ndarray]]]:
        """What to write now (called with the lock held)."""
        now = time.monotonic()
        out = []
        for key, p in self._pending.items():
            ended = p.event.get("end") is not None
            image = None
            if p.image is not None and (ended or now - p.saved_at >= SNAPSHOT_INTERVAL):
                image, p.image = p.image, None
            if p.dirty or image is not None:
                out.append((key, p, dict(p.event), p.new, image))
                p.dirty = p.urgent = False
        return out

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        if not batch:
            return
        rows = [(key, ev, new) for key, p, ev, new, _ in batch if not p.gone]
        try:
            gone = store.write_events(
                conn, [ev for _, ev, new in rows if new], [ev for _, ev, new in rows if not new]
            )
            self._write_error = None
        except sqlite3.Error as exc:
            self._write_error = f"{store.db_path(self.dir)}: cannot write events: {_why(exc)}"
            with self._cond:
                for _, p, _, _, image in batch:
                    p.dirty = True
                    if image is not None and p.image is None:
                        p.image = image
                self._trim()
            return
        for key, p, ev, new, image in batch:
            p.new = False
            if key in gone:
                p.gone = True
            elif new:
                log.info("event %d started: %s (rule %s)", key, first_name(ev["label"]), ev["rule"])
            if image is not None and not p.gone:
                self._save(conn, p, ev, image)
        with self._cond:
            for key, p, ev, _, _ in batch:
                if (ev.get("end") is not None or p.gone) and not p.dirty and p.image is None:
                    if ev.get("end") is not None and not p.gone:
                        log.info(
                            "event %d ended: %s, %d frames, best %.2f%s",
                            key,
                            first_name(ev["label"]),
                            ev["frames"],
                            ev["score"],
                            " (cut short)" if ev["cut_short"] else "",
                        )
                    self._pending.pop(key, None)

    def _save(
        self, conn: sqlite3.Connection, p: _Pending, ev: dict[str, Any], image: np.ndarray
    ) -> None:
        ended = ev.get("end") is not None
        name = snapshots.relative_name(ev["id"], ev["start"])
        thumb = (
            snapshots.relative_name(ev["id"], ev["start"], thumbnail=True)
            if self.thumbnail
            else None
        )
        size = 0
        try:
            jpeg = snapshots.encode_jpeg(image, self.jpeg_quality)
            size = len(jpeg)
            snapshots.write_whole(self.dir, name, jpeg)
            if thumb:
                small = snapshots.encode_jpeg(image, self.jpeg_quality, self.thumbnail)
                size += snapshots.write_whole(self.dir, thumb, small)
        except OSError as exc:
            self._snap_error = f"{self.dir}: cannot write snapshots: {_why(exc)}"
            self._snap_need = max(size, 65536)
            p.saved_at = time.monotonic()
            if not p.recorded:
                store.remove_files(self.dir, [name, thumb])  # no row names them
            if not ended:
                with self._cond:
                    if p.image is None:
                        p.image = image  # tried again after SNAPSHOT_INTERVAL
            return
        self._snap_error = None
        self._snap_need = 0
        p.saved_at = time.monotonic()
        try:
            if store.set_snapshot(conn, ev["id"], name, thumb, size):
                p.recorded = True
            else:
                p.gone = True
                store.remove_files(self.dir, [name, thumb])
        except sqlite3.Error as exc:
            self._write_error = f"{store.db_path(self.dir)}: cannot write events: {_why(exc)}"

    def _trim(self) -> None:
        if len(self._pending) <= MAX_PENDING:
            return
        ended = [k for k, p in self._pending.items() if p.event.get("end") is not None]
        for key in ended[: len(self._pending) - MAX_PENDING]:
            del self._pending[key]
