"""The rules engine: noisy per-frame top-1 in, a few clean events out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from edge_daemon.config import RuleConfig, parse_config
from edge_daemon.errors import ConfigError
from edge_daemon.events.labels import LabelIndex
from edge_daemon.events.rules import FIELDS, HEARTBEAT, Rule, Tracker, compile_rules
from edge_daemon.postprocess import Prediction
from edge_daemon.sinks.base import EventNotice

LINES = ["background", "goldfinch, Carduelis carduelis", "house finch, linnet", "tabby, tabby cat"]
GOLDFINCH, FINCH, TABBY = 1, 2, 3


def rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "name": "feeder",
        "indices": frozenset({GOLDFINCH, FINCH}),
        "min_score": 0.5,
        "min_frames": 3,
        "end_after": 2.0,
        "cooldown": 0.0,
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def top(index: Optional[int], score: float = 0.9) -> Optional[Prediction]:
    return None if index is None else Prediction(LINES[index], index, score)


def play(tracker: Tracker, frames: list[tuple[float, Optional[int], float]]) -> list[EventNotice]:
    out: list[EventNotice] = []
    for t, index, score in frames:
        out.extend(tracker.update(top(index, score), t))
    return out


def kinds(notices: list[EventNotice]) -> list[tuple[str, int]]:
    return [(n.type, n.event["id"]) for n in notices if n.type != "update"]


def test_an_event_needs_min_frames_in_a_row_and_starts_at_the_first() -> None:
    tracker = Tracker([rule()], "m.tflite", "abc", next_id=7)
    notices = play(
        tracker,
        [(0.0, 1, 0.9), (0.1, 1, 0.9), (0.2, 0, 0.9), (0.3, 1, 0.8), (0.4, 1, 0.8), (0.5, 1, 0.8)],
    )
    assert kinds(notices) == [("start", 7)]
    start = notices[0]
    assert start.best
    assert start.event["start"] == 0.3 and start.event["frames"] == 3
    assert set(FIELDS) <= set(start.event)
    assert start.event["model"] == "m.tflite" and start.event["end"] is None


def test_low_scores_and_other_labels_do_not_count() -> None:
    tracker = Tracker([rule()], "m", "s")
    frames = [(i * 0.1, TABBY if i % 2 else GOLDFINCH, 0.9 if i % 2 else 0.4) for i in range(20)]
    assert play(tracker, frames) == []


def test_it_ends_end_after_seconds_after_the_last_sighting_at_that_sighting() -> None:
    tracker = Tracker([rule(end_after=2.0)], "m", "s")
    frames = [(t / 10, 1, 0.9) for t in range(10)]  # seen until 0.9
    frames += [(1.0 + t / 10, None, 0.0) for t in range(25)]  # gone
    notices = play(tracker, frames)
    assert kinds(notices) == [("start", 1), ("end", 1)]
    end = notices[-1].event
    assert end["end"] == pytest.approx(0.9)
    assert end["frames"] == 10 and end["cut_short"] is False


def test_best_frame_updates_carry_the_label_of_the_best_score() -> None:
    tracker = Tracker([rule()], "m", "s")
    notices = play(
        tracker, [(0.0, 1, 0.6), (0.1, 1, 0.6), (0.2, 1, 0.6), (0.3, 2, 0.95), (0.4, 1, 0.7)]
    )
    best = [n for n in notices if n.best]
    assert [n.event["score"] for n in best] == [0.6, 0.95]
    assert best[-1].event["label"] == LINES[FINCH]


def test_cooldown_keeps_the_rule_quiet_then_lets_it_fire_again() -> None:
    tracker = Tracker([rule(min_frames=1, end_after=0.0, cooldown=5.0)], "m", "s")
    frames = [(0.0, 1, 0.9), (1.0, None, 0.0), (2.0, 1, 0.9), (3.0, 1, 0.9), (6.5, 1, 0.9)]
    assert kinds(play(tracker, frames)) == [("start", 1), ("end", 1), ("start", 2)]


def test_flicker_smaller_than_end_after_keeps_one_event() -> None:
    tracker = Tracker([rule(min_frames=2, end_after=1.0)], "m", "s")
    frames = [(i * 0.1, 1 if i % 3 else None, 0.9) for i in range(60)]
    notices = play(tracker, frames)
    assert kinds(notices) == [("start", 1)]


def test_heartbeat_updates_tell_when_it_was_last_seen() -> None:
    tracker = Tracker([rule(min_frames=1)], "m", "s")
    step = HEARTBEAT / 4
    notices = play(tracker, [(t * step, 1, 0.9) for t in range(12)])
    beats = [n for n in notices if n.type == "update" and not n.best]
    assert len(beats) == 2  # one every HEARTBEAT seconds, not every frame
    assert beats[-1].event["last_seen"] == pytest.approx(8 * step)
    assert beats[-1].event["frames"] == 9


def test_two_rules_run_side_by_side_with_one_id_counter() -> None:
    cats = rule(name="cats", indices=frozenset({TABBY}), min_frames=1, end_after=0.0)
    tracker = Tracker([rule(min_frames=1, end_after=0.0), cats], "m", "s", next_id=3)
    notices = play(tracker, [(0.0, 1, 0.9), (0.1, 3, 0.9), (0.2, 1, 0.9)])
    assert [(n.type, n.event["rule"], n.event["id"]) for n in notices] == [
        ("start", "feeder", 3),
        ("end", "feeder", 3),
        ("start", "cats", 4),
        ("start", "feeder", 5),  # rules in config order, each on the same frame
        ("end", "cats", 4),
    ]
    assert tracker.next_id == 6


def test_status_lists_open_events_and_counts_today() -> None:
    tracker = Tracker([rule(min_frames=1, end_after=0.0)], "m", "s")
    now = 1_800_000_000.0
    tracker.day = None
    tracker.__post_init__()
    play(tracker, [(now, 1, 0.9), (now + 1, None, 0.0), (now + 2, 2, 0.8)])
    status = tracker.status(now + 3)
    assert [e["id"] for e in status["open"]] == [2]
    assert status["today"]["labels"] == {"goldfinch": 1, "house finch": 1}
    assert status["today"]["events"] == 2


def test_close_all_marks_open_events_cut_short() -> None:
    tracker = Tracker([rule(min_frames=1)], "m", "s")
    play(tracker, [(0.0, 1, 0.9), (0.5, 1, 0.9)])
    (end,) = tracker.close_all(9.0)
    assert end.type == "end" and end.event["cut_short"] is True
    assert end.event["end"] == 0.5


def test_reload_with_the_same_model_keeps_the_open_event() -> None:
    tracker = Tracker([rule(min_frames=1)], "m", "s")
    play(tracker, [(0.0, 1, 0.9)])
    same, ended = tracker.successor([rule(min_frames=1)], "m", "s")
    assert ended == () and [e["id"] for e in same.open_events()] == [1]
    other, ended = same.successor([rule(min_frames=1)], "m2", "t")
    assert [n.type for n in ended] == ["end"] and other.open_events() == []
    assert other.next_id == 2


def test_unknown_label_is_a_config_error_with_file_line_and_key() -> None:
    cfg = parse_config(
        "events:\n  rules:\n    - name: feeder\n      labels: [goldfnch]\n",
        name="/etc/edge.yaml",
        base=Path("/"),
    )
    labels = LabelIndex(len(LINES), LINES.__getitem__)
    with pytest.raises(ConfigError) as info:
        compile_rules(cfg.events.rules, labels, cfg.file)
    assert str(info.value) == (
        '/etc/edge.yaml:3: events.rules[0].labels: unknown label "goldfnch"'
        ' (did you mean "goldfinch"?); write a name from the labels file'
    )
    ok = [RuleConfig(name="x", labels=["linnet"])]
    assert compile_rules(ok, labels)[0].indices == frozenset({FINCH})
