"""`teach train --apply` onto a running daemon (which keeps its model when the taught one is
bad), and a SIGKILL at random moments of training and export: never a half-written model."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from edge_daemon.config import load_config
from edge_daemon.daemon import signal_reload
from edge_daemon.engine.model import load_model
from edge_daemon.errors import TeachError
from edge_daemon.teach.active import GENERATIONS, generation_dir, installed, running_config
from edge_daemon.teach.apply import apply
from edge_daemon.teach.train import _write_generation, install
from tests.helpers import IMAGES, REPO, run_cli, shared_file
from tests.teach.scenes import write_frames
from tests.teach.test_train import add_all, teach_config, train_json
from tests.test_daemon import spawn

WAIT = 60.0


def status_of(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def wait_status(
    path: Path, proc: subprocess.Popen[bytes], ok: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the daemon stopped"
        s = status_of(path)
        if s and ok(s):
            return s
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {status_of(path)}")


@pytest.fixture()
def scene(tmp_path: Path) -> dict[str, list[Path]]:
    return write_frames(shared_file(IMAGES), "garage", tmp_path / "frames", 4, seed=5)


@pytest.fixture()
def daemon_config(
    write_config: Callable[..., Path], tmp_path: Path, scene: dict[str, list[Path]]
) -> Path:
    live = tmp_path / "live"
    live.mkdir()
    for paths in scene.values():
        (live / paths[0].name).write_bytes(paths[0].read_bytes())
    return teach_config(
        write_config,
        source={"kind": "files", "path": str(live), "loop": True, "fps": 10},
        outputs={"status_interval": 0.1},
    )


@pytest.fixture()
def daemon(daemon_config: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(daemon_config, tmp_path / "daemon.err")
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_train_apply_switches_the_running_daemon_and_a_bad_model_is_refused(
    daemon_config: Path,
    daemon: subprocess.Popen[bytes],
    tmp_path: Path,
    scene: dict[str, list[Path]],
) -> None:
    status = tmp_path / "out" / "status.json"
    base = wait_status(status, daemon, lambda s: s.get("frames"))
    assert base["model"].endswith("mobilenet_v1_1.0_224_quant.tflite")
    add_all(daemon_config, scene)
    report = train_json(daemon_config, "--apply")
    gen = tmp_path / "state" / "teach" / report["model"]["generation"] / "model.tflite"
    assert report["applied"] == f"the daemon (pid {daemon.pid}) now runs the taught model {gen}"
    now = wait_status(status, daemon, lambda s: s.get("predictions") and s["reloads"] == 1)
    assert now["model_sha256"] == report["model"]["sha256"]
    assert {p["label"] for p in now["predictions"]} <= set(report["classes"])
    # A taught model whose labels are not its classes: the reload is refused, the model stays.
    root = tmp_path / "state" / "teach"
    good = generation_dir(str(root))
    assert good is not None
    bad = root / GENERATIONS / "20991231T000000-bad00000"
    data = (Path(good) / "model.tflite").read_bytes()
    _write_generation(
        str(bad),
        {
            "model.tflite": data + b"\0",  # another sha: the daemon must reload to see it
            "labels.txt": b"one\ntwo\n",
            "report.json": json.dumps({"classes": ["one", "two"]}).encode(),
        },
    )
    install(str(root), str(bad))
    cfg = load_config(daemon_config)
    with pytest.raises(TeachError) as err:
        apply(cfg, signal_reload, model_sha256="0" * 64, timeout=WAIT)
    assert f"the daemon (pid {daemon.pid}) refused it and keeps running model.tflite" in str(
        err.value
    )
    assert "2 labels" in str(err.value)
    kept = status_of(status)
    assert kept["model_sha256"] == report["model"]["sha256"] and kept["reloads"] == 1
    frames = kept["frames"]
    wait_status(status, daemon, lambda s: s["frames"] > frames + 3)


def test_apply_without_a_daemon_or_with_teach_off(
    write_config: Callable[..., Path], tmp_path: Path, scene: dict[str, list[Path]]
) -> None:
    config = teach_config(write_config)
    add_all(config, scene)
    report = train_json(config, "--apply")
    assert report["applied"].startswith("no daemon is running")
    off = teach_config(write_config, teach={"use": False}, name="off.yaml")
    r = run_cli("teach", "train", "--apply", "--config", str(off))
    assert r.returncode == 8 and "set teach.use: true" in r.stderr
    assert running_config(load_config(off))[1] is False


def consistent(root: Path) -> str:
    """What a reader finds under root: "none" or "whole" (else the assertion fails)."""
    if not os.path.lexists(root / "model.tflite"):
        return "none"
    found = installed(str(root))
    assert found is not None, "model.tflite points at no complete generation"
    model_path, labels_path = found
    report = json.loads((Path(model_path).parent / "report.json").read_text())
    data = Path(model_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == report["model"]["sha256"]
    labels = Path(labels_path).read_text().splitlines()
    assert labels == report["classes"]
    return "whole"


def test_a_sigkill_during_training_or_export_never_leaves_a_half_written_model(
    daemon_config: Path,
    daemon: subprocess.Popen[bytes],
    tmp_path: Path,
    scene: dict[str, list[Path]],
) -> None:
    status = tmp_path / "out" / "status.json"
    root = tmp_path / "state" / "teach"
    add_all(daemon_config, scene)
    started = time.monotonic()
    first = train_json(daemon_config, "--apply")
    took = time.monotonic() - started
    wait_status(status, daemon, lambda s: s.get("model_sha256") == first["model"]["sha256"])
    rng = random.Random(int(os.environ.get("EDGE_DAEMON_KILL_SEED", "19")))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    outcomes = []
    for i in range(6):
        # Another sample each round: every run makes a different model.
        extra = tmp_path / f"extra{i}.jpg"
        extra.write_bytes(scene["open"][i % len(scene["open"])].read_bytes())
        assert (
            run_cli("teach", "add", "open", str(extra), "--config", str(daemon_config)).returncode
            == 0
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "teach", "train", "--config", str(daemon_config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        time.sleep(rng.uniform(0.0, took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes.append(consistent(root))
        # The running daemon never noticed: it classifies on with the model it has.
        seen = status_of(status)["frames"]
        s = wait_status(status, daemon, lambda s, seen=seen: s["frames"] > seen)
        assert s["model_sha256"] == first["model"]["sha256"]
    assert outcomes == ["whole"] * len(outcomes)
    # A reload now loads whatever is installed, whole; and it is a model that runs.
    reloads = status_of(status)["reloads"]
    daemon.send_signal(signal.SIGHUP)
    s = wait_status(status, daemon, lambda s: s["reloads"] > reloads)
    found = installed(str(root))
    assert found is not None
    assert s["model_sha256"] == hashlib.sha256(Path(found[0]).read_bytes()).hexdigest()
    assert s["last_error"] is None or "reload failed" not in s["last_error"]
    # The next training clears what the kills left: unfinished generations, temp files.
    train_json(daemon_config)
    gens = sorted((root / GENERATIONS).iterdir())
    assert len(gens) <= 2
    assert all((g / "report.json").is_file() for g in gens)
    assert not list(root.rglob("*.tmp"))
    cfg = load_config(daemon_config)
    model = load_model(running_config(cfg)[0])
    model.close()
