"""Home Assistant discovery payloads: one device per Pi, extendable with more entities."""

from __future__ import annotations

import json

from edge_daemon.mqtt.hass import Entity, Topics, discovery_messages, forget_subscription


def test_every_entity_shares_the_device_origin_and_availability() -> None:
    topics = Topics("cams/porch")
    extra = Entity("binary_sensor", "event_birds", {"name": "Birds", "state_topic": "x"})
    messages = discovery_messages(
        discovery_prefix="ha",
        device="porch",
        topics=topics,
        configuration_url="http://porch.lan:8080/",
        extra=[extra],
        model="Raspberry Pi 5 Model B Rev 1.0",
    )
    by_topic = {t: json.loads(p) for t, p in messages}
    assert list(by_topic)[-1] == "ha/binary_sensor/porch/event_birds/config"  # extras come last
    assert len(by_topic) == 7
    devices = {json.dumps(c["device"], sort_keys=True) for c in by_topic.values()}
    assert len(devices) == 1  # one device per Pi
    device = next(iter(by_topic.values()))["device"]
    assert device["configuration_url"] == "http://porch.lan:8080/"
    assert device["model"] == "Raspberry Pi 5 Model B Rev 1.0"
    for topic, c in by_topic.items():
        assert c["availability"] == [{"topic": "cams/porch/availability"}], topic
        assert c["origin"]["name"] == "edge-daemon"
        component = topic.split("/")[1]
        assert c["default_entity_id"].startswith(f"{component}.porch_")
    assert by_topic["ha/binary_sensor/porch/event_birds/config"]["name"] == "Birds"
    # mqtt forget's wildcard matches every one of them
    pattern = forget_subscription("ha", "porch").split("/")
    for topic in by_topic:
        parts = topic.split("/")
        assert all(p in ("+", q) for p, q in zip(pattern, parts)) and len(parts) == len(pattern)


def test_a_config_is_ours_only_when_its_device_is_this_pi() -> None:
    from edge_daemon.mqtt.hass import announced_by_us

    ours = dict(discovery_messages(discovery_prefix="ha", device="porch", topics=Topics("b")))
    assert all(announced_by_us(p.encode(), "porch") for p in ours.values())
    assert announced_by_us(b'{"dev": {"ids": "edge_daemon_porch"}}', "porch")  # abbreviated
    assert not announced_by_us(b'{"dev": {"ids": ["esphome_porch"]}}', "porch")
    assert not announced_by_us(b'{"device": {"identifiers": ["edge_daemon_porch2"]}}', "porch")
    assert not announced_by_us(b"not json", "porch")
    assert not announced_by_us(b"[1, 2]", "porch")
