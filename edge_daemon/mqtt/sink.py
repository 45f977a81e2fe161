"""The MQTT sink: availability, state, attributes, status and Home Assistant discovery.

Topics, with ``base`` = <topic_prefix>/<device>:

- ``base/availability``: ``online`` on every (re)connect; ``offline`` as the last
  will and on a clean stop. Retained.
- ``base/state``: the smoothed top-1 and the top-k as JSON, retained; sent when
  the top-1 label changes, when its score moved ``SCORE_STEP`` or more from the
  one last sent, and at least every ``heartbeat`` seconds; never more often
  than ``min_interval``.
- ``base/attributes``: the top-k for Home Assistant's attributes, retained; sent
  only when a label or its place changed or a score moved ``SCORE_STEP``, at
  most every ``attributes_interval`` seconds (nothing in it changes per frame,
  so Home Assistant's recorder gets no row for nothing).
- ``base/status``: the daemon's status object, retained.
- ``base/command/reload`` (only with ``mqtt.commands``): reload, as SIGHUP does.
- With event rules: ``base/events`` (each event's start, better frame and end,
  QoS 1, not retained), ``base/rules/RULE`` (ON/OFF, retained) and
  ``base/snapshot`` (the latest ended event's best frame, JPEG, retained); see
  ``edge_daemon.mqtt.events``.

The inference thread only drops the latest frame and status into slots; one
thread of this sink decides what to send and hands it to paho, whose own
thread talks to the broker and reconnects with back-off. State and status are
idempotent: while the broker is away they are not queued; after a reconnect
the newest ones are sent.
"""

from __future__ import annotations

import collections
import json
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

from ..config import Config, MqttConfig
from ..errors import EdgeDaemonError
from ..sinks.base import Classified, EventNotice, ModelInfo, Sink, SinkContext, SinkHealth
from ..sinks.prediction_log import iso_utc
from . import broker
from .hass import Entity, Topics, announced_by_us, discovery_messages, forget_subscription

# How long close() waits for the last status and "offline" to reach the broker.
_CLOSE_TIMEOUT = 3.0
# Home Assistant restarted: resend discovery after a random delay up to this (s),
# so a fleet of Pis does not answer all at once.
_REDISCOVER_SPREAD = 2.0
# paho's MQTT_ERR_NO_CONN.
_NO_CONN = 4
# Event notices waiting for this sink's thread (a burst beyond is dropped, oldest first).
_EVENTS_PENDING = 256
# After the broker confirmed the subscription to this Pi's discovery configs, wait
# this long for the retained ones (they follow at once) before announcing (s) ...
_RETAINED_SETTLE = 0.3
# ... and this long after clearing an old one, so Home Assistant has removed its
# entity before the new config takes the same entity id (s).
_MIGRATE_GAP = 1.0
# Without an answer to that subscription, announce anyway after this (s).
_SUBACK_LIMIT = 5.0


_NEVER = object()
# Named in base/status, so a second daemon under the same mqtt.device can say whose it is.
_HOST = socket.gethostname()

# A score that moved this much (5 percentage points) from the one last sent is
# news: the state (and the attributes) go out again, rate-limited as usual.
SCORE_STEP = 0.05
# Floating-point slack, so that 0.90 -> 0.95 counts as a move of 0.05.
_EPS = 1e-9
# Unchanged attributes are looked at again after attributes_interval, at least this (s).
_ATTRIBUTES_LOOK = 1.0


def moved(old: Optional[float], new: Optional[float]) -> bool:
    """Whether a score moved materially (``SCORE_STEP`` or more)."""
    if old is None or new is None:
        return old is not new
    return abs(new - old) >= SCORE_STEP - _EPS


def state_due(
    last_index: Optional[int],
    last_sent: Optional[float],
    index: Optional[int],
    *,
    min_interval: float,
    heartbeat: float,
    last_score: Optional[float] = None,
    score: Optional[float] = None,
) -> float:
    """When the state for top-1 ``index`` at ``score`` is due (monotonic time).

    Nothing sent yet: at once. The label changed, or its score moved
    ``SCORE_STEP`` or more from ``last_score``: once ``min_interval`` has passed
    since the last one. Otherwise: after ``heartbeat``.
    """
    if last_sent is None:
        return float("-inf")
    if index != last_index or moved(last_score, score):
        return last_sent + min_interval
    return last_sent + max(heartbeat, min_interval)


def attributes_key(item: Classified, model: Optional[str]) -> tuple[Any, ...]:
    """What a reader of the attributes sees: the model and the top-k (label, score)."""
    return (model, tuple((p.index, p.score) for p in item.smoothed))


def attributes_changed(old: Optional[tuple[Any, ...]], new: tuple[Any, ...]) -> bool:
    """A label or its place changed, or a score moved ``SCORE_STEP`` or more."""
    if old is None or old[0] != new[0] or len(old[1]) != len(new[1]):
        return True
    return any(a[0] != b[0] or moved(a[1], b[1]) for a, b in zip(old[1], new[1]))


def state_payload(item: Classified, model: Optional[str]) -> dict[str, Any]:
    """The JSON object published on ``base/state`` for one frame."""
    top = item.top1
    return {
        "label": top.label if top else None,
        "index": top.index if top else None,
        "score": round(top.score, 6) if top else 0.0,
        "predictions": [p.as_dict() for p in item.smoothed],
        "frame": item.number,
        "ts": iso_utc(item.captured_at),
        "model": model,
    }


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class MqttSink(Sink):
    """Publishes results to an MQTT broker; see the module's docstring for the topics."""

    name = "mqtt"

    def __init__(
        self,
        cfg: MqttConfig,
        ctx: Optional[SinkContext] = None,
        *,
        extra_entities: Optional[Callable[[], list[Entity]]] = None,
        rules: Sequence[str] = (),
        jpeg_quality: int = 85,
    ) -> None:
        assert cfg.host is not None
        self.cfg = cfg
        self.ctx = ctx or SinkContext()
        self.recovered = f"{broker.where(cfg)}: connected again"
        self.device = broker.device_name(cfg)
        self.topics = Topics(broker.base_topic(cfg))
        # Other outputs add Home Assistant entities here (events, snapshots).
        self.extra_entities = extra_entities or (lambda: [])
        self.published = 0  # messages handed to paho
        self.dropped = 0  # lost: QoS 0 while away, or beyond mqtt.max_queued
        self._cond = threading.Condition()
        self._closed = False
        self._connected = False
        self._session_ok = False  # the broker accepted this connection
        self._announce = False  # availability + discovery + latest state due
        self._health = SinkHealth("connecting", None)
        self._model: Optional[str] = None
        self._item: Optional[Classified] = None
        # The top-1 of the last frame that woke the thread: a frame with the same
        # top-1 and no events leaves it asleep (its timers pick the newest frame).
        self._woken_for: object = _NEVER
        self._woken_score: Optional[float] = None
        self._status: Optional[dict[str, Any]] = None
        self._status_dirty = False
        self._state_index: Optional[int] = None
        self._state_score: Optional[float] = None
        self._state_at: Optional[float] = None
        self._attr_at: Optional[float] = None
        self._attr_sent: Optional[tuple[Any, ...]] = None
        self._discovery_at: Optional[float] = None
        self._discovered = False  # discovery sent since the last connect
        self._configs_mid: Optional[int] = None  # the subscription to this Pi's configs
        # Events (edge_daemon.events): notices to publish, the rules now ON,
        # the best frame of each open event, the latest snapshot to send.
        self.rules = list(rules)
        self.jpeg_quality = jpeg_quality
        self._notices: collections.deque[EventNotice] = collections.deque(maxlen=_EVENTS_PENDING)
        self._open_rules: set[str] = set()
        self._best_frames: Any = None
        self._event_messages: Any = None
        self._snapshot: Optional[np.ndarray] = None
        self._offline: collections.deque[tuple[str, str | bytes, bool, int]] = collections.deque(
            maxlen=cfg.max_queued
        )
        if self.rules:
            from .events import BestFrames, EventMessages

            self._best_frames = BestFrames()
            self._event_messages = EventMessages(self.topics.base)
        # The discovery configs this Pi announces (any other one of its own is stale).
        self._config_topics = {topic for topic, _ in self._discovery()} if cfg.discovery else set()
        self.client = broker.make_client(
            cfg,
            f"edge-daemon-{self.device}",
            on_connect=self._on_connect,
            on_connect_fail=self._on_connect_fail,
            on_disconnect=self._on_disconnect,
            on_message=self._on_message,
            on_subscribe=self._on_subscribe,
            before_connect=self._check_device_free,
        )
        self.client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._thread.start()

    # -- the seam ------------------------------------------------------------------
    def model(self, info: ModelInfo) -> None:
        with self._cond:
            self._model = info.name
            self._state_at = None  # the state names the model: send it again
            self._cond.notify()

    def classified(self, item: Classified) -> None:
        ended: list[tuple[dict[str, Any], np.ndarray]] = []
        if item.events and self._best_frames is not None:
            ended = self._best_frames.observe(item)  # copies a frame only when it is the best
        top = item.top1
        index = top.index if top is not None else None
        score = top.score if top is not None else None
        with self._cond:
            self._item = item
            if item.events and self.rules:
                self._notices.extend(item.events)
                for _event, image in ended:
                    self._snapshot = image
            if item.events or index != self._woken_for or moved(self._woken_score, score):
                self._woken_for, self._woken_score = index, score
                self._cond.notify()

    def events_ended(self, notices: Sequence[EventNotice]) -> None:
        if not notices or self._best_frames is None:
            return
        ended = self._best_frames.ended(notices)
        with self._cond:
            self._notices.extend(notices)
            for _event, image in ended:
                self._snapshot = image
            self._cond.notify()

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        with self._cond:
            self._status = status
            self._status_dirty = True
            self._cond.notify()

    def health(self) -> SinkHealth:
        return self._health

    def close(self) -> None:
        try:
            with self._cond:
                self._closed = True
                self._cond.notify()
            self._thread.join(_CLOSE_TIMEOUT)
            if self._connected:
                # The daemon closes open events itself at a stop: no rule stays ON.
                for rule in sorted(self._open_rules):
                    self.client.publish(f"{self.topics.base}/rules/{rule}", b"OFF", 1, True)
                info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
                info.wait_for_publish(_CLOSE_TIMEOUT)
                self.client.disconnect()
            self.client.loop_stop()
        except Exception:  # close never raises: the daemon is stopping anyway
            pass

    # -- paho's thread ---------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._health = SinkHealth("failing", broker.refused_error(self.cfg, reason))
            return
        subscriptions = []
        if self.cfg.commands:
            subscriptions.append((self.topics.reload, 1))
        if self.cfg.discovery:
            subscriptions.append((f"{self.cfg.discovery_prefix}/status", 0))
        with self._cond:
            self._connected = self._session_ok = True
            self._announce = True
            self._health = SinkHealth("ok", None)
            if self.cfg.discovery:
                # Discovery waits for the configs the broker keeps for this Pi: those
                # that are no longer ours (renamed or removed rules, the unique ids
                # of older versions) are cleared first, so Home Assistant keeps no
                # orphan and the new entity gets the old entity id.
                self._discovered = False
                self._discovery_at = time.monotonic() + _SUBACK_LIMIT
                _rc, self._configs_mid = client.subscribe(self._own_configs, 0)
            self._cond.notify()
        if subscriptions:
            client.subscribe(subscriptions)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        with self._cond:
            if mid == self._configs_mid and not self._discovered:
                self._discovery_at = time.monotonic() + _RETAINED_SETTLE
                self._cond.notify()

    def _check_device_free(self) -> None:
        """Before each connect: refuse to take over another daemon's place.

        Two daemons with one ``mqtt.device`` share a client id: each connect
        would throw the other off, for ever. So the broker's retained
        availability and status are read first, by a client of another id.
        """
        if self._closed:
            return
        topics = self.topics
        found = broker.probe_retained(self.cfg, [topics.availability, topics.status])
        if found is None:
            return
        who = broker.other_daemon(
            found, topics.availability, topics.status, host=_HOST, pid=os.getpid()
        )
        if who is not None:
            raise broker.DeviceInUse(
                f"{broker.where(self.cfg)}: mqtt.device {self.device!r} is in use by the"
                f" edge-daemon on {who}; give each Pi its own mqtt.device (this one stays"
                " off MQTT and checks again now and then)"
            )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        error = getattr(client, "last_connect_error", None)
        self._health = SinkHealth("failing", broker.connect_error(self.cfg, error))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self._cond:
            self._connected = False
            was_ok, self._session_ok = self._session_ok, False
            if self._closed:
                return
        if was_ok:
            self._health = SinkHealth(
                "failing",
                f"{broker.where(self.cfg)}: connection lost ({reason}); reconnecting",
            )

    @property
    def _own_configs(self) -> str:
        return forget_subscription(self.cfg.discovery_prefix, self.device)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self._is_own_config(msg.topic):
            self._forget_stale_config(msg.topic, bytes(msg.payload))
            return
        if msg.retain:
            return  # an old message kept by the broker is no request
        if self.cfg.commands and msg.topic == self.topics.reload:
            self.ctx.request_reload()
        elif msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload == b"online":
            with self._cond:
                self._discovery_at = time.monotonic() + random.uniform(0, _REDISCOVER_SPREAD)
                self._cond.notify()

    def _is_own_config(self, topic: str) -> bool:
        """``topic`` is <discovery_prefix>/<component>/<this device>/<object>/config."""
        prefix = self.cfg.discovery_prefix.split("/")
        parts = topic.split("/")
        n = len(prefix)
        return (
            len(parts) == n + 4
            and parts[:n] == prefix
            and parts[n + 1] == self.device
            and parts[-1] == "config"
        )

    def _forget_stale_config(self, topic: str, payload: bytes) -> None:
        """Clear a retained discovery config of this Pi that it no longer announces."""
        if not payload or topic in self._config_topics or not announced_by_us(payload, self.device):
            return  # empty, still announced, or another program's under the same node id
        self.client.publish(topic, b"", qos=1, retain=True)
        with self._cond:
            if not self._discovered and self._discovery_at is not None:
                self._discovery_at = max(self._discovery_at, time.monotonic() + _MIGRATE_GAP)

    # -- this sink's thread --------------------------------------------------------------
    def publish(
        self, topic: str, payload: str | bytes, *, retain: bool = False, qos: Optional[int] = None
    ) -> bool:
        """Hand one message to paho. While the broker is away, QoS 1/2 messages wait
        here, at most mqtt.max_queued of them (beyond, the oldest are dropped and
        counted); they go out after the next connect's availability and discovery."""
        q = self.cfg.qos if qos is None else qos
        if not self._connected:
            if q == 0:
                self.dropped += 1
                return False
            with self._cond:
                if len(self._offline) == self._offline.maxlen:
                    self.dropped += 1
                self._offline.append((topic, payload, retain, q))
            return True
        info = self.client.publish(topic, payload, qos=q, retain=retain)
        # NO_CONN: a QoS 0 message is lost, a QoS 1/2 one waits in paho for the connection.
        if info.rc == 0 or (info.rc == _NO_CONN and q > 0):
            self.published += 1
            return True
        self.dropped += 1
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                jobs, wake = self._plan(time.monotonic())
                if not jobs:
                    if self._closed:
                        return
                    self._cond.wait(None if wake is None else max(0.0, wake - time.monotonic()))
                    continue
            for job in jobs:
                try:
                    job()
                except Exception as exc:  # a bad payload must not stop the sink
                    self._health = SinkHealth("failing", f"MQTT publish failed: {exc}")

    def _plan(self, now: float) -> tuple[list[Callable[[], object]], Optional[float]]:
        """What to send now (called with the lock held), and when to look again."""
        jobs: list[Callable[[], object]] = []
        if not self._connected:
            # Events are a history: they wait (bounded by mqtt.max_queued) in paho's queue.
            return self._plan_events(now, connected=False), None
        cfg = self.cfg
        if self._announce:
            self._announce = False
            self._state_at = self._attr_at = self._attr_sent = None  # send the latest again
            self._status_dirty = self._status is not None
            jobs.append(lambda: self.publish(self.topics.availability, "online", retain=True))
            if self.rules:
                from .events import rule_states

                states = rule_states(self.topics.base, self.rules, set(self._open_rules))
                jobs.append(lambda: self._send_all(states))
        if self._discovery_at is not None and now >= self._discovery_at:
            self._discovery_at = None
            self._discovered = True
            jobs.append(self._send_discovery)
        if self._offline:  # what waited while the broker was away, after the announcement
            waited = list(self._offline)
            self._offline.clear()
            jobs.append(lambda: self._send_all(waited))
        wake = self._discovery_at
        item = self._item
        if item is not None:
            index = item.top1.index if item.top1 else None
            score = item.top1.score if item.top1 else None
            due = state_due(
                self._state_index,
                self._state_at,
                index,
                min_interval=cfg.min_interval,
                heartbeat=cfg.heartbeat,
                last_score=self._state_score,
                score=score,
            )
            if now >= due:
                self._state_index, self._state_score, self._state_at = index, score, now
                payload = _json(state_payload(item, self._model))
                jobs.append(lambda: self.publish(self.topics.state, payload, retain=True))
            elif now < due:
                wake = due if wake is None else min(wake, due)
            key = attributes_key(item, self._model)
            if attributes_changed(self._attr_sent, key):
                attr_due = (
                    float("-inf")
                    if self._attr_at is None
                    else self._attr_at + cfg.attributes_interval
                )
                if now >= attr_due:
                    self._attr_at, self._attr_sent = now, key
                    attrs = _json(
                        {"predictions": [p.as_dict() for p in item.smoothed], "model": self._model}
                    )
                    jobs.append(lambda: self.publish(self.topics.attributes, attrs, retain=True))
                else:
                    wake = attr_due if wake is None else min(wake, attr_due)
            else:
                # Frames wake this thread for the top-1 only: look at the rest now and then.
                look = now + max(cfg.attributes_interval, _ATTRIBUTES_LOOK)
                wake = look if wake is None else min(wake, look)
        jobs.extend(self._plan_events(now))
        if self._status_dirty and self._status is not None:
            self._status_dirty = False
            status = _json({"host": _HOST, **self._status})
            jobs.append(lambda: self.publish(self.topics.status, status, retain=True))
        return jobs, wake

    def _plan_events(self, now: float, connected: bool = True) -> list[Callable[[], object]]:
        """Jobs for pending event notices and, when connected, the latest snapshot."""
        if self._event_messages is None:
            return []
        messages = []
        while self._notices:
            notice = self._notices.popleft()
            rule = str(notice.event.get("rule"))
            if notice.type == "start":
                self._open_rules.add(rule)
            elif notice.type == "end":
                self._open_rules.discard(rule)
            messages.extend(self._event_messages(notice, now))
        jobs: list[Callable[[], object]] = []
        if messages:
            jobs.append(lambda: self._send_all(messages))
        image, self._snapshot = (self._snapshot, None) if connected else (None, self._snapshot)
        if image is not None:
            jobs.append(lambda: self._send_snapshot(image))
        return jobs

    def _send_all(self, messages: Sequence[tuple[str, str | bytes, bool, int]]) -> None:
        for topic, payload, retain, qos in messages:
            self.publish(topic, payload, retain=retain, qos=qos)

    def _send_snapshot(self, image: np.ndarray) -> None:
        from ..events.snapshots import encode_jpeg
        from .events import snapshot_message

        jpeg = encode_jpeg(image, self.jpeg_quality)
        self._send_all([snapshot_message(self.topics.base, jpeg)])

    def _discovery(self) -> list[tuple[str, str]]:
        extra = self.extra_entities()
        if self.rules:
            from .events import event_entities

            extra = [*event_entities(self.topics.base, self.rules), *extra]
        return discovery_messages(
            discovery_prefix=self.cfg.discovery_prefix,
            device=self.device,
            topics=self.topics,
            configuration_url=self.cfg.configuration_url,
            extra=extra,
        )

    def _send_discovery(self) -> None:
        messages = self._discovery()
        self._config_topics = {topic for topic, _ in messages}
        for topic, payload in messages:
            self.publish(topic, payload, retain=True)


def make_mqtt_sink(cfg: Config, ctx: SinkContext) -> Optional[Sink]:
    """The registry's factory: an MQTT sink, or None while ``mqtt.host`` is not set."""
    if cfg.mqtt.host is None:
        return None
    try:
        return MqttSink(
            cfg.mqtt,
            ctx,
            rules=[r.name for r in cfg.events.rules],
            jpeg_quality=cfg.events.jpeg_quality,
        )
    except EdgeDaemonError:
        raise
    except (OSError, ValueError) as exc:
        raise EdgeDaemonError(f"{broker.where(cfg.mqtt)}: cannot set up MQTT ({exc})") from None
