"""The events sink: rows and best frames written off the inference thread, a full disk survived."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from edge_daemon.events import store
from edge_daemon.events.history import EventHistory
from edge_daemon.events.sink import EventsSink
from edge_daemon.sinks.base import Classified, EventNotice
from tests.fakes import make_image


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def event(i: int, t: float, **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": i,
        "rule": "feeder",
        "label": "goldfinch, Carduelis carduelis",
        "index": 12,
        "start": t,
        "end": None,
        "score": 0.6,
        "frames": 3,
        "snapshot": None,
        "model": "m",
        "model_sha256": "s",
        "cut_short": False,
        "last_seen": t,
    }
    ev.update(kw)
    return ev


def frame(n: int, image: np.ndarray, *notices: EventNotice) -> Classified:
    return Classified(n, f"f{n}", time.time(), image, [], [], 1.0, tuple(notices))


def decoded(path: Path) -> np.ndarray:
    with Image.open(io.BytesIO(path.read_bytes())) as pic:
        pic.load()
        return np.asarray(pic.convert("RGB"))


def test_rows_and_the_best_frame_as_jpeg_with_a_thumbnail(tmp_path: Path) -> None:
    sink = EventsSink(str(tmp_path), thumbnail=64)
    dull = make_image(320, 240, seed=1)
    best = 255 - dull
    t = time.time()
    sink.classified(frame(1, dull, EventNotice("start", event(1, t), best=True)))
    sink.classified(frame(2, best, EventNotice("update", event(1, t, score=0.9), best=True)))
    sink.classified(frame(3, dull, EventNotice("end", event(1, t, score=0.9, end=t + 1))))
    sink.close()
    history = EventHistory(str(tmp_path))
    (ev,) = history.list()
    assert (ev["score"], ev["end"], ev["cut_short"]) == (0.9, t + 1, False)
    snap = history.snapshot_file(ev)
    assert snap is not None and snap.name == "1.jpg"
    pixels = decoded(snap).astype(int)
    assert pixels.shape == (240, 320, 3)
    assert np.abs(pixels - best).mean() < np.abs(pixels - dull).mean() / 4  # the best frame
    thumb = history.snapshot_file(ev, thumbnail=True)
    assert thumb is not None and decoded(thumb).shape == (48, 64, 3)
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_sink_does_not_keep_a_reference_to_a_frame_the_source_reuses(tmp_path: Path) -> None:
    sink = EventsSink(str(tmp_path))
    buffer = make_image(64, 48, seed=3)
    original = buffer.copy()
    t = time.time()
    sink.classified(frame(1, buffer, EventNotice("start", event(1, t), best=True)))
    buffer[...] = 0  # the next frame lands in the same buffer
    sink.classified(frame(2, buffer, EventNotice("end", event(1, t, end=t))))
    sink.close()
    snap = EventHistory(str(tmp_path)).snapshot_file(1)
    assert snap is not None
    assert np.abs(decoded(snap).astype(int) - original).mean() < 20


def test_a_stop_closes_open_events_as_cut_short(tmp_path: Path) -> None:
    sink = EventsSink(str(tmp_path))
    t = time.time()
    sink.classified(frame(1, make_image(), EventNotice("start", event(5, t), best=True)))
    sink.classified(frame(2, make_image(), EventNotice("update", event(5, t, last_seen=t + 3))))
    sink.close()
    (ev,) = EventHistory(str(tmp_path)).list()
    assert (ev["id"], ev["end"], ev["cut_short"]) == (5, t + 3, True)


def test_a_database_that_is_not_one_turns_the_sink_failing_and_is_left_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    db.write_bytes(b"PK\x03\x04 my photos archive")
    sink = EventsSink(str(tmp_path))
    assert sink.wait_ready()
    sink.classified(frame(1, make_image(), EventNotice("start", event(1, time.time()), best=True)))
    health = sink.health()
    sink.close()
    assert health.state == "failing"
    assert health.error == (
        f"{db}: not an SQLite database; move it away to start a new event history"
        " (events are not kept until then)"
    )
    assert db.read_bytes() == b"PK\x03\x04 my photos archive"
    assert not (tmp_path / "snapshots").exists()


# -- a full disk ------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only; skipped without the privilege, as the other disk tests)."""
    from tests.test_reliability_faults import tmpfs

    with tmpfs(tmp_path / "disk", "2m") as target:
        yield target


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_full_disk_keeps_rows_without_snapshots_and_snapshots_resume(disk: Path) -> None:
    sink = EventsSink(str(disk))
    assert sink.wait_ready()
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)  # big JPEGs
    t = time.time()
    sink.classified(frame(1, noisy, EventNotice("start", event(1, t), best=True)))
    sink.classified(frame(2, noisy, EventNotice("end", event(1, t, end=t))))
    wait_until(sink.flushed, "the first event written")
    filler = fill(disk)
    for i in (2, 3):
        sink.classified(frame(i, noisy, EventNotice("start", event(i, t + i), best=True)))
        sink.classified(frame(i, noisy, EventNotice("end", event(i, t + i, end=t + i))))
    wait_until(lambda: sink.health().state == "failing", "the sink to say the disk is full")
    assert sink.health().error == (
        f"{disk}: cannot write snapshots: the disk is full; free some space"
        " (snapshots resume by themselves)"
    )
    history = EventHistory(str(disk))
    # Rows go on while the disk is full, without snapshots.
    rows = wait_until(lambda: len(history.list()) == 3 and history.list(), "rows on a full disk")
    assert [e["snapshot"] is not None for e in rows] == [True, False, False]
    assert not list(disk.rglob("*.tmp"))
    filler.unlink()
    sink.classified(frame(4, noisy, EventNotice("start", event(4, t + 4), best=True)))
    sink.classified(frame(4, noisy, EventNotice("end", event(4, t + 4, end=t + 4))))
    wait_until(lambda: sink.health().state == "ok", "the sink to be ok again")
    sink.close()
    assert history.snapshot_file(4) is not None
    conn = store.connect(store.db_path(str(disk)), readonly=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_event_deleted_by_the_user_while_open_stays_deleted(tmp_path: Path) -> None:
    sink = EventsSink(str(tmp_path))
    image = make_image(64, 48)
    t = time.time()
    sink.classified(frame(1, image, EventNotice("start", event(1, t), best=True)))
    wait_until(sink.flushed, "the start written")
    conn = store.open_writer(str(tmp_path))  # what `edge-daemon events delete 1` does
    assert store.delete_events(conn, str(tmp_path), [1]) == [1]
    conn.close()
    sink.classified(frame(2, image, EventNotice("update", event(1, t, score=0.9), best=True)))
    sink.classified(frame(3, image, EventNotice("end", event(1, t, score=0.9, end=t + 1))))
    sink.close()
    assert EventHistory(str(tmp_path)).list() == []
    assert not list(tmp_path.rglob("*.jpg"))
