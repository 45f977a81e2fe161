"""The fleet view and ``mqtt forget``: what the broker holds about every Pi, read back.

Every daemon keeps its status and availability retained on the broker, so one
subscription to ``<topic_prefix>/+/status`` and ``<topic_prefix>/+/availability``
lists the whole fleet; nothing else is stored anywhere.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

from ..config import MqttConfig
from ..errors import EdgeDaemonError
from . import broker
from .hass import (
    Topics,
    announced_by_us,
    builtin_entities,
    config_topic,
    forget_subscription,
)

# After the subscription is acknowledged, the broker sends what it retains at
# once; the view is complete when nothing new came for this long.
SETTLE = 0.5
# mqtt forget: from clearing the discovery configs to clearing the retained topics (s).
FORGET_GAP = 1.0


@dataclass
class Pi:
    """What the broker retains about one device."""

    device: str
    status: Optional[dict[str, Any]] = None
    availability: Optional[str] = None


@dataclass
class Fleet:
    """The devices seen so far, updated from paho's thread."""

    prefix: str
    pis: dict[str, Pi] = field(default_factory=dict)
    changed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_message: float = 0.0

    def take(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self._take(topic, payload)
        self.last_message = time.monotonic()
        self.changed.set()

    def _take(self, topic: str, payload: bytes) -> None:
        parts = topic[len(self.prefix) + 1 :].split("/")
        if not topic.startswith(self.prefix + "/") or len(parts) != 2:
            return
        device, kind = parts
        pi = self.pis.setdefault(device, Pi(device))
        if kind == "availability":
            pi.availability = payload.decode("utf-8", "replace") or None
        elif kind == "status":
            try:
                data = json.loads(payload) if payload else None
            except ValueError:
                data = None
            pi.status = data if isinstance(data, dict) else None
        if pi.status is None and pi.availability is None:
            del self.pis[device]  # cleared (mqtt forget)


def row(pi: Pi, now: float) -> dict[str, Any]:
    """One device as the fleet view shows it (and --json prints it)."""
    s = pi.status or {}
    preds = s.get("predictions") or []
    top = preds[0] if preds and isinstance(preds[0], dict) else {}
    model = s.get("model")
    updated = s.get("updated")
    age: Optional[float] = None
    if isinstance(updated, str):
        try:
            age = round(now - datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp(), 1)
        except ValueError:
            age = None
    return {
        "device": pi.device,
        "online": pi.availability == "online",
        "availability": pi.availability or "unknown",
        "state": s.get("state"),
        "reason": s.get("reason"),
        "model": model.rsplit("/", 1)[-1] if isinstance(model, str) else None,
        "delegate": s.get("delegate"),
        "fps": s.get("fps"),
        "top1": top.get("label"),
        "score": top.get("score"),
        "frames": s.get("frames"),
        "updated": updated,
        "age_s": age,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned text columns."""
    head = ["DEVICE", "ONLINE", "STATE", "MODEL", "DELEGATE", "FPS", "TOP-1", "SCORE", "UPDATED"]

    def cells(r: dict[str, Any]) -> list[str]:
        age = r["age_s"]
        updated = (
            "-"
            if r["updated"] is None
            else f"{r['updated']}" + (f" ({_ago(age)})" if age is not None else "")
        )
        return [
            r["device"],
            r["availability"],
            r["state"] or "-",
            r["model"] or "-",
            r["delegate"] or "-",
            "-" if r["fps"] is None else f"{r['fps']:.1f}",
            (r["top1"] or "-").split(",")[0],
            "-" if r["score"] is None else f"{r['score']:.2f}",
            updated,
        ]

    lines = [head, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s ago"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    return f"{seconds / 3600:.1f} h ago"


class Connection:
    """A short-lived client for reading or clearing retained topics."""

    def __init__(self, cfg: MqttConfig, on_message: Callable[[str, bytes, bool], None]) -> None:
        self.cfg = cfg
        self._acked = threading.Event()
        self._refused: Optional[str] = None
        self._connected = threading.Event()
        self.client = broker.make_client(
            cfg,
            "",
            on_connect=self._on_connect,
            on_subscribe=lambda *a: self._acked.set(),
            on_message=lambda c, u, m: on_message(m.topic, bytes(m.payload), m.retain),
        )
        self.client.reconnect_delay_set(1, 5)
        try:
            broker.check_resolvable(cfg.host or "")
            self.client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive)
        except OSError as exc:
            raise EdgeDaemonError(broker.connect_error(cfg, exc)) from None
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise EdgeDaemonError(
                f"{broker.where(cfg)}: no answer to the login within 10 s; check mqtt.host"
                " and mqtt.port"
            )
        if self._refused:
            self.close()
            raise EdgeDaemonError(self._refused)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = broker.refused_error(self.cfg, reason)
            client.disconnect()
        self._connected.set()

    def subscribe(self, *topics: str) -> None:
        self._acked.clear()
        self.client.subscribe([(t, 1) for t in topics])
        if not self._acked.wait(10):
            raise EdgeDaemonError(f"{broker.where(self.cfg)}: the subscription was not answered")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FleetView:
    """A connection that keeps the fleet up to date (for the one-shot view and --watch)."""

    def __init__(self, cfg: MqttConfig) -> None:
        self.fleet = Fleet(cfg.topic_prefix)
        self.conn = Connection(cfg, lambda topic, payload, retain: self.fleet.take(topic, payload))
        try:
            self.conn.subscribe(
                f"{cfg.topic_prefix}/+/status", f"{cfg.topic_prefix}/+/availability"
            )
        except BaseException:
            self.conn.close()
            raise

    def settle(self, quiet: float = SETTLE, limit: float = 10.0) -> Fleet:
        """Wait until the retained messages have arrived (nothing new for ``quiet`` s)."""
        start = self.fleet.last_message = time.monotonic()
        while time.monotonic() - self.fleet.last_message < quiet:
            if time.monotonic() - start > limit:
                break
            time.sleep(0.05)
        return self.fleet

    def rows(self) -> list[dict[str, Any]]:
        now = time.time()
        with self.fleet.lock:
            return [row(pi, now) for _, pi in sorted(self.fleet.pis.items())]

    def close(self) -> None:
        self.conn.close()


def forget(
    cfg: MqttConfig, *, settle: float = SETTLE, gap: float = FORGET_GAP
) -> tuple[list[str], bool]:
    """Clear this Pi's retained discovery configs, then, ``gap`` seconds later, every
    retained topic under its base (availability, state, attributes, status, rule
    states, the snapshot).

    Returns the topics cleared and whether the Pi was online (its daemon then
    sends discovery again when it reconnects or Home Assistant restarts).
    """
    device = broker.device_name(cfg)
    topics = Topics(broker.base_topic(cfg))
    found: dict[str, bytes] = {}
    last = [time.monotonic()]

    def took(topic: str, payload: bytes, retain: bool) -> None:
        if retain and payload:
            found[topic] = payload
        last[0] = time.monotonic()

    conn = Connection(cfg, took)
    try:
        conn.subscribe(forget_subscription(cfg.discovery_prefix, device), f"{topics.base}/#")
        last[0] = time.monotonic()
        while time.monotonic() - last[0] < settle:
            time.sleep(0.05)
        online = found.get(topics.availability) == b"online"
        configs = {
            t
            for t, payload in found.items()
            if not t.startswith(f"{topics.base}/") and announced_by_us(payload, device)
        }
        configs |= {config_topic(cfg.discovery_prefix, e, device) for e in builtin_entities(topics)}
        retained = {t for t in found if t.startswith(f"{topics.base}/")}
        retained |= {topics.state, topics.attributes, topics.status, topics.availability}
        # The entities first: Home Assistant unsubscribes from their topics, so
        # clearing those a moment later renders no template against an empty payload.
        _clear(conn, sorted(configs))
        time.sleep(gap)
        _clear(conn, sorted(retained))
    finally:
        conn.close()
    return sorted(configs) + sorted(retained), online


def _clear(conn: Connection, topics: list[str]) -> None:
    infos = [conn.client.publish(t, b"", qos=1, retain=True) for t in topics]
    for info in infos:
        info.wait_for_publish(10)
