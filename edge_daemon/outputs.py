"""Where results go: the sink kinds, chosen by the config from an explicit registry.

The one module that names every output; the sinks themselves live in their
feature's package (``sinks/`` for the prediction log and status file, ``mqtt/``,
``events/``, ``web/``) and know nothing of each other.

Each kind names the part of the config it is built from (``section``) and a
factory that returns the sink, or None when the config leaves it off. On a
reload only the kinds whose section changed are rebuilt, so a broker
connection survives a model swap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .config import Config
from .sinks.base import Sink, SinkContext
from .sinks.prediction_log import PredictionLogSink
from .sinks.status_file import StatusFileSink


def _http(cfg: Config, ctx: SinkContext) -> Optional[Sink]:
    from .web.sink import make_http_sink  # the server and its imports only when wanted

    return make_http_sink(cfg, ctx)


def _http_section(c: Config) -> Any:
    from .teach import teach_dir  # where /api/teach keeps samples
    from .web.events import events_folder  # where /api/events reads from

    return (c.http, events_folder(c), teach_dir(c), c.teach.use)


@dataclass(frozen=True)
class SinkKind:
    """How to build one kind of sink from the config."""

    section: Callable[[Config], Any]
    make: Callable[[Config, SinkContext], Optional[Sink]]


def _events_section(c: Config) -> Any:
    from .events import events_dir

    e = c.events
    return (
        bool(e.rules),
        events_dir(c),
        e.snapshots,
        e.thumbnail,
        e.jpeg_quality,
        e.keep_days,
        e.max_bytes,
    )


def _make_events(cfg: Config, ctx: SinkContext) -> Optional[Sink]:
    from .events.sink import EventsSink

    return EventsSink.from_config(cfg, ctx)


SINKS: dict[str, SinkKind] = {
    "prediction_log": SinkKind(
        lambda c: (
            c.outputs.prediction_log,
            c.outputs.prediction_log_mode,
            c.outputs.heartbeat,
            c.outputs.max_bytes,
            c.outputs.backups,
        ),
        PredictionLogSink.from_config,
    ),
    "status_file": SinkKind(lambda c: c.outputs.status_file, StatusFileSink.from_config),
    # The rule names are part of it: they are Home Assistant entities and topics.
    "mqtt": SinkKind(
        lambda c: (c.mqtt, tuple(r.name for r in c.events.rules), c.events.jpeg_quality),
        lambda cfg, ctx: _mqtt().make_mqtt_sink(cfg, ctx),
    ),
    # Rules are not part of it: editing a rule keeps the writer (and open events).
    "events": SinkKind(_events_section, _make_events),
    "http": SinkKind(_http_section, _http),
}


def _mqtt() -> Any:
    from .mqtt import sink  # paho-mqtt is imported there only when a broker is configured

    return sink


def make_sinks(cfg: Config, ctx: SinkContext) -> dict[str, Sink]:
    """Every sink the config turns on, by kind, in registry order."""
    out: dict[str, Sink] = {}
    for kind, spec in SINKS.items():
        sink = spec.make(cfg, ctx)
        if sink is not None:
            out[kind] = sink
    return out
