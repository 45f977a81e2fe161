"""The change detector: a sampled plane against an adapting background. Pure NumPy.

Each frame's plane is cast to float32 *before* it is compared (uint8
differences wrap: 16 - 32 is 240), and a pixel differs when it is more than
``pixel_threshold`` grey levels away from the background. It counts as
changed when its right-hand neighbour differs too: sensor noise strikes
single pixels at random, a subject covers neighbours together, so this
pairing drops nearly all the noise (a share p of noisy pixels leaves about
p squared) at the cost of one more array operation. The change value is the
share of the plane's pixel pairs that changed. The
background then moves ``adapt_rate`` of the way towards the frame, so slow
drifts (dusk, clouds) fade into it while a subject that arrives stands out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# The heat map's grid (columns, rows) over the region, as the page shows it.
GRID = (8, 6)


@dataclass(frozen=True, slots=True)
class Change:
    """One comparison: the share of pixels changed; ``first`` when there was no background."""

    ratio: float
    first: bool = False


class ChangeDetector:
    """Keeps the background and compares frames with it; buffers are reused across frames."""

    def __init__(self, pixel_threshold: float, adapt_rate: float) -> None:
        self.pixel_threshold = float(pixel_threshold)
        self.adapt_rate = float(adapt_rate)
        self.background: Optional[np.ndarray] = None
        self._frame: Optional[np.ndarray] = None
        self._diff: Optional[np.ndarray] = None
        self._abs: Optional[np.ndarray] = None
        self._differs: Optional[np.ndarray] = None
        self.mask: Optional[np.ndarray] = None  # the last comparison's changed pixel pairs
        self.peak_mask: Optional[np.ndarray] = None  # those of the largest change since reset

    def _start(self, plane: np.ndarray) -> None:
        shape = plane.shape
        self.background = plane.astype(np.float32)
        self._frame = np.empty(shape, np.float32)
        self._diff = np.zeros(shape, np.float32)
        self._abs = np.empty(shape, np.float32)
        self._differs = np.zeros(shape, bool)
        pairs = (shape[0], max(1, shape[1] - 1))
        self.mask = np.zeros(pairs, bool)
        self.peak_mask = np.zeros(pairs, bool)

    def compare(self, plane: np.ndarray) -> Change:
        """Compare a (h, w) uint8 plane with the background (started from it the first time)."""
        bg = self.background
        if bg is None or bg.shape != plane.shape:
            self._start(plane)
            return Change(0.0, first=True)
        frame, diff, size, differs, mask = (
            self._frame,
            self._diff,
            self._abs,
            self._differs,
            self.mask,
        )
        assert frame is not None and diff is not None and size is not None
        assert differs is not None and mask is not None
        np.copyto(frame, plane, casting="unsafe")  # the cast comes first
        np.subtract(frame, bg, out=diff)
        np.abs(diff, out=size)
        np.greater(size, self.pixel_threshold, out=differs)
        if differs.shape[1] > 1:
            np.logical_and(differs[:, 1:], differs[:, :-1], out=mask)
        else:
            np.copyto(mask, differs)
        return Change(np.count_nonzero(mask) / mask.size)

    def adapt(self) -> None:
        """Move the background ``adapt_rate`` of the way to the frame last compared."""
        if self.background is None or self._diff is None or not self.adapt_rate:
            return
        self._diff *= self.adapt_rate
        self.background += self._diff

    def rebaseline(self) -> None:
        """Make the frame last compared the background (a lighting change)."""
        if self.background is not None and self._frame is not None:
            np.copyto(self.background, self._frame)

    def keep_peak(self) -> None:
        """Remember the last comparison's mask as the largest change so far."""
        if self.mask is not None and self.peak_mask is not None:
            np.copyto(self.peak_mask, self.mask)


def grid_shares(mask: Optional[np.ndarray], grid: tuple[int, int] = GRID) -> list[list[float]]:
    """The share of changed pixels in each cell of a columns x rows grid, rows top first."""
    cols, rows = grid
    if mask is None or mask.size == 0:
        return [[0.0] * cols for _ in range(rows)]
    h, w = mask.shape
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    out = []
    for r in range(rows):
        band = mask[ys[r] : max(ys[r + 1], ys[r] + 1)]
        line = []
        for c in range(cols):
            cell = band[:, xs[c] : max(xs[c + 1], xs[c] + 1)]
            line.append(round(float(cell.mean()), 3) if cell.size else 0.0)
        out.append(line)
    return out
