"""Model output -> ranked predictions. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# Not frozen: ten are made for every frame, and a frozen dataclass sets each
# field through object.__setattr__ (about three times the cost of a plain one).
@dataclass(slots=True)
class Prediction:
    """One class the model saw, with its score in [0, 1] for softmax models."""

    label: str
    index: int
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "index": self.index, "score": round(self.score, 6)}


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of a quantized tensor: scale * (q - zero_point).

    The subtraction is done in int64: in the tensor's own dtype, uint8 0 minus
    a zero point of 128 would wrap around to 128 instead of -128.
    """
    if scale == 0.0:  # not quantized (a float tensor)
        return raw.astype(np.float32, copy=False).reshape(-1)
    centred = raw.reshape(-1).astype(np.int64) - np.int64(zero_point)
    return (centred * scale).astype(np.float32)


def top_k(scores: np.ndarray, k: int, min_score: float = 0.0) -> list[tuple[int, float]]:
    """The ``k`` best (index, score) pairs, best first; ties keep the lower index first."""
    flat = scores.reshape(-1)
    k = min(k, flat.size)
    if k <= 0:
        return []
    # argpartition finds the k-th largest score in O(n); every index scoring at
    # least that much is a candidate (ties at the cut-off included), so the
    # stable sort below keeps the lower index of a tie whatever k is.
    if k < flat.size:
        kth = flat[np.argpartition(-flat, k - 1)[k - 1]]
        part = np.flatnonzero(flat >= kth)
    else:
        part = np.arange(flat.size)
    order = part[np.lexsort((part, -flat[part]))][:k]
    return [(int(i), float(flat[i])) for i in order if flat[i] >= min_score]


def top_k_quantized(
    raw: np.ndarray, scale: float, zero_point: int, k: int, min_score: float = 0.0
) -> list[tuple[int, float]]:
    """``top_k(dequantize(raw, scale, zero_point), k, min_score)``, ranked on the raw integers.

    Dequantization, scale * (q - zero_point), is strictly increasing in q for
    any scale > 0 (TFLite's quantization scales always are), so the ranking of
    the raw integers is the ranking of the scores and only the k winners need
    dequantizing. ``~q`` reverses the order of any integer dtype without
    overflow (it is -q - 1 for signed types and max - q for unsigned ones), so
    one stable ascending sort ranks best first with ties in index order; for
    8- and 16-bit integers NumPy's stable sort is a radix sort, O(n). Float
    tensors (scale 0) go through ``top_k``.
    """
    flat = raw.reshape(-1)
    if scale <= 0.0 or flat.dtype.kind not in "iu":
        return top_k(dequantize(raw, scale, zero_point), k, min_score)
    if k <= 0:
        return []
    order = np.argsort(~flat, kind="stable")[:k]
    # The same arithmetic as dequantize() (int64, then float32), so the two
    # paths give identical scores.
    scores = ((flat[order].astype(np.int64) - np.int64(zero_point)) * scale).astype(np.float32)
    return [(i, s) for i, s in zip(order.tolist(), scores.tolist()) if s >= min_score]
