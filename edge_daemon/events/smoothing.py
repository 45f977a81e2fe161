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
        self._floor = 0
        self._radix = False

    def reset(self) -> None:
        self._ring = self._sum = None
        self._pos = self._count = self._updates = 0

    def _start(self, flat: np.ndarray) -> None:
        self._quantized = self.scale > 0.0 and flat.dtype.kind in "iu"
        ring_dtype = np.int32 if self._quantized else np.float32
        self._ring = np.zeros((self.window, flat.size), dtype=ring_dtype)
        # 8-bit outputs (every TFLite classifier's): sums fit in int32, and sums
        # shifted to start at 0 fit in uint16 for windows up to 257 frames, where
        # NumPy's stable argsort is a radix sort (ranked best first, ties by index).
        self._sum = np.zeros(flat.size, dtype=np.int32 if self._quantized else np.float64)
        info = np.iinfo(flat.dtype) if self._quantized else None
        self._floor = int(info.min) * self.window if info is not None else 0
        self._radix = info is not None and (int(info.max) - int(info.min)) * self.window < 65536

    def update(self, raw: np.ndarray) -> np.ndarray:
        """Add one frame's raw output; the smoothed scores (dequantized, float32)."""
        total = self._add(raw.reshape(-1))
        if self._quantized:
            mean = total.astype(np.float64) / self._count - self.zero_point
            return (mean * self.scale).astype(np.float32)
        return (total / self._count).astype(np.float32)

    def _add(self, flat: np.ndarray) -> np.ndarray:
        """Put one frame in the window; the running sum."""
        if self._ring is None or self._ring.shape[1] != flat.size:
            self.reset()
            self._start(flat)
        ring, total = self._ring, self._sum
        assert ring is not None and total is not None
        row = ring[self._pos]
        np.subtract(total, row, out=total, casting="unsafe")
        row[...] = flat
        np.add(total, row, out=total, casting="unsafe")
        self._pos = (self._pos + 1) % self.window
        self._count = min(self._count + 1, self.window)
        self._updates += 1
        if not self._quantized and self._updates % _RESUM_EVERY == 0:
            total[...] = ring[: self._count].sum(axis=0, dtype=np.float64)
        return total

    def top_k(self, raw: np.ndarray, k: int, min_score: float = 0.0) -> list[tuple[int, float]]:
        """``update(raw)`` ranked: the ``k`` best smoothed (index, score) pairs.

        Quantized outputs are ranked on the integer sums (the mean is a
        strictly increasing function of the sum), so only the k winners are
        dequantized.
        """
        if not self._quantized or self._ring is None:
            return top_k(self.update(raw), k, min_score)
        total = self._add(raw.reshape(-1))
        if self._radix:
            key = (total - self._floor).astype(np.uint16)
            order = np.argsort(~key, kind="stable")[:k].tolist()
            best = [(i, int(total[i])) for i in order]
        else:
            best = [(i, int(s)) for i, s in top_k(total, k)]
        scale, zero, count = self.scale, self.zero_point, self._count
        out = [(i, float(np.float32((s / count - zero) * scale))) for i, s in best]
        return [(i, s) for i, s in out if s >= min_score]
