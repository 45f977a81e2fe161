"""Connecting to a broker: one-line reasons, device names, --broker URLs, password files."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from edge_daemon.config import MqttConfig
from edge_daemon.errors import ConfigError, EdgeDaemonError
from edge_daemon.mqtt.broker import (
    apply_broker_url,
    check_resolvable,
    connect_error,
    parse_broker_url,
    read_password,
    refused_error,
    topic_safe,
)

CFG = MqttConfig(host="broker.lan", port=1883, username="porch")


def test_reasons_say_what_to_do() -> None:
    assert "check mqtt.host" in connect_error(CFG, socket.gaierror(-2, "Name or service not known"))
    assert "is the broker running" in connect_error(CFG, ConnectionRefusedError(111, "refused"))
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert "set mqtt.tls.ca_file" in connect_error(CFG, cert)
    assert "IPAddressAllow=" in connect_error(CFG, PermissionError(1, "Operation not permitted"))
    assert "check mqtt.username and the password" in refused_error(CFG, "Not authorized")
    for text in (connect_error(CFG, TimeoutError()), refused_error(CFG, "Server unavailable")):
        assert text.startswith("MQTT broker broker.lan:1883") and "\n" not in text


def test_names_that_must_never_resolve_are_refused_without_dns() -> None:
    for name in ("no-such-host.invalid", "x.INVALID.", "invalid"):
        with pytest.raises(socket.gaierror):
            check_resolvable(name)
    check_resolvable("broker.lan")  # only checked, never looked up


def test_topic_safe_device_names() -> None:
    assert topic_safe("porch.pi#1") == "porch_pi_1"
    assert topic_safe("garden-cam_2") == "garden-cam_2"


def test_password_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\nignored\n")
    cfg = MqttConfig(host="b", username="u", password_file=str(path))
    assert read_password(cfg) == "s3cret"
    with pytest.raises(ConfigError, match="not found"):
        read_password(MqttConfig(host="b", username="u", password_file=str(tmp_path / "none")))


def test_broker_urls() -> None:
    b = parse_broker_url("mqtt://edge@10.0.0.2:1884")
    assert (b.host, b.port, b.username, b.tls) == ("10.0.0.2", 1884, "edge", False)
    assert parse_broker_url("mqtts://broker.lan").tls
    with pytest.raises(EdgeDaemonError, match="do not put the password in the URL"):
        parse_broker_url("mqtt://edge:secret@broker.lan")
    with pytest.raises(EdgeDaemonError, match="mqtt://"):
        parse_broker_url("http://broker.lan")
    tls = apply_broker_url(MqttConfig(), "mqtts://admin@broker.lan")
    assert (tls.host, tls.port, tls.username, tls.tls is not None) == (
        "broker.lan",
        8883,
        "admin",
        True,
    )
    with pytest.raises(EdgeDaemonError, match="no broker"):
        apply_broker_url(MqttConfig(), None)


def test_without_paho_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from edge_daemon.mqtt.broker import import_paho

    monkeypatch.setitem(sys.modules, "paho", None)  # as if paho-mqtt were not installed
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(EdgeDaemonError, match=r"pip install 'edge-daemon\[mqtt\]'"):
        import_paho()


def test_who_else_is_online_under_this_device() -> None:
    import json
    import os

    from edge_daemon.mqtt.broker import other_daemon

    def found(avail: bytes, **status: object) -> dict[str, bytes]:
        return {"b/availability": avail, "b/status": json.dumps(status).encode()}

    def who(f: dict[str, bytes]) -> object:
        return other_daemon(f, "b/availability", "b/status", host="porch-pi", pid=os.getpid())

    running = {"state": "running", "host": "garden-pi", "pid": 812}
    assert who(found(b"online", **running)) == "host garden-pi (pid 812)"
    assert who(found(b"offline", **running)) is None  # it went away (or died: its will)
    assert who(found(b"online", **{**running, "state": "stopped"})) is None
    assert who(found(b"online", state="running", pid=812)) is None  # an older version: no host
    # This host: another live process is another daemon; this one, or a dead one, is not.
    assert who(found(b"online", state="running", host="porch-pi", pid=1)) == (
        "host porch-pi (pid 1)"
    )
    assert who(found(b"online", state="running", host="porch-pi", pid=os.getpid())) is None
    assert who(found(b"online", state="running", host="porch-pi", pid=2**22 + 7)) is None
    assert who({"b/availability": b"online"}) is None
