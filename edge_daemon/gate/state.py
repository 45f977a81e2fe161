"""The gate's decisions: classify this frame or skip it, and why. A small state machine.

Per frame, in this order (``now`` is the caller's monotonic clock):

* ``off``: ``gate.mode: off`` -- every frame is classified;
* ``first``: the first frame (and the first after a reload) is classified
  and becomes the background;
* a change of at least ``lighting_threshold`` of the region at once is a
  lighting change (auto exposure, a lamp switched on, a cloud): the
  background is replaced by this frame at once and the frame is classified
  (``lighting``), at most once per ``hold`` seconds -- a flickering light
  cannot keep the model running. It does not count as motion;
* ``motion``: at least ``area_threshold`` of the region changed;
* ``hold``: within ``hold`` seconds of the last motion;
* ``event``: an event is open (its end must be seen);
* ``keepalive``: nothing classified for ``keepalive`` seconds;
* otherwise the frame is skipped.

The state is ``active`` while frames are classified for motion, hold or an
open event, else ``watching`` (``off`` when the gate is off).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np

from ..config import GateConfig, RegionConfig
from .detector import ChangeDetector, grid_shares
from .sample import gate_plane, plane_source

GateStateName = Literal["off", "watching", "active"]
ACTIVE_REASONS = frozenset({"motion", "hold", "event"})
# A report's peak change covers at least this many seconds (the page polls once a second).
PEAK_WINDOW = 1.0


class ChangeGate:
    """Decides per frame whether the model runs; counts what it saw and let through."""

    def __init__(self, settings: GateConfig) -> None:
        self.settings = settings
        self.detector = ChangeDetector(settings.pixel_threshold, settings.adapt_rate)
        self.state: GateStateName = "off" if settings.mode == "off" else "watching"
        self.reason: Optional[str] = None  # why the last classified frame was classified
        self.seen = 0
        self.classified = 0
        self.lighting_changes = 0
        self.ratio = 0.0  # the last frame's change value
        self.peak = 0.0  # the largest since the last report
        self.via: Optional[str] = None  # luma or software, once a frame was seen
        self._last_motion: Optional[float] = None
        self._last_classified: Optional[float] = None
        self._last_lighting: Optional[float] = None
        self._peak_since: Optional[float] = None

    @property
    def on(self) -> bool:
        return self.settings.mode != "off"

    def successor(self, settings: GateConfig) -> ChangeGate:
        """The gate for new settings or a new region (a reload): the counts carry on,
        the background starts again from the next frame."""
        gate = ChangeGate(settings)
        gate.seen, gate.classified = self.seen, self.classified
        gate.lighting_changes, gate.via = self.lighting_changes, self.via
        return gate

    def check(
        self, frame: Any, region: Optional[RegionConfig], now: float, event_open: bool
    ) -> Optional[str]:
        """``decide`` for a ``Frame``: its luma plane, else a sample of its region."""
        plane = None
        if self.on:
            luma = frame.luma
            self.via = plane_source(luma)
            plane = gate_plane(
                frame.image,
                roi=frame.roi,
                luma=luma,
                region=region,
                sample_width=self.settings.sample_width,
            )
        return self.decide(plane, now, event_open)

    def decide(self, plane: Optional[np.ndarray], now: float, event_open: bool) -> Optional[str]:
        """Why this frame should be classified, or None to skip it.

        ``plane`` is the region's greyscale sample (see ``gate_plane``); it is
        not looked at while the gate is off (pass None then).
        """
        self.seen += 1
        if self._peak_since is None:
            self._peak_since = now
        reason = self._reason(plane, now, event_open) if self.on else "off"
        if reason is not None:
            self.classified += 1
            self._last_classified = now
            self.reason = reason
        if self.on:
            self.state = "active" if reason in ACTIVE_REASONS else "watching"
        return reason

    def _reason(self, plane: Optional[np.ndarray], now: float, event_open: bool) -> Optional[str]:
        s, det = self.settings, self.detector
        assert plane is not None
        change = det.compare(plane)
        self.ratio = change.ratio
        if change.ratio > self.peak:
            self.peak = change.ratio
            det.keep_peak()
        if change.first:
            return "first"
        if change.ratio >= s.lighting_threshold:
            det.rebaseline()
            self.lighting_changes += 1
            if self._within(self._last_lighting, s.hold, now):
                return self._ongoing(now, event_open)
            self._last_lighting = now
            return "lighting"
        det.adapt()
        if change.ratio >= s.area_threshold:
            self._last_motion = now
            return "motion"
        return self._ongoing(now, event_open)

    def _ongoing(self, now: float, event_open: bool) -> Optional[str]:
        s = self.settings
        if self._within(self._last_motion, s.hold, now):
            return "hold"
        if event_open:
            return "event"
        if not self._within(self._last_classified, s.keepalive, now):
            return "keepalive"
        return None

    @staticmethod
    def _within(since: Optional[float], seconds: float, now: float) -> bool:
        return since is not None and now - since < seconds

    def report(self, now: float) -> dict[str, Any]:
        """The gate's part of the status object at ``now`` (the clock of ``decide``).

        ``peak_ratio`` and ``grid`` are the largest change of at least the last
        ``PEAK_WINDOW`` seconds, and where in the region it was.
        """
        s = self.settings
        skipped = self.seen - self.classified
        out: dict[str, Any] = {
            "mode": s.mode,
            "state": self.state,
            "via": self.via,
            "frames_seen": self.seen,
            "frames_classified": self.classified,
            "frames_skipped": skipped,
            "skipped_share": round(skipped / self.seen, 4) if self.seen else 0.0,
            "reason": self.reason,
        }
        if self.on:
            out.update(
                change_ratio=round(self.ratio, 5),
                peak_ratio=round(self.peak, 5),
                area_threshold=s.area_threshold,
                lighting_threshold=s.lighting_threshold,
                pixel_threshold=s.pixel_threshold,
                lighting_changes=self.lighting_changes,
                grid=grid_shares(self.detector.peak_mask),
            )
            if self._peak_since is not None and now - self._peak_since >= PEAK_WINDOW:
                self._peak_since, self.peak = now, 0.0
        return out
