"""``edge-daemon teach``: add, list and remove samples; train (and apply) the taught model."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, Callable, Optional

from ..config import Config
from ..errors import TeachError
from ..subcommand import with_config
from . import teach_dir
from .samples import SampleStore, check_class_name


def _store(cfg: Config) -> SampleStore:
    return SampleStore(teach_dir(cfg))


def _local(t: Optional[float]) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _warn(text: str) -> None:
    print(f"edge-daemon: {text}", file=sys.stderr, flush=True)


def cmd_add(cfg: Config, args: argparse.Namespace) -> int:
    store = _store(cfg)
    if not args.files and not args.events:
        raise TeachError("teach add: name image files, or --event ID for event snapshots")
    check_class_name(args.cls)
    added = refused = 0
    for path in args.files:
        try:
            store.add_file(args.cls, path)
            added += 1
        except TeachError as exc:
            _warn(str(exc))
            refused += 1
    if args.events:
        from ..events import events_dir
        from ..events.history import EventHistory
        from .samples import read_sample_file

        history = EventHistory(events_dir(cfg))
        for event_id in args.events:
            ev = history.get(event_id)
            if ev is None:
                _warn(f"no event {event_id} in {history.path}; see `edge-daemon events`")
                refused += 1
                continue
            snap = history.snapshot_file(ev)
            if snap is None:
                _warn(f"event {event_id} has no snapshot (events.snapshots off, or deleted)")
                refused += 1
                continue
            try:
                store.add_jpeg(
                    args.cls, read_sample_file(str(snap)), source="event", extra={"event": event_id}
                )
                added += 1
            except TeachError as exc:
                _warn(str(exc))
                refused += 1
    n = len(store.classes().get(store.canonical_class(args.cls), []))
    note = f"; {refused} refused (above)" if refused else ""
    print(f"added {added} sample{'s' if added != 1 else ''} to {args.cls!r} ({n} now){note}")
    return 1 if refused else 0


def listing(cfg: Config) -> dict[str, Any]:
    """What ``teach list --json`` prints: the classes, their samples, the taught model."""
    from .train import read_report

    root = teach_dir(cfg)
    classes = _store(cfg).classes()
    return {
        "dir": root,
        "classes": [
            {
                "name": cls,
                "count": len(samples),
                "last_added": max((s.added for s in samples), default=None),
                "samples": [s.as_json() for s in samples],
            }
            for cls, samples in classes.items()
        ],
        "model": read_report(root),
    }


def cmd_list(cfg: Config, args: argparse.Namespace) -> int:
    shown = listing(cfg)
    if args.cls is not None:
        wanted = [c for c in shown["classes"] if c["name"].casefold() == args.cls.casefold()]
        if not wanted:
            raise TeachError(
                f"no class {args.cls!r} in {shown['dir']}; see `edge-daemon teach list`"
            )
        shown["classes"] = wanted
    if args.json:
        print(json.dumps(shown, ensure_ascii=False))
        return 0
    if not shown["classes"]:
        print(f"no samples yet in {shown['dir']}; add some with `edge-daemon teach add`")
    else:
        width = max(5, *(len(c["name"]) for c in shown["classes"]))
        print(f"{'class':<{width}}  samples  last added")
        for c in shown["classes"]:
            print(f"{c['name']:<{width}}  {c['count']:>7}  {_local(c['last_added'])}")
            if args.cls is not None:
                for s in c["samples"]:
                    print(f"    {s['id']}  {_local(s['added'])}  {s['source']}")
    report = shown["model"]
    if report:
        print(
            f"taught model: {', '.join(report.get('classes', []))}; cross-validated accuracy"
            f" {100 * float(report.get('accuracy', 0)):.1f}%, trained {report.get('date')}"
        )
    return 0


def cmd_remove(cfg: Config, args: argparse.Namespace) -> int:
    store = _store(cfg)
    n = store.remove(args.cls, args.samples)
    if args.samples:
        print(f"removed {n} sample{'s' if n != 1 else ''} of {args.cls!r}")
    else:
        print(f"removed class {args.cls!r} ({n} sample{'s' if n != 1 else ''})")
    print("the taught model changes when you train again (edge-daemon teach train)")
    return 0


def format_report(report: dict[str, Any]) -> list[str]:
    """The training report as the terminal shows it: accuracy, confusion matrix, export."""
    classes = report["classes"]
    counts = report["counts"]
    secs = report["seconds"]
    width = max(8, *(len(c) for c in classes))
    lines = [
        f"trained {len(classes)} classes on {report['samples']} samples"
        f" ({report['embedded']} embedded now, {report['samples'] - report['embedded']} cached)"
        f" in {secs['total']:.1f} s",
        f"cross-validated accuracy ({report['folds']}-fold): {100 * report['accuracy']:.1f}%",
    ]
    for c in classes:
        share = 100 * report["per_class"][c]
        lines.append(f"  {c:<{width}}  {counts[c]:>4} samples  {share:5.1f}%")
    cell = max(5, *(len(c) for c in classes))
    lines.append("confusion matrix (rows: the true class, columns: what it was taken for):")
    lines.append("  " + " " * width + "".join(f" {c:>{cell}}" for c in classes))
    for c, row in zip(classes, report["confusion"]):
        lines.append(f"  {c:<{width}}" + "".join(f" {v:>{cell}}" for v in row))
    for s in report.get("skipped", []):
        lines.append(f"skipped {s['file']}: {s['reason']}")
    agree = report["agreement"]
    model = report["model"]
    lines.append(
        f"model: {model['path']} ({model['bytes'] / 1e6:.1f} MB, {model['dtype']}), labels"
        f" {model['labels']}; its top-1 agrees with the trained layer on {agree['agree']} of"
        f" {agree['checked']} samples"
    )
    return lines


def cmd_train(
    cfg: Config, args: argparse.Namespace, send_reload: Optional[Callable[[int], None]]
) -> int:
    from .train import train

    def progress(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    if args.apply:
        from .apply import check_can_apply

        check_can_apply(cfg)
    report = train(cfg, progress=progress).as_json()
    applied: Optional[str] = None
    if args.apply:
        from .apply import apply

        assert send_reload is not None
        applied = apply(cfg, send_reload, model_sha256=report["model"]["sha256"])
    if args.json:
        print(json.dumps({**report, "applied": applied}, ensure_ascii=False))
        return 0
    for line in format_report(report):
        print(line)
    if applied:
        print(applied)
    elif not args.apply:
        print("use it now: edge-daemon teach train --apply, or reload the daemon")
    return 0


def add_parser(
    sub: Any,
    parents: list[argparse.ArgumentParser],
    send_reload: Optional[Callable[[int], None]] = None,
) -> None:
    """The ``teach`` command and its actions, on the main parser's subparsers.

    ``send_reload(pid)`` asks a running daemon to reload (``--apply``).
    """
    t = sub.add_parser(
        "teach", parents=parents, help="teach your own classes: samples, training, the model"
    )
    act = t.add_subparsers(dest="teach_command", metavar="ACTION", required=True)
    a = act.add_parser(
        "add", parents=parents, help="add photos (or event snapshots) as samples of CLASS"
    )
    a.add_argument("cls", metavar="CLASS", help="the class, e.g. open (created if new)")
    a.add_argument("files", nargs="*", metavar="FILE", help="image files")
    a.add_argument(
        "--event", dest="events", type=int, nargs="+", default=[], metavar="ID",
        help="event ids whose snapshots to add (see `edge-daemon events`)",
    )  # fmt: skip
    a.set_defaults(func=with_config(cmd_add))
    ls = act.add_parser("list", parents=parents, help="classes, sample counts, the taught model")
    ls.add_argument("cls", nargs="?", metavar="CLASS", help="also list this class's sample ids")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=with_config(cmd_list))
    r = act.add_parser(
        "remove", parents=parents, help="remove samples of CLASS (all of them: the class)"
    )
    r.add_argument("cls", metavar="CLASS")
    r.add_argument("samples", nargs="*", metavar="SAMPLE", help="sample ids (teach list CLASS)")
    r.set_defaults(func=with_config(cmd_remove))
    tr = act.add_parser(
        "train", parents=parents, help="train the taught model from the samples and install it"
    )
    tr.add_argument(
        "--apply", action="store_true", help="then have the running daemon reload onto it"
    )
    tr.add_argument("--json", action="store_true", help="print the report as JSON")
    tr.set_defaults(func=with_config(lambda cfg, args: cmd_train(cfg, args, send_reload)))
