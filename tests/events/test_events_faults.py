"""Events under faults: SIGKILL mid-event, a full disk under events.dir."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image

from edge_daemon.events.history import EventHistory
from tests.events.test_sink import disk, fill  # noqa: F401 (the tmpfs fixture)
from tests.helpers import IMAGES, REPO, shared_file

TIMEOUT = 60.0


def wait_until(condition: Callable[[], Any], what: str, alive: Callable[[], bool]) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := condition()):
        if not alive():
            raise AssertionError(f"the daemon stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def birds_then_nothing(root: Path, birds: int, others: int) -> Path:
    """A looping folder: ``birds`` chickadee frames, then ``others`` dragonfly frames."""
    folder = root / "frames"
    folder.mkdir()
    for n in range(birds + others):
        photo = "bird.bmp" if n < birds else "dragonfly.bmp"
        shutil.copyfile(shared_file(IMAGES / photo), folder / f"{n:04d}.bmp")
    return folder


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )


def rows(db: Path) -> dict[int, sqlite3.Row]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            return {}  # being created by the daemon right now
        return {r["id"]: r for r in conn.execute("SELECT * FROM events")}
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def kill_config(write_config: Callable[..., Path], tmp_path: Path) -> Path:
    # 20 fps: two seconds of birds (an event), half a second without (it ends after 0.3 s).
    return write_config(
        source=str(birds_then_nothing(tmp_path, 40, 10)),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 20},
            "model": {"top_k": 3},
            "outputs": {"status_interval": 0.05},
            "events": {
                "rules": [
                    {"name": "birds", "labels": ["@birds"], "min_score": 0.3,
                     "min_frames": 2, "end_after": 0.3}
                ],
                "dir": str(tmp_path / "events"),
                "thumbnail": 80,
            },
        },
    )  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_event_loses_nothing_and_the_next_start_closes_it_cut_short(
    kill_config: Path, tmp_path: Path
) -> None:
    db = tmp_path / "events" / "events.db"
    log = tmp_path / "daemon.stderr"
    rng = random.Random(20261130)
    killed_open: dict[int, float] = {}  # id -> last_seen of events open at a kill
    open_at_kills = 0
    for _ in range(8):
        proc = start(kill_config, log)
        try:
            alive = lambda p=proc: p.poll() is None  # noqa: E731
            # The events a kill left open are closed once the new daemon is up.
            for i, last_seen in killed_open.items():
                wait_until(
                    lambda i=i: (r := rows(db).get(i)) is not None and r["end"] is not None,
                    f"event {i} closed at the next start",
                    alive,
                )
                row = rows(db)[i]
                assert row["cut_short"] == 1 and row["end"] >= last_seen
            killed_open = {}
            known = max(rows(db), default=0)
            wait_until(lambda k=known: max(rows(db), default=0) > k, "an event of this run", alive)
            time.sleep(rng.uniform(0.2, 2.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT)
        assert integrity(db) == "ok"
        killed_open = {i: r["last_seen"] for i, r in rows(db).items() if r["end"] is None}
        open_at_kills += bool(killed_open)
    assert open_at_kills >= 3, "most kills should land in the middle of an event"

    # A clean run after the last kill: it closes the last open events, then stops.
    proc = start(kill_config, log)
    time.sleep(1.0)
    wait_until(lambda: all(r["end"] is not None for i, r in rows(db).items() if i in killed_open),
               "the last open events closed", lambda: proc.poll() is None)  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(TIMEOUT) == 0
    assert integrity(db) == "ok"

    final = rows(db)
    # No event lost: every event the daemon said it started is in the database.
    started = {int(m) for m in re.findall(r"event (\d+) started", log.read_text())}
    assert started and started <= set(final)
    assert all(r["end"] is not None and r["end"] >= r["start"] for r in final.values())
    cut = [r for r in final.values() if r["cut_short"]]
    assert len(cut) >= open_at_kills
    assert all(r["end"] == r["last_seen"] for r in cut)

    # No half-written JPEG: no temporary files, and every snapshot decodes whole.
    events_dir = tmp_path / "events"
    assert not [p for p in events_dir.rglob("*") if p.name.endswith(".tmp")]
    jpegs = list(events_dir.rglob("*.jpg"))
    assert jpegs
    for path in jpegs:
        with Image.open(io.BytesIO(path.read_bytes())) as pic:
            pic.load()  # raises on a truncated file
    history = EventHistory(str(events_dir))
    for ev in history.list():
        if ev["snapshot"]:
            assert history.snapshot_file(ev) is not None


@pytest.mark.slow
def test_full_disk_under_events_dir_classification_and_rows_go_on(
    write_config: Callable[..., Path],
    tmp_path: Path,
    disk: Path,  # noqa: F811
) -> None:
    config = write_config(
        source=str(birds_then_nothing(tmp_path, 6, 6)),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 30},
            "model": {"top_k": 3},
            "outputs": {"status_interval": 0.05},
            "events": {
                "rules": [{"name": "birds", "labels": ["chickadee"], "min_frames": 2,
                           "end_after": 0.0}],
                "dir": str(disk),
            },
        },
    )  # fmt: skip
    db = disk / "events.db"
    status_path = tmp_path / "out" / "status.json"
    proc = start(config, tmp_path / "daemon.stderr")
    alive = lambda: proc.poll() is None  # noqa: E731

    def status() -> dict[str, Any]:
        import json

        try:
            return dict(json.loads(status_path.read_text()))
        except (OSError, ValueError):
            return {}

    try:
        wait_until(lambda: len([r for r in rows(db).values() if r["snapshot"]]) >= 2,
                   "events with snapshots", alive)  # fmt: skip
        filler = fill(disk)
        full = wait_until(
            lambda: (s := status()).get("state") == "degraded" and s, "degraded", alive
        )
        assert full["reason"] == (
            f"{disk}: cannot write snapshots: the disk is full; free some space"
            " (snapshots resume by themselves)"
        )
        assert full["outputs"]["events"]["state"] == "failing"
        frames = full["frames"]
        known = max(rows(db))
        # Rows go on (without snapshots), and so does classification.
        wait_until(lambda: max(rows(db)) >= known + 3, "rows on a full disk", alive)
        assert status()["frames"] > frames
        during = [r for i, r in rows(db).items() if i > known + 1]
        assert during and not any(r["snapshot"] for r in during if r["end"] is not None)
        filler.unlink()
        wait_until(lambda: status().get("state") == "running", "running again", alive)
        after = max(rows(db))
        wait_until(
            lambda: any(r["snapshot"] for i, r in rows(db).items() if i > after),
            "snapshots again",
            alive,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(TIMEOUT)
    assert proc.returncode == 0
    assert integrity(db) == "ok"
    assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]
