"""``edge-daemon run`` with the MQTT sink, against a real mosquitto, as a user runs it.

Each test starts the daemon as a subprocess over a looping folder of images,
then watches the broker with a paho subscriber and the status file on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from edge_daemon.sinks.status_file import read_status
from tests.broker import Mosquitto, Subscriber
from tests.helpers import IMAGES, REPO, run_cli, shared_file
from tests.systemd_standin import wait_until

pytestmark = pytest.mark.slow


class Daemon:
    """``edge-daemon run --config CONFIG`` in a subprocess, its log in a file."""

    def __init__(self, config: Path, status: Path) -> None:
        self.status_path = status
        self.log_path = config.with_suffix(".log")
        env = dict(os.environ)
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            env.pop(key, None)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def status(self) -> dict[str, Any]:
        try:
            return read_status(str(self.status_path))
        except (OSError, ValueError):
            return {}

    def frames(self) -> int:
        return int(self.status().get("frames") or 0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """A folder holding one photo: the top-1 stays the same frame after frame."""
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copyfile(shared_file(IMAGES / "parrot.jpg"), folder / "parrot.jpg")
    return folder


@pytest.fixture
def start_daemon(
    write_config: Callable[..., Path], frames: Path, tmp_path: Path
) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(mqtt: dict[str, Any], name: str = "pi", **sections: Any) -> Daemon:
        out = tmp_path / name
        config = write_config(
            source=str(frames),
            delegates=["cpu"],
            name=f"{name}.yaml",
            overrides={
                "source": {"loop": True, "fps": 10},
                "outputs": {
                    "prediction_log": None,
                    "status_file": str(out / "status.json"),
                    "status_interval": 0.2,
                },
                "mqtt": mqtt,
                **sections,
            },
        )
        d = Daemon(config, out / "status.json")
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(signal.SIGKILL)


def logged_errors(d: Daemon, text: str) -> int:
    """How many ERROR lines of the daemon's log mention ``text``."""
    return sum(1 for line in d.log().splitlines() if " ERROR " in line and text in line)


def classifying(d: Daemon, more_than: int = 0) -> int:
    """Wait until the daemon has classified more than ``more_than`` frames; the count."""
    return wait_until(
        lambda: d.frames() if d.frames() > more_than else None,
        timeout=60,
        what=f"more than {more_than} frames (log: {d.log()[-2000:]})",
    )


def test_state_status_and_availability_through_the_daemon(
    mosquitto: Mosquitto, start_daemon: Callable[..., Daemon]
) -> None:
    sub = Subscriber(mosquitto, "edge-daemon/#", "homeassistant/#")
    try:
        d = start_daemon(mosquitto.mqtt_config(device="porch", keepalive=5))
        base = "edge-daemon/porch"
        sub.wait_for(f"{base}/availability", lambda m: m.text == "online", timeout=60)
        state = sub.wait_for(f"{base}/state", timeout=60).json()
        assert state["label"].startswith("macaw")
        assert state["model"] == "mobilenet_v1_1.0_224_quant.tflite"
        assert set(state) >= {"label", "index", "score", "predictions", "frame", "ts", "model"}
        status = sub.wait_for(
            f"{base}/status", lambda m: m.json().get("state") == "running", timeout=60
        ).json()
        assert status["outputs"]["mqtt"] == {"state": "ok", "last_error": None}
        # The state's label is the status file's top-1.
        on_disk = wait_until(
            lambda: d.status() if d.status().get("predictions") else None, timeout=30, what="status"
        )
        assert state["label"] == on_disk["predictions"][0]["label"]
        assert state["index"] == on_disk["predictions"][0]["index"]
        sub.wait_for("homeassistant/sensor/porch/label/config")

        # SIGKILL: the broker tells everyone within 1.5 x keepalive.
        d.stop(signal.SIGKILL)
        sub.wait_for(f"{base}/availability", lambda m: m.text == "offline", timeout=1.5 * 5)
    finally:
        sub.close()


def test_broker_down_at_start_then_up_then_restarted(
    tmp_path: Path, broker_certs: Any, start_daemon: Callable[..., Daemon]
) -> None:
    broker = Mosquitto(tmp_path / "late-broker", broker_certs)  # not running yet
    d = start_daemon(broker.mqtt_config(device="late"))
    try:
        # Classification runs; the status says why MQTT does not.
        classifying(d, 5)
        status = wait_until(
            lambda: d.status() if d.status().get("state") == "degraded" else None,
            timeout=30,
            what="degraded",
        )
        assert "connection refused" in status["reason"]
        assert status["outputs"]["mqtt"]["state"] == "failing"
        assert logged_errors(d, "connection refused") == 1  # once, not per retry

        broker.start()
        sub = Subscriber(broker, "edge-daemon/#")
        try:
            sub.wait_for("edge-daemon/late/availability", lambda m: m.text == "online")
            sub.wait_for("edge-daemon/late/state")
            sub.wait_for("edge-daemon/late/status", lambda m: m.json()["state"] == "running")
            wait_until(lambda: d.status().get("state") == "running", timeout=30, what="running")
        finally:
            sub.close()

        # Killed mid-run: frames keep coming while it is away, and it all comes back.
        broker.kill()
        wait_until(lambda: d.status().get("state") == "degraded", timeout=30, what="degraded again")
        before = d.frames()
        classifying(d, before + 5)
        broker.start()
        sub = Subscriber(broker, "edge-daemon/#")
        try:
            sub.wait_for("edge-daemon/late/availability", lambda m: m.text == "online")
            state = sub.wait_for("edge-daemon/late/state").json()
            assert state["frame"] > before
            wait_until(lambda: d.status().get("state") == "running", timeout=30, what="running")
        finally:
            sub.close()
        classifying(d, d.frames())
    finally:
        broker.kill()


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("password", "refused the login of user 'edge'"),
        ("host", "cannot resolve no-such-host.invalid"),
        ("ca", "TLS certificate is not trusted"),
    ],
)
def test_a_broker_that_cannot_be_used_is_one_reason_in_status_and_log(
    mosquitto: Mosquitto,
    start_daemon: Callable[..., Daemon],
    tmp_path: Path,
    case: str,
    expect: str,
) -> None:
    overrides: dict[str, Any] = {"device": "bad"}
    if case == "password":
        wrong = tmp_path / "wrong-password"
        wrong.write_text("not-the-password\n")
        overrides["password_file"] = str(wrong)
    elif case == "host":
        overrides["host"] = "no-such-host.invalid"
    else:
        assert mosquitto.certs is not None and mosquitto.tls_port is not None
        overrides["port"] = mosquitto.tls_port
        overrides["tls"] = {"ca_file": str(mosquitto.certs.wrong_ca)}
    d = start_daemon(mosquitto.mqtt_config(**overrides))
    status = wait_until(
        lambda: d.status() if d.status().get("state") == "degraded" else None,
        timeout=60,
        what=f"degraded (log: {d.log()[-2000:]})",
    )
    assert expect in status["reason"]
    assert status["outputs"]["mqtt"]["last_error"] == status["reason"]
    # Several retries later: still classifying, and the reason was logged once.
    classifying(d, d.frames() + 20)
    assert logged_errors(d, expect) == 1, d.log()
    assert "Traceback" not in d.log()


def test_fleet_lists_two_daemons(mosquitto: Mosquitto, start_daemon: Callable[..., Daemon]) -> None:
    sub = Subscriber(mosquitto, "edge-daemon/+/status")
    try:
        for name in ("kitchen", "garden"):
            start_daemon(mosquitto.mqtt_config(device=name), name=name)
        for name in ("kitchen", "garden"):
            sub.wait_for(f"edge-daemon/{name}/status", lambda m: m.json()["state"] == "running", 90)
    finally:
        sub.close()
    result = run_cli(
        "fleet",
        "--json",
        "--broker",
        mosquitto.url(),
        "--password-file",
        str(mosquitto.password_file),
    )
    assert result.returncode == 0, result.stderr
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"kitchen", "garden"}
    for r in rows.values():
        assert r["online"] and r["state"] == "running"
        assert r["top1"].startswith("macaw") and r["model"].endswith(".tflite")
        assert r["delegate"] == "cpu" and r["fps"] > 0


def test_events_reach_the_broker_and_home_assistant(
    mosquitto: Mosquitto, start_daemon: Callable[..., Daemon], tmp_path: Path, frames: Path
) -> None:
    # The parrot twice, then a hot dog twice, in a loop: a bird comes and goes.
    (frames / "parrot.jpg").rename(frames / "1-parrot.jpg")
    shutil.copyfile(frames / "1-parrot.jpg", frames / "2-parrot.jpg")
    for name in ("3-hot_dog.jpg", "4-hot_dog.jpg"):
        shutil.copyfile(shared_file(IMAGES / "hot_dog.jpg"), frames / name)
    sub = Subscriber(mosquitto, "edge-daemon/#", "homeassistant/#")
    try:
        rule = {"name": "birds", "labels": ["@birds"], "min_score": 0.5, "min_frames": 2,
                "end_after": 0.1}  # fmt: skip
        events = {"dir": str(tmp_path / "events"), "rules": [rule]}
        d = start_daemon(mosquitto.mqtt_config(device="feeder"), name="feeder", events=events)
        base = "edge-daemon/feeder"
        sub.wait_for(f"{base}/rules/birds", lambda m: m.payload == b"ON", timeout=60)
        start = sub.wait_for(f"{base}/events", lambda m: m.json()["type"] == "start").json()
        assert start["rule"] == "birds" and start["label"].startswith("macaw")
        end = sub.wait_for(
            f"{base}/events", lambda m: m.json()["type"] == "end" and m.json()["id"] == start["id"]
        )
        assert end.json()["frames"] >= 2
        sub.wait_for(f"{base}/rules/birds", lambda m: m.payload == b"OFF")
        assert sub.wait_for(f"{base}/snapshot").payload[:2] == b"\xff\xd8"  # its best frame
        config = sub.wait_for("homeassistant/binary_sensor/feeder/event_birds/config")
        assert config.json()["state_topic"] == f"{base}/rules/birds"
        sub.wait_for("homeassistant/image/feeder/event_snapshot/config")
        # A clean stop leaves no rule ON.
        mark = sub.mark()
        assert d.stop() == 0
        sub.wait_for(f"{base}/availability", lambda m: m.text == "offline", after=mark)
        last = {m.topic: m.payload for m in sub.messages if m.topic.startswith(f"{base}/rules/")}
        assert last == {f"{base}/rules/birds": b"OFF"}
    finally:
        sub.close()


def test_a_reload_that_changes_the_mqtt_section_stays_online(
    mosquitto: Mosquitto, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    sub = Subscriber(mosquitto, "edge-daemon/#")
    try:
        d = start_daemon(mosquitto.mqtt_config(device="hall"), name="hall")
        base = "edge-daemon/hall"
        sub.wait_for(f"{base}/state", timeout=60)
        config = tmp_path / "hall.yaml"
        data = yaml.safe_load(config.read_text())
        data["mqtt"]["heartbeat"] = 30.0  # the mqtt section changes: the sink is rebuilt
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        mark = sub.mark()
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: d.status().get("reloads") == 1, timeout=60, what="the reload")
        sub.wait_for(f"{base}/availability", lambda m: m.text == "online", after=mark)
        sub.wait_for(f"{base}/state", after=mark)
        time.sleep(1.0)
        last = [m.text for m in sub.on(f"{base}/availability")][-1]
        assert last == "online"
        assert d.status()["outputs"]["mqtt"]["state"] == "ok"
    finally:
        sub.close()


def test_two_daemons_with_one_device_name_the_second_says_so_and_the_first_stays(
    mosquitto: Mosquitto, start_daemon: Callable[..., Daemon]
) -> None:
    sub = Subscriber(mosquitto, "edge-daemon/#")
    try:
        first = start_daemon(mosquitto.mqtt_config(device="porch"), name="first")
        base = "edge-daemon/porch"
        sub.wait_for(f"{base}/status", lambda m: m.json().get("state") == "running", timeout=90)
        mark = sub.mark()
        second = start_daemon(mosquitto.mqtt_config(device="porch"), name="second")
        degraded = wait_until(
            lambda: s if (s := second.status()).get("state") == "degraded" else None,
            timeout=90,
            what=f"the second daemon degraded (log: {second.log()[-2000:]})",
        )
        reason = degraded["reason"]
        assert "mqtt.device 'porch' is in use by the edge-daemon on host" in reason
        assert f"(pid {first.proc.pid})" in reason and "\n" not in reason
        assert degraded["outputs"]["mqtt"]["state"] == "failing"
        time.sleep(4.0)  # several reconnect attempts (mqtt.reconnect_max is 1 s here)
        # The first one was never thrown off: no "offline", no second daemon's status.
        thrown_off = [m for m in sub.messages[mark:]
                      if m.topic == f"{base}/availability" and m.text == "offline"]  # fmt: skip
        assert thrown_off == []
        pids = {m.json().get("pid") for m in sub.messages[mark:] if m.topic == f"{base}/status"}
        assert pids == {first.proc.pid}
        assert first.status()["state"] == "running"
        assert first.status()["outputs"]["mqtt"]["state"] == "ok"
        # One reason, logged once, however often it checks again.
        assert logged_errors(second, "is in use by the edge-daemon") == 1
        assert second.status()["reason"] == reason
        # The first one stops: the second takes over by itself.
        assert first.stop() == 0
        wait_until(
            lambda: second.status().get("state") == "running", timeout=60, what="second running"
        )
        sub.wait_for(f"{base}/status", lambda m: m.json().get("pid") == second.proc.pid, timeout=30)
    finally:
        sub.close()


def test_a_clean_stop_sends_the_end_of_an_open_event(
    mosquitto: Mosquitto, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    sub = Subscriber(mosquitto, "edge-daemon/#")
    try:
        rule = {"name": "birds", "labels": ["@birds"], "min_score": 0.5, "min_frames": 2}
        events = {"dir": str(tmp_path / "events"), "rules": [rule]}
        d = start_daemon(mosquitto.mqtt_config(device="feeder"), name="feeder", events=events)
        base = "edge-daemon/feeder"
        start = sub.wait_for(
            f"{base}/events", lambda m: m.json()["type"] == "start", timeout=60
        ).json()
        assert d.stop() == 0  # the parrot is still in front of the camera
        ended = sub.wait_for(
            f"{base}/events", lambda m: m.json()["type"] == "end" and m.json()["id"] == start["id"]
        )
        end = ended.json()
        assert end["cut_short"] is True and end["end"] is not None
        sub.wait_for(f"{base}/rules/birds", lambda m: m.payload == b"OFF")
        # The end came before "offline", and says what the database says.
        offline = sub.wait_for(f"{base}/availability", lambda m: m.text == "offline")
        assert sub.messages.index(ended) < sub.messages.index(offline)
        shown = run_cli("events", "show", str(start["id"]), "--json",
                        "--config", str(tmp_path / "feeder.yaml"))  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        row = json.loads(shown.stdout)
        assert row["cut_short"] is True and row["end"] == end["end"]
    finally:
        sub.close()
