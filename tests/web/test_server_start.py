"""Starting and stopping the server costs the daemon nothing it can avoid."""

from __future__ import annotations

import socket
import threading
from typing import Callable

import pytest

from tests.web.conftest import Web, status_object


def test_binding_asks_no_dns(web: Callable[..., Web], monkeypatch: pytest.MonkeyPatch) -> None:
    # http.server's own bind looks the address up (socket.getfqdn): seconds where DNS
    # is slow or, under the unit's IPAddressDeny, not allowed at all.
    def no_dns(*args: object) -> str:
        raise AssertionError("the server asked DNS while binding")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    w = web()
    w.sink.status(status_object())
    assert w.sink.health().state == "ok"
    assert w.request("/api/status").status == 200


def test_close_ends_the_serving_thread(web: Callable[..., Web]) -> None:
    w = web()
    w.sink.status(status_object())
    assert w.request("/api/status").status == 200
    serving = [t for t in threading.enumerate() if t.name == "http"]
    assert serving
    port = w.port
    w.sink.close()
    for t in serving:
        t.join(5)
        assert not t.is_alive()
    with socket.socket() as s:  # the port is free again at once (a reload binds it anew)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
