"""The events database (SQLite, WAL): schema, migrations, and the writes.

``events.db`` holds one row per event. ``PRAGMA user_version`` is the schema
version; ``MIGRATIONS[n]`` brings a version-n database to n + 1, so a database
from any earlier release is upgraded in place, one step per transaction. A
database from a newer release, or a file that is not a database, is refused
with one line and never written to.

A full disk: the database keeps a reserve of free pages (and its WAL the room
to use them), so rows still go in when a filled disk refuses the snapshots.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from ..errors import EventsError

DB_NAME = "events.db"
SNAPSHOTS = "snapshots"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: the first release.
    (
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL,
            label TEXT NOT NULL,
            "index" INTEGER NOT NULL,
            start REAL NOT NULL,
            "end" REAL,
            last_seen REAL NOT NULL,
            score REAL NOT NULL,
            frames INTEGER NOT NULL,
            snapshot TEXT,
            model TEXT NOT NULL,
            model_sha256 TEXT NOT NULL,
            cut_short INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ),
    # 1 -> 2: thumbnails, bytes on disk per event (retention), indexes for queries.
    (
        "ALTER TABLE events ADD COLUMN thumbnail TEXT",
        "ALTER TABLE events ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX events_start ON events (start)",
        "CREATE INDEX events_label ON events (label)",
        "CREATE TABLE reserve (filler BLOB)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Free pages kept in the database (and room in its WAL) for a full disk.
RESERVE_PAGES = 64
_HEADER = b"SQLite format 3\x00"
# About what a row takes in the database, for retention by size.
_ROW_BYTES = 200


def db_path(events_dir: str) -> str:
    return os.path.join(events_dir, DB_NAME)


def describe(exc: BaseException) -> str:
    """One line for a database or file error."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text


def check_file(path: str) -> None:
    """Refuse a file that is not an SQLite database before SQLite touches it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise EventsError(f"{path}: cannot read the events database ({describe(exc)})") from None
    if head and head != _HEADER:
        raise EventsError(
            f"{path}: not an SQLite database; move it away to start a new event history"
            " (events are not kept until then)"
        )


def connect(path: str, *, readonly: bool = False, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), waiting ``timeout`` on locks."""
    check_file(path)
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{Path(path).absolute().as_uri()}?mode=ro",
                uri=True,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise EventsError(f"{path}: cannot open the events database ({describe(exc)})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise EventsError(
            f"{path}: written by a newer edge-daemon (schema {version}, this one knows up to"
            f" {SCHEMA_VERSION}); upgrade edge-daemon, or move the file away to start a new"
            " history (events are not kept until then)"
        )
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``, one transaction per step; the version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current == version:  # another process may have migrated meanwhile
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return version


def open_writer(events_dir: str) -> sqlite3.Connection:
    """The daemon's (or ``events delete``'s) connection: created, migrated, in WAL mode."""
    path = db_path(events_dir)
    try:
        os.makedirs(events_dir, exist_ok=True)
    except OSError as exc:
        raise EventsError(
            f"{events_dir}: cannot create the events folder ({describe(exc)})"
        ) from None
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint often: the WAL then stays within the room the reserve gave it.
        conn.execute(f"PRAGMA wal_autocheckpoint = {RESERVE_PAGES // 2}")
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise EventsError(f"{path}: cannot use the events database ({describe(exc)})") from None
    return conn


def ensure_reserve(conn: sqlite3.Connection) -> None:
    """Keep ``RESERVE_PAGES`` free pages in the file for rows written on a full disk."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if free >= RESERVE_PAGES:
        return
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO reserve VALUES (zeroblob(?))", ((RESERVE_PAGES - free) * page,))
        conn.execute("DELETE FROM reserve")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def startup(conn: sqlite3.Connection) -> int:
    """Close the events a kill left open (end = last seen, cut short); how many."""
    cur = conn.execute('UPDATE events SET "end" = last_seen, cut_short = 1 WHERE "end" IS NULL')
    return cur.rowcount


def next_id(conn: sqlite3.Connection) -> int:
    """The id for the next event: ids are never reused, even after a delete."""
    row = conn.execute(
        "SELECT max(coalesce((SELECT max(id) FROM events), 0),"
        " coalesce((SELECT value FROM meta WHERE key = 'last_id'), 0))"
    ).fetchone()
    return int(row[0]) + 1


_INSERT = (
    'INSERT OR IGNORE INTO events (id, rule, label, "index", start, "end", last_seen, score,'
    " frames, snapshot, model, model_sha256, cut_short)"
    " VALUES (:id, :rule, :label, :index, :start, :end, :last_seen, :score, :frames, NULL,"
    " :model, :model_sha256, :cut_short)"
)
_UPDATE = (
    'UPDATE events SET label = :label, "index" = :index, "end" = :end, last_seen = :last_seen,'
    " score = :score, frames = :frames, cut_short = :cut_short WHERE id = :id"
)


def write_events(
    conn: sqlite3.Connection, inserts: Iterable[dict[str, Any]], updates: Iterable[dict[str, Any]]
) -> set[int]:
    """Insert new events and update others, in one transaction; the ids no longer there.

    An update whose row is gone was deleted by the user (``events delete``).
    """
    gone: set[int] = set()
    conn.execute("BEGIN IMMEDIATE")
    try:
        top = 0
        for ev in inserts:
            conn.execute(_INSERT, _params(ev))
            top = max(top, int(ev["id"]))
        for ev in updates:
            if conn.execute(_UPDATE, _params(ev)).rowcount == 0:
                gone.add(int(ev["id"]))
        if top:
            conn.execute(
                "INSERT INTO meta VALUES ('last_id', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = max(value, excluded.value)",
                (top,),
            )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return gone


def _params(ev: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ev["id"],
        "rule": ev["rule"],
        "label": ev["label"],
        "index": ev["index"],
        "start": ev["start"],
        "end": ev["end"],
        "last_seen": ev.get("last_seen") or ev["end"] or ev["start"],
        "score": float(ev["score"]),
        "frames": ev["frames"],
        "model": ev["model"],
        "model_sha256": ev["model_sha256"],
        "cut_short": 1 if ev["cut_short"] else 0,
    }


def set_snapshot(
    conn: sqlite3.Connection, event_id: int, snapshot: str, thumbnail: Optional[str], size: int
) -> bool:
    """Record an event's snapshot files; False when the event was deleted meanwhile."""
    cur = conn.execute(
        "UPDATE events SET snapshot = ?, thumbnail = ?, bytes = ? WHERE id = ?",
        (snapshot, thumbnail, size, event_id),
    )
    return cur.rowcount > 0


def remove_files(events_dir: str, names: Iterable[Optional[str]]) -> None:
    for name in names:
        if name:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(events_dir, name))


def delete_events(conn: sqlite3.Connection, events_dir: str, ids: Iterable[int]) -> list[int]:
    """Delete events (rows and snapshot files); the ids that existed."""
    wanted = sorted(set(int(i) for i in ids))
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = [
            conn.execute("SELECT id, snapshot, thumbnail FROM events WHERE id = ?", (i,)).fetchone()
            for i in wanted
        ]
        found = [r for r in rows if r is not None]
        conn.executemany("DELETE FROM events WHERE id = ?", [(r["id"],) for r in found])
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    remove_files(events_dir, [n for r in found for n in (r["snapshot"], r["thumbnail"])])
    return [int(r["id"]) for r in found]


def disk_bytes(conn: sqlite3.Connection) -> int:
    """Snapshots plus the database pages in use (free pages are reused, not counted)."""
    snaps = int(conn.execute("SELECT coalesce(sum(bytes), 0) FROM events").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return snaps + (pages - free) * size


def apply_retention(
    conn: sqlite3.Connection,
    events_dir: str,
    *,
    keep_days: float,
    max_bytes: int,
    now: Optional[float] = None,
    batch: int = 50,
) -> int:
    """Delete ended events older than ``keep_days``, then the oldest while over
    ``max_bytes`` (rows and snapshots together); how many were deleted."""
    now = time.time() if now is None else now
    removed = 0
    if keep_days > 0:
        old = [
            int(r[0])
            for r in conn.execute(
                'SELECT id FROM events WHERE "end" IS NOT NULL AND start < ? ORDER BY start',
                (now - keep_days * 86400.0,),
            )
        ]
        for i in range(0, len(old), batch):
            removed += len(delete_events(conn, events_dir, old[i : i + batch]))
    while (excess := disk_bytes(conn) - max_bytes) > 0:
        chosen: list[int] = []
        freed = 0
        for row in conn.execute(
            'SELECT id, bytes FROM events WHERE "end" IS NOT NULL ORDER BY start, id LIMIT ?',
            (batch,),
        ):
            chosen.append(int(row[0]))
            freed += int(row[1]) + _ROW_BYTES
            if freed >= excess:
                break
        if not chosen:
            break
        removed += len(delete_events(conn, events_dir, chosen))
    return removed
