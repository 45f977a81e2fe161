"""/metrics: valid for promtool, read from the daemon's state, bounded labels."""

from __future__ import annotations

import subprocess
from typing import Any, Callable

import pytest

from edge_daemon.sinks.base import EventNotice
from tests.helpers import require_tool
from tests.web.conftest import Web, frame, status_object

pytest.importorskip("prometheus_client")


def samples(text: str) -> dict[str, float]:
    """name{labels} -> value, from the exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def scrape(w: Web) -> str:
    reply = w.request("/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    return reply.body.decode()


def test_promtool_accepts_the_metrics(web: Callable[..., Web]) -> None:
    promtool = require_tool("promtool", "apt install prometheus")
    w = web()
    for n in range(1, 4):
        w.sink.classified(
            frame(n, events=(EventNotice("start", {"id": n, "rule": "birds", "label": "x"}),))
        )
    w.sink.status(status_object(outputs={"http": {"state": "ok", "last_error": None}}))
    for text in (scrape(w), scrape(web())):  # with state, and before the first status
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr + text


def test_values_agree_with_the_status_object(web: Callable[..., Web]) -> None:
    w = web()
    w.sink.classified(frame(1, inference_ms=12.0))
    w.sink.classified(frame(2, inference_ms=300.0))
    status = status_object(
        frames=4321,
        score=0.625,
        reloads=2,
        outputs={"mqtt": {"state": "failing", "last_error": "broker gone"}},
    )
    w.sink.status(status)
    got = samples(scrape(w))
    served = w.request("/api/status").json()
    assert got["edge_daemon_frames_total"] == served["frames"] == 4321
    assert got["edge_daemon_fps"] == served["fps"]
    assert got["edge_daemon_reloads_total"] == 2
    assert got["edge_daemon_top1_score"] == served["predictions"][0]["score"]
    assert got['edge_daemon_state{edge_daemon_state="running"}'] == 1
    assert got['edge_daemon_state{edge_daemon_state="degraded"}'] == 0
    assert got['edge_daemon_stage_latency_seconds{stage="inference"}'] == pytest.approx(0.011)
    model = (
        f'edge_daemon_model_info{{delegate="xnnpack",model="mobilenet_v1_1.0_224_quant.tflite",'
        f'runtime="ai_edge_litert 2.3.0",sha256="{"0" * 64}"}}'
    )
    assert got[model] == 1
    assert got['edge_daemon_output_state{output="mqtt",state="failing"}'] == 1
    assert got['edge_daemon_output_state{output="mqtt",state="ok"}'] == 0
    assert got["edge_daemon_inference_seconds_count"] == 2
    assert got['edge_daemon_inference_seconds_bucket{le="0.02"}'] == 1
    assert got['edge_daemon_inference_seconds_bucket{le="0.5"}'] == 2
    assert got["edge_daemon_inference_seconds_sum"] == pytest.approx(0.312)


def test_counters_grow_between_scrapes(web: Callable[..., Web]) -> None:
    w = web()
    w.sink.classified(frame(1))
    w.sink.status(status_object(frames=10))
    first = samples(scrape(w))
    for n in range(2, 5):
        w.sink.classified(
            frame(n, events=(EventNotice("start", {"id": n, "rule": "cats", "label": "x"}),))
        )
    w.sink.status(
        status_object(
            frames=13,
            last_error="reload failed, still running m: x",
            last_error_at="2026-11-30T01:00:00.000Z",
        )
    )
    second = samples(scrape(w))
    assert second["edge_daemon_frames_total"] > first["edge_daemon_frames_total"]
    assert second["edge_daemon_inference_seconds_count"] == 4
    assert second['edge_daemon_events_total{rule="cats"}'] == 3
    assert second['edge_daemon_errors_total{kind="reload"}'] == 1
    w.sink.status(
        status_object(
            frames=14,
            last_error="reload failed, still running m: x",
            last_error_at="2026-11-30T01:00:00.000Z",
        )
    )
    third = samples(scrape(w))  # the same error seen again is not a new one
    assert third['edge_daemon_errors_total{kind="reload"}'] == 1


def test_no_label_per_class(web: Callable[..., Web]) -> None:
    w = web()
    labels = [f"class {i}" for i in range(50)]
    for n, label in enumerate(labels, 1):
        w.sink.classified(frame(n, label=label))
        w.sink.status(status_object(frames=n, label=label))
    text = scrape(w)
    assert not any(label in text for label in labels)
    # The series count does not grow with the number of classes seen.
    assert len(samples(text)) < 100


def test_many_rules_stay_bounded(web: Callable[..., Web]) -> None:
    w = web()
    for n in range(200):
        notice: Any = EventNotice("start", {"id": n, "rule": f"rule{n}", "label": "x"})
        w.sink.classified(frame(n + 1, events=(notice,)))
    rules = [k for k in samples(scrape(w)) if k.startswith("edge_daemon_events_total")]
    assert len(rules) == 64
