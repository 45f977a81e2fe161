"""Events end to end: real photos through the daemon, the database, the snapshots and the CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

from edge_daemon.config import load_config
from edge_daemon.engine.model import load_model
from edge_daemon.events.history import EventHistory
from edge_daemon.pipeline import Classifier
from edge_daemon.sources.files import decode_image
from tests.helpers import IMAGES, first_name, run_cli, shared_file

# One pass: (photo, frames). Bird frames around two parrot frames make one
# "birds" event whose best frame is the parrot (macaw, 0.99 against the
# chickadee's 0.76); two bird frames alone are fewer than min_frames.
PASS = [
    ("bird.bmp", 4), ("parrot.jpg", 2), ("bird.bmp", 2),
    ("cat.bmp", 5),
    ("dragonfly.bmp", 4),
    ("bird.bmp", 2),
    ("grace_hopper.bmp", 3),
    ("bird.bmp", 4),
    ("dragonfly.bmp", 2),
]  # fmt: skip
EXPECTED_PASS = [("birds", "macaw", 8), ("cats", "Egyptian cat", 5), ("birds", "chickadee", 4)]

RULES = [
    {"name": "birds", "labels": ["@birds"], "min_score": 0.3, "min_frames": 3, "end_after": 0},
    {"name": "cats", "labels": ["@cats"], "min_score": 0.3, "min_frames": 3, "end_after": 0},
]


def frames_folder(root: Path, passes: int = 2) -> Path:
    """The photos copied as numbered files, played in name order."""
    folder = root / "frames"
    folder.mkdir()
    n = 0
    for _ in range(passes):
        for photo, count in PASS:
            source = shared_file(IMAGES / photo)
            for _ in range(count):
                shutil.copyfile(source, folder / f"{n:04d}{source.suffix}")
                n += 1
    return folder


@pytest.fixture
def feeder(write_config: Callable[..., Path], tmp_path: Path) -> Path:
    return write_config(
        source=str(frames_folder(tmp_path)),
        delegates=["cpu"],
        overrides={
            "events": {"rules": RULES, "dir": str(tmp_path / "events")},
            "model": {"top_k": 3},
        },
    )


def test_real_frames_make_exactly_the_expected_events_with_their_best_frames(
    feeder: Path, tmp_path: Path
) -> None:
    done = run_cli("run", "--config", str(feeder))
    assert done.returncode == 0, done.stderr
    history = EventHistory(str(tmp_path / "events"))
    events = history.list()
    got = [(e["rule"], first_name(e["label"]), e["frames"]) for e in events]
    assert got == EXPECTED_PASS * 2
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5, 6]
    for before, after in zip(events, events[1:]):
        assert before["start"] <= before["end"] < after["start"]
    assert not any(e["cut_short"] for e in events)
    assert events[0]["score"] > 0.95  # the parrot frame, not a chickadee one

    # The snapshot is the best frame: classifying it gives the event's label.
    cfg = load_config(feeder)
    model = load_model(cfg)
    try:
        classifier = Classifier.from_config(model, cfg)
        size = (model.input.width, model.input.height)
        for ev in events:
            snap = history.snapshot_file(ev)
            assert snap is not None, ev
            top = classifier.classify(decode_image(snap.read_bytes(), size)).top1
            assert top is not None and first_name(top.label) == first_name(ev["label"])
    finally:
        model.close()

    # The same through the CLI's --json.
    listed = run_cli("events", "--json", "--config", str(feeder))
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["rule"], first_name(r["label"]), r["frames"]) for r in rows] == [
        (e["id"], e["rule"], first_name(e["label"]), e["frames"]) for e in events
    ]
    assert all(Path(r["snapshot"]).is_file() for r in rows)
    assert rows[0]["start"].endswith("Z") and rows[0]["cut_short"] is False
    cats = run_cli("events", "--json", "--label", "egyptian cat", "--config", str(feeder))
    assert [json.loads(line)["id"] for line in cats.stdout.splitlines()] == [2, 5]

    # The status after the run counts today's events per label.
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["events"]["today"]["labels"] == {"Egyptian cat": 2, "chickadee": 2, "macaw": 2}
    assert status["outputs"]["events"] == {"state": "ok", "last_error": None}


def test_cli_show_delete_export_and_summary(feeder: Path, tmp_path: Path) -> None:
    assert run_cli("run", "--config", str(feeder)).returncode == 0
    events_dir = tmp_path / "events"
    shown = run_cli("events", "show", "2", "--config", str(feeder))
    assert shown.returncode == 0, shown.stderr
    snapshot_line = next(line for line in shown.stdout.splitlines() if line.startswith("snapshot"))
    snap = Path(snapshot_line.split(None, 1)[1])
    assert snap.is_file() and snap.is_relative_to(events_dir)

    deleted = run_cli("events", "delete", "2", "5", "--config", str(feeder))
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted 2, 5" in deleted.stdout
    assert not snap.exists()
    again = run_cli("events", "delete", "2", "--config", str(feeder))
    assert again.returncode == 1 and "no event 2" in again.stdout
    missing = run_cli("events", "show", "2", "--config", str(feeder))
    assert missing.returncode == 1 and missing.stderr.startswith("edge-daemon: error: no event 2")

    out = tmp_path / "export"
    exported = run_cli("events", "export", str(out), "--config", str(feeder))
    assert exported.returncode == 0, exported.stderr
    lines = (out / "events.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["id", "rule", "label", "index"]
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "3", "4", "6"]
    assert len(list(out.rglob("*.jpg"))) == 4

    summary = run_cli("events", "summary", "--json", "--config", str(feeder))
    data: dict[str, Any] = json.loads(summary.stdout)
    (counts,) = data["days"].values()
    assert counts == {"chickadee": 2, "macaw": 2}
    assert [f["label"] for f in data["first_today"]] == ["macaw", "chickadee"]
    text = run_cli("events", "summary", "--config", str(feeder)).stdout
    assert "first sightings today" in text and "macaw" in text

    bad = run_cli("events", "--since", "last tuesday", "--config", str(feeder))
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("edge-daemon: error: --since: cannot read 'last tuesday'")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_an_unknown_label_stops_the_start_with_the_closest_real_one(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    rules = [{"name": "feeder", "labels": ["goldfnch"]}]
    config = write_config(delegates=["cpu"], overrides={"events": {"rules": rules}})
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        f"edge-daemon: error: {config}:{_line_of(config, 'name: feeder')}: events.rules[0].labels:"
        ' unknown label "goldfnch" (did you mean "goldfinch"?); write a name from the labels file'
    )


def _line_of(path: Path, text: str) -> int:
    """The line number of the first line holding ``text``."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines) if text in line) + 1


def _newer(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    conn.execute("PRAGMA user_version = 42")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda db: db.write_bytes(b"not a database, but someone's notes\n" * 100),
            "not an SQLite database; move it away to start a new event history"
            " (events are not kept until then)",
        ),
        (
            _newer,
            "written by a newer edge-daemon (schema 42, this one knows up to 2); upgrade"
            " edge-daemon, or move the file away to start a new history (events are not kept"
            " until then)",
        ),
    ],
)
def test_a_foreign_or_newer_database_degrades_the_daemon_which_runs_on_and_leaves_the_file(
    feeder: Path, tmp_path: Path, make: Callable[[Path], Any], reason: str
) -> None:
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    db = events_dir / "events.db"
    make(db)
    before = db.read_bytes()
    done = run_cli("run", "--config", str(feeder))
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert errors[0].endswith(f"{db}: {reason}; classification goes on")
    assert db.read_bytes() == before
    predictions = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == sum(n for _, n in PASS) * 2  # every frame still classified
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["outputs"]["events"] == {"state": "failing", "last_error": f"{db}: {reason}"}
    listed = run_cli("events", "--config", str(feeder))
    assert listed.returncode == 7
    assert listed.stderr == f"edge-daemon: error: {db}: {reason}\n"
    assert db.read_bytes() == before
    assert not (events_dir / "snapshots").exists()


def test_the_cli_reads_while_the_daemon_writes_without_an_error(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys
    import time

    from tests.helpers import REPO

    config = write_config(
        source=str(frames_folder(tmp_path, passes=1)),
        delegates=["cpu"],
        overrides={
            "events": {"rules": RULES, "dir": str(tmp_path / "events")},
            "source": {"loop": True},
            "model": {"top_k": 3},
        },
    )
    env = {"PYTHONPATH": str(REPO)}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
        env={**__import__("os").environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen = 0
        reads = 0
        deadline = time.monotonic() + 120
        while (seen < 12 or reads < 10) and time.monotonic() < deadline:
            listed = run_cli("events", "--json", "--config", str(config))
            assert listed.returncode == 0 and listed.stderr == "", listed.stderr
            seen = len(listed.stdout.splitlines())
            reads += 1
            db = tmp_path / "events" / "events.db"
            if not db.exists():
                continue
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            except sqlite3.OperationalError as exc:
                pytest.fail(f"a reader saw an error: {exc}")
            finally:
                conn.close()
        assert seen >= 12, "the daemon made events while being read"
    finally:
        daemon.terminate()
        daemon.wait(60)
    assert daemon.returncode == 0


def test_check_lists_the_rules_and_checks_their_labels(
    feeder: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    ok = run_cli("check", "--json", "--config", str(feeder))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["events"] == (
        f"2 rules (birds, cats), kept in {tmp_path / 'events'}"
    )
    bad = write_config(
        delegates=["cpu"],
        name="bad.yaml",
        overrides={"events": {"rules": [{"name": "tits", "labels": ["chickadeee"]}]}},
    )
    refused = run_cli("check", "--config", str(bad))
    assert refused.returncode == 2
    assert 'events.rules[0].labels: unknown label "chickadeee" (did you mean "chickadee"?)' in (
        refused.stderr
    )


def test_status_shows_todays_events(feeder: Path) -> None:
    assert run_cli("run", "--config", str(feeder)).returncode == 0
    shown = run_cli("status", "--config", str(feeder))
    line = next(x for x in shown.stdout.splitlines() if x.startswith("events"))
    assert line == "events    6 today (Egyptian cat 2, chickadee 2, macaw 2)"
