"""Training from the page: one ``edge-daemon teach train`` child process at a time.

A child, not a thread: off the request threads and the inference loop, its
memory returned when it ends, and a kill in the middle costs the run only
(the child installs its model with one rename). It prints its progress on
stderr, one line a step ("embedding 12/90"), and a one-line error when it
fails; the report it writes (report.json) is what the page shows afterwards.
systemd's syscall filter forbids setpriority, so the child is not niced.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import threading
import time
from typing import Any, Optional

from ..sinks.prediction_log import iso_utc

log = logging.getLogger(__name__)

PROGRESS_LINES = 20
# systemd's variables for the service's main process: the child is not the service.
DAEMON_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
ERROR_PREFIX = "edge-daemon: "  # how the command starts its one-line error


class Training:
    """One ``edge-daemon teach train`` child at a time: its progress and outcome."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.state = "idle"  # idle | running | done | failed
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self.progress: collections.deque[str] = collections.deque(maxlen=PROGRESS_LINES)
        self.error: Optional[str] = None
        self.pid: Optional[int] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> bool:
        """Start a run; False when one runs already."""
        with self._lock:
            if self.running or self._closed:
                return False
            self.state, self.error = "running", None
            self.started, self.finished = time.time(), None
            self.progress.clear()
            try:
                proc = subprocess.Popen(
                    self.command,
                    env={k: v for k, v in os.environ.items() if k not in DAEMON_ONLY},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # a Ctrl-C in the daemon's terminal is the daemon's
                )
            except OSError as exc:
                self._end("failed", f"cannot start {self.command[0]}: {exc.strerror or exc}")
                return True
            self._proc, self.pid = proc, proc.pid
        threading.Thread(target=self._watch, args=(proc,), name="teach-train", daemon=True).start()
        return True

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.progress.append(line[:300])
        code = proc.wait()
        with self._lock:
            if code == 0:
                self._end("done", None)
            else:
                self._end("failed", self._why(code))

    def _why(self, code: int) -> str:
        if code < 0:
            return f"training was stopped (signal {-code}); the taught model is unchanged"
        for line in reversed(self.progress):
            if line.startswith(ERROR_PREFIX):
                return line.removeprefix(ERROR_PREFIX).removeprefix("error: ")
        return f"edge-daemon teach train exited with code {code}; see the daemon's log"

    def _end(self, state: str, message: Optional[str]) -> None:
        self.state, self.error, self.finished = state, message, time.time()
        self._proc = None
        log.info("teach: training %s", f"failed: {message}" if message else "finished")

    def view(self) -> dict[str, Any]:
        last = list(self.progress)[-1:]  # a copy: the watcher appends meanwhile
        return {
            "state": self.state,
            "started": iso_utc(self.started) if self.started else None,
            "finished": iso_utc(self.finished) if self.finished else None,
            "progress": last[0] if last else None,
            "error": self.error,
        }

    def close(self) -> None:
        """Stop a run in progress (it installs its model in one rename: nothing half-done)."""
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
