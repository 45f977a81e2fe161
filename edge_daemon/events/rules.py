"""The rules engine: the smoothed top-1 of each frame in, event notices out. Pure.

A rule's event starts when one of its labels is the smoothed top-1 with a
score of at least ``min_score`` for ``min_frames`` frames in a row; it starts
at the first of those frames. It ends on the first frame that comes
``end_after`` seconds after the last matching one, and its ``end`` is that
last matching frame. After it ends the rule rests for ``cooldown`` seconds.
While an event is open, each frame whose score beats the event's best so far
sends an ``update`` notice marked ``best`` (its image is the new snapshot),
and the event's ``label`` becomes that frame's label.

While an event goes on without a better frame, an ``update`` not marked
best goes out at most once per ``HEARTBEAT`` seconds, so a store knows when
the subject was last seen (the event dict's ``last_seen``, beside ``FIELDS``).

Event ids come from a counter the daemon seeds from the database at start.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Optional

from ..config import RuleConfig
from ..errors import ConfigError
from ..postprocess import Prediction
from ..sinks.base import EventNotice
from ..sinks.prediction_log import iso_utc
from .labels import LabelError, LabelIndex, first_name

# Seconds between "still there" updates of an open event: how stale an open
# event's last sighting (and frame count) in the database can be after a stop.
HEARTBEAT = 0.25

# The fields of an event, in the order the database, --json and the API list them.
FIELDS = (
    "id",
    "rule",
    "label",
    "index",
    "start",
    "end",
    "score",
    "frames",
    "snapshot",
    "model",
    "model_sha256",
    "cut_short",
)


@dataclass(frozen=True)
class Rule:
    """A rule with its labels resolved to the model's output indices."""

    name: str
    indices: frozenset[int]
    min_score: float
    min_frames: int
    end_after: float
    cooldown: float


def compile_rules(
    rules: Sequence[RuleConfig], labels: LabelIndex, config_file: Optional[str] = None
) -> list[Rule]:
    """Resolve each rule's labels; a ConfigError naming file, line and key for an unknown one."""
    out = []
    for i, rule in enumerate(rules):
        try:
            indices = labels.resolve_all(rule.labels)
        except LabelError as exc:
            where = f"{config_file or '<config>'}" + (f":{rule.line}" if rule.line else "")
            raise ConfigError(f"{where}: events.rules[{i}].labels: {exc}") from None
        out.append(
            Rule(
                rule.name,
                frozenset(indices),
                rule.min_score,
                rule.min_frames,
                rule.end_after,
                rule.cooldown,
            )
        )
    return out


def local_day(t: float) -> date:
    """The calendar day of a time, in the machine's time zone (what "today" means)."""
    return datetime.fromtimestamp(t).date()


@dataclass
class _RuleState:
    rule: Rule
    run: int = 0  # matching frames in a row before an event starts
    run_start: float = 0.0
    event: Optional[dict[str, Any]] = None
    last_seen: float = 0.0
    last_notice: float = 0.0
    rest_until: float = 0.0


@dataclass
class Tracker:
    """Runs the rules over each frame's smoothed top-1 (on the inference thread)."""

    rules: Sequence[Rule]
    model: str
    model_sha256: str
    next_id: int = 1
    today: dict[str, int] = field(default_factory=dict)  # label -> events ended today
    day: Optional[date] = None

    def __post_init__(self) -> None:
        self._states = [_RuleState(r) for r in self.rules]
        if self.day is None:
            self.day = local_day(time.time())

    def update(self, top1: Optional[Prediction], t: float) -> tuple[EventNotice, ...]:
        """One frame's smoothed top-1 (None: nothing scored) at time ``t`` (time.time())."""
        notices: list[EventNotice] = []
        for st in self._states:
            rule = st.rule
            match = top1 is not None and top1.index in rule.indices and top1.score >= rule.min_score
            ev = st.event
            if ev is not None:
                if match:
                    assert top1 is not None
                    ev["frames"] += 1
                    st.last_seen = ev["last_seen"] = t
                    if top1.score > ev["score"]:
                        ev["score"] = top1.score
                        ev["label"], ev["index"] = top1.label, top1.index
                        st.last_notice = t
                        notices.append(EventNotice("update", dict(ev), best=True))
                    elif t - st.last_notice >= HEARTBEAT:
                        st.last_notice = t
                        notices.append(EventNotice("update", dict(ev)))
                elif t - st.last_seen >= rule.end_after:
                    notices.append(self._end(st, t, cut_short=False))
                continue
            if t < st.rest_until or not match:
                st.run = 0
                continue
            assert top1 is not None
            if st.run == 0:
                st.run_start = t
            st.run += 1
            if st.run >= rule.min_frames:
                st.event = {
                    "id": self.next_id,
                    "rule": rule.name,
                    "label": top1.label,
                    "index": top1.index,
                    "start": st.run_start,
                    "end": None,
                    "score": top1.score,
                    "frames": st.run,
                    "snapshot": None,
                    "model": self.model,
                    "model_sha256": self.model_sha256,
                    "cut_short": False,
                    "last_seen": t,
                }
                self.next_id += 1
                st.last_seen = st.last_notice = t
                st.run = 0
                notices.append(EventNotice("start", dict(st.event), best=True))
        return tuple(notices)

    def _end(self, st: _RuleState, t: float, *, cut_short: bool) -> EventNotice:
        ev = st.event
        assert ev is not None
        ev["end"] = st.last_seen
        ev["cut_short"] = cut_short
        st.event = None
        st.rest_until = t + st.rule.cooldown
        self._count(ev, t)
        return EventNotice("end", dict(ev))

    def _count(self, ev: dict[str, Any], now: float) -> None:
        self._roll(now)
        if local_day(ev["start"]) == self.day:
            name = first_name(ev["label"])
            self.today[name] = self.today.get(name, 0) + 1

    def _roll(self, now: float) -> None:
        day = local_day(now)
        if day != self.day:
            self.day, self.today = day, {}

    def close_all(self, t: float) -> tuple[EventNotice, ...]:
        """End every open event now, marked cut short (a stop or a model change)."""
        return tuple(self._end(st, t, cut_short=True) for st in self._states if st.event)

    def any_open(self) -> bool:
        """Whether an event is open now (cheap: the change gate asks every frame)."""
        return any(st.event is not None for st in self._states)

    def open_events(self) -> list[dict[str, Any]]:
        return [dict(st.event) for st in self._states if st.event is not None]

    def successor(
        self, rules: Sequence[Rule], model: str, model_sha256: str
    ) -> tuple[Tracker, tuple[EventNotice, ...]]:
        """The tracker after a reload, and the end notices of events it could not keep.

        With the same model, a rule of the same name keeps its open event; a new
        model ends every open event (cut short), since its scores are another's.
        """
        now = time.time()
        new = Tracker(rules, model, model_sha256, self.next_id, dict(self.today), self.day)
        ended: list[EventNotice] = []
        kept = {st.rule.name: st for st in self._states if st.event is not None}
        for st in new._states:
            old = kept.pop(st.rule.name, None)
            if old is not None and model_sha256 == self.model_sha256:
                st.event, st.last_seen, st.last_notice = old.event, old.last_seen, old.last_notice
                old.event = None
        ended.extend(self.close_all(now))  # rules gone, or a new model
        new.today, new.day = dict(self.today), self.day
        return new, tuple(ended)

    def status(self, now: Optional[float] = None) -> dict[str, Any]:
        """The status object's ``events``: open events and counts per label today."""
        now = time.time() if now is None else now
        self._roll(now)
        counts = dict(self.today)
        for ev in self.open_events():
            if local_day(ev["start"]) == self.day:
                name = first_name(ev["label"])
                counts[name] = counts.get(name, 0) + 1
        return {
            "open": [
                {
                    "id": ev["id"],
                    "rule": ev["rule"],
                    "label": ev["label"],
                    "start": iso_utc(ev["start"]),
                    "score": round(ev["score"], 6),
                    "frames": ev["frames"],
                }
                for ev in self.open_events()
            ],
            "today": {
                "date": self.day.isoformat() if self.day else None,
                "events": sum(counts.values()),
                "labels": dict(sorted(counts.items())),
            },
        }
