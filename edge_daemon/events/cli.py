"""``edge-daemon events``: list, show, delete, export and summarize the event history."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from ..config import Config
from ..errors import EdgeDaemonError
from ..subcommand import with_config
from . import events_dir, store
from .history import EventHistory, as_json
from .labels import first_name
from .rules import FIELDS

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: Optional[float] = None) -> float:
    """``--since``: today, yesterday, 90s / 30m / 2h / 7d ago, or an ISO date or time
    (local time unless it names a zone)."""
    now = time.time() if now is None else now
    word = text.strip().lower()
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "today":
        return midnight.timestamp()
    if word == "yesterday":
        return (midnight - timedelta(days=1)).timestamp()
    m = _RELATIVE.match(word)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise EdgeDaemonError(
            f"--since: cannot read {text!r}; use today, yesterday, 30m, 2h, 7d,"
            " 2026-11-30 or 2026-11-30T07:00"
        ) from None


def _local(t: Optional[float]) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t is not None else "-"


def _line(ev: dict[str, Any]) -> str:
    length = f"{ev['end'] - ev['start']:7.1f} s" if ev["end"] is not None else "   open  "
    flags = "  (cut short)" if ev["cut_short"] else ""
    return (
        f"{ev['id']:>6}  {_local(ev['start'])}  {length}  {ev['score']:.2f}"
        f"  {first_name(ev['label']):<24} {ev['rule']}{flags}"
    )


def _history(cfg: Config) -> EventHistory:
    return EventHistory(events_dir(cfg))


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "since": parse_when(args.since) if args.since else None,
        "rule": args.rule,
        "label": args.label,
    }


def cmd_list(cfg: Config, args: argparse.Namespace) -> int:
    history = _history(cfg)
    events = history.list(**_filters(args))
    if args.json:
        for ev in events:
            print(json.dumps(as_json(ev, history.dir), ensure_ascii=False), flush=True)
        return 0
    if not events:
        print("no events" + (" match" if any(_filters(args).values()) else " yet"))
        return 0
    print(f"{'id':>6}  {'start':<19}  {'length':>9}  score  {'label':<24} rule")
    for ev in events:
        print(_line(ev))
    return 0


def cmd_show(cfg: Config, args: argparse.Namespace) -> int:
    history = _history(cfg)
    ev = history.get(args.id)
    if ev is None:
        raise EdgeDaemonError(f"no event {args.id} in {history.path}; see `edge-daemon events`")
    shown = as_json(ev, history.dir)
    snap = history.snapshot_file(ev)
    shown["snapshot"] = str(snap) if snap else None
    if args.json:
        print(json.dumps(shown, ensure_ascii=False))
        return 0
    width = max(len(k) for k in shown)
    for key, value in shown.items():
        if key in ("start", "end"):
            value = f"{_local(ev[key])} ({value})" if value else "open"
        print(f"{key:<{width}}  {value if value is not None else '-'}")
    return 0


def cmd_delete(cfg: Config, args: argparse.Namespace) -> int:
    folder = events_dir(cfg)
    if not os.path.exists(store.db_path(folder)):
        raise EdgeDaemonError(f"{store.db_path(folder)}: no events yet; nothing to delete")
    conn = store.open_writer(folder)
    try:
        found = store.delete_events(conn, folder, args.ids)
    finally:
        conn.close()
    missing = sorted(set(args.ids) - set(found))
    if found:
        print("deleted " + ", ".join(str(i) for i in found))
    for i in missing:
        print(f"edge-daemon: no event {i}")
    return 1 if missing else 0


def cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    history = _history(cfg)
    events = history.list(**_filters(args))
    out = Path(args.dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "events.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(FIELDS))
            writer.writeheader()
            copied = 0
            for ev in events:
                row = as_json(ev)
                snap = history.snapshot_file(ev)
                if snap is not None:
                    target = out / ev["snapshot"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(snap, target)
                    copied += 1
                else:
                    row["snapshot"] = None
                writer.writerow(row)
    except OSError as exc:
        raise EdgeDaemonError(f"{out}: cannot export there ({exc.strerror or exc})") from None
    print(f"{len(events)} events to {out / 'events.csv'}, {copied} snapshots copied")
    return 0


def cmd_summary(cfg: Config, args: argparse.Namespace) -> int:
    summary = _history(cfg).summary()
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    if not summary["days"]:
        print("no events yet")
        return 0
    for day, counts in summary["days"].items():
        total = sum(counts.values())
        print(f"{day}  {total} event{'s' if total != 1 else ''}")
        for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"    {n:>5}  {label}")
    first = summary["first_today"]
    print(f"first sightings today ({summary['today']}):" if first else "no sightings today")
    for f in first:
        when = datetime.fromisoformat(f["start"].replace("Z", "+00:00")).astimezone()
        print(f"    {when.strftime('%H:%M:%S')}  {f['label']}  (event {f['id']})")
    return 0


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``events`` command and its actions, on the main parser's subparsers."""
    e = sub.add_parser(
        "events", parents=parents, help="list, show, delete, export or summarize events"
    )

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--since", metavar="WHEN", help="today, yesterday, 2h, 7d, 2026-11-30, 2026-11-30T07:00"
        )
        p.add_argument("--rule", metavar="NAME", help="only this rule's events")
        p.add_argument("--label", metavar="L", help="only this label (any of its names)")

    filters(e)
    e.add_argument("--json", action="store_true", help="one JSON object per event")
    e.set_defaults(func=with_config(cmd_list))
    act = e.add_subparsers(dest="events_command", metavar="ACTION")
    s = act.add_parser("show", parents=parents, help="one event, with its snapshot's path")
    s.add_argument("id", type=int, metavar="ID")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=with_config(cmd_show))
    d = act.add_parser("delete", parents=parents, help="delete events (rows and snapshots)")
    d.add_argument("ids", type=int, nargs="+", metavar="ID")
    d.set_defaults(func=with_config(cmd_delete))
    x = act.add_parser(
        "export", parents=parents, help="write DIR/events.csv and copy the snapshots into DIR"
    )
    filters(x)
    x.add_argument("dir", metavar="DIR")
    x.set_defaults(func=with_config(cmd_export))
    m = act.add_parser(
        "summary", parents=parents, help="events per label per day, first sightings today"
    )
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=with_config(cmd_summary))
