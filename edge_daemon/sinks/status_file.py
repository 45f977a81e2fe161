"""The JSON status file, replaced atomically: readers see the old or the new, never half."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from typing import Any, Optional

from ..config import Config
from ..errors import OutputError
from ..fileio import write_synced
from .base import Sink, SinkContext, SinkHealth


class StatusFile:
    """Writes the daemon's status object to ``path`` by temp file + fsync + rename."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._prefix = f".{os.path.basename(path)}."
        self._swept = False

    def _sweep(self, folder: str) -> None:
        """Remove temporary files a killed process left behind (once, before the first write)."""
        self._swept = True
        for name in os.listdir(folder):
            if name.startswith(self._prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))

    def write(self, status: dict[str, Any]) -> None:
        """Replace the file with ``status``. Raises OutputError; the old file stays intact."""
        folder = os.path.dirname(self.path) or "."
        data = (json.dumps(status, indent=1, ensure_ascii=False) + "\n").encode()
        tmp = None
        try:
            os.makedirs(folder, exist_ok=True)
            if not self._swept:
                self._sweep(folder)
            fd, tmp = tempfile.mkstemp(prefix=self._prefix, suffix=".tmp", dir=folder)
            try:
                write_synced(fd, data)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            reason = (
                "the disk is full; free some space (writing resumes by itself)"
                if exc.errno == errno.ENOSPC
                else f"{exc.strerror}; make the folder writable for the service user"
            )
            raise OutputError(f"{self.path}: cannot write the status file: {reason}") from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def read_status(path: str) -> dict[str, Any]:
    """The status object at ``path``. Raises OSError or ValueError."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


class StatusWriter:
    """Writes a StatusFile on a background thread, off the inference loop.

    A write is a temp file, an fsync and a rename: milliseconds on an SD card,
    more when the card is busy. ``submit`` only hands the newest status over
    (one slot: a slow card never makes updates pile up); ``write_now`` writes
    synchronously, for the first and the last status. Outcomes come back
    through ``results()`` so the daemon reports errors from its own thread.
    """

    def __init__(self, status_file: StatusFile) -> None:
        self.file = status_file
        self._cond = threading.Condition()
        self._pending: Optional[tuple[int, dict[str, Any]]] = None
        self._seq = 0  # order of submission
        self._written = 0  # seq of the newest status on disk: never replace it by an older one
        self._results: list[Optional[OutputError]] = []
        self._write_lock = threading.Lock()
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    @property
    def path(self) -> str:
        return self.file.path

    def submit(self, status: dict[str, Any]) -> None:
        """Queue ``status`` to be written (replacing any not yet written)."""
        with self._cond:
            if self._closed:
                return
            self._seq += 1
            self._pending = (self._seq, status)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def write_now(self, status: dict[str, Any]) -> None:
        """Write ``status`` before returning. Raises OutputError."""
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._pending = None  # older than this one
        self._write(seq, status)

    def _write(self, seq: int, status: dict[str, Any]) -> None:
        with self._write_lock:
            if seq <= self._written:
                return  # a newer status is on disk already
            self.file.write(status)
            self._written = seq

    def results(self) -> list[Optional[OutputError]]:
        """Outcomes of background writes since the last call (None = written)."""
        with self._cond:
            out, self._results = self._results, []
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Finish the pending write and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                pending, self._pending = self._pending, None
                if pending is None:
                    return
            outcome: Optional[OutputError] = None
            try:
                self._write(*pending)
            except OutputError as exc:
                outcome = exc
            with self._cond:
                self._results.append(outcome)


class StatusFileSink(Sink):
    """The status file as a sink: written on the StatusWriter's thread, urgent ones at once."""

    name = "status_file"
    recovered = "status file writable again"

    def __init__(self, writer: StatusWriter) -> None:
        self.writer = writer
        self._health = SinkHealth()

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> Optional[StatusFileSink]:
        path = cfg.outputs.status_file
        return cls(StatusWriter(StatusFile(path))) if path else None

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        if urgent:
            try:
                self.writer.write_now(status)
                self._health = SinkHealth()
            except OutputError as exc:
                self._health = SinkHealth("failing", str(exc))
        else:
            self.writer.submit(status)

    def health(self) -> SinkHealth:
        for outcome in self.writer.results():
            self._health = SinkHealth() if outcome is None else SinkHealth("failing", str(outcome))
        return self._health

    def close(self) -> None:
        self.writer.close()
