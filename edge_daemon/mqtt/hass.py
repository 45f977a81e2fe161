"""Home Assistant MQTT discovery: the retained configs that make one device per Pi appear.

Pure functions: they return ``(topic, payload)`` pairs and publish nothing.
``discovery_messages`` takes extra entities, so other outputs (event sensors,
snapshot images) add theirs beside the built-in ones without touching them.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import __version__

# The daemon's states (the status object's "state"), for the enum sensor.
DAEMON_STATES = ("starting", "running", "degraded", "stopped", "failed")
ORIGIN = {"name": "edge-daemon", "sw_version": __version__}


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: its component (sensor, binary_sensor, image...), an
    object id unique within this Pi ([a-zA-Z0-9_-]), and its own config keys
    (name, state_topic, value_template, device_class...)."""

    component: str
    object_id: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """The topics of one Pi, all under ``base`` = <topic_prefix>/<device>."""

    base: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def attributes(self) -> str:
        return f"{self.base}/attributes"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def reload(self) -> str:
        return f"{self.base}/command/reload"


def hardware_model() -> str:
    """The board's name (e.g. "Raspberry Pi 4 Model B Rev 1.4"), else the OS and machine."""
    try:
        text = Path("/proc/device-tree/model").read_text(errors="replace").strip("\0\n ")
    except OSError:
        text = ""
    return text or f"{platform.system()} {platform.machine()}".strip()


def builtin_entities(topics: Topics) -> list[Entity]:
    """The entities every Pi has: top-1 label and score, fps, inference time, state, link."""
    return [
        Entity(
            "sensor",
            "label",
            {
                "name": "Label",
                "icon": "mdi:tag-search",
                "state_topic": topics.state,
                "value_template": "{{ value_json.label }}",
                # The top-k, from a topic of its own that is rate-limited: attributes
                # that change on every frame would force a state write each time.
                "json_attributes_topic": topics.attributes,
            },
        ),
        Entity(
            "sensor",
            "score",
            {
                "name": "Score",
                "icon": "mdi:percent",
                "state_topic": topics.state,
                "value_template": "{{ (value_json.score * 100) | round(1) }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "suggested_display_precision": 1,
            },
        ),
        Entity(
            "sensor",
            "fps",
            {
                "name": "Frame rate",
                "icon": "mdi:speedometer",
                "state_topic": topics.status,
                "value_template": "{{ value_json.fps }}",
                "unit_of_measurement": "fps",
                "state_class": "measurement",
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "sensor",
            "inference_ms",
            {
                "name": "Inference time",
                "state_topic": topics.status,
                "value_template": "{{ value_json.latency_ms.inference | float(0) | round(1) }}",
                "device_class": "duration",
                "unit_of_measurement": "ms",
                "state_class": "measurement",
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "sensor",
            "state",
            {
                "name": "Daemon state",
                "icon": "mdi:state-machine",
                "state_topic": topics.status,
                "value_template": "{{ value_json.state }}",
                "device_class": "enum",
                "options": list(DAEMON_STATES),
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "binary_sensor",
            "connectivity",
            {
                "name": "Connectivity",
                "state_topic": topics.availability,
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
        ),
    ]


def config_topic(discovery_prefix: str, entity: Entity, node: str) -> str:
    return f"{discovery_prefix}/{entity.component}/{node}/{entity.object_id}/config"


def device_block(
    device: str, configuration_url: Optional[str] = None, model: Optional[str] = None
) -> dict[str, Any]:
    """The ``device`` of every entity of this Pi (one Home Assistant device per Pi)."""
    dev: dict[str, Any] = {
        "identifiers": [f"edge_daemon_{device}"],
        "name": device,
        "manufacturer": "edge-daemon",
        "model": model or hardware_model(),
        "sw_version": __version__,
    }
    if configuration_url:
        dev["configuration_url"] = configuration_url
    return dev


def discovery_messages(
    *,
    discovery_prefix: str,
    device: str,
    topics: Topics,
    configuration_url: Optional[str] = None,
    extra: Sequence[Entity] = (),
    model: Optional[str] = None,
) -> list[tuple[str, str]]:
    """Retained ``(topic, JSON payload)`` discovery configs for this Pi's entities.

    ``device`` is the topic-safe name of the Pi (node id, and part of every
    unique_id and default_entity_id); ``extra`` entities come after the
    built-in ones and get the same device, origin and availability.
    """
    dev = device_block(device, configuration_url, model)
    messages = []
    for entity in [*builtin_entities(topics), *extra]:
        slug = f"{device}_{entity.object_id}".lower().replace("-", "_")
        payload = {
            "unique_id": f"edge_daemon_{device}_{entity.object_id}",
            "default_entity_id": f"{entity.component}.{slug}",
            **entity.config,
            "availability": [{"topic": topics.availability}],
            "device": dev,
            "origin": ORIGIN,
        }
        messages.append(
            (
                config_topic(discovery_prefix, entity, device),
                json.dumps(payload, separators=(",", ":")),
            )
        )
    return messages


def announced_by_us(payload: bytes, device: str) -> bool:
    """Whether a retained discovery config is one of this Pi's (its device block names
    ``edge_daemon_<device>``), not another program's that uses the same node id."""
    try:
        config = json.loads(payload)
    except ValueError:
        return False
    dev = config.get("device", config.get("dev")) if isinstance(config, dict) else None
    ids = dev.get("identifiers", dev.get("ids")) if isinstance(dev, dict) else None
    if isinstance(ids, str):
        ids = [ids]
    return isinstance(ids, list) and f"edge_daemon_{device}" in ids


def forget_subscription(discovery_prefix: str, device: str) -> str:
    """The wildcard that matches every discovery config of this Pi (for forgetting it)."""
    return f"{discovery_prefix}/+/{device}/+/config"
