"""What the MQTT sink publishes for events: payloads, per-rule states, discovery."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edge_daemon.events.rules import FIELDS
from edge_daemon.mqtt.events import (
    BestFrames,
    EventMessages,
    event_entities,
    event_messages,
    rule_states,
)
from edge_daemon.mqtt.hass import Topics
from edge_daemon.mqtt.hass import discovery_messages as hass_discovery
from edge_daemon.sinks.base import Classified, EventNotice


def event(**kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": 12,
        "rule": "feeder",
        "label": "goldfinch, Carduelis carduelis",
        "index": 12,
        "start": 1_800_000_000.25,
        "end": None,
        "score": 0.81234567,
        "frames": 4,
        "snapshot": None,
        "model": "m.tflite",
        "model_sha256": "ab",
        "cut_short": False,
        "last_seen": 1_800_000_001.0,
    }
    ev.update(kw)
    return ev


def test_start_publishes_the_event_not_retained_and_the_rule_on_retained() -> None:
    (ev_msg, state) = event_messages("edge/pi", EventNotice("start", event(), best=True))
    topic, payload, retain, qos = ev_msg
    body = json.loads(payload)
    assert (topic, retain, qos) == ("edge/pi/events", False, 1)
    assert body["type"] == "start" and set(FIELDS) <= set(body)
    assert body["start"] == "2027-01-15T08:00:00.250Z" and body["end"] is None
    assert body["score"] == 0.812346 and "last_seen" not in body
    assert state == ("edge/pi/rules/feeder", b"ON", True, 1)


def test_end_turns_the_rule_off() -> None:
    msgs = event_messages("b", EventNotice("end", event(end=1_800_000_009.0)))
    assert msgs[-1] == ("b/rules/feeder", b"OFF", True, 1)
    assert json.loads(msgs[0][1])["end"] == "2027-01-15T08:00:09.000Z"


def test_updates_only_for_a_better_frame_and_at_most_once_a_second() -> None:
    pub = EventMessages("b")
    assert pub(EventNotice("start", event(), best=True), 0.0)
    assert pub(EventNotice("update", event(score=0.9), best=True), 0.5) == []
    assert pub(EventNotice("update", event(score=0.9)), 1.5) == []  # a heartbeat
    assert len(pub(EventNotice("update", event(score=0.95), best=True), 1.6)) == 1
    assert len(pub(EventNotice("end", event(end=1.0)), 1.7)) == 2  # end always goes out


def test_rule_states_for_a_reconnect() -> None:
    assert rule_states("b", ["feeder", "cats"], ["cats"]) == [
        ("b/rules/feeder", b"OFF", True, 1),
        ("b/rules/cats", b"ON", True, 1),
    ]


def test_discovery_a_binary_sensor_per_rule_and_an_image_entity() -> None:
    messages = hass_discovery(
        discovery_prefix="homeassistant",
        device="edge_pi",
        topics=Topics("b"),
        extra=event_entities("b", ["feeder", "cats"]),
    )
    configs = {t: json.loads(p) for t, p in messages}
    feeder = configs["homeassistant/binary_sensor/edge_pi/event_feeder/config"]
    assert "homeassistant/binary_sensor/edge_pi/event_cats/config" in configs
    image = configs["homeassistant/image/edge_pi/event_snapshot/config"]
    assert feeder["state_topic"] == "b/rules/feeder"
    assert (feeder["payload_on"], feeder["payload_off"]) == ("ON", "OFF")
    # Like every other entity of the Pi: prefixed unique_id, origin, device, availability;
    # the entity ids are the ones earlier versions gave.
    assert feeder["unique_id"] == "edge_daemon_edge_pi_event_feeder"
    assert feeder["default_entity_id"] == "binary_sensor.edge_pi_event_feeder"
    assert image["unique_id"] == "edge_daemon_edge_pi_event_snapshot"
    assert image["default_entity_id"] == "image.edge_pi_event_snapshot"
    for config in (feeder, image):
        assert config["origin"]["name"] == "edge-daemon"
        assert config["device"]["identifiers"] == ["edge_daemon_edge_pi"]
        assert config["availability"] == [{"topic": "b/availability"}]
    assert (image["image_topic"], image["content_type"]) == ("b/snapshot", "image/jpeg")


def test_best_frames_hands_over_the_best_image_when_the_event_ends() -> None:
    frames = BestFrames()
    best = np.full((4, 4, 3), 200, np.uint8)
    worse = np.zeros((4, 4, 3), np.uint8)

    def item(image: np.ndarray, *notices: EventNotice) -> Classified:
        return Classified(1, "x", 0.0, image, [], [], 1.0, notices)

    assert frames.observe(item(best, EventNotice("start", event(), best=True))) == []
    best[...] = 0  # the source reuses its buffer
    ((ev, image),) = frames.observe(item(worse, EventNotice("end", event(end=5.0))))
    assert ev["id"] == 12 and int(image.mean()) == 200
