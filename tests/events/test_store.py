"""The events database: schema and migrations, refusal of foreign files, recovery, retention."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_daemon.errors import EventsError
from edge_daemon.events import store
from edge_daemon.events.history import EventHistory, as_json, resolve_inside


def event(i: int, start: float, **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": i,
        "rule": "feeder",
        "label": "goldfinch, Carduelis carduelis",
        "index": 12,
        "start": start,
        "end": start + 10,
        "score": 0.8,
        "frames": 30,
        "snapshot": None,
        "model": "m.tflite",
        "model_sha256": "ab" * 32,
        "cut_short": False,
        "last_seen": start + 10,
    }
    ev.update(kw)
    return ev


def test_a_new_database_is_wal_at_the_latest_schema(tmp_path: Path) -> None:
    conn = store.open_writer(str(tmp_path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    store.write_events(conn, [event(1, 1000.0)], [])
    conn.close()
    (got,) = EventHistory(str(tmp_path)).list()
    assert as_json(got)["start"] == "1970-01-01T00:16:40.000Z"
    assert got["label"] == "goldfinch, Carduelis carduelis" and got["cut_short"] is False


def test_a_first_version_database_is_migrated_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    old = sqlite3.connect(path)
    for statement in store.MIGRATIONS[0]:
        old.execute(statement)
    old.execute(
        'INSERT INTO events (id, rule, label, "index", start, "end", last_seen, score, frames,'
        " snapshot, model, model_sha256, cut_short) VALUES"
        " (4, 'feeder', 'jay', 18, 5.0, 9.0, 9.0, 0.7, 12, NULL, 'm', 'x', 0)"
    )
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    conn = store.open_writer(str(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert store.next_id(conn) == 5
    conn.close()
    (ev,) = EventHistory(str(tmp_path)).list()
    assert (ev["id"], ev["label"], ev["thumbnail"]) == (4, "jay", None)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"these are my notes, not a database\n" * 40, "not an SQLite database; move it away"),
        (None, "written by a newer edge-daemon (schema 99, this one knows up to"),
    ],
)
def test_a_foreign_or_newer_file_is_refused_in_one_line_and_left_alone(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "events.db"
    if content is None:
        newer = sqlite3.connect(path)
        newer.execute("CREATE TABLE future (x)")
        newer.execute("PRAGMA user_version = 99")
        newer.commit()
        newer.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(EventsError) as info:
        store.open_writer(str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and expected in message
    assert path.read_bytes() == before
    with pytest.raises(EventsError):
        EventHistory(str(tmp_path)).list()


def test_events_left_open_by_a_kill_are_closed_cut_short_at_their_last_sighting(
    tmp_path: Path,
) -> None:
    conn = store.open_writer(str(tmp_path))
    store.write_events(conn, [event(1, 100.0, end=None, last_seen=130.0), event(2, 200.0)], [])
    assert store.startup(conn) == 1
    conn.close()
    one, two = EventHistory(str(tmp_path)).list()
    assert (one["end"], one["cut_short"]) == (130.0, True)
    assert (two["end"], two["cut_short"]) == (210.0, False)


def test_ids_are_never_reused_after_a_delete(tmp_path: Path) -> None:
    conn = store.open_writer(str(tmp_path))
    store.write_events(conn, [event(1, 1.0), event(2, 2.0)], [])
    assert store.delete_events(conn, str(tmp_path), [2, 99]) == [2]
    assert store.next_id(conn) == 3


def test_an_update_of_a_deleted_event_reports_it_gone(tmp_path: Path) -> None:
    conn = store.open_writer(str(tmp_path))
    store.write_events(conn, [event(1, 1.0, end=None)], [])
    store.delete_events(conn, str(tmp_path), [1])
    assert store.write_events(conn, [], [event(1, 1.0)]) == {1}
    assert EventHistory(str(tmp_path)).list() == []


def _with_snapshot(conn: sqlite3.Connection, root: Path, i: int, size: int) -> Path:
    name = f"snapshots/day/{i}.jpg"
    (root / "snapshots" / "day").mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(b"\xff" * size)
    store.set_snapshot(conn, i, name, None, size)
    return root / name


def test_retention_by_age_removes_rows_and_files_together(tmp_path: Path) -> None:
    conn = store.open_writer(str(tmp_path))
    now = 100 * 86400.0
    store.write_events(conn, [event(1, now - 40 * 86400), event(2, now - 3 * 86400)], [])
    old = _with_snapshot(conn, tmp_path, 1, 1000)
    new = _with_snapshot(conn, tmp_path, 2, 1000)
    removed = store.apply_retention(conn, str(tmp_path), keep_days=30, max_bytes=10**9, now=now)
    assert removed == 1 and not old.exists() and new.exists()
    assert [e["id"] for e in EventHistory(str(tmp_path)).list()] == [2]


def test_retention_by_size_removes_the_oldest_first_but_never_an_open_event(
    tmp_path: Path,
) -> None:
    conn = store.open_writer(str(tmp_path))
    store.write_events(conn, [event(i, float(i)) for i in range(1, 11)], [])
    store.write_events(conn, [event(11, 0.5, end=None)], [])
    for i in range(1, 12):
        _with_snapshot(conn, tmp_path, i, 200_000)
    base = store.disk_bytes(conn) - 11 * 200_000
    store.apply_retention(conn, str(tmp_path), keep_days=0, max_bytes=base + 1_000_000, now=20.0)
    left = [e["id"] for e in EventHistory(str(tmp_path)).list()]
    assert left == [11, 7, 8, 9, 10]  # 5 x 200 kB fit; the open one stays
    files = sorted(p.name for p in (tmp_path / "snapshots" / "day").iterdir())
    assert files == ["10.jpg", "11.jpg", "7.jpg", "8.jpg", "9.jpg"]


def test_history_filters(tmp_path: Path) -> None:
    conn = store.open_writer(str(tmp_path))
    store.write_events(
        conn,
        [
            event(1, 10.0),
            event(2, 20.0, rule="cats", label="tabby, tabby cat", index=282),
            event(3, 30.0),
        ],
        [],
    )
    conn.close()
    history = EventHistory(str(tmp_path))
    assert [e["id"] for e in history.list(since=15.0)] == [2, 3]
    assert [e["id"] for e in history.list(rule="cats")] == [2]
    assert [e["id"] for e in history.list(label="Carduelis carduelis")] == [1, 3]
    assert [e["id"] for e in history.list(label="tabby cat")] == [2]
    assert [e["id"] for e in history.list(newest_first=True, limit=2)] == [3, 2]
    assert history.get(2)["rule"] == "cats"  # type: ignore[index]
    assert history.get(42) is None
    assert EventHistory(str(tmp_path / "nowhere")).list() == []


def test_snapshot_paths_never_lead_out_of_the_events_folder(tmp_path: Path) -> None:
    root = tmp_path / "events"
    (root / "snapshots").mkdir(parents=True)
    (root / "snapshots" / "1.jpg").write_bytes(b"jpeg")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, root / "snapshots" / "link.jpg")
    assert resolve_inside(str(root), "snapshots/1.jpg") == (root / "snapshots" / "1.jpg").resolve()
    for bad in (
        "../secret.txt",
        str(secret),
        "snapshots/../../secret.txt",
        "snapshots/link.jpg",
        "",
        "snapshots",
        "snapshots/missing.jpg",
        "a\x00b",
    ):
        assert resolve_inside(str(root), bad) is None, bad
