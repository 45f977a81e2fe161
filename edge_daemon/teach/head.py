"""The taught last layer: a linear softmax classifier on the base network's embeddings (NumPy).

How it is fitted, and why:

* **One fixed scale, not a per-sample L2 norm.** Embeddings are divided by
  the median L2 norm of the training embeddings. A per-sample L2 norm would
  need an L2_NORMALIZATION op in the exported model: one more op outside
  the conv/softmax tail, and in a uint8 model its output is fixed at scale
  1/128, so the 1024 components of a unit vector (typically ~0.03) would keep
  about 2 bits each. With a fixed scale, folded into the weights, the
  exported 1x1 conv computes exactly the head's function and the graph keeps
  its ops (XNNPACK takes all of it, as before). Measured on 10 classes of
  real photos (camera-like variants, 5 held out per class, 3 seeds) the two
  are equally accurate: 86.7 / 86.7% with 3 samples per class, 90.0 / 91.3%
  with 5, 91.3 / 90.7% with 10, 90.0 / 90.0% with 20 (fixed / per-sample).
  Random scaling of the training embeddings (below) teaches the head what a
  per-sample norm would have given it: exposure changes the norm.
* **Imprinting when a class has fewer than ``IMPRINT_BELOW`` (5) samples.**
  Each class's weight is the normalised mean of its normalised embeddings
  times a temperature, no bias: nearest class mean by cosine (Coral's
  imprinting). With 1-4 samples a fitted bias mostly learns which class
  happened to get the easier frames; the class mean is the estimate with
  the fewest parameters. On the task above both are within noise of each
  other below 5 samples (imprint / softmax: 90.7 / 90.0% with 2, 86.7 /
  89.3% with 3, 91.3 / 90.0% with 5); with so few samples the model with
  no fitted parameters is the one that cannot overfit them.
* **Softmax regression otherwise**: multinomial logistic regression, weights
  started from the imprinted ones, full-batch gradient descent with momentum
  on the class-balanced cross-entropy (each sample weighted by
  N / (C x its class's count), so a class with 60 samples does not drown one
  with 8) plus an L2 weight penalty, which also keeps the logits in the
  range the quantized export covers well.
* **Augmentation in embedding space, cheap and seeded**: each sample is
  repeated ``AUGMENT`` times with its norm scaled by a random factor
  (exposure), 10% of its features dropped (occlusion, a feature the base
  network does not see this time) and a little Gaussian noise. Image-space
  variation (crops, flips) costs an invoke per copy and belongs to whoever
  embeds the samples.

Everything is deterministic for a given ``seed``. 3 classes x 30 samples
of 1024-d fit in 0.03-0.2 s on a loaded 2-core x86 machine (the regression
runs on the (N, N) Gram matrix, see ``_softmax_regression``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TeachError

IMPRINT_BELOW = 5  # samples in the smallest class below which the head is imprinted
TEMPERATURE = 10.0  # imprinted logits: cosine x this (cos 0.9 vs 0.7 -> 88% vs 12%)
AUGMENT = 2  # augmented copies per sample for softmax regression
SCALE_JITTER = 0.15  # log-normal sigma of the norm scaling
DROP = 0.1  # fraction of features zeroed per augmented copy
NOISE = 0.02  # Gaussian noise, relative to the normalised embedding's RMS value
WEIGHT_DECAY = 1e-3
STEPS = 300
LEARNING_RATE = 0.5
MOMENTUM = 0.9


@dataclass
class Head:
    """A linear classifier over embeddings: softmax(embedding @ weights.T + bias)."""

    classes: list[str]
    weights: np.ndarray  # (C, D) float32, applied to the embedding as the model gives it
    bias: np.ndarray  # (C,) float32
    method: str  # "softmax" | "imprint"
    scale: float = 1.0  # the fixed normalisation (1 / median norm), already in ``weights``
    counts: list[int] = field(default_factory=list)  # training samples per class

    @property
    def dims(self) -> int:
        return int(self.weights.shape[1])

    def as_json(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "method": self.method,
            "dims": self.dims,
            "scale": self.scale,
            "counts": list(self.counts),
        }


def logits(head: Head, X: np.ndarray) -> np.ndarray:
    """(N, C) logits of (N, D) embeddings."""
    out: np.ndarray = np.asarray(X, dtype=np.float32) @ head.weights.T + head.bias
    return out


def predict_proba(head: Head, X: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities of (N, D) embeddings (a (D,) vector gives (1, C))."""
    z = logits(head, np.atleast_2d(X)).astype(np.float64)
    return _softmax(z)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out: np.ndarray = v / np.maximum(n, 1e-12)
    return out


def _check(X: np.ndarray, y: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.intp)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise TeachError(f"embeddings {X.shape} and labels {y.shape} do not match")
    if len(classes) < 2:
        raise TeachError(
            "training needs at least two classes; add a class for what else the camera sees"
            " (e.g. 'nothing')"
        )
    if y.min() < 0 or y.max() >= len(classes):
        raise TeachError("a label index is outside the class list")
    missing = [c for i, c in enumerate(classes) if not np.any(y == i)]
    if missing:
        raise TeachError(f"no samples for {', '.join(missing)}; add some or remove the class")
    return X, y


def augment(X: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """``copies`` variations of each (normalised) embedding: (copies x N, D), seeded by ``rng``.

    Norm scaling (exposure), feature dropout (occlusion) and a little noise;
    features stay >= 0 as the base network's pooled ReLU6 outputs are.
    """
    if copies <= 0:
        return np.empty((0, X.shape[1]), dtype=np.float32)
    rep = np.repeat(X, copies, axis=0)
    scale = np.exp(rng.normal(0.0, SCALE_JITTER, size=(len(rep), 1)))
    keep = rng.random(rep.shape) >= DROP
    rms = np.sqrt(np.mean(X * X)) if X.size else 0.0
    noise = rng.normal(0.0, NOISE * rms, size=rep.shape)
    out: np.ndarray = np.maximum(rep * scale * keep / (1.0 - DROP) + noise, 0.0)
    return out.astype(np.float32)


def imprint(Xn: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) weights: each class's normalised mean of normalised embeddings."""
    U = _unit(Xn)
    means = np.stack([U[y == c].mean(axis=0) for c in range(n_classes)])
    out: np.ndarray = _unit(means)
    return out


def fit_head(X: np.ndarray, y: np.ndarray, classes: list[str], *, seed: int = 0) -> Head:
    """Fit the head on (N, D) float32 dequantized embeddings and (N,) class indices."""
    X, y = _check(X, y, classes)
    C = len(classes)
    counts = np.bincount(y, minlength=C)
    norms = np.linalg.norm(X, axis=1)
    median = float(np.median(norms[norms > 0])) if np.any(norms > 0) else 1.0
    scale = 1.0 / median
    Xn = X * scale
    if counts.min() < IMPRINT_BELOW:
        W0 = imprint(Xn, y, C) * TEMPERATURE
        return Head(
            list(classes),
            (W0 * scale).astype(np.float32),
            np.zeros(C, dtype=np.float32),
            "imprint",
            scale,
            counts.tolist(),
        )
    rng = np.random.default_rng(seed)
    Xa = np.concatenate([Xn, augment(Xn, AUGMENT, rng)])
    ya = np.concatenate([y, np.repeat(y, AUGMENT)])
    # Start from the imprinted weights, written over the original samples.
    gamma0 = np.zeros((len(Xa), C))
    unit_norms = np.maximum(np.linalg.norm(Xn, axis=1), 1e-12)
    for c in range(C):
        members = np.flatnonzero(y == c)
        mean = (Xn[members] / unit_norms[members, None]).mean(axis=0)
        gamma0[members, c] = TEMPERATURE / (
            len(members) * unit_norms[members] * max(float(np.linalg.norm(mean)), 1e-12)
        )
    W, b = _softmax_regression(Xa, ya, C, gamma0)
    return Head(
        list(classes),
        (W * scale).astype(np.float32),
        b.astype(np.float32),
        "softmax",
        scale,
        counts.tolist(),
    )


def _softmax_regression(
    X: np.ndarray, y: np.ndarray, C: int, gamma0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced, L2-penalised multinomial logistic regression by gradient descent.

    Solved in the span of the samples: with an L2 penalty and a start in
    that span, the weights stay ``W = gamma.T @ X``, so each step costs an
    (N, N) x (N, C) product on the Gram matrix instead of two (N, D) ones.
    """
    X64 = X.astype(np.float64)
    N = len(X64)
    K = X64 @ X64.T
    counts = np.bincount(y, minlength=C).astype(np.float64)
    weight = (N / (C * counts))[y] / N  # per-sample weight; sums to 1
    onehot = np.zeros((N, C))
    onehot[np.arange(N), y] = 1.0
    gamma = gamma0.astype(np.float64).copy()
    b = np.zeros(C)
    v_gamma = np.zeros_like(gamma)
    v_b = np.zeros_like(b)
    for _ in range(STEPS):
        # Nesterov momentum: the gradient at the look-ahead point.
        g_look, b_look = gamma + MOMENTUM * v_gamma, b + MOMENTUM * v_b
        p = _softmax(K @ g_look + b_look)
        g = (p - onehot) * weight[:, None]
        v_gamma = MOMENTUM * v_gamma - LEARNING_RATE * (g + WEIGHT_DECAY * g_look)
        v_b = MOMENTUM * v_b - LEARNING_RATE * g.sum(axis=0)
        gamma += v_gamma
        b += v_b
    W: np.ndarray = gamma.T @ X64
    return W, b
