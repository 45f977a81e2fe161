"""The status file: atomic replacement, and the fields a running daemon publishes."""

from __future__ import annotations

import os
import stat
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_daemon.config import parse_config
from edge_daemon.daemon import Daemon
from edge_daemon.errors import OutputError
from edge_daemon.notify import RecordingNotifier
from edge_daemon.sinks.status_file import StatusFile, read_status
from tests.helpers import IMAGES, LABELS, MODELS, shared_file


def test_write_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "status.json"  # the folder is created
    StatusFile(str(path)).write({"state": "running", "frames": 3, "label": "caf\u00e9"})
    assert read_status(str(path)) == {"state": "running", "frames": 3, "label": "caf\u00e9"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by other users


def test_replacing_leaves_no_temporary_files(tmp_path: Path) -> None:
    sink = StatusFile(str(tmp_path / "status.json"))
    for i in range(50):
        sink.write({"frames": i})
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert read_status(str(tmp_path / "status.json")) == {"frames": 49}


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    sink = StatusFile(str(path))
    sink.write({"frames": 0, "pad": "x" * 20000})
    seen: list[int] = []
    broken: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(read_status(str(path))["frames"])
            except ValueError as exc:  # a torn or empty file would land here
                broken.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 200):
            sink.write({"frames": i, "pad": "x" * 20000})
    finally:
        done.set()
        thread.join()
    assert broken == []
    assert seen and seen == sorted(seen)


def test_unwritable_status_raises_output_error_and_keeps_nothing_half_done(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the status folder should be")
    path = blocker / "status.json"
    with pytest.raises(OutputError) as info:
        StatusFile(str(path)).write({"state": "running"})
    assert str(info.value).startswith(f"{path}: cannot write the status file: ")
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-folder"]


def test_read_status_refuses_what_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError):
        read_status(str(path))


# -- what the daemon writes -----------------------------------------------------------------


def utc(text: str) -> datetime:
    assert text.endswith("Z")
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert t.utcoffset() == timedelta(0)
    return t


@pytest.fixture
def daemon_status(tmp_path: Path, runtime_name: str) -> dict[str, Any]:
    """The status file after an in-process daemon classified 3 frames and stopped."""
    source = tmp_path / "images"
    source.mkdir()
    for name in ("parrot.jpg", "cat.bmp", "bird.bmp"):
        (source / name).write_bytes(shared_file(IMAGES / name).read_bytes())
    data = {
        "model": {
            "path": str(shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite")),
            "labels": str(shared_file(LABELS)),
            "top_k": 3,
        },
        "engine": {"runtime": runtime_name, "delegates": ["xnnpack"]},
        "source": {"kind": "files", "path": str(source)},
        "outputs": {"prediction_log": None, "status_file": str(tmp_path / "out" / "status.json")},
        "http": {"listen": None},  # never the default port: another daemon may hold it
    }
    cfg = parse_config(yaml.safe_dump(data), name=str(tmp_path / "config.yaml"))
    code = Daemon(cfg, config_path=cfg.file, notifier=RecordingNotifier(), environ={}).run()
    assert code == 0
    assert os.listdir(tmp_path / "out") == ["status.json"]
    return read_status(str(tmp_path / "out" / "status.json"))


def test_status_fields(daemon_status: dict[str, Any], runtime_name: str) -> None:
    s = daemon_status
    for key in (
        "state", "pid", "started", "updated", "model", "labels", "runtime", "delegate",
        "frames", "fps", "latency_ms", "predictions", "last_error",
    ):  # fmt: skip
        assert key in s, key
    assert s["state"] == "stopped"
    assert s["pid"] == os.getpid()
    assert utc(s["updated"]) >= utc(s["started"])
    assert s["model"] == str(MODELS / "mobilenet_v1_0.25_128_quant.tflite")
    assert s["labels"] == str(LABELS)
    assert s["runtime"].split()[0] == runtime_name
    assert s["delegate"] == "xnnpack"
    assert s["frames"] == 3
    assert isinstance(s["fps"], (int, float)) and s["fps"] >= 0
    latency = s["latency_ms"]
    for stage in ("capture", "preprocess", "inference", "postprocess"):
        assert isinstance(latency[stage], (int, float)) and latency[stage] >= 0, stage
    assert len(s["predictions"]) == 3
    for p in s["predictions"]:
        assert set(p) == {"label", "index", "score"}
    assert s["last_error"] is None
    assert s["input"] == {"width": 128, "height": 128, "dtype": "uint8"}
