"""An in-memory sink: keeps what the daemon hands it, and fails when told to.

The stand-in for any output in tests and benchmarks: it records models,
classified frames (a bounded window), end notices and status objects, and a test can make
it report ``failing`` (as a broker that went away would) and recover.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any, Optional

from .base import Classified, EventNotice, ModelInfo, Sink, SinkContext, SinkHealth


class MemorySink(Sink):
    """Records everything; ``fail(reason)`` and ``recover()`` drive its health."""

    name = "memory"
    recovered = "memory output working again"

    def __init__(self, ctx: Optional[SinkContext] = None, keep: int = 1000) -> None:
        self.ctx = ctx or SinkContext()
        self.models: list[ModelInfo] = []
        self.items: collections.deque[Classified] = collections.deque(maxlen=keep)
        self.count = 0
        self.statuses: list[dict[str, Any]] = []
        self.ended: list[EventNotice] = []  # end notices that came without a frame
        self.urgent = 0
        self.closed = False
        self._health = SinkHealth()
        self._lock = threading.Lock()

    def model(self, info: ModelInfo) -> None:
        self.models.append(info)

    def classified(self, item: Classified) -> None:
        self.items.append(item)
        self.count += 1

    def events_ended(self, notices: Sequence[EventNotice]) -> None:
        self.ended.extend(notices)

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        with self._lock:
            self.statuses.append(status)
            self.urgent += urgent

    def health(self) -> SinkHealth:
        return self._health

    def fail(self, reason: str) -> None:
        self._health = SinkHealth("failing", reason)

    def recover(self) -> None:
        self._health = SinkHealth()

    def close(self) -> None:
        self.closed = True
