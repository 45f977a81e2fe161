"""Smoothing through the daemon: a one-frame flicker floods neither events nor the change log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from edge_daemon.events.history import EventHistory
from tests.helpers import IMAGES, first_name, run_cli, shared_file


def flicker_frames(root: Path) -> Path:
    """Five chickadee frames and one cat frame, four times, then four dragonfly frames."""
    folder = root / "frames"
    folder.mkdir()
    photos = (["bird.bmp"] * 5 + ["cat.bmp"]) * 4 + ["dragonfly.bmp"] * 4
    for n, photo in enumerate(photos):
        shutil.copyfile(shared_file(IMAGES / photo), folder / f"{n:04d}.bmp")
    return folder


def run(write_config: Callable[..., Path], tmp_path: Path, smoothing: int, mode: str) -> Path:
    name = f"s{smoothing}-{mode}"
    config = write_config(
        source=str(tmp_path / "frames"),
        delegates=["cpu"],
        name=f"{name}.yaml",
        overrides={
            "model": {"top_k": 3, "smoothing": smoothing},
            "outputs": {
                "prediction_log": str(tmp_path / name / "predictions.jsonl"),
                "prediction_log_mode": mode,
                "heartbeat": 3600,
            },
            "events": {
                "rules": [{"name": "birds", "labels": ["chickadee"], "end_after": 0}],
                "dir": str(tmp_path / name / "events"),
            },
        },
    )
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    return tmp_path / name


def lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_smoothing_rides_out_a_one_frame_flicker(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    flicker_frames(tmp_path)
    raw = run(write_config, tmp_path, 0, "change")
    smooth = run(write_config, tmp_path, 4, "change")
    # Without smoothing every cat frame is a change and splits the bird event.
    assert len(lines(raw)) == 9  # chickadee, then cat and back four times, then dragonfly
    assert len(EventHistory(str(raw / "events")).list()) == 4
    # With it: one bird event and two log lines (the chickadee, then the dragonfly).
    (event,) = EventHistory(str(smooth / "events")).list()
    assert first_name(event["label"]) == "chickadee" and event["frames"] >= 20
    assert not event["cut_short"]
    changes = lines(smooth)
    assert [first_name(x["predictions"][0]["label"]) for x in changes] == [
        "chickadee",
        "dragonfly",
    ]
    # The log's predictions stay raw per-frame scores, smoothing or not.
    every = lines(run(write_config, tmp_path, 4, "every"))
    assert [first_name(x["predictions"][0]["label"]) for x in every[:6]] == [
        "chickadee",
        "chickadee",
        "chickadee",
        "chickadee",
        "chickadee",
        "Egyptian cat",
    ]
