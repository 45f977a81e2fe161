"""The capture thread's retries: fast back-off for a flaky camera, retry_max for a lasting fault."""

from __future__ import annotations

import logging
import threading
from typing import Optional

import pytest

from edge_daemon.capture import CaptureThread
from edge_daemon.errors import PermanentSourceError, SourceBusy
from edge_daemon.sources.base import Frame


class FailingSource:
    """A source whose open() always raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.opens = 0
        self.closes = 0

    def open(self) -> None:
        self.opens += 1
        raise self.error

    def read(self) -> Optional[Frame]:
        raise AssertionError("never opened")

    def close(self) -> None:
        self.closes += 1

    def describe(self) -> str:
        return "test camera"


class CountedStop(threading.Event):
    """The thread's stop event: records each wait and ends the run after ``rounds`` of them."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.waits: list[float] = []

    def wait(self, timeout: Optional[float] = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        if len(self.waits) >= self.rounds:
            self.set()
        return self.is_set()


def run_rounds(source: FailingSource, rounds: int) -> tuple[CaptureThread, CountedStop]:
    thread = CaptureThread(source, live=True, retry_initial=0.5, retry_max=30.0)
    stop = CountedStop(rounds)
    thread._stop = stop
    thread._run()  # on this thread: deterministic
    return thread, stop


def test_a_permanent_fault_is_retried_only_every_retry_max_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reason = "camera0: the camera delivers SRGGB10; set source.camera to another camera"
    source = FailingSource(PermanentSourceError(reason))
    with caplog.at_level(logging.INFO, logger="edge_daemon.capture"):
        thread, stop = run_rounds(source, 4)
    assert stop.waits == [30.0, 30.0, 30.0, 30.0]
    assert thread.fault == reason
    assert thread.permanent
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert reason in errors[0].getMessage()
    assert "retry_max" not in errors[0].getMessage() and "30 s" in errors[0].getMessage()


def test_a_busy_camera_gets_the_fast_back_off() -> None:
    source = FailingSource(SourceBusy("camera0 is busy: another process holds it"))
    thread, stop = run_rounds(source, 8)
    assert stop.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert thread.fault is not None and "busy" in thread.fault
    assert not thread.permanent
