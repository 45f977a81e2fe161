"""The change gate on the web side: /metrics families, and a live view that stays live."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from edge_daemon.config import GateConfig
from edge_daemon.gate import ChangeGate
from edge_daemon.sinks.base import Skipped
from tests.helpers import require_tool
from tests.web.conftest import Web, frame, status_object
from tests.web.test_app import read_part
from tests.web.test_metrics import samples, scrape

STILL = np.full((60, 80), 90, np.uint8)


def gate_report(frames: int = 40) -> dict[str, Any]:
    """A real gate's report after a still scene and then a subject in one corner."""
    gate = ChangeGate(GateConfig(mode="motion", keepalive=1e9, hold=0.0))
    for n in range(frames):
        gate.decide(STILL, n * 0.1, event_open=False)
    moved = STILL.copy()
    moved[:10, :10] = 250
    gate.decide(moved, frames * 0.1, event_open=False)
    gate.decide(STILL, frames * 0.1 + 1, event_open=False)  # gone again: watching
    return gate.report(0.0)


def test_metrics_show_the_gate_and_promtool_accepts_them(web: Callable[..., Web]) -> None:
    promtool = pytest.importorskip("prometheus_client") and require_tool(
        "promtool", "apt install prometheus"
    )
    w = web()
    w.sink.classified(frame(1))
    report = gate_report()
    w.sink.status(status_object(frames=report["frames_classified"], gate=report))
    text = scrape(w)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr + text
    got = samples(text)
    assert got['edge_daemon_gate_state{edge_daemon_gate_state="watching"}'] == 1
    assert got['edge_daemon_gate_state{edge_daemon_gate_state="active"}'] == 0
    assert got["edge_daemon_frames_seen_total"] == 42
    assert got["edge_daemon_frames_classified_total"] == 2  # the first, and the motion
    assert got["edge_daemon_frames_total"] == 2  # the old name, still frames classified
    assert got["edge_daemon_gate_change_ratio"] == report["change_ratio"]
    assert got["edge_daemon_gate_skipped_ratio"] == report["skipped_share"] == round(40 / 42, 4)
    assert got["edge_daemon_gate_area_threshold"] == 0.005
    # Without a gate in the status (an older daemon): off, every frame classified.
    w.sink.status(status_object(frames=7))
    got = samples(scrape(w))
    assert got['edge_daemon_gate_state{edge_daemon_gate_state="off"}'] == 1
    assert got["edge_daemon_frames_seen_total"] == got["edge_daemon_frames_classified_total"] == 7


def test_the_live_view_shows_frames_the_gate_skipped(web: Callable[..., Web]) -> None:
    w = web(stream_fps=20)
    w.sink.classified(frame(1, shade=20))
    sock = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    sock.sendall(b"GET /api/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    while f.readline() != b"\r\n":
        pass
    headers, body = read_part(f)
    assert headers["x-frame"] == "1"
    dark = np.asarray(Image.open(io.BytesIO(body))).mean()
    time.sleep(0.06)  # past the stream's rate cap
    w.sink.skipped(Skipped("f2.png", time.time(), np.full((48, 64, 3), 230, np.uint8)))
    headers, body = read_part(f)
    # The picture is the skipped frame; the number is still that of the last classified one.
    assert headers["x-frame"] == "1"
    assert np.asarray(Image.open(io.BytesIO(body))).mean() > dark + 150
    # /api/frame.jpg is the last classified frame's picture.
    still = w.request("/api/frame.jpg")
    assert still.headers["x-frame"] == "1"
    assert np.asarray(Image.open(io.BytesIO(still.body))).mean() < 60
    f.close()
    sock.close()
