"""DNS rebinding: the server answers only for addresses, localhost, its own and configured names."""

from __future__ import annotations

from typing import Callable, Optional

import pytest

from edge_daemon.config import parse_config
from edge_daemon.web.hosts import host_allowed, host_name, known_names
from tests.web.conftest import Web, frame, status_object


def test_a_rebound_name_is_refused_everywhere_and_loopback_is_answered(
    web: Callable[..., Web],
) -> None:
    w = web()
    w.sink.classified(frame(1))
    w.sink.status(status_object())
    # A page on evil.example pointed its name at 127.0.0.1: the browser sends that name.
    for path in ("/", "/api/status", "/api/stream.mjpg", "/metrics", "/healthz"):
        refused = w.request(path, headers={"Host": f"evil.example:{w.port}"})
        assert refused.status == 403, path
        assert b"http.allowed_hosts" in refused.body
        assert b"top1" not in refused.body and b"predictions" not in refused.body
    for host in (f"127.0.0.1:{w.port}", f"localhost:{w.port}", "LOCALHOST", f"[::1]:{w.port}",
                 "127.0.0.1", "app.localhost"):  # fmt: skip
        assert w.request("/api/status", headers={"Host": host}).status == 200, host


def test_configured_names_and_the_wildcard(web: Callable[..., Web]) -> None:
    w = web(allowed_hosts=["porch-pi.home.arpa"])
    w.sink.status(status_object())
    ok = w.request("/api/status", headers={"Host": f"Porch-Pi.Home.Arpa:{w.port}"})
    assert ok.status == 200
    assert w.request("/api/status", headers={"Host": "other.home.arpa"}).status == 403
    anyone = web(allowed_hosts=["*"])
    anyone.sink.status(status_object())
    assert anyone.request("/api/status", headers={"Host": "whatever.example"}).status == 200


def test_the_names_a_pi_is_known_by() -> None:
    names = known_names(["Cam.Example."], hostname="porch-pi")
    assert names == {"cam.example", "porch-pi", "porch-pi.local"}
    assert host_allowed("porch-pi.local:8080", names)
    assert host_allowed("192.168.1.20:8080", names)  # an address cannot be rebound
    assert host_allowed("[fe80::1]:8080", names)
    assert not host_allowed("porch-pi.evil.example", names)
    assert not host_allowed("", names)
    assert host_allowed(None, names)  # HTTP/1.0 without a Host: not a browser
    assert host_name("[::1]:8080") == "::1" and host_name("Example.COM.:80") == "example.com"


@pytest.mark.parametrize("value", [["porch.lan"], ["*"], None])
def test_the_config_key(value: Optional[list[str]]) -> None:
    shown = "null" if value is None else repr(value)
    cfg = parse_config(f"http:\n  allowed_hosts: {shown}\n", name="c.yaml")
    assert cfg.http.allowed_hosts == value
