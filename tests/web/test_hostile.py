"""Hostile clients: fuzzed requests, oversized heads, idle and slow connections, floods.

The server must answer or close, never crash or log a traceback, and keep
serving others. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.conftest import Web, frame, status_object


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, half-close, and read until the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first, having answered an error
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if len(out) > 1_000_000:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return out


class Problems(logging.Handler):
    """Every WARNING or worse the daemon's code logs, and every traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info:
            self.seen.append(record.getMessage())


@pytest.fixture(scope="module")
def shared_web() -> Iterator[tuple[Web, Problems]]:
    """One sink for all fuzz examples (hypothesis runs many per test), and its log."""
    from edge_daemon.config import HttpConfig
    from edge_daemon.web.sink import HttpSink

    problems = Problems()
    logger = logging.getLogger("edge_daemon")
    logger.addHandler(problems)
    sink = HttpSink(HttpConfig(listen="127.0.0.1:0", stream_fps=30, idle_timeout=2.0))
    sink.start()
    sink.classified(frame(1))
    sink.status(status_object())
    yield Web(sink), problems
    sink.close()
    logger.removeHandler(problems)


TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
METHODS = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PRI"]),
    st.text(TOKEN_CHARS, min_size=1, max_size=30),
)
PATHS = st.one_of(
    st.sampled_from(
        [
            "/",
            "/api/status",
            "/api/frame.jpg",
            "/api/events/1",
            "/metrics",
            "/api/reload",
            "/api/stream.mjpg",
            "/api/predictions",
            "*",
            "/healthz",
        ]
    ),
    st.text(TOKEN_CHARS, max_size=300).map(lambda s: "/" + s),
    st.binary(max_size=200).map(lambda b: "/" + b.decode("latin-1")),
)
HEADER = st.tuples(
    st.text(TOKEN_CHARS, min_size=1, max_size=40).filter(lambda n: ":" not in n),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300),
)
VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.1x", ""])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=METHODS,
    path=PATHS,
    version=VERSIONS,
    headers=st.lists(HEADER, max_size=12),
    length=st.one_of(st.none(), st.integers(-5, 10**12).map(str), st.text(max_size=5)),
    body=st.binary(max_size=3000),
    garbage=st.booleans(),
)
def test_fuzzed_requests_are_answered_or_closed(
    shared_web: tuple[Web, Problems],
    method: str,
    path: str,
    version: str,
    headers: list[tuple[str, str]],
    length: object,
    body: bytes,
    garbage: bool,
) -> None:
    lines = [f"{method} {path} {version}".rstrip()]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    data = body if garbage else head + body
    web, problems = shared_web
    reply = exchange(web.port, data, timeout=10)
    if reply:
        assert reply.startswith(b"HTTP/1.1 "), reply[:80]
        head_part = reply.split(b"\r\n\r\n", 1)[0].lower()
        assert b"cache-control:" in head_part and b"x-content-type-options: nosniff" in head_part
    assert b"Traceback" not in reply
    assert web.request("/healthz").status == 200
    assert problems.seen == []


def test_malformed_requests_leave_no_traceback(
    shared_web: tuple[Web, Problems], capfd: pytest.CaptureFixture[str]
) -> None:
    web, problems = shared_web
    for data in (
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
        b"GET /api/status HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nabc",
        b"POST /api/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ):
        exchange(web.port, data)
    assert web.request("/healthz").status == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert problems.seen == []


def test_head_limits(web: Callable[..., Web]) -> None:
    w = web()
    long_line = exchange(w.port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
    assert long_line.startswith(b"HTTP/1.1 414")
    many = exchange(w.port, b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 1000 + b"\r\n" * 1)
    assert many.startswith(b"HTTP/1.1 ")
    too_big = exchange(
        w.port,
        b"GET / HTTP/1.1\r\n"
        + b"X-Pad: "
        + b"p" * 900
        + b"\r\n" * 0
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(30))
        + b"\r\n",
    )
    assert too_big.startswith(b"HTTP/1.1 431")
    assert w.request("/healthz").status in (200, 503)


def test_idle_and_slow_connections_are_closed(web: Callable[..., Web]) -> None:
    w = web(idle_timeout=1.0)
    idle = socket.create_connection(("127.0.0.1", w.port), timeout=20)
    slow = socket.create_connection(("127.0.0.1", w.port), timeout=20)
    slow.sendall(b"GET / HTTP/1.1\r\n")
    for _ in range(4):  # a header line every 0.4 s: each recv is in time, the head is not
        time.sleep(0.4)
        try:
            slow.sendall(b"X-Drip: 1\r\n")
        except OSError:
            break
    assert idle.recv(100) == b""  # closed by the server, nothing said
    rest = b""
    try:
        while chunk := slow.recv(65536):
            rest += chunk
    except ConnectionResetError:
        pass
    assert rest == b"" or rest.startswith(b"HTTP/1.1 431")
    idle.close()
    slow.close()
    assert w.sink.server is not None
    deadline = time.monotonic() + 10
    while w.sink.server.clients:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_clients_beyond_max_clients_get_503_and_others_keep_working(
    web: Callable[..., Web],
) -> None:
    w = web(max_clients=4)
    w.sink.status(status_object())
    held = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
        s.sendall(b"GET /api/predictions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(20).startswith(b"HTTP/1.1 200")
        held.append(s)
    refused = exchange(w.port, b"GET /api/status HTTP/1.1\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503") and b"http.max_clients" in refused
    for s in held:
        s.close()
    deadline = time.monotonic() + 10
    while w.request("/api/status").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
