"""An hour of a still scene with the gate on, on a simulated clock: the daemon stays alive.

The daemon's clock (its ``time`` module) is replaced by a simulated one that
the source moves on by half a second per frame, so an hour passes in
seconds. The real loop, capture thread, sinks and watchdog logic run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest

from edge_daemon import daemon as daemon_module
from edge_daemon.config import load_config
from edge_daemon.notify import RecordingNotifier
from edge_daemon.outputs import SINKS, SinkKind
from edge_daemon.sinks.base import Classified, Sink, Skipped
from edge_daemon.sinks.status_file import read_status
from edge_daemon.sources.base import Frame
from edge_daemon.status import status_verdict
from tests.gate.scenes import photo

FPS = 2.0
HOUR = 3600.0
# The first frame (at 0.5 s), then one each keepalive (60.5 s ... 3540.5 s).
CLASSIFIED = 60


class SimClock:
    """time.monotonic / time.time / time.perf_counter for the daemon, moved by the source."""

    def __init__(self) -> None:
        self.t = 5000.0
        self._wall = time.time() - self.t

    def monotonic(self) -> float:
        return self.t

    def time(self) -> float:
        return self._wall + self.t

    def perf_counter(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, 0.01))


class StillCamera:
    """A still scene with sensor noise, one frame per 1/FPS simulated seconds, for an hour."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        still = photo("bird.bmp", (320, 240)).astype(np.int16)
        rng = np.random.default_rng(3)
        self.images = [
            np.clip(still + rng.normal(0, 3, still.shape), 0, 255).astype(np.uint8)
            for _ in range(8)
        ]
        self.seq = 0

    def open(self) -> None:
        pass

    def read(self) -> Optional[Frame]:
        if self.seq >= HOUR * FPS:
            return None
        self.clock.t += 1.0 / FPS
        self.seq += 1
        image = self.images[self.seq % len(self.images)]
        return Frame(image, "camera0", self.seq, self.clock.time(), 1.0)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "a still camera"


class Recorder(Sink):
    """Every status object (with the simulated time it was handed over) and result."""

    name = "recorder"

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.classified_at: list[float] = []
        self.skips = 0

    def classified(self, item: Classified) -> None:
        self.classified_at.append(item.captured_at)

    def skipped(self, item: Skipped) -> None:
        self.skips += 1

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        self.statuses.append((self.clock.time(), status))


def test_a_still_hour_with_the_gate_on(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SimClock()
    camera = StillCamera(clock)
    recorder = Recorder(clock)
    monkeypatch.setattr(daemon_module, "time", clock)
    monkeypatch.setattr(daemon_module, "make_source", lambda cfg, size: camera)
    sinks = {**SINKS, "recorder": SinkKind(lambda c: None, lambda c, ctx: recorder)}
    monkeypatch.setattr(daemon_module, "SINKS", sinks)
    config = write_config(
        delegates=["cpu"],
        overrides={
            "gate": {"mode": "motion", "keepalive": 60.0, "hold": 2.0},
            "outputs": {"status_interval": 1.0, "prediction_log_mode": "every"},
            "source": {"stall_timeout": 10.0},
        },
    )
    notifier = RecordingNotifier(clock.monotonic)
    d = daemon_module.Daemon(
        load_config(config),
        config_path=str(config),
        notifier=notifier,
        environ={"WATCHDOG_USEC": "10000000"},  # systemd's WatchdogSec=10: ping every 5 s
    )
    assert d.run() == 0
    start, end = clock.t - HOUR, clock.t

    # Classified: the first frame and one per keepalive; nothing else was reported.
    assert d.frames == CLASSIFIED and len(recorder.classified_at) == CLASSIFIED
    assert recorder.skips == HOUR * FPS - CLASSIFIED
    gaps = np.diff(recorder.classified_at)
    assert gaps.max() == pytest.approx(60.0, abs=1.0 / FPS)
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == CLASSIFIED

    # The watchdog was fed all hour, every 5 s (systemd would restart after 10).
    pings = [m.at for m in notifier.messages if "WATCHDOG=1" in m.assignments]
    assert pings[0] - start < 5.0 + 1.0 / FPS and end - pings[-1] < 5.0 + 1.0 / FPS
    assert max(np.diff(pings)) <= 5.0 + 1.0 / FPS
    assert len(pings) >= HOUR / (5.0 + 1.0 / FPS)

    # A status every second, running (never "no frame for 10 s"), and fresh each time.
    during = [(at, s) for at, s in recorder.statuses if s["state"] not in ("starting", "stopped")]
    times = [at for at, _ in during]
    assert times[-1] - times[0] >= HOUR - 2.0 and max(np.diff(times)) <= 1.0 + 1.0 / FPS
    for at, status in during:
        assert status["state"] == "running", status["reason"]
        assert status_verdict(status, at) == (0, "running")
    last = during[-1][1]
    assert last["gate"]["state"] == "watching"
    assert last["gate"]["frames_seen"] >= HOUR * FPS - 2 * FPS
    assert last["gate"]["frames_classified"] == CLASSIFIED
    # The status file a health check reads holds the whole hour at the end.
    final = read_status(str(tmp_path / "out" / "status.json"))["gate"]
    assert final["frames_seen"] == HOUR * FPS and final["frames_classified"] == CLASSIFIED
    assert final["skipped_share"] == round(1 - CLASSIFIED / (HOUR * FPS), 4)
