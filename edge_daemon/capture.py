"""The capture thread: reads a FrameSource and hands over one frame at a time.

Capture overlaps inference: while the model runs on frame N, this thread is
already waiting for frame N+1. The hand-over is a single slot, never a queue:

* a live source (a camera) overwrites the slot, so inference always gets the
  newest frame and a slow model never makes frames pile up;
* a finite source (files) waits until the slot is taken, so every file is
  classified exactly once.

A failing source is closed and reopened with capped exponential back-off;
the fault is visible to the daemon (``fault``) until frames return. A fault
no retry can fix (PermanentSourceError: a format the daemon cannot read, a
camera that does not exist) is logged once, as an error, and retried only
every ``retry_max`` seconds, in case the config or hardware changed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from .errors import PermanentSourceError, first_line
from .sources.base import Frame, FrameSource

log = logging.getLogger(__name__)


class CaptureThread:
    """Owns a FrameSource on a background thread."""

    def __init__(
        self,
        source: FrameSource,
        *,
        live: bool,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        opened: bool = False,
    ) -> None:
        self.source = source
        self.live = live
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._cond = threading.Condition()
        self._slot: Optional[Frame] = None
        self._stop = threading.Event()
        self._exhausted = False
        self._fault: Optional[str] = None
        self._fault_since: Optional[float] = None
        self.faults = 0  # how many failures so far (reads or opens)
        self.reopens = 0
        self.permanent = False  # the current fault is one no retry fixes
        self._opened = opened  # the caller opened the source already
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    # -- the daemon's side ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def take(self, timeout: float) -> Optional[Frame]:
        """The next frame, or None if none arrived within ``timeout`` seconds."""
        with self._cond:
            if self._slot is None and not self._exhausted:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    @property
    def exhausted(self) -> bool:
        """A finite source has delivered its last frame and it has been taken."""
        with self._cond:
            return self._exhausted and self._slot is None

    @property
    def fault(self) -> Optional[str]:
        """Why the source is not delivering frames right now, or None."""
        with self._cond:
            return self._fault

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish and close the source; False if it did not within timeout."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            # Stuck inside the source (a hung camera): close from here so the
            # device is released before the process exits.
            log.warning(
                "capture thread did not stop within %.1f s; closing the source anyway", timeout
            )
            self.source.close()
            return False
        return True

    # -- the thread ----------------------------------------------------------
    def _set_fault(self, reason: Optional[str]) -> None:
        with self._cond:
            self._fault = reason
            self._fault_since = time.monotonic() if reason else None

    def _run(self) -> None:
        delay = self.retry_initial
        opened = self._opened
        try:
            while not self._stop.is_set():
                try:
                    if not opened:
                        self.source.open()
                        opened = True
                    frame = self.source.read()
                except Exception as exc:
                    reason = first_line(exc)
                    self.faults += 1
                    permanent = isinstance(exc, PermanentSourceError)
                    wait = self.retry_max if permanent else delay
                    if not permanent:
                        log.warning(
                            "%s: %s; reopening in %.1f s", self.source.describe(), reason, wait
                        )
                    elif reason != self.fault:
                        log.error("%s (no retry fixes this; trying again every %g s)", reason, wait)
                    self._set_fault(reason)
                    self.permanent = permanent
                    if opened:
                        self.source.close()
                        opened = False
                    if self._stop.wait(wait):
                        break
                    if not permanent:
                        delay = min(max(delay * 2, 0.01), self.retry_max)
                    self.reopens += 1
                    continue
                if self.fault is not None:
                    log.info("%s: frames are back", self.source.describe())
                    self._set_fault(None)
                    self.permanent = False
                delay = self.retry_initial
                if frame is None:
                    with self._cond:
                        self._exhausted = True
                        self._cond.notify_all()
                    return
                self._hand_over(frame)
        finally:
            self.source.close()

    def _hand_over(self, frame: Frame) -> None:
        with self._cond:
            if not self.live:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.5)
            self._slot = frame
            self._cond.notify_all()
