"""Label files (plain, ``N label``, ``N: label``) and lining them up with a model's outputs."""

from __future__ import annotations

import logging

import pytest

from edge_daemon.errors import ModelError
from edge_daemon.labels import align_labels, parse_labels
from tests.helpers import LABELS, shared_file


def test_plain_lines() -> None:
    assert parse_labels("background\ntench, Tinca tinca\ngoldfish\n", "l.txt") == [
        "background",
        "tench, Tinca tinca",
        "goldfish",
    ]


def test_index_space_label_form() -> None:
    assert parse_labels("0 background\n1 tench, Tinca tinca\n2 goldfish\n", "l.txt") == [
        "background",
        "tench, Tinca tinca",
        "goldfish",
    ]


def test_index_colon_label_form() -> None:
    assert parse_labels("0: background\n1:tench\n2:  goldfish  \n", "l.txt") == [
        "background",
        "tench",
        "goldfish",
    ]


def test_indexed_lines_are_placed_by_their_index_not_their_order() -> None:
    assert parse_labels("2 goldfish\n0 background\n1 tench\n", "l.txt") == [
        "background",
        "tench",
        "goldfish",
    ]


def test_a_gap_in_the_indices_is_named_by_its_number() -> None:
    assert parse_labels("0 background\n2 goldfish\n", "l.txt") == ["background", "1", "goldfish"]


def test_labels_that_start_with_a_digit_stay_plain() -> None:
    # Only when every line is indexed is the number read as an index.
    text = "background\n3 wheeled car\n4x4 truck\n"
    assert parse_labels(text, "l.txt") == ["background", "3 wheeled car", "4x4 truck"]


def test_crlf_and_trailing_blank_lines() -> None:
    assert parse_labels("background\r\ntench\r\n\r\n\n", "l.txt") == ["background", "tench"]


def test_empty_labels_file_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"l\.txt: the labels file is empty"):
        parse_labels("\n\n", "l.txt")


def test_duplicate_index_is_an_error() -> None:
    with pytest.raises(ModelError, match="label index 1 appears twice"):
        parse_labels("0 a\n1 b\n1 c\n", "l.txt")


def test_the_fixture_labels_file() -> None:
    labels = parse_labels(shared_file(LABELS).read_text(encoding="utf-8"), str(LABELS))
    assert len(labels) == 1001
    assert labels[0] == "background"
    assert labels[89] == "macaw"


def test_equal_counts_index_directly() -> None:
    m = align_labels(["background", "tench", "goldfish"], 3, "l.txt", "m.tflite")
    assert m.offset == 0
    assert [m.label(i) for i in range(3)] == ["background", "tench", "goldfish"]


def test_one_label_short_shifts_by_one_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m = align_labels(["tench", "goldfish"], 3, "l.txt", "m.tflite")
    assert m.offset == 1
    assert [m.label(i) for i in range(3)] == ["background", "tench", "goldfish"]
    said = [r.getMessage() for r in caplog.records if "shifting labels by one" in r.getMessage()]
    assert len(said) == 1
    assert "3 outputs" in said[0] and "2 labels" in said[0]


@pytest.mark.parametrize(("labels", "outputs"), [(999, 1001), (1002, 1001), (1001, 1000)])
def test_other_count_mismatches_are_errors_naming_both_counts(labels: int, outputs: int) -> None:
    names = [f"class {i}" for i in range(labels)]
    with pytest.raises(ModelError) as info:
        align_labels(names, outputs, "l.txt", "m.tflite")
    message = str(info.value)
    assert message.startswith("l.txt: ")
    assert f"{labels} labels" in message
    assert f"{outputs} outputs" in message
    assert "m.tflite" in message
