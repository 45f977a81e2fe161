"""Prometheus metrics, read from the daemon's state when scraped.

``Tally`` is the little the inference thread adds per frame (an inference
histogram bucket, events by rule: a few integer increments); everything else
comes from the latest status object. ``DaemonCollector`` turns both into
metric families only when /metrics is asked for. prometheus_client (the web
extra) is imported here only.

Labels stay bounded: states, stages, outputs, rules and error kinds come from
fixed or configured sets; no label per class.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ..sinks.base import Classified

STATES = ("starting", "running", "degraded", "stopped", "failed")
GATE_STATES = ("off", "watching", "active")
SINK_STATES = ("ok", "connecting", "failing", "off")
ERROR_KINDS = ("source", "output", "reload", "other")
# Inference histogram bucket bounds, in seconds (a Coral: ~0.003; a Pi Zero 2: ~0.3).
BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
MAX_RULES = 64


class Tally:
    """Per-frame counts kept by the sink; written by the inference thread only."""

    def __init__(self) -> None:
        self._bounds_ms = [b * 1000.0 for b in BUCKETS]
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last is +Inf
        self.sum_ms = 0.0
        self.events: dict[str, int] = {}
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self._last_error_at: Optional[str] = None

    def frame(self, item: Classified) -> None:
        self.buckets[bisect.bisect_left(self._bounds_ms, item.inference_ms)] += 1
        self.sum_ms += item.inference_ms
        for notice in item.events:
            if notice.type == "start":
                rule = str(notice.event.get("rule", ""))
                if rule in self.events or len(self.events) < MAX_RULES:
                    self.events[rule] = self.events.get(rule, 0) + 1

    def status(self, status: dict[str, Any]) -> None:
        """Count an error each time the status object shows a new one."""
        at, message = status.get("last_error_at"), status.get("last_error")
        if at and message and at != self._last_error_at:
            self.errors[error_kind(status)] += 1
        self._last_error_at = at


def error_kind(status: dict[str, Any]) -> str:
    """Which part failed, judged from the status object's last_error."""
    message = str(status.get("last_error") or "")
    if message.startswith("reload failed"):
        return "reload"
    outputs = status.get("outputs") or {}
    if isinstance(outputs, dict) and any(
        isinstance(o, dict) and o.get("last_error") == message for o in outputs.values()
    ):
        return "output"
    if "prediction log" in message or "status file" in message:
        return "output"
    source = status.get("source")
    if (source and str(source) in message) or message == status.get("reason"):
        return "source"
    return "other"


def _num(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class DaemonCollector:
    """A prometheus_client collector over the sink's latest status and tally."""

    def __init__(
        self,
        status: Callable[[], Optional[dict[str, Any]]],
        tally: Tally,
        extra: Callable[[], dict[str, float]],
    ) -> None:
        self._status = status
        self._tally = tally
        self._extra = extra

    def describe(self) -> list[Any]:
        return []  # families vary with the state; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
            StateSetMetricFamily,
        )

        st = self._status() or {}
        state = st.get("state", "starting")
        yield StateSetMetricFamily(
            "edge_daemon_state",
            "The daemon's state (edge-daemon status)",
            {s: s == state for s in STATES},
        )
        yield CounterMetricFamily(
            "edge_daemon_frames", "Frames classified since start", value=_num(st.get("frames")) or 0
        )
        yield GaugeMetricFamily(
            "edge_daemon_fps", "Frames classified per second", value=_num(st.get("fps")) or 0.0
        )
        latency = GaugeMetricFamily(
            "edge_daemon_stage_latency_seconds",
            "Latency of each pipeline stage (moving average over ~20 frames)",
            labels=["stage"],
        )
        for stage, ms in (st.get("latency_ms") or {}).items():
            if _num(ms) is not None:
                latency.add_metric([str(stage)], float(ms) / 1000.0)
        yield latency

        t = self._tally
        counts = list(t.buckets)
        cumulative, running = [], 0
        for bound, n in zip([*(str(b) for b in BUCKETS), "+Inf"], counts):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "edge_daemon_inference_seconds",
            "Inference time of each frame",
            buckets=cumulative,
            sum_value=t.sum_ms / 1000.0,
        )
        yield CounterMetricFamily(
            "edge_daemon_reloads",
            "Successful reloads (SIGHUP, POST /api/reload)",
            value=_num(st.get("reloads")) or 0,
        )
        errors = CounterMetricFamily(
            "edge_daemon_errors", "Errors seen in the status object, by kind", labels=["kind"]
        )
        for kind, n in list(t.errors.items()):
            errors.add_metric([kind], n)
        yield errors
        preds = st.get("predictions") or []
        score = _num(preds[0].get("score")) if preds and isinstance(preds[0], dict) else None
        yield GaugeMetricFamily(
            "edge_daemon_top1_score",
            "Score of the latest frame's top prediction (0 before the first)",
            value=score or 0.0,
        )
        if st.get("model"):
            yield InfoMetricFamily(
                "edge_daemon_model",
                "The model the daemon runs",
                value={
                    "model": os.path.basename(str(st.get("model"))),
                    "sha256": str(st.get("model_sha256") or ""),
                    "runtime": str(st.get("runtime") or ""),
                    "delegate": str(st.get("delegate") or ""),
                },
            )
        outputs = GaugeMetricFamily(
            "edge_daemon_output_state",
            "Each output's health: 1 for its current state (ok, connecting, failing, off)",
            labels=["output", "state"],
        )
        for name, health in (st.get("outputs") or {}).items():
            current = health.get("state") if isinstance(health, dict) else None
            for s in SINK_STATES:
                outputs.add_metric([str(name), s], 1.0 if s == current else 0.0)
        yield outputs
        events = CounterMetricFamily(
            "edge_daemon_events", "Events started, by rule", labels=["rule"]
        )
        for rule, n in list(t.events.items()):
            events.add_metric([rule], n)
        yield events
        yield from gate_families(st.get("gate"), st.get("frames"))
        extra = self._extra()
        for name, (kind, doc) in _EXTRA.items():
            value = extra.get(name)
            if value is not None:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(name, doc, value=value)


def gate_families(gate: Any, frames: Any) -> Iterator[Any]:
    """The change gate's metrics, from the status object's ``gate`` (see edge_daemon.gate)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily

    g = gate if isinstance(gate, dict) else {}
    state = g.get("state", "off")
    yield StateSetMetricFamily(
        "edge_daemon_gate_state",
        "The change gate: off, watching (frames skipped while nothing changes) or active",
        {s: s == state for s in GATE_STATES},
    )
    classified = _num(g.get("frames_classified"))
    yield CounterMetricFamily(
        "edge_daemon_frames_seen",
        "Frames delivered by the source, classified or skipped by the gate",
        value=_num(g.get("frames_seen")) or _num(frames) or 0,
    )
    yield CounterMetricFamily(
        "edge_daemon_frames_classified",
        "Frames the model classified (the gate skips the rest)",
        value=classified if classified is not None else _num(frames) or 0,
    )
    yield GaugeMetricFamily(
        "edge_daemon_gate_skipped_ratio",
        "Share of the frames seen that the gate skipped (not classified)",
        value=_num(g.get("skipped_share")) or 0.0,
    )
    yield GaugeMetricFamily(
        "edge_daemon_gate_change_ratio",
        "Share of the region's sampled pixels that changed in the latest frame",
        value=_num(g.get("change_ratio")) or 0.0,
    )
    yield GaugeMetricFamily(
        "edge_daemon_gate_area_threshold",
        "gate.area_threshold: the change ratio that counts as motion",
        value=_num(g.get("area_threshold")) or 0.0,
    )


_EXTRA = {
    "edge_daemon_http_clients": ("gauge", "Open HTTP connections (streams included)"),
    "edge_daemon_http_refused": ("counter", "HTTP connections refused: max_clients reached"),
    "edge_daemon_jpeg_encodes": ("counter", "Frames encoded as JPEG for the page and API"),
}


def make_registry(collector: DaemonCollector) -> Any:
    """A registry with the daemon's collector and the process's own (RSS, CPU, fds)."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    return registry


def render(registry: Any) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST
