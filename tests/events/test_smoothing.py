"""Smoothing: a moving average over N frames of the whole output vector."""

from __future__ import annotations

import numpy as np
import pytest

from edge_daemon.events.smoothing import Smoother
from edge_daemon.postprocess import dequantize


def quantized(*pairs: tuple[int, int], size: int = 8) -> np.ndarray:
    out = np.zeros((1, size), np.uint8)
    for i, q in pairs:
        out[0, i] = q
    return out


def test_a_label_flickering_for_one_frame_does_not_take_top1() -> None:
    smoother = Smoother(5, 1 / 256, 0)
    tops = []
    for frame in range(12):
        flicker = frame == 6
        raw = quantized((1, 40), (2, 200)) if flicker else quantized((1, 200), (2, 40))
        tops.append(smoother.top_k(raw, 1)[0][0])
    assert tops == [1] * 12  # raw top-1 would be 2 at frame 6


def test_the_average_is_exact_over_the_window_and_forgets_older_frames() -> None:
    smoother = Smoother(3, 0.5, 10)
    frames = [quantized((0, v)) for v in (10, 40, 70, 100, 130)]
    got = [smoother.update(f)[0] for f in frames]
    real = [float(dequantize(f, 0.5, 10)[0]) for f in frames]
    assert got[0] == pytest.approx(real[0])  # fewer frames than the window: their mean
    assert got[1] == pytest.approx(np.mean(real[:2]))
    assert got[4] == pytest.approx(np.mean(real[2:5]))  # the first two are forgotten


def test_float_outputs_are_smoothed_too() -> None:
    smoother = Smoother(2, 0.0, 0)
    smoother.update(np.array([[0.9, 0.1]], np.float32))
    top = smoother.top_k(np.array([[0.2, 0.8]], np.float32), 2)
    assert [i for i, _ in top] == [0, 1]
    assert top[0][1] == pytest.approx(0.55)


def test_int8_outputs_with_a_negative_zero_point() -> None:
    smoother = Smoother(2, 1 / 256, -128)
    smoother.update(np.array([[-128, 127]], np.int8))
    scores = smoother.update(np.array([[127, -128]], np.int8))
    assert scores.tolist() == pytest.approx([0.498046875, 0.498046875])


def test_a_long_run_does_not_drift() -> None:
    rng = np.random.default_rng(1)
    smoother = Smoother(4, 1 / 256, 0)
    frames = rng.integers(0, 256, size=(5000, 1, 16), dtype=np.uint8)
    for f in frames:
        last = smoother.update(f)
    expected = frames[-4:].astype(np.float64).mean(axis=0).reshape(-1) / 256
    assert np.array_equal(last, expected.astype(np.float32))


@pytest.mark.parametrize(
    ("dtype", "zero", "window"), [(np.uint8, 0, 5), (np.int8, -128, 3), (np.uint8, 3, 300)]
)
def test_ranking_on_integer_sums_is_ranking_on_the_scores(
    dtype: type, zero: int, window: int
) -> None:
    from edge_daemon.postprocess import top_k

    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    fast, slow = Smoother(window, 1 / 256, zero), Smoother(window, 1 / 256, zero)
    for _ in range(40):
        # Few distinct values, so ties are common: lower index first on both paths.
        raw = rng.choice([info.min, 0, 5, info.max], size=(1, 50)).astype(dtype)
        assert fast.top_k(raw, 7, 0.1) == top_k(slow.update(raw), 7, 0.1)
