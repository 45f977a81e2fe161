"""Which model the daemon runs: the taught one once installed (teach.use), its checks,
and a reload onto it that keeps the running model when anything is wrong."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from edge_daemon.config import load_config
from edge_daemon.daemon import Daemon
from edge_daemon.events.history import EventHistory
from edge_daemon.teach.active import installed, running_config
from edge_daemon.teach.train import _write_generation, install
from tests.helpers import IMAGES, LABELS, MODELS, shared_file
from tests.test_reliability_faults import Background, wait_until

SMALL = "mobilenet_v1_0.25_128_quant.tflite"


def put_model(
    root: Path, labels: list[str], classes: Optional[list[str]] = None, model: str = SMALL
) -> Path:
    """Install a model as `teach train` does (generation folder, links); its folder."""
    data = shared_file(MODELS / model).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    report = {"classes": classes if classes is not None else labels, "model": {"sha256": sha}}
    n = len(os.listdir(root / "models")) if (root / "models").exists() else 0
    gen = root / "models" / f"20261202T10000{n}-{sha[:8]}"
    _write_generation(
        str(gen),
        {
            "model.tflite": data,
            "labels.txt": ("\n".join(labels) + "\n").encode(),
            "report.json": json.dumps(report).encode(),
        },
    )
    install(str(root), str(gen))
    return gen


def imagenet(rename: dict[str, str]) -> list[str]:
    lines = shared_file(LABELS).read_text().splitlines()
    return [rename.get(line, line) for line in lines]


def status_of(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def frames(tmp_path: Path, name: str = "cat.bmp") -> str:
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(shared_file(IMAGES / name).read_bytes())
    return str(folder)


def test_the_default_config_runs_model_path_until_a_model_is_taught(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = load_config(write_config())
    assert cfg.teach.use is True
    run, taught = running_config(cfg)
    assert run == cfg and not taught
    assert installed(str(tmp_path / "state" / "teach")) is None


def test_an_installed_taught_model_is_run_with_the_labels_beside_it(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = tmp_path / "state" / "teach"
    root.mkdir(parents=True)
    gen = put_model(root, imagenet({}))
    cfg = load_config(write_config())
    run, taught = running_config(cfg)
    assert taught
    assert run.model.path == str(gen / "model.tflite")
    assert run.model.labels == str(gen / "labels.txt")
    off = load_config(write_config(overrides={"teach": {"use": False}}))
    assert running_config(off) == (off, False)


def test_a_taught_model_with_wrong_labels_is_not_run_and_a_reload_onto_it_keeps_the_model(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = tmp_path / "state" / "teach"
    root.mkdir(parents=True)
    put_model(root, ["open", "closed"])  # 2 labels for 1001 outputs
    path = write_config(
        source=frames(tmp_path),
        delegates=["cpu"],
        overrides={"source": {"loop": True, "fps": 20}, "outputs": {"status_interval": 0.05}},
    )
    status_path = tmp_path / "out" / "status.json"
    base = str(shared_file(MODELS / "mobilenet_v1_1.0_224_quant.tflite"))
    daemon = Daemon(load_config(path), config_path=str(path), environ={})
    with Background(daemon) as bg:
        first = wait_until(
            lambda: (s := status_of(status_path)).get("frames") and s, "frames", alive=bg.alive
        )
        assert first["model"] == base  # the broken taught model fell back to model.path
        assert first["last_error"].startswith("taught model not used: ")
        assert "2 labels do not match the 1001 outputs" in first["last_error"]
        # Now one whose labels are another model's classes: same count, other names.
        put_model(root, imagenet({}), classes=["open", "closed"])
        daemon.request_reload()
        refused = wait_until(
            lambda: (
                "reload failed" in str(status_of(status_path).get("last_error"))
                and status_of(status_path)
            ),
            "the reload refused",
            alive=bg.alive,
        )
        assert "not the classes the model was trained on" in refused["last_error"]
        assert refused["model"] == base and refused["reloads"] == 0
        frames_before = refused["frames"]
        wait_until(lambda: status_of(status_path).get("frames", 0) > frames_before + 3, "frames")


def test_event_rules_name_taught_classes_after_a_reload(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    root = tmp_path / "state" / "teach"
    root.mkdir(parents=True)
    path = write_config(
        source=frames(tmp_path),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 20},
            "outputs": {"status_interval": 0.05},
            "events": {"dir": str(tmp_path / "events")},
        },
    )
    status_path = tmp_path / "out" / "status.json"
    daemon = Daemon(load_config(path), config_path=str(path), environ={})
    with Background(daemon) as bg:
        wait_until(lambda: status_of(status_path).get("frames"), "frames", alive=bg.alive)
        # The cat photo's class is called "open" in the taught model's labels.
        put_model(
            root, imagenet({"Egyptian cat": "open"}), model="mobilenet_v1_1.0_224_quant.tflite"
        )
        data = yaml.safe_load(path.read_text())
        data["events"]["rules"] = [
            {"name": "door", "labels": ["open"], "min_frames": 2, "min_score": 0.3}
        ]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        daemon.request_reload()
        s = wait_until(
            lambda: (s := status_of(status_path)).get("events") and s["events"]["open"] and s,
            "an event of the taught class",
            alive=bg.alive,
        )
        assert s["reloads"] == 1 and s["model"].endswith("model.tflite")
        assert s["predictions"][0]["label"] == "open"
    (ev,) = EventHistory(str(tmp_path / "events")).list()
    assert ev["label"] == "open" and ev["rule"] == "door" and ev["model"] == "model.tflite"


def test_a_rule_the_taught_model_cannot_run_starts_the_service_on_model_path(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # A rule on "macaw" added after teaching: the taught labels call that class otherwise.
    root = tmp_path / "state" / "teach"
    root.mkdir(parents=True)
    put_model(root, imagenet({"macaw": "parrot"}), model="mobilenet_v1_1.0_224_quant.tflite")
    path = write_config(
        source=frames(tmp_path),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 20},
            "outputs": {"status_interval": 0.05},
            "events": {
                "dir": str(tmp_path / "events"),
                "rules": [{"name": "m", "labels": ["macaw"]}],
            },
        },
    )
    status_path = tmp_path / "out" / "status.json"
    base = str(shared_file(MODELS / "mobilenet_v1_1.0_224_quant.tflite"))
    daemon = Daemon(load_config(path), config_path=str(path), environ={})
    with Background(daemon) as bg:
        first = wait_until(
            lambda: (s := status_of(status_path)).get("frames") and s, "frames", alive=bg.alive
        )
        assert first["model"] == base
        assert first["last_error"].startswith("taught model not used: ")
        assert "events.rules[0].labels" in first["last_error"]
        assert "macaw" in first["last_error"]
