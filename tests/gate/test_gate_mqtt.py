"""With the gate on and a still scene, MQTT stays alive: heartbeats, status, availability.

A real mosquitto; the daemon as users run it (``edge-daemon run``).
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.broker import Mosquitto, Subscriber
from tests.helpers import IMAGES, shared_file
from tests.mqtt.test_daemon import Daemon
from tests.systemd_standin import wait_until

pytestmark = pytest.mark.slow


def test_a_still_scene_keeps_heartbeats_and_availability(
    mosquitto: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copyfile(shared_file(IMAGES / "bird.bmp"), frames / "bird.bmp")
    config = write_config(
        source=str(frames),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 10},
            "outputs": {"prediction_log": None, "status_interval": 0.2},
            "gate": {"mode": "motion", "keepalive": 600.0},
            "mqtt": mosquitto.mqtt_config(device="feeder", keepalive=5, heartbeat=1.0),
        },
    )
    base = "edge-daemon/feeder"
    sub = Subscriber(mosquitto, "edge-daemon/#", "homeassistant/#")
    d = Daemon(config, tmp_path / "out" / "status.json")
    try:
        sub.wait_for(f"{base}/availability", lambda m: m.text == "online", timeout=60)
        first = sub.wait_for(f"{base}/state", timeout=60).json()
        assert first["label"].startswith("chickadee") and first["frame"] == 1
        mark = sub.mark()
        began = time.time()
        # Longer than 1.5 x the MQTT keepalive, after which a silent client is offline.
        time.sleep(9.0)
        states = [m for m in sub.messages[mark:] if m.topic == f"{base}/state"]
        # The state is sent again every heartbeat: the last classified frame, as it was.
        assert len(states) >= 6, [m.at - began for m in states]
        assert {m.json()["frame"] for m in states} == {1}
        assert all(m.text != "offline" for m in sub.on(f"{base}/availability"))
        status = sub.wait_for(
            f"{base}/status", lambda m: m.json()["gate"]["frames_seen"] > 60, after=mark
        ).json()
        assert status["state"] == "running"
        assert status["gate"]["state"] == "watching" and status["gate"]["frames_classified"] == 1
        assert status["frames"] == 1
        # Home Assistant marks the sensor unavailable only through the availability topic.
        label = sub.wait_for("homeassistant/sensor/feeder/label/config").json()
        assert label["availability"] == [{"topic": f"{base}/availability"}]
        assert "expire_after" not in label
        wait_until(
            lambda: d.status().get("gate", {}).get("frames_seen", 0) > 80, timeout=30, what="seen"
        )
        assert d.stop(signal.SIGTERM) == 0
        sub.wait_for(f"{base}/availability", lambda m: m.text == "offline", after=mark)
    finally:
        d.stop(signal.SIGKILL)
        sub.close()
