"""docs/mqtt.md's automation examples: they name our entities and fire with and without smoothing.

The real run against Home Assistant is the integration test; this one plays
Home Assistant's part for the template trigger and the conditions: each
state message updates the label sensor and the score sensor (in either
order), the trigger's template turning true starts its ``for:`` wait, which
any moment of false ends; it fires when the template stayed true through the
rest of that message and the next one (messages come at least
``mqtt.min_interval`` apart, the wait is a second), and the conditions are
checked then.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from edge_daemon.mqtt.events import event_entities
from edge_daemon.mqtt.hass import Topics, builtin_entities, discovery_messages
from tests.helpers import REPO

jinja2 = pytest.importorskip("jinja2")


def examples() -> list[dict[str, Any]]:
    text = (REPO / "docs" / "mqtt.md").read_text()
    section = text.split("### Automation examples", 1)[1].split("\n### ", 1)[0]
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def entity_ids(automation: dict[str, Any]) -> set[str]:
    text = json.dumps(automation)
    return set(re.findall(r"\b(?:sensor|binary_sensor|image)\.[a-z0-9_]+", text))


def test_the_examples_name_entities_the_pi_announces() -> None:
    topics = Topics("edge-daemon/porch-pi")
    messages = discovery_messages(
        discovery_prefix="homeassistant",
        device="porch-pi",
        topics=topics,
        extra=event_entities(topics.base, ["birds"]),
    )
    announced = {json.loads(p)["default_entity_id"] for _, p in messages}
    autos = examples()
    assert len(autos) == 2
    for automation in autos:
        assert entity_ids(automation) <= announced, automation["alias"]
        assert automation["triggers"] and automation["actions"]


def sensors(message: dict[str, Any]) -> dict[str, str]:
    """What the label and score sensors show for one base/state payload."""
    env = jinja2.Environment()
    templates = {e.object_id: e.config.get("value_template") for e in builtin_entities(Topics("b"))}
    return {
        f"sensor.porch_pi_{k}": env.from_string(templates[k]).render(value_json=message)
        for k in ("label", "score")
    }


def runs(messages: list[dict[str, Any]], score_first: bool) -> int:
    """How often the label-and-score example's actions run over these state messages."""
    automation = examples()[0]
    template = automation["triggers"][0]["value_template"]
    states: dict[str, str] = {}
    env = jinja2.Environment()
    env.globals["is_state"] = lambda entity, value: states.get(entity) == value
    env.globals["states"] = lambda entity: states.get(entity, "unknown")

    def true() -> bool:
        return bool(env.from_string(template).render() == "True")

    assert automation["triggers"][0].get("for"), "the example waits for both sensors"
    updates: list[tuple[int, bool]] = []  # (message, template true) after each sensor update
    for i, message in enumerate(messages):
        shown = sorted(sensors(message).items(), reverse=score_first)
        for entity, value in shown:  # Home Assistant updates the two sensors in turn
            states[entity] = value
            updates.append((i, true()))
    count, before = 0, False
    for k, (i, now) in enumerate(updates):
        if now and not before:
            # Held through the rest of message i and all of message i + 1?
            held = [t for m, t in updates[k:] if m <= i + 1]
            if all(held):
                final = {e: v for m in messages[: i + 2] for e, v in sensors(m).items()}
                if all(check(c, final) for c in automation["conditions"]):
                    count += 1
        before = now
    return count


def check(condition: dict[str, Any], states: dict[str, str]) -> bool:
    value = states.get(condition["entity_id"], "unknown")
    if condition["condition"] == "state":
        return bool(value == condition["state"])
    return float(value) > float(condition["above"])


def state(label: str, score: float) -> dict[str, Any]:
    return {"label": label, "index": 1, "score": score}


@pytest.mark.parametrize("score_first", [False, True])
def test_the_label_and_score_example_fires_once_with_and_without_smoothing(
    score_first: bool,
) -> None:
    toucan, sure = state("toucan", 0.95), state("macaw", 0.996)
    # Without smoothing: the message announcing the macaw carries its score.
    assert runs([toucan, sure, sure], score_first) == 1
    assert runs([state("toucan", 0.4), sure], score_first) == 1
    # With smoothing: announced at the crossing (49.8%), the score follows.
    assert runs([toucan, state("macaw", 0.498), state("macaw", 0.7), sure], score_first) == 1
    # Not sure: never.
    assert runs([toucan, state("macaw", 0.498), state("macaw", 0.6)], score_first) == 0
