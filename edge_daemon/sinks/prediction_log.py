"""The prediction log: JSON lines, each written whole, rotated by size.

Each line goes out in one ``write()`` on an O_APPEND descriptor, so a reader
(``edge-daemon tail -f``) never sees half a line from us. Should the disk
fill mid-line, the partial bytes are cut off again (``ftruncate``) so the
file keeps only whole lines. Rotation renames ``predictions.jsonl`` to
``.1`` (``.1`` to ``.2``, ...) between two lines, never inside one.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal, Optional

from ..config import Config
from ..errors import OutputError
from ..postprocess import Prediction
from .base import Classified, ModelInfo, Sink, SinkContext, SinkHealth


def iso_utc(t: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-21T08:10:00.123Z."""
    return (
        datetime.fromtimestamp(t, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def json_line(record: dict[str, Any]) -> bytes:
    """One record as a compact JSON line (UTF-8, non-ASCII kept as text)."""
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class TimestampFormatter:
    """``iso_utc`` for a clock that moves forward: the date and time up to the
    second are formatted once per second, the milliseconds per call.

    The split into seconds and microseconds is the one ``datetime`` makes
    (the fraction rounded half-even to microseconds, carrying into the
    second), so the text is exactly what ``iso_utc`` gives.
    """

    def __init__(self) -> None:
        self._second = -1.0
        self._prefix = ""

    def __call__(self, t: float) -> str:
        if t < 0 or not math.isfinite(t):
            return iso_utc(t)
        frac, whole = math.modf(t)
        micros = round(frac * 1e6)
        if micros >= 1_000_000:
            whole += 1.0
            micros -= 1_000_000
        if whole != self._second:
            self._second = whole
            self._prefix = iso_utc(whole)[:-5]  # without ".000Z"
        return f"{self._prefix}.{micros // 1000:03d}Z"


class PredictionLines:
    """The daemon's prediction records as JSON lines, byte for byte what
    ``json_line`` makes of the same dict, built for the per-frame hot path.

    The parts that do not change between frames are encoded once: the model
    and delegate, and for each class the ``{"label":...,"index":N,"score":``
    opening (labels are fixed for a model). A frame then costs one string
    join instead of a dict, ten small dicts and a JSON encoder pass.
    """

    def __init__(self, model: str, delegate: str, label: Callable[[int], str]) -> None:
        self._label = label
        self._fixed = f',"model":{_text(model)},"delegate":{_text(delegate)},"predictions":['
        self._openings: dict[int, str] = {}
        self._names: dict[str, str] = {}
        self.timestamp = TimestampFormatter()

    def _opening(self, index: int) -> str:
        text = self._openings.get(index)
        if text is None:
            text = f'{{"label":{_text(self._label(index))},"index":{index},"score":'
            self._openings[index] = text
        return text

    def _name(self, name: str) -> str:
        text = self._names.get(name)
        if text is None:
            if len(self._names) >= 4096:  # a camera's names never repeat; keep it bounded
                self._names.clear()
            text = self._names[name] = _text(name)
        return text

    def line(
        self,
        captured_at: float,
        frame: int,
        image: str,
        predictions: Sequence[Prediction],
        reason: Optional[str] = None,
    ) -> bytes:
        """The JSON line for one frame, its predictions best first."""
        parts = []
        for p in predictions:
            index, value = p.index, round(p.score, 6)
            # repr() is how the json module spells a float; NaN and Infinity it spells itself.
            number = repr(value) if math.isfinite(value) else json.dumps(value)
            parts.append(f"{self._opening(index)}{number}}}")
        tail = f',"reason":{_text(reason)}}}\n' if reason is not None else "}\n"
        return (
            f'{{"ts":"{self.timestamp(captured_at)}","frame":{frame},"image":{self._name(image)}'
            f"{self._fixed}{','.join(parts)}]{tail}"
        ).encode()


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full; free some space (writing resumes by itself)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{exc.strerror}; make the folder writable for the service user"
    return exc.strerror or str(exc)


class PredictionLog:
    """Appends prediction records as JSON lines to ``path``."""

    def __init__(
        self,
        path: str,
        *,
        mode: Literal["every", "change"] = "every",
        heartbeat: float = 60.0,
        max_bytes: int = 10_000_000,
        backups: int = 3,
    ) -> None:
        self.path = path
        self.mode = mode
        self.heartbeat = heartbeat
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: Optional[int] = None
        self._size = 0
        self._last_top1: Optional[int] = None
        self._last_write = 0.0
        self.lines_written = 0

    def _open(self) -> int:
        if self._fd is None:
            folder = os.path.dirname(self.path) or "."
            os.makedirs(folder, exist_ok=True)
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            self._size = self._drop_torn_tail(self._fd, os.fstat(self._fd).st_size)
        return self._fd

    @staticmethod
    def _drop_torn_tail(fd: int, size: int) -> int:
        """Cut off a last line without its newline (a power cut mid-write); the new size.

        Appending after it would glue the next line onto the fragment: one broken line.
        """
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        end = size
        while end > 0:
            start = max(0, end - 65536)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        os.ftruncate(fd, end)
        return end

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            os.truncate(self.path, 0)
            return
        for i in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def wants(self, top1: Optional[int], now: float) -> Optional[str]:
        """Why this frame should be logged ("every", "change", "heartbeat"), or None."""
        if self.mode == "every":
            return "every"
        if top1 != self._last_top1:
            return "change"
        if now - self._last_write >= self.heartbeat:
            return "heartbeat"
        return None

    def write(
        self, record: dict[str, Any], top1: Optional[int], now: Optional[float] = None
    ) -> bool:
        """Write ``record`` if the mode wants it; True when a line was written.

        Raises OutputError (with the file and what to do) when the line could
        not be written; nothing already in the file is damaged.
        """
        now = time.time() if now is None else now
        reason = self.wants(top1, now)
        if reason is None:
            return False
        if self.mode == "change":
            record = {**record, "reason": reason}
        self.append(json_line(record), top1, now)
        return True

    def note(self, top1: Optional[int], now: float) -> None:
        """Remember that a line for ``top1`` at ``now`` was (or is being) written."""
        self._last_top1 = top1
        self._last_write = now

    def append(self, line: bytes, top1: Optional[int], now: float) -> None:
        """Write one whole line that ``wants`` asked for (see ``PredictionLines``).

        Raises OutputError as ``write`` does.
        """
        self.write_line(line)
        self.note(top1, now)

    def write_line(self, line: bytes) -> None:
        """Append one whole line, rotating first when it would pass ``max_bytes``.

        Raises OutputError as ``write`` does.
        """
        try:
            fd = self._open()
            if self._size > 0 and self._size + len(line) > self.max_bytes:
                self._rotate()
                fd = self._open()
            self._write_whole(fd, line)
        except OSError as exc:
            self.close()
            raise OutputError(
                f"{self.path}: cannot write the prediction log: {_describe(exc)}"
            ) from None
        self.lines_written += 1

    def _write_whole(self, fd: int, line: bytes) -> None:
        start = self._size
        written = 0
        try:
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError:
            if written:
                # Cut the partial line off again so the file holds whole lines only.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
            raise
        self._size = start + written

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class PredictionLogSink(Sink):
    """The prediction log as a sink: lines are built on the loop, written on a thread.

    Which frames get a line is decided on the loop (``wants``, by the
    smoothed top-1), so ``change`` mode stays exact however far the writer
    lags. The writer wakes every ``_FLUSH`` seconds and appends every pending
    line (at full speed, 20 wake-ups a second for 180 lines); after a period
    without a line it sleeps until the next one comes, so a daemon that
    writes nothing (``change`` mode on a still scene, frames skipped by the
    change gate) does not wake it at all. At most ``_PENDING`` lines wait (a
    stalled card drops the oldest).
    """

    name = "prediction_log"
    recovered = "prediction log writable again"

    def __init__(self, log: PredictionLog) -> None:
        self.log = log
        self._lines: Optional[PredictionLines] = None
        self._pending: collections.deque[bytes] = collections.deque(maxlen=_PENDING)
        self._health = SinkHealth()
        self._wake = threading.Event()  # set when a line is pending, or to close
        self._closing = threading.Event()
        self._flushing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> Optional[PredictionLogSink]:
        out = cfg.outputs
        if not out.prediction_log:
            return None
        return cls(
            PredictionLog(
                out.prediction_log,
                mode=out.prediction_log_mode,
                heartbeat=out.heartbeat,
                max_bytes=out.max_bytes,
                backups=out.backups,
            )
        )

    def model(self, info: ModelInfo) -> None:
        self._lines = PredictionLines(info.name, info.delegate, info.label)

    def classified(self, item: Classified) -> None:
        lines, log = self._lines, self.log
        if lines is None:
            return
        top = item.top1
        top1 = top.index if top is not None else None
        reason = log.wants(top1, item.captured_at)
        if reason is None:
            return
        log.note(top1, item.captured_at)
        self._pending.append(
            lines.line(
                item.captured_at,
                item.number,
                item.name,
                item.predictions,
                reason if log.mode == "change" else None,
            )
        )
        if not self._wake.is_set():  # an attribute read; set only while the writer sleeps
            self._wake.set()

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        if urgent:  # the ready status: the first prediction is on disk before READY=1
            self._flush()

    def health(self) -> SinkHealth:
        return self._health

    def _flush(self) -> int:
        """Append every pending line; how many there were."""
        pending = self._pending
        count = 0
        with self._flushing:
            while pending:
                count += 1
                line = pending.popleft()
                try:
                    self.log.write_line(line)
                except OutputError as exc:
                    self._health = SinkHealth("failing", str(exc))
                    continue  # lines that cannot be written now are dropped, never half-written
                if self._health.state != "ok":
                    self._health = SinkHealth()
        return count

    def _run(self) -> None:
        while not self._closed:
            self._closing.wait(_FLUSH)  # let the batch grow (close cuts this short)
            if self._flush() == 0:
                # Nothing for a whole period: sleep until a line comes. Cleared
                # before looking, so a line appended meanwhile sets it again.
                self._wake.clear()
                if not self._pending and not self._closed:
                    self._wake.wait()

    def close(self) -> None:
        self._closed = True
        self._closing.set()
        self._wake.set()
        self._thread.join(5.0)
        self._flush()
        self.log.close()


_FLUSH = 0.05
_PENDING = 10_000
