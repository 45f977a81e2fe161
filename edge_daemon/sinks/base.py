"""The output seam: what the loop hands every sink, and how a sink reports its health.

The daemon holds a list of ``Sink`` objects built from the registry in
``edge_daemon.sinks`` and knows none of them by name. For each classified
frame it calls ``classified()`` on every sink, on the inference thread: a
sink must return at once (hand the work to its own thread, see
``QueueWorker``). Every ``outputs.status_interval`` it calls ``status()``
with the status object, and it polls ``health()``: a sink whose state is
``failing`` turns the daemon ``degraded`` with the sink's reason, and
``running`` again once the sink says ``ok``. Sinks never log their own
errors; the daemon logs each new reason once.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import numpy as np

from ..postprocess import Prediction

SinkState = Literal["ok", "connecting", "failing", "off"]


@dataclass(frozen=True)
class ModelInfo:
    """The model the daemon runs now: told to every sink at start and after a reload."""

    name: str  # file name, e.g. mobilenet_v1_1.0_224_quant.tflite
    path: str
    sha256: str
    runtime: str
    delegate: str
    labels: Sequence[str]  # the label lines, as the labels file (or metadata) has them
    label: Callable[[int], str]  # an output index -> its label (offset labels handled)
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class EventNotice:
    """An event starting, improving or ending (see ``edge_daemon.events``).

    ``event`` holds the event's fields as the database, ``--json`` and the API
    name them (id, rule, label, index, start, end, score, frames, snapshot,
    model, model_sha256, cut_short). ``best`` is True when this frame is the
    event's best so far (its snapshot is this frame's image).
    """

    type: Literal["start", "update", "end"]
    event: dict[str, Any]
    best: bool = False


@dataclass(frozen=True, slots=True)
class Classified:
    """One classified frame, as the loop hands it to every sink.

    ``image`` is the frame as the source delivered it ((H, W, 3) uint8 RGB,
    not the model's input); sinks must not modify it. ``predictions`` are the
    raw per-frame top-k, best first; ``smoothed`` the same after
    ``model.smoothing`` (the very list when smoothing is off). ``events``
    are the event notices this frame caused. ``embedding`` is the base
    network's pooled feature vector from the same invoke (float32 (dims,),
    dequantized), None when the model offers none.
    """

    number: int  # frames classified since start, 1 for the first
    name: str  # file name, or the camera's
    captured_at: float  # time.time() at capture
    image: np.ndarray
    predictions: Sequence[Prediction]
    smoothed: Sequence[Prediction]
    inference_ms: float
    events: tuple[EventNotice, ...] = ()
    embedding: Optional[np.ndarray] = None

    @property
    def top1(self) -> Optional[Prediction]:
        return self.smoothed[0] if self.smoothed else None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A frame the change gate let pass unclassified (``gate.mode: motion``).

    Only the live view shows it (the picture stays live while the gate
    watches); nothing reports it as a result. ``image`` as in ``Classified``.
    """

    name: str
    captured_at: float
    image: np.ndarray


@dataclass(frozen=True)
class SinkHealth:
    """How a sink is doing: ``state`` and, unless ok, one line saying why and what to do."""

    state: SinkState = "ok"
    error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "last_error": self.error}


@dataclass
class SinkContext:
    """What the daemon lends its sinks: a way to ask for a reload (SIGHUP's effect)."""

    request_reload: Callable[[], None] = field(default=lambda: None)


class Sink:
    """One output. Subclasses override what they use; every hook is optional.

    ``name`` is the key of this sink in the status object's ``outputs``.
    """

    name = "sink"
    # What the daemon logs when this sink works again after failing.
    recovered = "output working again"

    def model(self, info: ModelInfo) -> None:
        """A model was loaded (at start and after each reload)."""

    def classified(self, item: Classified) -> None:
        """One frame's result. Runs on the inference thread: return at once."""

    def events_ended(self, notices: Sequence[EventNotice]) -> None:
        """Event ``end`` notices that come without a frame: at a clean stop, those of
        every open event (cut short). Runs on the inference thread, before ``close()``."""

    def skipped(self, item: Skipped) -> None:
        """A frame the change gate skipped (inference thread: return at once)."""

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        """The status object. ``urgent``: the first, the ready and the last one;
        a sink that writes a file writes it before returning."""

    def health(self) -> SinkHealth:
        """How this sink is doing now (polled by the daemon's loop; must be cheap)."""
        return SinkHealth()

    def close(self) -> None:
        """Flush what is pending (bounded in time) and stop its threads. Never raises."""


class QueueWorker:
    """A daemon thread that runs queued jobs in order, with a bounded queue.

    ``put`` never blocks: when ``limit`` jobs wait already, the oldest is
    dropped (the newest result matters most) and counted in ``dropped``.
    """

    def __init__(self, name: str, limit: int = 256) -> None:
        self.name = name
        self.dropped = 0
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._limit = limit
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._jobs) >= self._limit:
                self._jobs.popleft()
                self.dropped += 1
            self._jobs.append(job)
            self._cond.notify()

    def pending(self) -> int:
        return len(self._jobs)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            job()  # jobs catch their own errors and report them through health()

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued (for at most ``timeout`` seconds), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
