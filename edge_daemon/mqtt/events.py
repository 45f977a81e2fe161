"""What the MQTT sink publishes about events: topics, payloads, Home Assistant discovery. Pure.

Every function returns ``Message`` tuples ``(topic, payload, retain, qos)``; the
MQTT sink publishes them as they are. Topics under the sink's base topic:

- ``BASE/events``: ``{"type": "start"|"update"|"end", <event fields>}``, QoS 1,
  not retained (a history, not a state). ``update`` goes out when the best
  frame improves, at most once a second per event (``EventMessages``).
- ``BASE/rules/RULE``: ``ON`` while the rule has an open event, else ``OFF``;
  retained, QoS 1 (publish ``rule_states`` on every connect, since a killed
  daemon may have left ``ON``).
- ``BASE/snapshot``: the latest ended event's best frame, raw JPEG, retained.

Home Assistant: a ``binary_sensor`` per rule and an ``image`` entity for the
latest snapshot (``event_entities``, announced with the built-in entities).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..events.history import as_json
from ..sinks.base import Classified, EventNotice
from .hass import Entity

Message = tuple[str, bytes, bool, int]

UPDATE_INTERVAL = 1.0


def rule_topic(base: str, rule: str) -> str:
    return f"{base}/rules/{rule}"


def snapshot_topic(base: str) -> str:
    return f"{base}/snapshot"


def event_payload(notice: EventNotice) -> bytes:
    body = {"type": notice.type, **as_json(notice.event)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def event_messages(base: str, notice: EventNotice) -> list[Message]:
    """The messages for one notice (every ``update`` that has a new best frame)."""
    if notice.type == "update" and not notice.best:
        return []  # "still there" heartbeats are for the database
    out: list[Message] = [(f"{base}/events", event_payload(notice), False, 1)]
    rule = notice.event["rule"]
    if notice.type == "start":
        out.append((rule_topic(base, rule), b"ON", True, 1))
    elif notice.type == "end":
        out.append((rule_topic(base, rule), b"OFF", True, 1))
    return out


class EventMessages:
    """``event_messages`` with updates limited to one per ``interval`` seconds per event."""

    def __init__(self, base: str, interval: float = UPDATE_INTERVAL) -> None:
        self.base = base
        self.interval = interval
        self._last: dict[int, float] = {}

    def __call__(self, notice: EventNotice, now: float) -> list[Message]:
        key = int(notice.event["id"])
        if notice.type == "update" and (
            not notice.best or now - self._last.get(key, -1e18) < self.interval
        ):
            return []
        self._last[key] = now
        if notice.type == "end":
            self._last.pop(key, None)
        return event_messages(self.base, notice)


def rule_states(base: str, rules: Iterable[str], open_rules: Iterable[str] = ()) -> list[Message]:
    """The retained ON/OFF of every rule, for (re)connects."""
    on = set(open_rules)
    return [(rule_topic(base, r), b"ON" if r in on else b"OFF", True, 1) for r in rules]


def snapshot_message(base: str, jpeg: bytes) -> Message:
    return (snapshot_topic(base), jpeg, True, 1)


class BestFrames:
    """Keeps each open event's best frame so a sink can publish it when the event ends.

    ``observe(item)`` runs on the inference thread (it only keeps a copy of the
    frame); it returns ``(event, image)`` for each event that ended with this
    frame. Encode with ``edge_daemon.events.snapshots.encode_jpeg`` on the
    sink's own thread, then publish ``snapshot_message``.
    """

    def __init__(self) -> None:
        self._best: dict[int, np.ndarray] = {}

    def observe(self, item: Classified) -> list[tuple[dict[str, Any], np.ndarray]]:
        for notice in item.events:
            if notice.best:
                self._best[int(notice.event["id"])] = item.image.copy()
        return self.ended(item.events)

    def ended(self, notices: Iterable[EventNotice]) -> list[tuple[dict[str, Any], np.ndarray]]:
        """``(event, best image)`` of each event that ``notices`` end; forgets them."""
        out = []
        for notice in notices:
            if notice.type == "end":
                image = self._best.pop(int(notice.event["id"]), None)
                if image is not None:
                    out.append((notice.event, image))
        return out


def event_entities(base: str, rules: Sequence[str]) -> list[Entity]:
    """Home Assistant entities: a binary_sensor per rule and an image for the snapshot.

    They go through ``edge_daemon.mqtt.hass.discovery_messages`` like the
    built-in ones, so they get the same device, origin, availability and
    ``edge_daemon_``-prefixed unique_id (object ids ``event_<rule>`` and
    ``event_snapshot``; the entity ids stay ``<device>_event_...``).
    """
    out = [
        Entity(
            "binary_sensor",
            f"event_{rule}",
            {
                "name": f"Event {rule}",
                "state_topic": rule_topic(base, rule),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "occupancy",
            },
        )
        for rule in rules
    ]
    out.append(
        Entity(
            "image",
            "event_snapshot",
            {
                "name": "Latest event snapshot",
                "image_topic": snapshot_topic(base),
                "content_type": "image/jpeg",
            },
        )
    )
    return out
