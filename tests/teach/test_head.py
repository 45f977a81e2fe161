"""The taught head: imprinting or softmax regression, balanced, seeded, on real embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from edge_daemon.config import parse_config
from edge_daemon.errors import TeachError
from edge_daemon.pipeline import Classifier
from edge_daemon.teach.head import IMPRINT_BELOW, fit_head, predict_proba
from tests.helpers import LABELS, MODELS, shared_file
from tests.teach.photos import photos, variant

SUBJECTS = ("chelsea.png", "parrot.jpg", "astronaut.png", "coffee.png", "rocket.jpg")
_EMBEDDINGS: dict[str, Any] = {}


@pytest.fixture
def embedded(loaded: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of camera-like variants of five real photos: 12 to train, 8 held out each."""
    if not _EMBEDDINGS:
        path = str(shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite"))
        cfg = parse_config(yaml.safe_dump({"model": {"path": path, "labels": str(LABELS)}}))
        clf = Classifier(loaded(cfg), top_k=1, min_score=0.0, resize="stretch")
        rng = np.random.default_rng(5)
        images = photos()
        rows: dict[str, list[Any]] = {"X": [], "y": [], "Xh": [], "yh": []}
        for index, name in enumerate(SUBJECTS):
            for i in range(20):
                frame = variant(images[name], rng, min_crop=0.5)
                rows["X" if i < 12 else "Xh"].append(clf.embed(frame))
                rows["y" if i < 12 else "yh"].append(index)
        _EMBEDDINGS.update({k: np.array(v) for k, v in rows.items()})
    e = _EMBEDDINGS
    return e["X"], e["y"], e["Xh"], e["yh"]


def test_softmax_head_classifies_held_out_frames(embedded: Any) -> None:
    X, y, Xh, yh = embedded
    head = fit_head(X, y, list(SUBJECTS))
    assert head.method == "softmax"
    assert head.weights.shape == (5, 256) and head.weights.dtype == np.float32
    p = predict_proba(head, Xh)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert (p.argmax(axis=1) == yh).mean() >= 0.95


def test_few_samples_are_imprinted(embedded: Any) -> None:
    X, y, Xh, yh = embedded
    few = np.concatenate([np.flatnonzero(y == c)[: IMPRINT_BELOW - 1] for c in range(5)])
    head = fit_head(X[few], y[few], list(SUBJECTS))
    assert head.method == "imprint"
    assert np.all(head.bias == 0)
    assert (predict_proba(head, Xh).argmax(axis=1) == yh).mean() >= 0.9


def test_one_sample_per_class_still_trains(embedded: Any) -> None:
    X, y, _, _ = embedded
    first = [int(np.flatnonzero(y == c)[0]) for c in range(5)]
    head = fit_head(X[first], y[first], list(SUBJECTS))
    assert (predict_proba(head, X[first]).argmax(axis=1) == y[first]).all()


def test_same_seed_same_head_other_seed_other_head(embedded: Any) -> None:
    X, y, _, _ = embedded
    a, b = fit_head(X, y, list(SUBJECTS), seed=3), fit_head(X, y, list(SUBJECTS), seed=3)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.bias, b.bias)
    c = fit_head(X, y, list(SUBJECTS), seed=4)
    assert not np.array_equal(a.weights, c.weights)


def test_a_small_class_is_not_drowned(embedded: Any) -> None:
    # 12 frames of each subject, but only 5 of the cat: the cat is still found.
    X, y, Xh, yh = embedded
    keep = np.concatenate([np.flatnonzero(y == 0)[:5], np.flatnonzero(y != 0)])
    head = fit_head(X[keep], y[keep], list(SUBJECTS))
    assert head.method == "softmax"
    cats = yh == 0
    assert (predict_proba(head, Xh[cats]).argmax(axis=1) == 0).mean() >= 0.85


def test_brighter_or_darker_frames_keep_their_class(embedded: Any) -> None:
    # A fixed scale, not a per-sample norm: a scaled embedding (exposure) must
    # still get its class, which the scale augmentation teaches.
    X, y, Xh, yh = embedded
    head = fit_head(X, y, list(SUBJECTS))
    for factor in (0.7, 1.4):
        assert (predict_proba(head, Xh * factor).argmax(axis=1) == yh).mean() >= 0.9


def test_one_class_is_refused_with_what_to_do() -> None:
    X = np.ones((6, 8), dtype=np.float32)
    with pytest.raises(TeachError, match=r"at least two classes.*nothing"):
        fit_head(X, np.zeros(6, dtype=int), ["open"])


def test_a_class_without_samples_is_named() -> None:
    X = np.ones((6, 8), dtype=np.float32)
    with pytest.raises(TeachError, match="no samples for closed"):
        fit_head(X, np.zeros(6, dtype=int), ["open", "closed"])
