"""The daemon as a process: SIGHUP model swap, SIGTERM, --max-frames, bad files, log modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

from tests.helpers import IMAGES, LABELS, MODELS, REPO, first_name, run_cli, shared_file

pytestmark = pytest.mark.slow

V1 = "mobilenet_v1_1.0_224_quant.tflite"
V2 = "mobilenet_v2_1.0_224_quant.tflite"
BROKEN = "model_invoking_error.tflite"
SMALL = "mobilenet_v1_0.25_128_quant.tflite"
WAIT = 60.0  # upper bound for anything to happen; normally well under a second


def config_data(folder: Path, model_file: str, images: Path, **extra: Any) -> dict[str, Any]:
    """A config running ``model_file`` over ``images``; ``extra`` merges into sections."""
    data: dict[str, Any] = {
        "model": {
            "path": str(shared_file(MODELS / model_file)),
            "labels": str(shared_file(LABELS)),
        },
        "engine": {"delegates": ["xnnpack"]},
        "source": {"kind": "files", "path": str(images)},
        "outputs": {
            "prediction_log": str(folder / "out" / "predictions.jsonl"),
            "status_file": str(folder / "out" / "status.json"),
            "status_interval": 0.1,
        },
        "daemon": {"state_dir": str(folder / "state")},
        "http": {"listen": None},
    }
    for section, keys in extra.items():
        data[section] = {**data.get(section, {}), **keys}
    return data


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Replace the config the way an editor or config tool would, never half-written."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def image_folder(folder: Path, names: dict[str, str]) -> Path:
    """A source folder: {name in the folder: fixture image}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fixture in names.items():
        shutil.copyfile(shared_file(IMAGES / fixture), folder / name)
    return folder


# -- SIGHUP and SIGTERM on a running daemon ------------------------------------------------


@dataclass
class Session:
    """What a daemon did between signals: status snapshots, exit, its stderr."""

    snapshots: dict[str, Optional[dict[str, Any]]] = field(default_factory=dict)
    returncode: Optional[int] = None
    stderr: str = ""
    log: list[dict[str, Any]] = field(default_factory=list)

    def get(self, name: str) -> dict[str, Any]:
        snap = self.snapshots.get(name)
        assert snap is not None, f"the daemon never reached {name!r}; stderr:\n{self.stderr}"
        return snap


def spawn(config: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(key, None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with open(stderr_path, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


def wait_for(
    status_path: Path, proc: subprocess.Popen[bytes], ok: Callable[[dict[str, Any]], bool]
) -> Optional[dict[str, Any]]:
    """The first status satisfying ``ok``; None if the daemon exits or WAIT passes."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and proc.poll() is None:
        status = read_json(status_path)
        if status is not None and ok(status):
            return status
        time.sleep(0.05)
    return None


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Start on v1, SIGHUP to v2, SIGHUP to a broken model, then SIGTERM."""
    folder = tmp_path_factory.mktemp("daemon")
    source = image_folder(folder / "images", {"a.jpg": "parrot.jpg", "b.bmp": "cat.bmp"})
    config = folder / "config.yaml"
    loop = {"source": {"loop": True, "fps": 20}}
    write_atomically(config, config_data(folder, V1, source, **loop))
    status = folder / "out" / "status.json"
    out = Session()
    proc = spawn(config, folder / "stderr.txt")
    try:
        out.snapshots["started"] = wait_for(
            status, proc, lambda s: s["state"] == "running" and s["frames"] >= 3
        )
        write_atomically(config, config_data(folder, V2, source, **loop))
        proc.send_signal(signal.SIGHUP)
        swapped = wait_for(status, proc, lambda s: s["model"].endswith(V2))
        out.snapshots["swapped"] = swapped
        if swapped is not None:
            out.snapshots["after swap"] = wait_for(
                status, proc, lambda s: s["frames"] >= swapped["frames"] + 3
            )
        write_atomically(config, config_data(folder, BROKEN, source, **loop))
        proc.send_signal(signal.SIGHUP)
        refused = wait_for(status, proc, lambda s: bool(s["last_error"]))
        out.snapshots["refused"] = refused
        if refused is not None:
            out.snapshots["after refusal"] = wait_for(
                status, proc, lambda s: s["frames"] >= refused["frames"] + 3
            )
        proc.send_signal(signal.SIGTERM)
        out.returncode = proc.wait(timeout=WAIT)
        out.snapshots["final"] = read_json(status)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.stderr = (folder / "stderr.txt").read_text(errors="replace")
    log = folder / "out" / "predictions.jsonl"
    out.log = log_lines(log) if log.exists() else []
    yield out


def test_running_status(session: Session) -> None:
    s = session.get("started")
    assert s["model"].endswith(V1)
    assert s["reloads"] == 0
    assert s["last_error"] is None


def test_sighup_swaps_the_model_and_frames_continue(session: Session) -> None:
    swapped = session.get("swapped")
    after = session.get("after swap")
    assert swapped["model"] == str(MODELS / V2)
    assert swapped["reloads"] == 1
    assert swapped["last_error"] is None
    assert after["state"] == "running"
    assert after["frames"] > swapped["frames"]
    assert after["model"] == str(MODELS / V2)
    # The prediction log shows the switch: v1 lines, then v2 lines, frames counting on.
    models = [line["model"] for line in session.log]
    first_v2 = models.index(V2)
    assert set(models[:first_v2]) == {V1}
    assert V2 in models and V1 not in models[first_v2:]
    frames = [line["frame"] for line in session.log]
    assert frames == list(range(1, len(frames) + 1))


def test_sighup_with_a_broken_model_keeps_the_old_one(session: Session) -> None:
    refused = session.get("refused")
    after = session.get("after refusal")
    assert refused["model"] == str(MODELS / V2)
    assert refused["reloads"] == 1
    assert refused["last_error"].startswith(f"reload failed, still running {V2}: ")
    assert BROKEN in refused["last_error"]
    assert refused["last_error_at"].endswith("Z")
    assert after["frames"] > refused["frames"]
    assert after["state"] == "running"
    assert after["model"] == str(MODELS / V2)
    assert session.log[-1]["model"] == V2


def test_sigterm_exits_0_with_state_stopped(session: Session) -> None:
    assert session.returncode == 0, session.stderr
    final = session.get("final")
    assert final["state"] == "stopped"
    assert final["frames"] >= session.get("after refusal")["frames"]
    assert "Traceback" not in session.stderr


# -- one-shot runs ----------------------------------------------------------------------------


def test_max_frames_exits_0_after_n_frames(tmp_path: Path) -> None:
    source = image_folder(tmp_path / "images", {"a.jpg": "parrot.jpg"})
    config = tmp_path / "config.yaml"
    write_atomically(config, config_data(tmp_path, SMALL, source, source={"loop": True}))
    proc = run_cli("run", "--config", str(config), "--max-frames", "5")
    assert proc.returncode == 0, proc.stderr
    status = read_json(tmp_path / "out" / "status.json")
    assert status is not None
    assert status["frames"] == 5 and status["state"] == "stopped"
    lines = log_lines(tmp_path / "out" / "predictions.jsonl")
    assert [line["frame"] for line in lines] == [1, 2, 3, 4, 5]


def test_prediction_log_rotates_by_size(tmp_path: Path) -> None:
    source = image_folder(tmp_path / "images", {"a.jpg": "parrot.jpg"})
    config = tmp_path / "config.yaml"
    outputs = {"max_bytes": 1024, "backups": 2}
    data = config_data(
        tmp_path, SMALL, source, model={"top_k": 3}, source={"loop": True}, outputs=outputs
    )
    write_atomically(config, data)
    proc = run_cli("run", "--config", str(config), "--max-frames", "40")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    logs = sorted(p.name for p in out.iterdir() if p.name.startswith("predictions"))
    assert logs == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    frames: list[int] = []
    for name in ("predictions.jsonl.2", "predictions.jsonl.1", "predictions.jsonl"):
        assert (out / name).stat().st_size <= 1024
        frames += [line["frame"] for line in log_lines(out / name)]  # whole lines only
    assert frames == list(range(41 - len(frames), 41))
    assert len(frames) > 3  # several lines per file


def test_unreadable_files_in_the_source_folder_are_skipped_with_a_warning(
    tmp_path: Path,
) -> None:
    source = image_folder(tmp_path / "images", {"a.jpg": "parrot.jpg", "c.bmp": "cat.bmp"})
    (source / "b.txt").write_text("not an image\n")
    (source / "d.jpg").write_bytes(shared_file(IMAGES / "parrot.jpg").read_bytes()[:2000])
    (source / "e.png").write_bytes(b"")
    (source / ".hidden.jpg").write_text("ignored: a dot file")
    config = tmp_path / "config.yaml"
    write_atomically(config, config_data(tmp_path, SMALL, source))
    proc = run_cli("run", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert [line["image"] for line in log_lines(tmp_path / "out" / "predictions.jsonl")] == [
        "a.jpg",
        "c.bmp",
    ]
    warnings = [line for line in proc.stderr.splitlines() if " WARNING " in line]
    for name in ("b.txt", "d.jpg", "e.png"):
        said = [w for w in warnings if f"skipping {source / name}: not a readable image" in w]
        assert len(said) == 1, proc.stderr
    assert len(warnings) == 3
    assert "hidden" not in proc.stderr
    assert "BytesIO" not in proc.stderr


def test_broken_model_at_start(tmp_path: Path) -> None:
    source = image_folder(tmp_path / "images", {"a.jpg": "parrot.jpg"})
    config = tmp_path / "config.yaml"
    write_atomically(config, config_data(tmp_path, BROKEN, source))
    proc = run_cli("run", "--config", str(config))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-daemon:")]
    assert len(errors) == 1 and "fake-op-double" in errors[0]
    status = read_json(tmp_path / "out" / "status.json")
    assert status is not None
    assert status["state"] == "failed"
    assert "fake-op-double" in status["last_error"]


def test_1000_labels_are_offset_by_one_and_said_once(
    tmp_path: Path, expected: dict[str, Any]
) -> None:
    labels = tmp_path / "labels.txt"
    all_labels = shared_file(LABELS).read_text().splitlines()
    labels.write_text("\n".join(all_labels[1:]) + "\n")
    source = image_folder(tmp_path / "images", {"a.jpg": "parrot.jpg", "b.jpg": "parrot.jpg"})
    config = tmp_path / "config.yaml"
    write_atomically(config, config_data(tmp_path, V1, source, model={"labels": str(labels)}))
    proc = run_cli("run", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("shifting labels by one") == 1
    want = expected["images"]["parrot.jpg"]["top1"]
    for line in log_lines(tmp_path / "out" / "predictions.jsonl"):
        top = line["predictions"][0]
        assert first_name(top["label"]) == want
        assert top["index"] == [first_name(x) for x in all_labels].index(want)


def test_change_mode_logs_only_when_top1_changes(tmp_path: Path, expected: dict[str, Any]) -> None:
    # Two frames of the parrot, then two cats whose golden top-1 is the same.
    assert expected["images"]["cat.bmp"] == expected["images"]["cat_720p.jpg"]
    source = image_folder(
        tmp_path / "images",
        {"1.jpg": "parrot.jpg", "2.jpg": "parrot.jpg", "3.bmp": "cat.bmp", "4.jpg": "cat_720p.jpg"},
    )
    config = tmp_path / "config.yaml"
    outputs = {"prediction_log_mode": "change", "heartbeat": 3600}
    write_atomically(config, config_data(tmp_path, V1, source, outputs=outputs))
    proc = run_cli("run", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    lines = log_lines(tmp_path / "out" / "predictions.jsonl")
    assert [(line["frame"], line["image"], line["reason"]) for line in lines] == [
        (1, "1.jpg", "change"),
        (3, "3.bmp", "change"),
    ]


def test_change_mode_heartbeat_while_top1_stays(tmp_path: Path) -> None:
    # The same image at 20 fps: ten frames take at least 0.45 s, so a 0.1 s
    # heartbeat must write lines although the top-1 never changes.
    source = image_folder(tmp_path / "images", {"a.jpg": "parrot.jpg"})
    config = tmp_path / "config.yaml"
    data = config_data(
        tmp_path,
        SMALL,
        source,
        source={"loop": True, "fps": 20},
        outputs={"prediction_log_mode": "change", "heartbeat": 0.1},
    )
    write_atomically(config, data)
    proc = run_cli("run", "--config", str(config), "--max-frames", "10")
    assert proc.returncode == 0, proc.stderr
    lines = log_lines(tmp_path / "out" / "predictions.jsonl")
    assert lines[0]["reason"] == "change" and lines[0]["frame"] == 1
    assert len(lines) >= 2
    assert {line["reason"] for line in lines[1:]} == {"heartbeat"}
    assert len({line["predictions"][0]["index"] for line in lines}) == 1
