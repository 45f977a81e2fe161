"""`edge-daemon teach add|list|remove|train` as a user runs them: round trips, one line per
refused file, refusals before any training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from edge_daemon.events import store as events_store
from tests.helpers import run_cli
from tests.teach.images import bad_files, good_files, jpeg, photo


def listing(config: Path) -> dict[str, Any]:
    r = run_cli("teach", "list", "--json", "--config", str(config))
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def counts(config: Path) -> dict[str, int]:
    return {c["name"]: c["count"] for c in listing(config)["classes"]}


def test_add_list_remove_round_trip(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = write_config()
    good = good_files(tmp_path / "in", 3)
    bad = bad_files(tmp_path / "in")
    r = run_cli(
        "teach", "add", "open", *map(str, good), *map(str, bad.values()), "--config", str(config)
    )
    assert r.returncode == 1
    assert f"added {len(good)} samples to 'open'" in r.stdout
    errors = r.stderr.strip().splitlines()
    assert len(errors) == len(bad)  # one line per refused file, each naming it
    for path, line in zip(bad.values(), errors):
        assert line.startswith(f"edge-daemon: {path}: ")
    assert "Traceback" not in r.stderr
    r = run_cli("teach", "add", "closed", str(good[0]), "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert counts(config) == {"closed": 1, "open": len(good)}
    shown = listing(config)
    assert shown["dir"] == str(tmp_path / "state" / "teach") and shown["model"] is None
    opened = next(c for c in shown["classes"] if c["name"] == "open")
    first = opened["samples"][0]["id"]
    text = run_cli("teach", "list", "open", "--config", str(config))
    assert first in text.stdout and "open" in text.stdout
    r = run_cli("teach", "remove", "open", first, "--config", str(config))
    assert r.returncode == 0 and "removed 1 sample of 'open'" in r.stdout
    r = run_cli("teach", "remove", "open", first, "--config", str(config))
    assert r.returncode != 0 and "nothing removed" in r.stderr
    r = run_cli("teach", "remove", "closed", "--config", str(config))
    assert r.returncode == 0 and "removed class 'closed' (1 sample)" in r.stdout
    assert counts(config) == {"open": len(good) - 1}


def test_a_bad_class_name_is_one_line_and_nothing_is_written(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config()
    (good,) = good_files(tmp_path / "in", 1)[:1]
    for name in ("../../etc", "/tmp/x", "a" * 100):
        r = run_cli("teach", "add", name, str(good), "--config", str(config))
        assert r.returncode != 0
        assert r.stderr.startswith("edge-daemon: error: class name") and r.stderr.count("\n") == 1
    assert not (tmp_path / "state" / "teach").exists()
    assert not (tmp_path / "etc").exists()


def test_event_snapshots_become_samples(write_config: Callable[..., Path], tmp_path: Path) -> None:
    events = tmp_path / "events"
    config = write_config(overrides={"events": {"dir": str(events)}})
    conn = events_store.open_writer(str(events))
    snap = "snapshots/2026-12-02/7.jpg"
    (events / "snapshots" / "2026-12-02").mkdir(parents=True)
    (events / snap).write_bytes(jpeg(photo(7, (320, 240))))
    ev = {
        "id": 7, "rule": "door", "label": "open", "index": 0, "start": 1.0e9, "end": 1.0e9 + 5,
        "score": 0.9, "frames": 10, "snapshot": None, "model": "model.tflite",
        "model_sha256": "ab" * 32, "cut_short": False, "last_seen": 1.0e9 + 5,
    }  # fmt: skip
    events_store.write_events(conn, [ev, {**ev, "id": 8}], [])
    events_store.set_snapshot(conn, 7, snap, None, 100)
    conn.close()
    r = run_cli("teach", "add", "open", "--event", "7", "8", "9", "--config", str(config))
    assert r.returncode == 1
    assert "added 1 sample to 'open'" in r.stdout
    assert "event 8 has no snapshot" in r.stderr and "no event 9" in r.stderr
    (sample,) = listing(config)["classes"][0]["samples"]
    assert sample["source"] == "event"
    assert Path(sample["path"]).read_bytes() == (events / snap).read_bytes()
    with Image.open(sample["path"]) as img:
        assert img.size == (320, 240)


def test_train_refuses_one_class_and_too_few_samples_before_any_work(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config()
    r = run_cli("teach", "train", "--config", str(config))
    assert r.returncode == 8 and "no samples yet" in r.stderr
    good = good_files(tmp_path / "in", 4)
    run_cli("teach", "add", "open", *map(str, good), "--config", str(config))
    r = run_cli("teach", "train", "--config", str(config))
    assert r.returncode == 8
    assert "only one class (open)" in r.stderr and "teach add nothing" in r.stderr
    run_cli("teach", "add", "closed", *map(str, good[:2]), "--config", str(config))
    r = run_cli("teach", "train", "--config", str(config))
    assert r.returncode == 8
    assert "too few samples: closed has 2; each class needs at least 3" in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "state" / "teach" / "model.tflite").exists()


def test_a_second_training_at_once_is_refused(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    import fcntl
    import os

    config = write_config()
    root = tmp_path / "state" / "teach"
    root.mkdir(parents=True)
    for cls, seed in (("open", 1), ("closed", 2)):
        run_cli(
            "teach",
            "add",
            cls,
            *map(str, good_files(tmp_path / cls, 3, seed)),
            "--config",
            str(config),
        )
    fd = os.open(root / ".train.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a training in progress holds it
        r = run_cli("teach", "train", "--config", str(config))
        assert r.returncode == 8 and "another training is running" in r.stderr
    finally:
        os.close(fd)
