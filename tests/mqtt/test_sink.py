"""The MQTT sink against a real mosquitto: topics, payloads, discovery, failures, recovery."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Optional

import numpy as np
import pytest

from edge_daemon.config import MqttConfig, MqttTlsConfig, parse_config
from edge_daemon.errors import ConfigError
from edge_daemon.mqtt.sink import MqttSink, state_due
from edge_daemon.postprocess import Prediction
from edge_daemon.sinks.base import Classified, ModelInfo, SinkContext
from tests.broker import Mosquitto, Subscriber

jinja2 = pytest.importorskip("jinja2")

IMAGE = np.zeros((4, 4, 3), np.uint8)
BASE = "edge-daemon/pi-test"


def item(number: int, label: str = "macaw", index: int = 89, score: float = 0.93) -> Classified:
    preds = [Prediction(label, index, score), Prediction("toucan", 97, 0.04)]
    return Classified(number, f"{number}.jpg", time.time(), IMAGE, preds, preds, 12.5)


def status_object(state: str = "running", frames: int = 1) -> dict[str, Any]:
    return {
        "state": state,
        "reason": None,
        "frames": frames,
        "fps": 14.5,
        "model": "/m/mobilenet.tflite",
        "delegate": "xnnpack",
        "latency_ms": {"inference": 21.25},
        "predictions": [{"label": "macaw", "index": 89, "score": 0.93}],
    }


def mqtt_cfg(broker: Mosquitto, **overrides: Any) -> MqttConfig:
    section = broker.mqtt_config(**{"device": "pi-test", **overrides})
    return MqttConfig(**section)


def wait_until(what: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")


@pytest.fixture
def sinks() -> Any:
    made: list[MqttSink] = []

    def make(cfg: MqttConfig, ctx: Optional[SinkContext] = None) -> MqttSink:
        s = MqttSink(cfg, ctx)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def sub(mosquitto: Mosquitto) -> Any:
    s = Subscriber(mosquitto, "#")
    yield s
    s.close()


def render(template: str, payload: bytes) -> str:
    """A discovery value_template, rendered as Home Assistant does (value_json = the payload)."""
    env = jinja2.Environment()
    return env.from_string(template).render(value_json=json.loads(payload), value=payload)


def test_state_status_availability_and_discovery(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    sink = sinks(mqtt_cfg(mosquitto))
    sink.model(
        ModelInfo(
            "mobilenet.tflite", "/m/mobilenet.tflite", "ab", "litert", "cpu", [], str, 224, 224
        )
    )
    sink.status(status_object())
    sink.classified(item(1))

    sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
    state = sub.wait_for(f"{BASE}/state").json()
    assert state["label"] == "macaw" and state["index"] == 89
    assert state["score"] == pytest.approx(0.93)
    assert state["frame"] == 1 and state["model"] == "mobilenet.tflite"
    assert [p["label"] for p in state["predictions"]] == ["macaw", "toucan"]
    assert state["ts"].endswith("Z")
    status = sub.wait_for(f"{BASE}/status").json()
    assert status["state"] == "running" and status["fps"] == 14.5
    assert sink.health().state == "ok"

    # Home Assistant: one device, six entities, every one with availability and origin.
    configs = {}
    for comp, obj in [("sensor", "label"), ("sensor", "score"), ("sensor", "fps"),
                      ("sensor", "inference_ms"), ("sensor", "state"),
                      ("binary_sensor", "connectivity")]:  # fmt: skip
        msg = sub.wait_for(f"homeassistant/{comp}/pi-test/{obj}/config")
        configs[obj] = msg.json()
    for obj, c in configs.items():
        assert c["availability"] == [{"topic": f"{BASE}/availability"}], obj
        assert c["device"]["identifiers"] == ["edge_daemon_pi-test"]
        assert c["device"]["name"] == "pi-test" and c["device"]["model"]
        assert c["device"]["sw_version"]
        assert c["origin"]["name"] == "edge-daemon"
        assert c["unique_id"] == f"edge_daemon_pi-test_{obj}"
        assert c["default_entity_id"].endswith(f".pi_test_{obj}")
        assert "object_id" not in c
    assert "configuration_url" not in configs["label"]["device"]

    # The templates give the label and the score from the real payloads.
    state_msg = sub.last(f"{BASE}/state")
    status_msg = sub.last(f"{BASE}/status")
    assert state_msg is not None and status_msg is not None
    assert render(configs["label"]["value_template"], state_msg.payload) == "macaw"
    assert render(configs["score"]["value_template"], state_msg.payload) == "93.0"
    assert configs["score"]["unit_of_measurement"] == "%"
    assert configs["score"]["state_class"] == "measurement"
    assert render(configs["fps"]["value_template"], status_msg.payload) == "14.5"
    assert render(configs["inference_ms"]["value_template"], status_msg.payload) == "21.2"
    assert configs["fps"]["entity_category"] == "diagnostic"
    assert configs["inference_ms"]["entity_category"] == "diagnostic"
    assert render(configs["state"]["value_template"], status_msg.payload) == "running"
    assert configs["state"]["device_class"] == "enum"
    assert "running" in configs["state"]["options"] and "degraded" in configs["state"]["options"]
    conn = configs["connectivity"]
    assert conn["device_class"] == "connectivity" and conn["state_topic"] == f"{BASE}/availability"
    assert (conn["payload_on"], conn["payload_off"]) == ("online", "offline")
    # The top-k attributes come from a topic of their own.
    assert configs["label"]["json_attributes_topic"] == f"{BASE}/attributes"
    attrs = sub.wait_for(f"{BASE}/attributes").json()
    assert [p["label"] for p in attrs["predictions"]] == ["macaw", "toucan"]
    # Retained: a subscriber that comes later gets all of it at once.
    late = Subscriber(mosquitto, f"{BASE}/#")
    try:
        for topic in ("availability", "state", "status", "attributes"):
            assert late.wait_for(f"{BASE}/{topic}").retain, topic
        assert late.last(f"{BASE}/state") is not None
        assert late.wait_for(f"{BASE}/state").json()["label"] == "macaw"
    finally:
        late.close()

    # A clean stop says offline (retained: a late subscriber sees it too).
    sink.close()
    sub.wait_for(f"{BASE}/availability", lambda m: m.text == "offline")
    late = Subscriber(mosquitto, f"{BASE}/availability")
    try:
        msg = late.wait_for(f"{BASE}/availability")
        assert msg.text == "offline" and msg.retain
    finally:
        late.close()


def test_state_is_sent_on_a_label_change_not_per_frame(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    sink = sinks(mqtt_cfg(mosquitto, min_interval=0.0, heartbeat=3600.0))
    sink.classified(item(1))
    sub.wait_for(f"{BASE}/state")
    for n in range(2, 60):
        sink.classified(item(n))  # the same label, frame after frame
        time.sleep(0.002)
    sink.classified(item(60, "toucan", 97, 0.8))
    changed = sub.wait_for(f"{BASE}/state", lambda m: m.json()["label"] == "toucan")
    assert changed.json()["frame"] == 60
    labels = [m.json()["label"] for m in sub.on(f"{BASE}/state")]
    assert labels == ["macaw", "toucan"]


def test_state_due_rules() -> None:
    # nothing sent yet: now; a change: after min_interval; the same label: after heartbeat
    assert state_due(None, None, 5, min_interval=0.2, heartbeat=60) == float("-inf")
    assert state_due(5, 100.0, 6, min_interval=0.2, heartbeat=60) == pytest.approx(100.2)
    assert state_due(5, 100.0, 5, min_interval=0.2, heartbeat=60) == pytest.approx(160.0)
    # the same label, its score 5 points or more away from the one sent: after min_interval
    due = {s: state_due(5, 100.0, 5, min_interval=0.2, heartbeat=60, last_score=0.90, score=s)
           for s in (0.95, 0.85, 0.949, 0.93)}  # fmt: skip
    assert due == pytest.approx({0.95: 100.2, 0.85: 100.2, 0.949: 160.0, 0.93: 160.0})


def test_a_label_announced_mid_transition_gets_its_true_score_soon(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    # model.smoothing: the label flips when the new class's average overtakes the old
    # one's (about 50%); the next frames climb to 99.6% within min_interval.
    sink = sinks(mqtt_cfg(mosquitto, min_interval=0.5, heartbeat=3600.0))
    sink.classified(item(1, "toucan", 97, 0.9))
    sub.wait_for(f"{BASE}/state")
    time.sleep(0.6)
    sink.classified(item(2, "macaw", 89, 0.498))
    flipped = sub.wait_for(f"{BASE}/state", lambda m: m.json()["label"] == "macaw")
    assert flipped.json()["score"] == pytest.approx(0.498)
    for n, score in enumerate([0.6, 0.72, 0.85, 0.93, 0.97, 0.996], start=3):
        sink.classified(item(n, "macaw", 89, score))
    # The score is sent again without a label change, long before the heartbeat.
    settled = sub.wait_for(f"{BASE}/state", lambda m: m.json()["score"] > 0.99, timeout=10)
    assert settled.json()["label"] == "macaw" and settled.json()["frame"] == 8
    assert settled.at - flipped.at >= 0.4  # rate-limited by min_interval (0.5 s)


def test_the_state_is_not_resent_for_small_moves(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    sink = sinks(mqtt_cfg(mosquitto, min_interval=0.0, heartbeat=3600.0))
    sink.classified(item(1, score=0.90))
    sub.wait_for(f"{BASE}/state")
    for n, score in enumerate([0.91, 0.93, 0.94, 0.92, 0.96, 0.97, 0.99], start=2):
        sink.classified(item(n, score=score))
        time.sleep(0.05)
    sub.wait_for(f"{BASE}/state", lambda m: m.json()["score"] == pytest.approx(0.96))
    time.sleep(0.5)
    scores = [m.json()["score"] for m in sub.on(f"{BASE}/state")]
    # 0.90 sent; 0.96 is the first 5 points away from it; 0.99 only 3 from 0.96.
    assert scores == pytest.approx([0.90, 0.96])


def test_attributes_change_only_when_something_a_reader_sees_changes(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    sink = sinks(mqtt_cfg(mosquitto, attributes_interval=0.0))
    sink.classified(item(1))
    first = sub.wait_for(f"{BASE}/attributes").json()
    assert "frame" not in first  # a number that changes with every message: a recorder row
    for n in range(2, 30):  # new frames, the same top-k
        sink.classified(item(n, score=0.93 + (n % 3) * 0.01))
        time.sleep(0.01)
    sink.classified(item(30, "toucan", 97, 0.8))  # a new top-1
    sub.wait_for(f"{BASE}/attributes", lambda m: m.json()["predictions"][0]["label"] == "toucan")
    sent = [m.json() for m in sub.on(f"{BASE}/attributes")]
    assert len(sent) == 2, sent


def test_broker_down_at_start_then_everything_arrives(
    tmp_path: Any, broker_certs: Any, sinks: Any
) -> None:
    broker = Mosquitto(tmp_path / "late-broker", broker_certs)  # not started yet
    sink = sinks(mqtt_cfg(broker))
    sink.status(status_object())
    sink.classified(item(1))
    health = wait_until(lambda: sink.health() if sink.health().state == "failing" else None)
    assert "connection refused" in (health.error or "")
    assert f"127.0.0.1:{broker.port}" in (health.error or "")
    broker.start()
    try:
        sub = Subscriber(broker, "#")
        try:
            sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
            assert sub.wait_for(f"{BASE}/state").json()["label"] == "macaw"
            sub.wait_for(f"{BASE}/status")
            sub.wait_for("homeassistant/sensor/pi-test/label/config")
            wait_until(lambda: sink.health().state == "ok")
        finally:
            sub.close()
    finally:
        broker.kill()


def test_broker_restarted_mid_run(mosquitto: Mosquitto, sinks: Any) -> None:
    sink = sinks(mqtt_cfg(mosquitto))
    sink.classified(item(1))
    sub = Subscriber(mosquitto, "#")
    sub.wait_for(f"{BASE}/state")
    sub.close()
    mosquitto.kill()  # persistence is off: the restarted broker has forgotten everything
    wait_until(lambda: sink.health().state == "failing")
    assert "connection lost" in (sink.health().error or "")
    sink.classified(item(2, "toucan", 97, 0.8))
    mosquitto.start()
    sub = Subscriber(mosquitto, "#")
    try:
        sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
        state = sub.wait_for(f"{BASE}/state").json()
        assert (state["label"], state["frame"]) == ("toucan", 2)  # the newest, not a backlog
        sub.wait_for("homeassistant/sensor/pi-test/score/config")
        wait_until(lambda: sink.health().state == "ok")
    finally:
        sub.close()


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("password", "refused the login of user 'edge'"),
        ("host", "cannot resolve no-such-host.invalid"),
        ("ca", "TLS certificate is not trusted"),
    ],
)
def test_a_broker_that_cannot_be_used_gives_one_clear_reason(
    mosquitto: Mosquitto, tmp_path: Any, sinks: Any, case: str, expect: str
) -> None:
    overrides: dict[str, Any] = {}
    if case == "password":
        wrong = tmp_path / "wrong-password"
        wrong.write_text("not-the-password\n")
        overrides["password_file"] = str(wrong)
    elif case == "host":
        overrides["host"] = "no-such-host.invalid"
    else:
        assert mosquitto.certs is not None
        overrides["port"] = mosquitto.tls_port
        overrides["tls"] = MqttTlsConfig(ca_file=str(mosquitto.certs.wrong_ca))
    sink = sinks(mqtt_cfg(mosquitto, **overrides))
    for n in range(1, 20):
        sink.classified(item(n))  # returns at once whatever the broker does
    health = wait_until(lambda: sink.health() if sink.health().state == "failing" else None)
    assert expect in (health.error or "")
    assert "\n" not in (health.error or "")
    # The reason stays the same across retries (the daemon logs each new one once).
    time.sleep(2.5)
    assert sink.health().error == health.error


def test_tls_with_the_right_ca(mosquitto: Mosquitto, sinks: Any) -> None:
    assert mosquitto.certs is not None
    cfg = mqtt_cfg(
        mosquitto, port=mosquitto.tls_port, tls=MqttTlsConfig(ca_file=str(mosquitto.certs.ca))
    )
    sub = Subscriber(mosquitto, f"{BASE}/#")
    try:
        sink = sinks(cfg)
        sink.classified(item(1))
        assert sub.wait_for(f"{BASE}/state").json()["label"] == "macaw"
        assert sink.health().state == "ok"
    finally:
        sub.close()


def test_discovery_is_sent_again_when_home_assistant_comes_online(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    sinks(mqtt_cfg(mosquitto))
    topic = "homeassistant/sensor/pi-test/label/config"
    sub.wait_for(topic)
    mark = sub.mark()
    sub.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    sub.wait_for(topic, after=mark)


def test_discovery_off(mosquitto: Mosquitto, sub: Subscriber, sinks: Any) -> None:
    sink = sinks(mqtt_cfg(mosquitto, discovery=False))
    sink.classified(item(1))
    sub.wait_for(f"{BASE}/state")
    time.sleep(0.5)
    assert not [m for m in sub.messages if m.topic.startswith("homeassistant/")]


def test_reload_command_only_when_enabled(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    reloads: list[float] = []
    event = threading.Event()

    def reload() -> None:
        reloads.append(time.time())
        event.set()

    sink_off = sinks(mqtt_cfg(mosquitto, device="pi-off"), SinkContext(request_reload=reload))
    sinks(mqtt_cfg(mosquitto, commands=True), SinkContext(request_reload=reload))
    sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
    sub.wait_for("edge-daemon/pi-off/availability", lambda m: m.text == "online")
    sub.client.publish("edge-daemon/pi-off/command/reload", "", qos=1).wait_for_publish(5)
    sub.client.publish(f"{BASE}/command/reload", "", qos=1).wait_for_publish(5)
    assert event.wait(10)
    time.sleep(0.5)
    assert len(reloads) == 1  # only the sink with commands: true obeyed
    assert sink_off.health().state == "ok"


def test_a_password_in_the_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:3: mqtt\.password: .*mqtt\.password_file"):
        parse_config("mqtt:\n  host: broker\n  password: hunter2\n", name="c.yaml")


def test_an_unreadable_password_file_is_a_config_error(tmp_path: Any) -> None:
    cfg = MqttConfig(host="127.0.0.1", username="u", password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"mqtt\.password_file not found"):
        MqttSink(cfg)


def notice(kind: str, event_id: int, best: bool = True) -> Any:
    from edge_daemon.sinks.base import EventNotice

    event = {"id": event_id, "rule": "birds", "label": "macaw", "index": 89, "start": 1.0,
             "end": 2.0 if kind == "end" else None, "score": 0.9, "frames": 3}  # fmt: skip
    return EventNotice(kind, event, best)  # type: ignore[arg-type]


def with_events(n: int, *notices: Any) -> Classified:
    base = item(n)
    image = np.full((48, 64, 3), 120, np.uint8)
    return Classified(n, base.name, base.captured_at, image, base.predictions, base.smoothed,
                      base.inference_ms, tuple(notices))  # fmt: skip


def test_events_rule_states_snapshot_and_their_entities(
    mosquitto: Mosquitto, sub: Subscriber, sinks: Any
) -> None:
    sink = MqttSink(mqtt_cfg(mosquitto), rules=["birds", "cats"])
    try:
        sub.wait_for(f"{BASE}/rules/cats", lambda m: m.payload == b"OFF")
        sink.classified(with_events(1, notice("start", 7)))
        sub.wait_for(f"{BASE}/rules/birds", lambda m: m.payload == b"ON")
        start = sub.wait_for(f"{BASE}/events").json()
        assert (start["type"], start["rule"], start["id"]) == ("start", "birds", 7)
        sink.classified(with_events(2, notice("end", 7, best=False)))
        sub.wait_for(f"{BASE}/rules/birds", lambda m: m.payload == b"OFF")
        end = sub.wait_for(f"{BASE}/events", lambda m: m.json()["type"] == "end")
        assert end.json()["id"] == 7
        snapshot = sub.wait_for(f"{BASE}/snapshot")
        assert snapshot.payload[:2] == b"\xff\xd8"  # the best frame, as JPEG
        # Home Assistant: an event binary_sensor per rule and the snapshot's image entity.
        rule = sub.wait_for("homeassistant/binary_sensor/pi-test/event_birds/config")
        config = rule.json()
        assert config["state_topic"] == f"{BASE}/rules/birds"
        assert config["availability"] == [{"topic": f"{BASE}/availability"}]
        assert config["device"]["identifiers"] == ["edge_daemon_pi-test"]
        image = sub.wait_for("homeassistant/image/pi-test/event_snapshot/config").json()
        assert image["image_topic"] == f"{BASE}/snapshot"
        for c in (config, image):  # like every other entity of the Pi
            assert c["origin"]["name"] == "edge-daemon"
            assert c["unique_id"].startswith("edge_daemon_pi-test_event_")
    finally:
        sink.close()


def test_events_wait_for_the_broker_in_a_bounded_queue(mosquitto: Mosquitto, sinks: Any) -> None:
    sink = MqttSink(mqtt_cfg(mosquitto, max_queued=5), rules=["birds"])
    try:
        sub = Subscriber(mosquitto, f"{BASE}/#")
        sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
        sub.close()
        mosquitto.kill()
        wait_until(lambda: sink.health().state == "failing")
        for i in range(1, 21):  # 20 events start while the broker is away
            sink.classified(with_events(i, notice("start", i)))
        wait_until(lambda: sink.dropped > 0)
        mosquitto.start()
        sub = Subscriber(mosquitto, f"{BASE}/#")
        try:
            sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
            sub.wait_for(f"{BASE}/events")
            time.sleep(1.0)
            delivered = [m.json()["id"] for m in sub.on(f"{BASE}/events")]
            assert 1 <= len(delivered) <= 5, delivered  # what waited, never more than max_queued
            assert sink.dropped >= 15
        finally:
            sub.close()
    finally:
        sink.close()


def test_a_removed_rule_leaves_no_ghost_entity(mosquitto: Mosquitto, sub: Subscriber) -> None:
    cats = "homeassistant/binary_sensor/pi-test/event_cats/config"
    first = MqttSink(mqtt_cfg(mosquitto), rules=["birds", "cats"])
    sub.wait_for(cats, lambda m: bool(m.payload))
    first.close()
    second = MqttSink(mqtt_cfg(mosquitto), rules=["birds"])  # "cats" was removed from the config
    try:
        sub.wait_for(cats, lambda m: m.payload == b"")  # an empty retained config removes it
        late = Subscriber(mosquitto, "homeassistant/#")
        try:
            late.wait_for("homeassistant/binary_sensor/pi-test/event_birds/config")
            time.sleep(0.5)
            assert late.on(cats) == []
        finally:
            late.close()
    finally:
        second.close()


def test_entities_of_older_versions_are_cleared_before_the_new_ones_come(
    mosquitto: Mosquitto, sub: Subscriber
) -> None:
    # What earlier versions left retained: the rule's sensor and the image under unique ids
    # without the edge_daemon_ prefix, and a rule removed since.
    old = {
        "homeassistant/binary_sensor/pi-test/pi-test_event_birds/config": "pi-test_event_birds",
        "homeassistant/image/pi-test/pi-test_event_snapshot/config": "pi-test_event_snapshot",
        "homeassistant/binary_sensor/pi-test/pi-test_event_cats/config": "pi-test_event_cats",
    }
    device = {"identifiers": ["edge_daemon_pi-test"], "name": "pi-test"}
    for topic, uid in old.items():
        payload = json.dumps({"unique_id": uid, "name": uid, "state_topic": "x", "device": device})
        sub.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    # Another program's entity under the same node id (an ESPHome device named alike).
    foreign = "homeassistant/sensor/pi-test/temperature/config"
    other = {"unique_id": "esp-temp", "state_topic": "y", "dev": {"ids": ["esphome_pi-test"]}}
    sub.client.publish(foreign, json.dumps(other), qos=1, retain=True).wait_for_publish(5)
    for topic in [*old, foreign]:
        sub.wait_for(topic)
    mark = sub.mark()
    sink = MqttSink(mqtt_cfg(mosquitto), rules=["birds"])
    try:
        new = "homeassistant/binary_sensor/pi-test/event_birds/config"
        config = sub.wait_for(new, after=mark)
        assert config.json()["unique_id"] == "edge_daemon_pi-test_event_birds"
        cleared = {m.topic: i for i, m in enumerate(sub.messages[mark:]) if m.topic in old}
        assert set(cleared) == set(old)
        assert all(sub.messages[mark + i].payload == b"" for i in cleared.values())
        # Cleared first: Home Assistant drops the old entity before the new one
        # asks for the same entity id.
        first_config = min(
            i for i, m in enumerate(sub.messages[mark:])
            if m.topic.startswith("homeassistant/") and m.payload and m.topic not in old
        )  # fmt: skip
        assert max(cleared.values()) < first_config
        late = Subscriber(mosquitto, "homeassistant/#")
        try:
            late.wait_for(new)
            assert late.wait_for(foreign).json() == other  # left alone
            time.sleep(0.5)
            assert not [m for m in late.messages if m.topic in old]
        finally:
            late.close()
    finally:
        sink.close()
