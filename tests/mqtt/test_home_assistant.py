"""edge-daemon against a real Home Assistant Core, through Home Assistant's own API.

Home Assistant runs from the cached Debian root that ``sudo scripts/hass-root.sh``
builds (Python 3.14, homeassistant and its integrations' requirements), with its
MQTT integration on the test's mosquitto. ``edge-daemon run`` publishes to that
broker over photos that alternate between a cat and a parrot ("macaw"). Every
assertion reads Home Assistant (REST ``/api/states``, the websocket registries,
its state_changed events, its log), never the broker: what a user sees there is
what is tested. The expected entities come from the discovery functions the
daemon publishes with, so a change to a payload is checked as it is.

Without the root (or not as root) the tests skip locally; under CI=true they fail.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

from edge_daemon.config import Config, load_config
from edge_daemon.mqtt import broker as mqtt_broker
from edge_daemon.mqtt.events import event_entities
from edge_daemon.mqtt.hass import Topics, device_block, discovery_messages
from tests.broker import Mosquitto
from tests.helpers import IMAGES, REPO, shared_file
from tests.home_assistant import HomeAssistant, StateLog, hass_root, root_version
from tests.mqtt.test_daemon import Daemon
from tests.systemd_standin import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.home_assistant]

DEVICE = "porch-pi"  # the name docs/mqtt.md's examples use (sensor.porch_pi_label ...)
FPS = 4
PER_PHOTO = 16  # frames of each photo in a row: 4 s of cat, then 4 s of parrot
RULE = {"name": "macaw", "labels": ["macaw"], "min_score": 0.5, "min_frames": 2, "end_after": 1.0}
# The README's feeder rule, which docs/mqtt.md's examples use too.
BIRDS = {"name": "birds", "labels": ["@birds"], "min_score": 0.4, "min_frames": 5, "end_after": 10}
WAIT = 90.0  # for what Home Assistant should show within a few cycles


# -- the docs' automation examples ------------------------------------------------------
def docs_automations() -> list[dict[str, Any]]:
    """The YAML blocks of docs/mqtt.md that are automations (they have a trigger)."""
    text = (REPO / "docs" / "mqtt.md").read_text()
    found = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and ({"trigger", "triggers"} & set(data)):
            found.append(data)
    return found


def as_automation(n: int, example: dict[str, Any]) -> dict[str, Any]:
    """An example as written, with an id and, after its own actions, one that turns on
    its input_boolean (what the test watches)."""
    body = {k: v for k, v in example.items() if k not in ("action", "actions")}
    actions = list(example.get("actions") or example.get("action") or [])
    return {
        "id": f"docs_example_{n}",
        "alias": f"docs example {n}",
        **body,
        "actions": [
            *actions,
            {
                "action": "input_boolean.turn_on",
                "target": {"entity_id": f"input_boolean.docs_example_{n}"},
            },
        ],
    }


EXAMPLES = docs_automations()


# -- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    hass_root()  # skip (or fail in CI) before starting anything
    b = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.kill()


@pytest.fixture(scope="module")
def hass(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistant]:
    ha = HomeAssistant(
        tmp_path_factory.mktemp("home-assistant"),
        broker,
        version=root_version(),
        automations=[as_automation(n, e) for n, e in enumerate(EXAMPLES, 1)],
        input_booleans=[f"docs_example_{n}" for n in range(1, len(EXAMPLES) + 1)],
    )
    try:
        ha.start()
        yield ha
    finally:
        ha.stop()


@pytest.fixture
def states(hass: HomeAssistant) -> Iterator[StateLog]:
    log = StateLog(hass)
    yield log
    log.close()


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """Cat, then parrot, PER_PHOTO frames each (links, in name order)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cat, parrot = shared_file(IMAGES / "cat.bmp"), shared_file(IMAGES / "parrot.jpg")
    for i in range(PER_PHOTO):
        (folder / f"a-cat-{i:02d}.bmp").symlink_to(cat)
        (folder / f"b-parrot-{i:02d}.jpg").symlink_to(parrot)
    return folder


@pytest.fixture
def start_daemon(
    broker: Mosquitto, write_config: Callable[..., Path], frames: Path, tmp_path: Path
) -> Iterator[Callable[..., tuple[Daemon, Config]]]:
    started: list[Daemon] = []

    def start(
        smoothing: int = 0, rules: Sequence[dict[str, Any]] = (RULE,)
    ) -> tuple[Daemon, Config]:
        status = tmp_path / "out" / "status.json"
        config = write_config(
            source=str(frames),
            delegates=["cpu"],
            overrides={
                "model": {"smoothing": smoothing},
                "source": {"loop": True, "fps": FPS},
                "outputs": {
                    "prediction_log": None,
                    "status_file": str(status),
                    "status_interval": 1.0,
                },
                "mqtt": broker.mqtt_config(device=DEVICE),
                "events": {"rules": list(rules)},
            },
        )
        d = Daemon(config, status)
        started.append(d)
        return d, load_config(config)

    yield start
    for d in started:
        d.stop(signal.SIGKILL)


# -- what the daemon announces --------------------------------------------------------
def announced(cfg: Config) -> list[tuple[str, dict[str, Any]]]:
    """(component, config payload) of every discovery config the daemon publishes,
    from the functions its MQTT sink builds them with."""
    import json

    mq = cfg.mqtt
    topics = Topics(mqtt_broker.base_topic(mq))
    rules = [r.name for r in cfg.events.rules]
    messages = discovery_messages(
        discovery_prefix=mq.discovery_prefix,
        device=mqtt_broker.device_name(mq),
        topics=topics,
        configuration_url=mq.configuration_url,
        extra=event_entities(topics.base, rules) if rules else [],
    )
    return [
        (topic[len(mq.discovery_prefix) + 1 :].split("/")[0], json.loads(payload))
        for topic, payload in messages
    ]


def entity_of(
    component: str, payload: dict[str, Any], registry: list[dict[str, Any]]
) -> dict[str, Any]:
    for e in registry:
        if e["platform"] == "mqtt" and e["unique_id"] == payload["unique_id"]:
            assert e["entity_id"].split(".")[0] == component, e
            return e
    raise AssertionError(f"Home Assistant has no entity for {payload['unique_id']}")


# -- reading Home Assistant -----------------------------------------------------------
LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) \(([^)]*)\) \[([^\]]+)\] (.*)$")
# Loggers and words that make a warning ours: the MQTT integration, templates,
# the entities and registries our configs fill, automations from our docs.
OUR_LOGGERS = (
    "homeassistant.components.mqtt",
    "homeassistant.helpers.template",
    "homeassistant.helpers.entity",
    "homeassistant.helpers.device_registry",
    "homeassistant.helpers.config_validation",
    "homeassistant.components.sensor",
    "homeassistant.components.binary_sensor",
    "homeassistant.components.image",
    "homeassistant.components.automation",
    "homeassistant.helpers.script",
)
OUR_WORDS = ("mqtt", "porch", "edge-daemon", "edge_daemon", "value_json", "default_entity_id",
             "template", "deprecat", "discovery", "docs example")  # fmt: skip


def warnings_about_us(log: str) -> tuple[list[str], list[str]]:
    """(warnings and errors about our payloads or examples, every other one)."""
    ours, others = [], []
    for line in log.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        logger, message = m.group(3), m.group(4)
        if logger.startswith(OUR_LOGGERS) or any(w in message.lower() for w in OUR_WORDS):
            ours.append(line)
        else:
            others.append(line)
    return ours, others


def assert_log_clean(hass: HomeAssistant, since: int) -> None:
    ours, others = warnings_about_us(hass.log()[since:])
    if others:
        print("Home Assistant's other warnings (its environment, not our payloads):")
        print("\n".join(f"  {line[:300]}" for line in others))
    assert not ours, "Home Assistant logged about our payloads:\n" + "\n".join(ours)


def is_state(hass: HomeAssistant, entity_id: str, value: str) -> bool:
    return (hass.state(entity_id) or {}).get("state") == value


def number(state: Optional[dict[str, Any]]) -> Optional[float]:
    try:
        return float(state["state"]) if state else None
    except ValueError:
        return None


def device_of(hass: HomeAssistant, identifier: str) -> Optional[dict[str, Any]]:
    with hass.websocket() as ws:
        for dev in ws.call("config/device_registry/list"):
            if ["mqtt", identifier] in dev["identifiers"]:
                found: dict[str, Any] = dev
                return found
    return None


# -- the tests ------------------------------------------------------------------------
def test_home_assistant_shows_the_device_its_entities_and_the_daemons_status(
    hass: HomeAssistant, states: StateLog, start_daemon: Callable[..., tuple[Daemon, Config]]
) -> None:
    log_from = len(hass.log())
    d, cfg = start_daemon(smoothing=0)
    expected = announced(cfg)
    by_key = {p["unique_id"]: (c, p) for c, p in expected}
    dev_block = device_block(mqtt_broker.device_name(cfg.mqtt), cfg.mqtt.configuration_url)

    # The device, as the discovery configs describe it.
    dev = wait_until(
        lambda: device_of(hass, dev_block["identifiers"][0]),
        timeout=WAIT,
        what=f"the device in Home Assistant's registry (daemon log: {d.log()[-1500:]})",
    )
    for key in ("name", "manufacturer", "model", "sw_version", "configuration_url"):
        assert dev.get(key) == dev_block.get(key), (key, dev)
    assert sorted(map(tuple, dev["identifiers"])) == [("mqtt", i) for i in dev_block["identifiers"]]

    # Every entity discovery announced, and nothing else, on that device.
    def registry() -> Optional[list[dict[str, Any]]]:
        with hass.websocket() as ws:
            entries: list[dict[str, Any]] = ws.call("config/entity_registry/list")
        mine = [e for e in entries if e["device_id"] == dev["id"]]
        return mine if {e["unique_id"] for e in mine} >= set(by_key) else None

    mine = wait_until(registry, timeout=WAIT, what=f"entities {sorted(by_key)} in the registry")
    assert sorted(e["unique_id"] for e in mine) == sorted(by_key)
    with hass.websocket() as ws:
        for component, payload in expected:
            e = entity_of(component, payload, mine)
            full = ws.call("config/entity_registry/get", entity_id=e["entity_id"])
            if "default_entity_id" in payload:
                assert e["entity_id"] == payload["default_entity_id"], (payload, e)
            assert full["original_name"] == payload.get("name"), (payload, full)
            assert full["original_device_class"] == payload.get("device_class"), (payload, full)
            assert full["entity_category"] == payload.get("entity_category"), (payload, full)
            assert full["original_icon"] == payload.get("icon"), (payload, full)

    ids = {p["unique_id"]: entity_of(c, p, mine)["entity_id"] for c, p in expected}
    label_id, score_id = ids[f"edge_daemon_{DEVICE}_label"], ids[f"edge_daemon_{DEVICE}_score"]

    # Units, state classes and the enum's options, as announced.
    for _component, payload in expected:
        eid = ids[payload["unique_id"]]
        st = wait_until(partial(hass.state, eid), timeout=WAIT, what=f"{eid}'s state")
        attrs = st["attributes"]
        for key in ("unit_of_measurement", "state_class", "device_class", "options"):
            if key in payload:
                assert attrs.get(key) == payload[key], (payload["unique_id"], key, attrs)

    # The states follow the daemon's own status: top-1 label and score, frame
    # rate, inference time, state. Each pair is read until the two agree (the
    # status file and the broker get the same status once a second).
    def agree(
        read: Callable[[dict[str, Any]], Any], entity_id: str, ha: Callable[[Any], Any]
    ) -> Any:
        def check() -> Any:
            status = d.status()
            if not status.get("predictions"):
                return None
            want, got = read(status), ha(hass.state(entity_id))
            return (want, got) if want == got else None

        return wait_until(check, timeout=WAIT, what=f"{entity_id} to agree with the status file")

    agree(lambda s: s["predictions"][0]["label"], label_id, lambda st: st and st["state"])
    agree(lambda s: round(round(s["predictions"][0]["score"], 6) * 100, 1), score_id, number)
    agree(lambda s: s["fps"], ids[f"edge_daemon_{DEVICE}_fps"], number)
    agree(
        lambda s: round(float(s["latency_ms"]["inference"] or 0), 1),
        ids[f"edge_daemon_{DEVICE}_inference_ms"],
        number,
    )
    agree(lambda s: s["state"], ids[f"edge_daemon_{DEVICE}_state"], lambda st: st and st["state"])
    assert d.status()["state"] == "running"
    assert (hass.state(ids[f"edge_daemon_{DEVICE}_connectivity"]) or {}).get("state") == "on"
    # Both photos come through, each with its own label and score.
    seen_labels = set()
    mark = states.mark()
    for _ in range(2):
        new = states.wait_for(
            label_id, lambda s: s["state"] not in seen_labels, timeout=WAIT, after=mark
        )
        seen_labels.add(new["state"])
    assert "macaw" in seen_labels and len(seen_labels) == 2, seen_labels
    # The top-k as the label's attributes.
    attrs = wait_until(
        lambda: (
            (hass.state(label_id) or {}).get("attributes", {}).get("predictions")
            and hass.state(label_id)
        ),
        timeout=WAIT,
        what="the label's top-k attributes",
    )["attributes"]
    assert attrs["model"] == Path(cfg.model.path).name
    assert attrs["predictions"][0].keys() >= {"label", "score"}

    # The event rule: its binary_sensor turns on with the parrot and off after it.
    rule_id = next(
        ids[p["unique_id"]]
        for c, p in expected
        if c == "binary_sensor" and RULE["name"] in p["unique_id"]
    )
    mark = states.mark()
    states.wait_for(rule_id, lambda s: s["state"] == "on", timeout=WAIT, after=mark, what="on")
    on_at = states.mark()
    states.wait_for(rule_id, lambda s: s["state"] == "off", timeout=WAIT, after=on_at, what="off")
    # The ended event's best frame, as the image entity's picture.
    image_id = next(ids[p["unique_id"]] for c, p in expected if c == "image")
    wait_until(
        lambda: (hass.state(image_id) or {}).get("state") not in (None, "unknown", "unavailable"),
        timeout=WAIT,
        what="a snapshot in the image entity",
    )
    content_type, jpeg = hass.get_bytes(f"/api/image_proxy/{image_id}")
    assert content_type == "image/jpeg" and jpeg[:2] == b"\xff\xd8", (content_type, jpeg[:16])

    # A clean stop: every entity of the Pi becomes unavailable.
    assert d.stop() == 0, d.log()[-2000:]

    def all_unavailable() -> bool:
        now = hass.states()
        return all(now.get(eid, {}).get("state") == "unavailable" for eid in ids.values())

    wait_until(
        all_unavailable, timeout=WAIT, what=f"every entity unavailable: {sorted(ids.values())}"
    )
    assert_log_clean(hass, log_from)


def value_for_message(states: StateLog, entity_id: str, at: datetime) -> Optional[str]:
    """What ``entity_id`` showed for the MQTT message that Home Assistant handled at ``at``.

    Home Assistant updates every entity of one message within a millisecond or
    so, and the daemon sends at most one state per ``mqtt.min_interval``
    (0.2 s): an update within 0.1 s of ``at`` came from that message, else the
    entity kept the value it had.
    """
    before: Optional[str] = None
    for eid, new in states.changes:
        if eid != entity_id or new is None:
            continue
        when = datetime.fromisoformat(new["last_updated"])
        if abs((when - at).total_seconds()) < 0.1:
            return str(new["state"])
        if when < at:
            before = str(new["state"])
    return before


def later_values(states: StateLog, entity_id: str, after: datetime, until: datetime) -> set[str]:
    """The values ``entity_id`` took from messages handled after ``after``, up to ``until``."""
    found = set()
    for eid, new in states.changes:
        if eid == entity_id and new is not None:
            when = datetime.fromisoformat(new["last_updated"])
            if after < when <= until:
                found.add(str(new["state"]))
    return found


def stale_reads(hass: HomeAssistant, states: StateLog, item_id: str) -> list[str]:
    """For the last run of an automation: each condition's entity whose value, as the
    condition read it, was not the one the triggering message gave it, nor one a
    later message gave it before the run (a trigger with ``for:`` runs a moment
    after the message that made it true)."""
    with hass.websocket() as ws:
        runs = ws.call("trace/list", domain="automation", item_id=item_id)
        last = max(runs, key=lambda t: t["timestamp"]["start"])
        trace = ws.call("trace/get", domain="automation", item_id=item_id, run_id=last["run_id"])
    trigger = trace["trace"]["trigger/0"][0]["changed_variables"]["trigger"]
    at = datetime.fromisoformat(trigger["to_state"]["last_updated"])
    conditions = trace["config"].get("condition") or trace["config"].get("conditions") or []
    stale = []
    for path, steps in trace["trace"].items():
        m = re.fullmatch(r"condition/(\d+)/entity_id/(\d+)", path)
        if not m or "state" not in steps[0].get("result", {}):
            continue
        entities = conditions[int(m.group(1))]["entity_id"]
        entity = entities if isinstance(entities, str) else entities[int(m.group(2))]
        read, fresh = steps[0]["result"]["state"], value_for_message(states, entity, at)
        started = datetime.fromisoformat(last["timestamp"]["start"])
        allowed = later_values(states, entity, at, started) | ({fresh} if fresh else set())
        if fresh is None or not any(
            str(read) == v or float_or(read) == float_or(v) for v in allowed
        ):
            stale.append(
                f"{entity} read as {read}, but the message that changed"
                f" {trigger['entity_id']} to {trigger['to_state']['state']} made it {fresh}"
            )
    return stale


def float_or(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@pytest.mark.parametrize("smoothing", [0, 10], ids=["no-smoothing", "smoothing-10"])
def test_the_docs_automation_examples_work_as_written(
    hass: HomeAssistant,
    states: StateLog,
    start_daemon: Callable[..., tuple[Daemon, Config]],
    smoothing: int,
) -> None:
    """docs/mqtt.md's automations, loaded as written, fire when the parrot comes,
    on what the daemon said about the parrot.

    Each is triggered by the label changing to the parrot's, so the daemon is
    watched until Home Assistant shows the cat first. A run counts only if its
    conditions read what the triggering state message said: Home Assistant
    updates the entities of one message one after the other, in no fixed order,
    and a condition on one entity can run before that entity got the message
    (then it judges the parrot by the cat's score).
    """
    assert EXAMPLES, "docs/mqtt.md has no automation example (a yaml block with a trigger)"
    log_from = len(hass.log())
    d, _cfg = start_daemon(smoothing=smoothing, rules=[RULE, BIRDS])
    slug = DEVICE.replace("-", "_")
    label_id = f"sensor.{slug}_label"
    wait_until(
        lambda: (
            (hass.state(label_id) or {}).get("state")
            not in (None, "macaw", "unavailable", "unknown")
        ),
        timeout=WAIT,
        what=f"{label_id} showing the cat (daemon log: {d.log()[-1500:]})",
    )
    booleans = [f"input_boolean.docs_example_{n}" for n in range(1, len(EXAMPLES) + 1)]
    for b in booleans:
        hass.call_service("input_boolean", "turn_off", entity_id=b)
        wait_until(partial(is_state, hass, b, "off"), timeout=30, what=f"{b} off")
    mark, since = states.mark(), datetime.now(timezone.utc).isoformat()
    states.wait_for(
        label_id, lambda s: s["state"] == "macaw", timeout=WAIT, after=mark, what="macaw"
    )
    for n, b in enumerate(booleans, 1):
        item = f"docs_example_{n}"
        try:
            states.wait_for(
                b, lambda s: s["state"] == "on", timeout=2.5 * 2 * PER_PHOTO / FPS, after=mark
            )
        except AssertionError as exc:
            with hass.websocket() as ws:
                traces = ws.call("trace/list", domain="automation", item_id=item)
            runs = [t.get("script_execution") for t in traces if t["timestamp"]["start"] >= since]
            scores = states.states_of(f"sensor.{slug}_score", after=mark)
            raise AssertionError(
                f"docs example {n} ({EXAMPLES[n - 1]}) did not run with model.smoothing"
                f" {smoothing}: its runs ended {runs}; the score meanwhile {scores}"
            ) from exc
        stale = stale_reads(hass, states, item)
        assert not stale, (
            f"docs example {n} ran with model.smoothing {smoothing} on values from an"
            f" earlier message: {'; '.join(stale)}"
        )
    d.stop()
    assert_log_clean(hass, log_from)
