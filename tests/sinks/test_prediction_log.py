"""The prediction log: one whole JSON line per record, change mode with heartbeat, rotation."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_daemon.errors import OutputError
from edge_daemon.postprocess import Prediction
from edge_daemon.sinks.prediction_log import (
    PredictionLines,
    PredictionLog,
    TimestampFormatter,
    iso_utc,
    json_line,
)


def record(frame: int, label: str = "macaw", index: int = 89) -> dict[str, Any]:
    return {
        "ts": iso_utc(1_700_000_000 + frame),
        "frame": frame,
        "image": f"{frame}.jpg",
        "model": "m.tflite",
        "predictions": [{"label": label, "index": index, "score": 0.99}],
    }


def lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_iso_utc() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"
    parsed = datetime.fromisoformat(iso_utc(1_700_000_000.5).replace("Z", "+00:00"))
    assert parsed == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=timezone.utc)


def test_every_mode_writes_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "predictions.jsonl"  # the folder is created
    log = PredictionLog(str(path))
    for frame in (1, 2, 3):
        assert log.write(record(frame), 89, now=float(frame))
    log.close()
    assert lines(path) == [record(1), record(2), record(3)]
    assert log.lines_written == 3


def test_non_ascii_labels_are_kept_as_text(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = PredictionLog(str(path))
    log.write(record(1, label="Dachshund, Teckel \u00e9"), 1)
    log.close()
    assert "Teckel \u00e9" in path.read_text(encoding="utf-8")
    assert lines(path)[0]["predictions"][0]["label"] == "Dachshund, Teckel \u00e9"


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    first = PredictionLog(str(path))
    first.write(record(1), 89)
    first.close()
    second = PredictionLog(str(path))
    second.write(record(2), 89)
    second.close()
    assert [line["frame"] for line in lines(path)] == [1, 2]


def test_change_mode_writes_when_top1_changes_and_on_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = PredictionLog(str(path), mode="change", heartbeat=10.0)
    written = [
        log.write(record(1), 89, now=100.0),  # first frame: a change from nothing
        log.write(record(2), 89, now=101.0),  # same top-1: nothing
        log.write(record(3, "cat", 286), 286, now=102.0),  # changed
        log.write(record(4, "cat", 286), 286, now=111.9),  # 9.9 s since the last line
        log.write(record(5, "cat", 286), 286, now=112.0),  # 10 s: heartbeat
        log.write(record(6, "cat", 286), 286, now=113.0),
        log.write(record(7), 89, now=114.0),  # changed back
    ]
    log.close()
    assert written == [True, False, True, False, True, False, True]
    assert [(line["frame"], line["reason"]) for line in lines(path)] == [
        (1, "change"),
        (3, "change"),
        (5, "heartbeat"),
        (7, "change"),
    ]


def test_change_mode_treats_no_prediction_as_a_top1(tmp_path: Path) -> None:
    # With min_score, a frame may have no prediction at all: that is a change too.
    log = PredictionLog(str(tmp_path / "p.jsonl"), mode="change", heartbeat=60.0)
    assert log.write(record(1), 89, now=0.0)
    assert log.write({**record(2), "predictions": []}, None, now=1.0)
    assert not log.write({**record(3), "predictions": []}, None, now=2.0)
    assert log.write(record(4), 89, now=3.0)
    log.close()


def test_every_mode_has_no_reason_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = PredictionLog(str(path))
    log.write(record(1), 89)
    log.close()
    assert "reason" not in lines(path)[0]


def test_rotation_by_size_keeps_whole_lines_and_numbered_backups(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    size = len(json.dumps(record(100), separators=(",", ":"))) + 1
    log = PredictionLog(str(path), max_bytes=1024, backups=2)
    total = 60
    for frame in range(100, 100 + total):
        log.write(record(frame), 89)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    kept: list[int] = []
    for name in ("p.jsonl.2", "p.jsonl.1", "p.jsonl"):
        file = tmp_path / name
        assert file.stat().st_size <= 1024
        kept += [line["frame"] for line in lines(file)]  # every line parses: none is torn
    # The newest lines survive, in order, with none missing between the files.
    assert kept == list(range(100 + total - len(kept), 100 + total))
    assert len(kept) > 2 * (1024 // size)


def test_rotation_without_backups_starts_the_log_again(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = PredictionLog(str(path), max_bytes=1024, backups=0)
    for frame in range(100, 130):
        log.write(record(frame), 89)
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]
    frames = [line["frame"] for line in lines(path)]
    assert frames[-1] == 129
    assert frames == list(range(frames[0], 130))
    assert path.stat().st_size <= 1024


def test_a_line_longer_than_max_bytes_is_still_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = PredictionLog(str(path), max_bytes=1024, backups=1)
    big = {**record(1), "predictions": [{"label": "x" * 2000, "index": 1, "score": 1.0}]}
    log.write(big, 1)
    log.write(record(2), 89)
    log.close()
    assert lines(tmp_path / "p.jsonl.1") == [big]
    assert [line["frame"] for line in lines(path)] == [2]


def test_unwritable_log_raises_output_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    path = blocker / "p.jsonl"
    log = PredictionLog(str(path))
    with pytest.raises(OutputError) as info:
        log.write(record(1), 89)
    assert str(info.value).startswith(f"{path}: cannot write the prediction log: ")
    assert "\n" not in str(info.value)


# -- the daemon's fast line encoder -----------------------------------------------------------
_texts = st.text(
    st.characters(blacklist_categories=("Cs",)), max_size=20
)  # any text JSON can hold: quotes, backslashes, control characters, non-ASCII


@settings(max_examples=300)
@given(
    st.floats(0, 4e9),
    st.integers(0, 10**9),
    _texts,
    _texts,
    _texts,
    st.dictionaries(st.integers(0, 1000), _texts, min_size=1, max_size=12),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12),
    st.sampled_from([None, "change", "heartbeat"]),
)
def test_fast_lines_are_byte_for_byte_the_json_of_the_record(
    ts: float,
    frame: int,
    image: str,
    model: str,
    delegate: str,
    labels: dict[int, str],
    scores: list[float],
    reason: str | None,
) -> None:
    # What users parse must not change with the encoder: same keys, same
    # order, same number spelling, same escaping as json.dumps of the record.
    indices = list(labels)
    preds = [
        Prediction(labels[indices[i % len(indices)]], indices[i % len(indices)], s)
        for i, s in enumerate(scores)
    ]
    record: dict[str, Any] = {
        "ts": iso_utc(ts),
        "frame": frame,
        "image": image,
        "model": model,
        "delegate": delegate,
        "predictions": [p.as_dict() for p in preds],
    }
    if reason is not None:
        record["reason"] = reason
    lines_ = PredictionLines(model, delegate, labels.__getitem__)
    assert lines_.line(ts, frame, image, preds, reason) == json_line(record)
    # Encoded again from the caches: still the same.
    assert lines_.line(ts, frame, image, preds, reason) == json_line(record)


@settings(max_examples=500)
@given(st.lists(st.floats(0, 4e9) | st.integers(0, 4 * 10**9).map(lambda s: s - 5e-7), max_size=8))
def test_timestamps_from_the_per_second_cache_match_iso_utc(times: list[float]) -> None:
    # Including the instants half a microsecond before a second, where the
    # rounding carries into the next second, and clocks that step back.
    fmt = TimestampFormatter()
    for t in times:
        assert fmt(t) == iso_utc(t)


def _sink_item(number: int) -> Any:
    import numpy as np

    from edge_daemon.sinks.base import Classified

    preds = [Prediction("macaw", 89, 0.9)]
    return Classified(
        number,
        f"{number}.jpg",
        1_700_000_000.0 + number,
        np.zeros((2, 2, 3), np.uint8),
        preds,
        preds,
        5.0,
    )


def _wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 10  # liveness, not speed: the writer flushes every 50 ms
    while time.monotonic() < deadline:
        if path.exists() and len(found := lines(path)) >= count:
            return found
        time.sleep(0.01)
    return lines(path) if path.exists() else []


def test_the_writer_goes_idle_and_still_writes_the_next_line_without_a_close(
    tmp_path: Path,
) -> None:
    """Once no line has come for a while the writer sleeps; a frame classified after
    that (a visit after an hour of skipped frames) is still on disk soon, not at exit."""
    import time

    from edge_daemon.sinks.base import ModelInfo
    from edge_daemon.sinks.prediction_log import PredictionLogSink

    path = tmp_path / "predictions.jsonl"
    sink = PredictionLogSink(PredictionLog(str(path)))
    labels = ["background", "macaw"]
    sink.model(
        ModelInfo("m.tflite", "m.tflite", "0" * 64, "rt", "cpu", labels, lambda i: "macaw", 2, 2)
    )
    try:
        sink.classified(_sink_item(1))
        assert [r["frame"] for r in _wait_for_lines(path, 1)] == [1]
        time.sleep(0.3)  # several flush periods without a line: the writer sleeps
        for n in (2, 3):
            sink.classified(_sink_item(n))
        assert [r["frame"] for r in _wait_for_lines(path, 3)] == [1, 2, 3]
    finally:
        sink.close()
    assert [r["frame"] for r in lines(path)] == [1, 2, 3]
