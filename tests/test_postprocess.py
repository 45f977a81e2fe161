"""Model output -> ranked predictions: dequantization, top-k, min_score."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_daemon.postprocess import Prediction, dequantize, top_k, top_k_quantized


def test_dequantize_uint8_below_the_zero_point_is_negative() -> None:
    # In uint8 arithmetic 0 - 128 wraps to 128; the real value is -128 * scale.
    raw = np.array([0, 127, 128, 255], dtype=np.uint8)
    got = dequantize(raw, 1 / 128, 128)
    assert got[0] < 0
    np.testing.assert_allclose(got, [-1.0, -1 / 128, 0.0, 127 / 128])


def test_dequantize_int8_with_negative_zero_point() -> None:
    # The int8io model's output: scale 1/256, zero point -128 (so -128 is probability 0).
    raw = np.array([-128, 0, 127], dtype=np.int8)
    np.testing.assert_allclose(dequantize(raw, 1 / 256, -128), [0.0, 0.5, 255 / 256])


def test_dequantize_uint8_softmax_output_spans_zero_to_one() -> None:
    raw = np.array([[0, 64, 255]], dtype=np.uint8)  # batch axis is flattened away
    got = dequantize(raw, 1 / 256, 0)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [0.0, 0.25, 255 / 256])


def test_dequantize_float_output_passes_through() -> None:
    raw = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    got = dequantize(raw, 0.0, 0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, raw[0])


@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=64),
    st.integers(0, 255),
    st.floats(1e-4, 1.0),
)
def test_dequantize_matches_exact_arithmetic(values: list[int], zero: int, scale: float) -> None:
    got = dequantize(np.array(values, dtype=np.uint8), scale, zero)
    want = np.array([(v - zero) * scale for v in values], dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_top_k_ranks_best_first() -> None:
    scores = np.array([0.1, 0.5, 0.05, 0.3, 0.05], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 3)] == [1, 3, 0]
    index, score = top_k(scores, 1)[0]
    assert index == 1 and score == pytest.approx(0.5)


def test_top_k_larger_than_the_output_returns_everything() -> None:
    scores = np.array([0.2, 0.8], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 10)] == [1, 0]


def test_min_score_drops_low_predictions() -> None:
    scores = np.array([0.1, 0.5, 0.05, 0.3], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 4, min_score=0.1)] == [1, 3, 0]
    assert top_k(scores, 4, min_score=0.9) == []


def test_ties_keep_the_lower_index_first() -> None:
    scores = np.array([0.0, 0.4, 0.2, 0.4, 0.0], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 5)] == [1, 3, 2, 0, 4]


def test_ties_at_the_cut_off_keep_the_lower_index() -> None:
    # A softmax output where most classes score 0: the third prediction must be
    # the same class whatever k is, so --top-k 3 is the start of --top-k 10.
    scores = np.zeros(1001, dtype=np.float32)
    scores[89], scores[500] = 0.9, 0.05
    assert [i for i, _ in top_k(scores, 3)] == [89, 500, 0]
    assert [i for i, _ in top_k(scores, 10)] == [89, 500, *range(8)]


@settings(max_examples=200)
@given(
    st.lists(st.integers(0, 8), min_size=1, max_size=60),
    st.integers(1, 70),
    st.sampled_from([0.0, 0.25, 0.5]),
)
def test_top_k_is_the_stable_ranking(levels: list[int], k: int, min_score: float) -> None:
    # Few distinct values, so ties are the rule rather than the exception.
    scores = np.array(levels, dtype=np.float32) / 8
    want = sorted(range(len(levels)), key=lambda i: (-scores[i], i))[:k]
    want = [i for i in want if scores[i] >= min_score]
    got = top_k(scores, k, min_score)
    assert [i for i, _ in got] == want
    assert [s for _, s in got] == [float(scores[i]) for i in want]


def test_prediction_as_dict_has_label_index_score() -> None:
    p = Prediction("macaw", 89, 0.99609375123)
    assert p.as_dict() == {"label": "macaw", "index": 89, "score": 0.996094}


@settings(max_examples=300)
@given(
    st.sampled_from([np.uint8, np.int8, np.int16]),
    st.lists(st.integers(0, 255), min_size=1, max_size=1001),
    st.integers(-128, 255),
    st.floats(1e-4, 1.0),
    st.integers(1, 1100),
    st.sampled_from([0.0, 0.01, 0.3]),
)
def test_top_k_on_quantized_output_equals_dequantize_then_top_k(
    dtype: type, levels: list[int], zero: int, scale: float, k: int, min_score: float
) -> None:
    # The daemon ranks the raw integers and dequantizes only the winners; users
    # must get exactly what ranking the dequantized scores gives: same classes,
    # same order (ties by index), same scores, same min_score cut. Levels
    # 0..255 are spread over each dtype's whole range, ends included.
    info = np.iinfo(dtype)
    step = (int(info.max) - int(info.min)) // 255
    raw = (np.array(levels, dtype=np.int64) * step + int(info.min)).astype(dtype)
    want = top_k(dequantize(raw, scale, zero), k, min_score)
    assert top_k_quantized(raw, scale, zero, k, min_score) == want


def test_top_k_on_quantized_output_of_a_softmax_full_of_ties() -> None:
    # uint8 softmax output: almost every class is 0; the cut-off tie keeps the lower indices.
    raw = np.zeros((1, 1001), dtype=np.uint8)
    raw[0, 89], raw[0, 500], raw[0, 7] = 250, 3, 3
    got = top_k_quantized(raw, 1 / 256, 0, 5)
    assert [i for i, _ in got] == [89, 7, 500, 0, 1]
    assert got[0][1] == pytest.approx(250 / 256)


def test_top_k_on_a_float_output_uses_the_scores_as_they_are() -> None:
    raw = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    assert [i for i, _ in top_k_quantized(raw, 0.0, 0, 2)] == [1, 2]
