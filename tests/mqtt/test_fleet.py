"""``edge-daemon fleet`` and ``edge-daemon mqtt forget`` against a real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge_daemon.config import MqttConfig
from edge_daemon.mqtt.fleet import Fleet, Pi, row, table
from edge_daemon.mqtt.sink import MqttSink
from tests.broker import Mosquitto, Subscriber
from tests.helpers import run_cli


def status(state: str, label: str, fps: float) -> dict[str, Any]:
    return {
        "state": state,
        "reason": None,
        "updated": "2026-11-30T02:00:00.000Z",
        "model": "/var/lib/edge-daemon/models/mobilenet_v2_1.0_224_quant.tflite",
        "delegate": "xnnpack",
        "fps": fps,
        "frames": 100,
        "predictions": [{"label": label, "index": 1, "score": 0.875}],
    }


@pytest.fixture
def two_pis(mosquitto: Mosquitto) -> Any:
    sinks = []
    for device, label in (("kitchen", "cat"), ("porch", "macaw")):
        s = MqttSink(MqttConfig(**mosquitto.mqtt_config(device=device)))
        s.status(status("running", label, 9.5))
        sinks.append(s)
    sub = Subscriber(mosquitto, "edge-daemon/+/status")
    sub.wait_for("edge-daemon/kitchen/status")
    sub.wait_for("edge-daemon/porch/status")
    sub.close()
    yield sinks
    for s in sinks:
        s.close()


def test_fleet_lists_every_pi(mosquitto: Mosquitto, two_pis: Any) -> None:
    broker = ["--broker", mosquitto.url(), "--password-file", str(mosquitto.password_file)]
    result = run_cli("fleet", "--json", *broker)
    assert result.returncode == 0, result.stderr
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"kitchen", "porch"}
    assert rows["porch"]["top1"] == "macaw" and rows["kitchen"]["top1"] == "cat"
    assert rows["porch"]["online"] is True and rows["porch"]["state"] == "running"
    assert rows["porch"]["model"] == "mobilenet_v2_1.0_224_quant.tflite"
    assert rows["porch"]["delegate"] == "xnnpack" and rows["porch"]["fps"] == 9.5

    text = run_cli("fleet", *broker)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["DEVICE", "ONLINE", "STATE"]
    assert any(line.split()[:3] == ["porch", "online", "running"] for line in lines)

    # A Pi that stops cleanly shows as offline, with its last status.
    two_pis[0].close()
    result = run_cli("fleet", "--json", *broker)
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    assert rows["kitchen"]["availability"] == "offline" and rows["porch"]["online"]


def test_fleet_from_the_config(mosquitto: Mosquitto, two_pis: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    section = mosquitto.mqtt_config()
    cfg.write_text("mqtt:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in section.items()))
    result = run_cli("fleet", "--json", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    assert {r["device"] for r in json.loads(result.stdout)} == {"kitchen", "porch"}


def test_fleet_with_a_wrong_password_says_so(mosquitto: Mosquitto, tmp_path: Path) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("nope\n")
    result = run_cli("fleet", "--broker", mosquitto.url(), "--password-file", str(wrong))
    assert result.returncode == 1
    assert "refused the login of user 'edge'" in result.stderr
    assert "Traceback" not in result.stderr


def test_fleet_with_nothing_published(mosquitto: Mosquitto) -> None:
    result = run_cli(
        "fleet", "--broker", mosquitto.url(), "--password-file", str(mosquitto.password_file)
    )
    assert result.returncode == 1
    assert "no edge-daemon has published under edge-daemon/" in result.stderr


def test_forget_removes_the_entities(mosquitto: Mosquitto, two_pis: Any) -> None:
    two_pis[1].close()  # porch stops, then is forgotten
    broker = ["--broker", mosquitto.url(), "--password-file", str(mosquitto.password_file)]
    result = run_cli("mqtt", "forget", "--device", "porch", *broker)
    assert result.returncode == 0, result.stderr
    assert "porch" in result.stdout
    time.sleep(0.2)
    late = Subscriber(mosquitto, "homeassistant/#", "edge-daemon/#")
    try:
        late.wait_for("homeassistant/sensor/kitchen/label/config")  # the other Pi stays
        time.sleep(0.5)
        left = {m.topic for m in late.messages}
        assert not [t for t in left if "/porch/" in t or t.startswith("edge-daemon/porch")]
    finally:
        late.close()
    rows = json.loads(run_cli("fleet", "--json", *broker).stdout)
    assert [r["device"] for r in rows] == ["kitchen"]


def test_forget_clears_the_entities_before_the_topics_they_read(
    mosquitto: Mosquitto, two_pis: Any
) -> None:
    # Home Assistant, still subscribed to the state topics, would render
    # '{{ value_json.label }}' against an empty payload if the state went first.
    watcher = Subscriber(mosquitto, "homeassistant/+/porch/#", "edge-daemon/porch/#")
    try:
        watcher.wait_for("homeassistant/sensor/porch/label/config")
        two_pis[1].close()
        watcher.wait_for("edge-daemon/porch/availability", lambda m: m.text == "offline")
        mark = watcher.mark()
        broker = ["--broker", mosquitto.url(), "--password-file", str(mosquitto.password_file)]
        assert run_cli("mqtt", "forget", "--device", "porch", *broker).returncode == 0
        watcher.wait_for("edge-daemon/porch/state", lambda m: m.payload == b"", after=mark)
        cleared = [m for m in watcher.messages[mark:] if m.payload == b""]
        kinds = ["config" if m.topic.startswith("homeassistant/") else "topic" for m in cleared]
        assert "config" in kinds and "topic" in kinds
        assert kinds == sorted(kinds), [m.topic for m in cleared]  # every config first
    finally:
        watcher.close()


def test_rows_and_table() -> None:
    fleet = Fleet("edge-daemon")
    fleet.take("edge-daemon/a/availability", b"online")
    fleet.take(
        "edge-daemon/a/status", json.dumps(status("degraded", "tabby, tabby cat", 3.0)).encode()
    )
    fleet.take("edge-daemon/b/availability", b"offline")
    fleet.take("edge-daemon/c/status/extra", b"ignored")
    assert set(fleet.pis) == {"a", "b"}
    r = row(fleet.pis["a"], 0.0)
    assert (r["state"], r["top1"], r["score"], r["online"]) == (
        "degraded",
        "tabby, tabby cat",
        0.875,
        True,
    )
    text = table([r, row(Pi("b", None, "offline"), 0.0)])
    assert "tabby " in text and "tabby cat" not in text  # the first name only
    fleet.take("edge-daemon/b/availability", b"")
    assert set(fleet.pis) == {"a"}


def test_fleet_watch_follows_changes(mosquitto: Mosquitto, two_pis: Any) -> None:
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = ["--broker", mosquitto.url(), "--password-file", str(mosquitto.password_file)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_daemon", "fleet", "--json", "--watch", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = {r["device"]: r for r in json.loads(proc.stdout.readline())}
        assert first["porch"]["state"] == "running"
        two_pis[1].status(status("degraded", "macaw", 2.0))  # porch turns degraded
        for _ in range(10):  # a line per change, and one every 5 s anyway
            rows = {r["device"]: r for r in json.loads(proc.stdout.readline())}
            if rows["porch"]["state"] == "degraded":
                break
        assert rows["porch"]["state"] == "degraded"
        assert rows["kitchen"]["state"] == "running"
    finally:
        proc.terminate()
        proc.wait(10)
