"""The background status writer: newest status wins, errors come back, never a pile-up."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_daemon.errors import OutputError
from edge_daemon.sinks.status_file import StatusFile, StatusWriter


class SlowStatusFile(StatusFile):
    """A status file whose writes wait for ``gate``; it records what it wrote."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.written: list[Any] = []

    def write(self, status: dict[str, Any]) -> None:
        self.started.set()
        assert self.gate.wait(10)
        super().write(status)
        self.written.append(status["n"])


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_submitted_status_is_written_in_the_background(tmp_path: Path) -> None:
    writer = StatusWriter(StatusFile(str(tmp_path / "status.json")))
    writer.submit({"n": 1, "state": "running"})
    wait_until(lambda: writer.results() == [None] or (tmp_path / "status.json").exists())
    writer.close()
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "running"


def test_updates_submitted_during_a_slow_write_collapse_to_the_newest(tmp_path: Path) -> None:
    slow = SlowStatusFile(str(tmp_path / "status.json"))
    writer = StatusWriter(slow)
    writer.submit({"n": 1})
    assert slow.started.wait(10)
    for n in range(2, 50):  # the card is busy: these must not queue up
        writer.submit({"n": n})
    slow.gate.set()
    writer.close()
    assert slow.written == [1, 49]


def test_final_synchronous_status_is_never_replaced_by_an_older_one(tmp_path: Path) -> None:
    slow = SlowStatusFile(str(tmp_path / "status.json"))
    writer = StatusWriter(slow)
    writer.submit({"n": 1, "state": "running"})
    assert slow.started.wait(10)
    writer.submit({"n": 2, "state": "running"})
    done = threading.Thread(target=writer.write_now, args=({"n": 3, "state": "stopped"},))
    done.start()
    slow.gate.set()
    done.join(10)
    writer.close()
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "stopped"
    assert slow.written[-1] == 3  # status 2, if taken, went to disk before 3, never after


def test_a_failed_background_write_is_reported_through_results(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the status folder should be")
    writer = StatusWriter(StatusFile(str(blocker / "status.json")))
    writer.submit({"n": 1})
    outcomes: list[Any] = []
    wait_until(lambda: outcomes.extend(writer.results()) or bool(outcomes))
    writer.close()
    assert isinstance(outcomes[0], OutputError)
    assert "status.json" in str(outcomes[0])
    with pytest.raises(OutputError):
        writer.write_now({"n": 2})
