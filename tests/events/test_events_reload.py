"""A reload re-checks rule labels against the (new) model; a new model ends open events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import yaml

from edge_daemon.config import load_config
from edge_daemon.daemon import Daemon
from edge_daemon.events.history import EventHistory
from tests.helpers import IMAGES, MODELS, shared_file
from tests.test_reliability_faults import Background, wait_until


def test_reload_rechecks_labels_and_a_new_model_closes_open_events(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "bird.bmp").write_bytes(shared_file(IMAGES / "bird.bmp").read_bytes())
    rules = [{"name": "birds", "labels": ["chickadee"], "min_frames": 2, "end_after": 5}]
    path = write_config(
        source=str(frames),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 30},
            "events": {"rules": rules, "dir": str(tmp_path / "events")},
            "outputs": {"status_interval": 0.05},
        },
    )
    status_path = tmp_path / "out" / "status.json"

    def status() -> dict[str, Any]:
        try:
            return dict(json.loads(status_path.read_text()))
        except (OSError, ValueError):
            return {}

    def rewrite(**changes: Any) -> None:
        data = yaml.safe_load(path.read_text())
        for section, values in changes.items():
            data[section].update(values)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    daemon = Daemon(load_config(path), config_path=str(path), environ={})
    with Background(daemon) as bg:
        first = wait_until(
            lambda: (s := status()).get("events") and s["events"]["open"], "an open event",
            alive=bg.alive,
        )  # fmt: skip
        assert [e["id"] for e in first] == [1]
        rewrite(events={"rules": [{**rules[0], "labels": ["chickadeee"]}]})
        daemon.request_reload()
        refused = wait_until(
            lambda: "reload failed" in str(status().get("last_error")) and status(),
            "the reload refused",
            alive=bg.alive,
        )
        assert 'events.rules[0].labels: unknown label "chickadeee"' in refused["last_error"]
        assert 'did you mean "chickadee"?' in refused["last_error"]
        assert refused["reloads"] == 0 and [e["id"] for e in refused["events"]["open"]] == [1]
        v2 = str(shared_file(MODELS / "mobilenet_v2_1.0_224_quant.tflite"))
        rewrite(events={"rules": rules}, model={"path": v2})
        daemon.request_reload()
        wait_until(
            lambda: (s := status()).get("reloads") == 1 and [e["id"] for e in s["events"]["open"]]
            == [2],
            "a new event with the new model",
            alive=bg.alive,
        )  # fmt: skip
    one, two = EventHistory(str(tmp_path / "events")).list()
    assert one["model"] == "mobilenet_v1_1.0_224_quant.tflite" and one["cut_short"]
    assert two["model"] == "mobilenet_v2_1.0_224_quant.tflite"
    assert one["end"] <= two["start"]
