"""Many clients: 50 on the live view and 50 that never read, against a running daemon.

The daemon must keep classifying, its memory must stay bounded, and the
connections must be let go when the clients leave. 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Callable

import pytest

from tests.web.conftest import Running
from tests.web.test_metrics import samples

pytestmark = pytest.mark.slow
WATCHERS = 50
SLOW = 50


def watch(port: int, stop: threading.Event, counts: list[int], i: int) -> None:
    """Read the live view until told to stop, counting the frames received."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"GET /api/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            while not stop.is_set():
                data = s.recv(65536)
                if not data:
                    return
                counts[i] += data.count(b"--frame\r\n")
    except OSError:
        return


def test_fifty_watchers_and_fifty_stalled_clients(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path]
) -> None:
    pytest.importorskip("prometheus_client")
    d = run_daemon(
        source=frames_dir("cat.bmp", "parrot.jpg", "bird.bmp"),
        http={"max_clients": 128, "idle_timeout": 3.0, "stream_fps": 5},
    )
    for _ in range(3):  # warm up: JPEG encoder and page loaded once
        assert d.request("/api/frame.jpg").status == 200
        assert d.request("/").status == 200
    base_rss = d.rss_kib()
    stop = threading.Event()
    counts = [0] * WATCHERS
    watchers = [
        threading.Thread(target=watch, args=(d.port, stop, counts, i), daemon=True)
        for i in range(WATCHERS)
    ]
    for t in watchers:
        t.start()
    stalled = []
    for _ in range(SLOW):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a frame or two
        s.settimeout(20)
        s.connect(("127.0.0.1", d.port))
        s.sendall(b"GET /api/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stalled.append(s)  # and never read

    try:
        frames = d.status()["frames"]
        d.wait_for("50 watchers getting frames", lambda: min(counts) >= 3)
        mid_rss = d.rss_kib()
        d.wait_for("classification going on", lambda: d.status()["frames"] >= frames + 40)
        assert d.status()["state"] == "running"
        assert d.request("/healthz").status == 200
        # The stalled clients are dropped after idle_timeout; the watchers stay.
        d.wait_for(
            "stalled clients dropped",
            lambda: (
                samples(d.request("/metrics").body.decode())["edge_daemon_http_clients"]
                <= WATCHERS + 2
            ),
        )
        late_rss = d.rss_kib()
        seen = list(counts)
        d.wait_for("watchers still served", lambda: min(c - s for c, s in zip(counts, seen)) >= 2)
    finally:
        stop.set()
        for s in stalled:
            s.close()
        for t in watchers:
            t.join(30)
    print(
        f"daemon RSS: {base_rss} KiB before, {mid_rss} KiB with 100 clients, {late_rss} KiB later"
    )
    assert mid_rss - base_rss < 64 * 1024, (base_rss, mid_rss)
    assert late_rss - base_rss < 64 * 1024, (base_rss, late_rss)
    d.wait_for(
        "every connection let go",
        lambda: samples(d.request("/metrics").body.decode())["edge_daemon_http_clients"] <= 1,
    )
    assert "Traceback" not in d.log.read_text()
