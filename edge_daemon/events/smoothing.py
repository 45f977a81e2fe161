"""Smoothing scores over time: a moving average of the whole output vector.

``model.smoothing: N`` averages the model's outputs over the last N frames
(fewer while the first N arrive). Quantized outputs are summed as integers, so
the running sum is exact however long the daemon runs and the ranking is the
ranking of the sums; float outputs keep a float64 sum that is recomputed from
the window now and then so rounding cannot drift.
"""

from __future__ import annotations

import numpy as np

from ..postprocess import top_k

# Float sums are rebuilt from the window after this many updates.
_RESUM_EVERY = 4096


class Smoother:
    """The average of the last ``window`` output vectors, as top-k (index, score) pairs."""

    def __init__(self, window: int, scale: float, zero_point: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.scale = scale
        self.zero_point = zero_point
        self._ring: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._pos = 0
        self._count = 0
        self._updates = 0
        self._quantized = scale > 0.0

    def reset(self) -> None:
        self._ring = self._sum = None
        self._pos = self._count = self._updates = 0

    def _start(self, flat: np.ndarray) -> None:
        self._quantized = self.scale > 0.0 and flat.dtype.kind in "iu"
        ring_dtype = np.int32 if self._quantized else np.float32
        self._ring = np.zeros((self.window, flat.size), dtype=ring_dtype)
        self._sum = np.zeros(flat.size, dtype=np.int64 if self._quantized else np.float64)

    def update(self, raw: np.ndarray) -> np.ndarray:
        """Add one frame's raw output; the smoothed scores (dequantized, float32)."""
        flat = raw.reshape(-1)
        if self._ring is None or self._ring.shape[1] != flat.size:
            self.reset()
            self._start(flat)
        ring, total = self._ring, self._sum
        assert ring is not None and total is not None
        row = ring[self._pos]
        total -= row
        row[...] = flat
        total += row
        self._pos = (self._pos + 1) % self.window
        self._count = min(self._count + 1, self.window)
        self._updates += 1
        if not self._quantized and self._updates % _RESUM_EVERY == 0:
            total[...] = ring[: self._count].sum(axis=0, dtype=np.float64)
        if self._quantized:
            mean = total.astype(np.float64) / self._count - self.zero_point
            return (mean * self.scale).astype(np.float32)
        return (total / self._count).astype(np.float32)

    def top_k(self, raw: np.ndarray, k: int, min_score: float = 0.0) -> list[tuple[int, float]]:
        """``update(raw)`` ranked: the ``k`` best smoothed (index, score) pairs."""
        return top_k(self.update(raw), k, min_score)
