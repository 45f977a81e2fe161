"""Rule labels: whole lines, single names, groups, indices, and a hint for typos."""

from __future__ import annotations

import pytest

from edge_daemon.events.labels import LabelError, LabelIndex
from edge_daemon.labels import parse_labels
from tests.helpers import LABELS, shared_file


@pytest.fixture(scope="module")
def imagenet() -> LabelIndex:
    lines = parse_labels(shared_file(LABELS).read_text(), "labels")
    return LabelIndex(len(lines), lines.__getitem__)


def test_a_name_matches_by_whole_line_or_by_any_of_its_names(imagenet: LabelIndex) -> None:
    goldfinch = imagenet.lines.index("goldfinch, Carduelis carduelis")
    assert imagenet.resolve("goldfinch, Carduelis carduelis") == [goldfinch]
    assert imagenet.resolve("Carduelis carduelis") == [goldfinch]
    assert imagenet.resolve("goldfinch") == [goldfinch]
    assert imagenet.resolve("  GOLDFINCH ") == [goldfinch]


def test_an_unknown_name_says_the_closest_real_one(imagenet: LabelIndex) -> None:
    with pytest.raises(LabelError) as info:
        imagenet.resolve("goldfnch")
    assert str(info.value) == (
        'unknown label "goldfnch" (did you mean "goldfinch"?); write a name from the labels file'
    )


def test_birds_group_is_imagenets_59_bird_classes(imagenet: LabelIndex) -> None:
    birds = imagenet.resolve_all(["@birds"])
    names = [imagenet.lines[i].split(",")[0] for i in birds]
    assert len(birds) == 59
    for bird in ("goldfinch", "chickadee", "macaw", "albatross", "cock", "black swan"):
        assert bird in names
    for other in ("tench", "tiger shark", "Egyptian cat", "dragonfly"):
        assert other not in names


def test_groups_combine_with_names_and_indices_without_repeats(imagenet: LabelIndex) -> None:
    got = imagenet.resolve_all(["@cats", "Egyptian cat", "#1"])
    assert len(got) == 6
    assert 1 in got and list(got) == sorted(got)


def test_any_leaves_out_background(imagenet: LabelIndex) -> None:
    assert len(imagenet.resolve_all(["@any"])) == 1000


def test_a_group_needs_imagenet_labels() -> None:
    other = LabelIndex(2, ["cat", "dog"].__getitem__)
    with pytest.raises(LabelError, match="needs ImageNet's labels"):
        other.resolve("@birds")
    with pytest.raises(LabelError, match="groups are @any, @birds, @cats, @dogs"):
        other.resolve("@fish")
    with pytest.raises(LabelError, match=r"use #0 to #1"):
        other.resolve("#2")
