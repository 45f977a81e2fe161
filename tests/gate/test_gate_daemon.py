"""The gate and the region through the daemon, with real photos: events, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from PIL import Image

from edge_daemon.config import load_config
from edge_daemon.daemon import Daemon
from edge_daemon.events.history import EventHistory
from tests.gate.scenes import Visit, photo, scene, write_frames
from tests.helpers import first_name, run_cli
from tests.test_reliability_faults import Background, status_of, wait_until

RULES = [{"name": "birds", "labels": ["@birds"], "min_score": 0.3, "min_frames": 3, "end_after": 0}]
RIGHT_HALF = {"x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0}


def run_once(
    write_config: Callable[..., Path], root: Path, frames: Path, name: str, **sections: Any
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """``edge-daemon run`` over ``frames``: its events, last status and prediction lines."""
    out = root / name
    config = write_config(
        source=str(frames),
        delegates=["cpu"],
        name=f"{name}.yaml",
        overrides={
            "outputs": {
                "prediction_log": str(out / "predictions.jsonl"),
                "status_file": str(out / "status.json"),
            },
            "daemon": {"state_dir": str(out / "state")},
            "events": {"rules": RULES, "dir": str(out / "events")},
            "model": {"top_k": 3},
            **sections,
        },
    )
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    events = EventHistory(str(out / "events")).list()
    status = json.loads((out / "status.json").read_text())
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return events, status, lines


def test_events_with_the_gate_on_are_those_with_it_off(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # A still photo with sensor noise and drift; a parrot, then a chickadee, visit the
    # right half; later the exposure jumps for good.
    frames = scene(
        "hot_dog.jpg",
        [Visit("parrot.jpg"), Visit("bird.bmp")],
        quiet=14,
        exposure_jump_at=80,
    )
    folder = write_frames(frames, tmp_path / "frames")
    region = {"preprocess": {"region": RIGHT_HALF}}
    off, off_status, off_lines = run_once(write_config, tmp_path, folder, "off", **region)
    on, on_status, on_lines = run_once(
        write_config, tmp_path, folder, "on", gate={"mode": "motion", "hold": 0.5}, **region
    )

    def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
        return [(e["rule"], first_name(e["label"]), e["frames"]) for e in events]

    assert summary(off) == [
        ("birds", "macaw", summary(off)[0][2]),
        ("birds", "chickadee", summary(off)[1][2]),
    ]
    assert summary(on) == summary(off)

    # Every frame the visitors are seen in with the gate off is classified with it on,
    # with the same answer.
    def sightings(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
        tops = ((line["image"], first_name(line["predictions"][0]["label"])) for line in lines)
        return [(image, label) for image, label in tops if label in ("macaw", "chickadee")]

    assert len(sightings(off_lines)) >= 20
    assert sightings(on_lines) == sightings(off_lines)

    gate = on_status["gate"]
    assert gate["mode"] == "motion" and gate["via"] == "software"
    assert gate["frames_seen"] == len(frames) == off_status["frames"]
    # The still frames before the first visit are never classified (only the first frame).
    assert gate["frames_classified"] <= len(frames) - 13
    assert gate["skipped_share"] == pytest.approx(
        1 - gate["frames_classified"] / len(frames), abs=1e-4
    )
    assert on_status["frames"] == gate["frames_classified"]
    # Honest outputs: a line per classified frame, none for a skipped one.
    assert len(on_lines) == gate["frames_classified"]
    assert [line["frame"] for line in on_lines] == list(range(1, len(on_lines) + 1))
    logged = {Path(line["image"]).name for line in on_lines}
    assert "0000.bmp" in logged and not logged & {f"{n:04d}.bmp" for n in range(1, 13)}
    # edge-daemon status says it too (the daemon has stopped: exit 2, the lines still shown).
    shown = run_cli("status", "--config", str(tmp_path / "on.yaml"))
    line = next(x for x in shown.stdout.splitlines() if x.startswith("gate"))
    classified, seen = gate["frames_classified"], gate["frames_seen"]
    share = f"{gate['skipped_share'] * 100:.1f}% skipped"
    assert f"{classified} of {seen} frames classified, {share}" in line
    assert line.endswith("in software (a sample of the RGB region)")
    assert off_status["gate"]["state"] == "off"
    assert off_status["gate"]["frames_classified"] == off_status["gate"]["frames_seen"]


def test_the_region_is_what_the_model_sees(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # A small parrot (15% of the width) in the bottom right corner of a cat photo.
    frame = photo("cat_720p.jpg", (640, 480)).copy()
    frame[298:472, 536:632] = photo("parrot.jpg", (96, 174))
    folder = write_frames([frame] * 3, tmp_path / "frames")
    corner = {"x": 0.78, "y": 0.55, "width": 0.22, "height": 0.45}
    whole, _, whole_lines = run_once(write_config, tmp_path, folder, "whole")
    near, status, near_lines = run_once(
        write_config, tmp_path, folder, "region", preprocess={"region": corner}
    )
    assert {first_name(line["predictions"][0]["label"]) for line in whole_lines} == {"Egyptian cat"}
    assert {first_name(line["predictions"][0]["label"]) for line in near_lines} == {"macaw"}
    assert whole == [] and [first_name(e["label"]) for e in near] == ["macaw"]
    assert status["region"] == corner
    # The event's snapshot is the whole frame, not the region the model saw.
    with Image.open(tmp_path / "region" / "events" / near[0]["snapshot"]) as snapshot:
        assert snapshot.size == (640, 480)


def test_check_says_how_the_gate_samples_and_the_region(write_config: Callable[..., Path]) -> None:
    config = write_config(
        delegates=["cpu"],
        overrides={"gate": {"mode": "motion"}, "preprocess": {"region": RIGHT_HALF}},
    )
    done = run_cli("check", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["gate"].startswith("motion, in software")
    assert summary["region"] == "x 0.5, y 0, width 0.5, height 1 of the frame"
    off = run_cli("check", "--config", str(write_config(delegates=["cpu"], name="off.yaml")))
    assert "off (every frame is classified)" in off.stdout and "the whole frame" in off.stdout


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("gate", {"pixel_threshold": 0}, "gate.pixel_threshold: must be between 1 and 254 (got 0)"),
        ("gate", {"area_threshold": 1.5}, "area_threshold: must be between 0.0001 and 1 (got 1.5)"),
        ("gate", {"adapt_rate": -0.1}, "gate.adapt_rate: must be between 0 and 1 (got -0.1)"),
        ("gate", {"hold": -1}, "gate.hold: must be between 0 and 3600 (got -1)"),
        ("gate", {"mode": "sometimes"}, "gate.mode: must be one of"),
        (
            "gate",
            {"area_threshold": 0.5, "lighting_threshold": 0.4},
            "gate.lighting_threshold: must be more than gate.area_threshold (0.5) (got 0.4)",
        ),
        ("preprocess", {"region": {"x": 0.8, "width": 0.5}}, "preprocess.region: x + width is 1.3"),
        ("preprocess", {"region": {"width": 0}}, "preprocess.region.width: must be more than 0"),
    ],
)  # fmt: skip
def test_out_of_range_settings_are_one_line_errors(
    write_config: Callable[..., Path], section: str, value: dict[str, Any], message: str
) -> None:
    config = write_config(delegates=["cpu"], overrides={section: value})
    done = run_cli("check", "--config", str(config))
    assert done.returncode == 2  # a config error
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(config) in err and message in err, err


def test_a_region_under_16_pixels_is_refused(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # A camera: known from source.width and height when the config loads.
    camera = write_config(
        delegates=["cpu"],
        overrides={
            "source": {"kind": "picamera2", "width": 640, "height": 480},
            "preprocess": {"region": {"x": 0.5, "y": 0.5, "width": 0.02, "height": 0.2}},
        },
    )
    done = run_cli("check", "--config", str(camera))
    assert done.returncode == 2  # a config error
    assert done.stderr.strip().endswith(
        "preprocess.region: leaves 13x96 pixels of the 640x480 frame, fewer than 16x16;"
        " make the region larger"
    ), done.stderr
    # Files: the first frame tells the size; the daemon stops with that one line.
    folder = write_frames([photo("bird.bmp", (320, 240))], tmp_path / "one")
    small = write_config(
        source=str(folder),
        delegates=["cpu"],
        name="small.yaml",
        overrides={"preprocess": {"region": {"width": 0.04, "height": 0.5}}},
    )
    done = run_cli("run", "--config", str(small))
    assert done.returncode == 2  # a config error
    errors = [line for line in done.stderr.splitlines() if "preprocess.region" in line]
    assert len(errors) == 1 and "leaves 13x120 pixels of the 320x240 frame" in errors[0]
    assert "Traceback" not in done.stderr


def test_a_reload_with_a_bad_region_keeps_the_running_config(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    folder = write_frames([photo("bird.bmp", (320, 240))], tmp_path / "one")
    path = write_config(
        source=str(folder),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 20},
            "outputs": {"status_interval": 0.05},
            "preprocess": {"region": RIGHT_HALF},
            "gate": {"mode": "motion"},
        },
    )

    def status() -> dict[str, Any]:
        return status_of(tmp_path / "out" / "status.json")

    def rewrite(**sections: Any) -> None:
        data = yaml.safe_load(path.read_text())
        data.update({key: {**data.get(key, {}), **values} for key, values in sections.items()})
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    daemon = Daemon(load_config(path), config_path=str(path), environ={})
    with Background(daemon) as bg:
        wait_until(lambda: status().get("frames"), "a classified frame", alive=bg.alive)
        for bad, why in (
            ({"region": {"x": 0.5, "width": 0.03}}, "leaves 10x240 pixels of the 320x240 frame"),
            ({"region": {"x": 1.2}}, "preprocess.region.x: must be between 0 and 1 (got 1.2)"),
        ):
            rewrite(preprocess=bad)
            daemon.request_reload()
            refused = wait_until(
                lambda why=why: why in str(status().get("last_error")) and status(),
                f"the reload refused ({why})",
                alive=bg.alive,
            )
            assert refused["last_error"].startswith("reload failed, still running")
            assert refused["region"] == RIGHT_HALF and refused["reloads"] == 0
            assert refused["state"] == "running" and refused["gate"]["mode"] == "motion"
        rewrite(preprocess={"region": {"x": 0.0, "y": 0.0, "width": 0.5, "height": 0.5}})
        daemon.request_reload()
        wait_until(lambda: status().get("reloads") == 1, "a good reload", alive=bg.alive)
        assert status()["region"] == {"x": 0.0, "y": 0.0, "width": 0.5, "height": 0.5}
    assert np.isfinite(status()["gate"]["skipped_share"])


def test_a_reload_with_a_new_region_or_gate_rebuilds_a_camera_source(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_daemon import daemon as daemon_module
    from tests.fakes import ScriptedSource

    built: list[tuple[Any, str]] = []

    def camera(cfg: Any, size: tuple[int, int]) -> ScriptedSource:
        # A camera crops the region in its ISP and gives the gate its luma: it must
        # be set up again when either changes.
        built.append((cfg.preprocess.region, cfg.gate.mode))
        return ScriptedSource(image=photo("bird.bmp", (320, 240)), interval=0.02)

    monkeypatch.setattr(daemon_module, "make_source", camera)
    path = write_config(
        delegates=["cpu"],
        overrides={
            "source": {"kind": "picamera2", "width": 640, "height": 480},
            "outputs": {"status_interval": 0.05},
        },
    )

    def rewrite(**sections: Any) -> None:
        data = yaml.safe_load(path.read_text())
        data.update({key: {**data.get(key, {}), **values} for key, values in sections.items()})
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def status() -> dict[str, Any]:
        return status_of(tmp_path / "out" / "status.json")

    daemon = Daemon(load_config(path), config_path=str(path), environ={})
    with Background(daemon) as bg:
        wait_until(lambda: status().get("frames"), "a classified frame", alive=bg.alive)
        steps = [
            {"preprocess": {"region": RIGHT_HALF}},
            {"gate": {"mode": "motion"}},
            {"outputs": {"log_interval": 30.0}},  # neither: the camera stays as it is
        ]
        for n, change in enumerate(steps, start=1):
            rewrite(**change)
            daemon.request_reload()
            wait_until(lambda n=n: status().get("reloads") == n, f"reload {n}", alive=bg.alive)
    assert len(built) == 3
    assert built[1][1] == "off" and built[1][0] is not None and built[2][1] == "motion"
