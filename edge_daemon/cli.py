"""The ``edge-daemon`` command: run, classify, check, status, tail, models fetch, bench,
events, teach, config schema.

Every failure is one line on stderr and a non-zero exit; ``--debug`` shows
the traceback as well. Errors are logged once, here at the top.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Optional, Sequence

from . import __version__
from .config import Config, load_config
from .errors import EdgeDaemonError
from .journal import setup_logging
from .status import STATUS_DOWN, status_verdict


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


# -- run ---------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon

    cfg = _config(args)
    setup_logging(cfg.daemon.log_level, debug=args.debug)
    return Daemon(cfg, config_path=cfg.file, max_frames=args.max_frames).run()


# -- classify ----------------------------------------------------------------
def cmd_classify(args: argparse.Namespace) -> int:
    from .engine.model import load_model
    from .pipeline import Classifier
    from .sources.files import decode_image
    from .teach.active import running_config

    cfg = _config(args)
    setup_logging("WARNING", debug=args.debug)
    if args.model is None:
        cfg = running_config(cfg)[0]  # the taught model, as the daemon runs it
    model_cfg = cfg.model
    if args.model is not None:
        model_cfg = dataclasses.replace(
            model_cfg, path=str(Path(args.model).absolute()), labels=None
        )
    if args.labels is not None:
        model_cfg = dataclasses.replace(model_cfg, labels=str(Path(args.labels).absolute()))
    if args.top_k is not None:
        if not 1 <= args.top_k <= 1000:
            raise EdgeDaemonError(f"--top-k: must be between 1 and 1000 (got {args.top_k})")
        model_cfg = dataclasses.replace(model_cfg, top_k=args.top_k)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    model = load_model(cfg)
    failed = 0
    try:
        clf = Classifier.from_config(model, cfg)
        size = (model.input.width, model.input.height)
        for image in args.images:
            try:
                pixels = decode_image(Path(image).read_bytes(), size)
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                print(f"edge-daemon: {image}: not a readable image ({reason})", file=sys.stderr)
                failed += 1
                continue
            result = clf.classify(pixels)
            if args.json:
                preds = [p.as_dict() for p in result.predictions]
                print(json.dumps({"image": image, "predictions": preds}), flush=True)
            else:
                print(f"{image}:")
                for p in result.predictions:
                    print(f"  {p.score:6.3f}  {p.label}  [{p.index}]")
    finally:
        model.close()
    return 1 if failed else 0


# -- check -------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from .engine.model import load_model
    from .teach.active import check_taught, running_config

    cfg = _config(args)
    setup_logging("WARNING", debug=args.debug)
    run_cfg, taught = running_config(cfg)
    model = load_model(run_cfg)
    try:
        if taught:
            check_taught(
                run_cfg,
                len(model.labels.labels) + model.labels.offset,
                list(model.labels.labels),
            )
        from .events import events_dir
        from .events.engine import rules_for
        from .gate.describe import describe_gate, describe_region, gives_luma

        rules = rules_for(cfg, model.labels)  # rule labels checked against the model's
        e, i = model.engine, model.input
        quant = f"scale {i.scale:g}, zero point {i.zero_point}" if i.scale else "not quantized"
        out = e.output
        summary = {
            "config": cfg.file or "built-in defaults",
            "model": model.path,
            "sha256": model.sha256,
            "input": f"{i.width}x{i.height} {i.dtype.name} ({quant})",
            "output": f"{list(out.shape)} {out.dtype.name}",
            "labels": f"{len(model.labels.labels)} from {model.labels.source}"
            + (" (offset by one: background class 0)" if model.labels.offset else ""),
            "runtime": e.runtime,
            "delegate": e.delegate,
            "embedding": (
                f"tensor {model.embedding.tensor} {model.embedding.name},"
                f" {model.embedding.dims} dimensions {model.embedding.dtype}"
                if model.embedding is not None
                else f"none: {model.embedding_reason}"
            ),
            "teach": _teach_line(cfg, taught),
            "source": cfg.source.kind
            + (f" {cfg.source.path}" if cfg.source.kind == "files" else ""),
            "prediction_log": cfg.outputs.prediction_log or "off",
            "status_file": cfg.outputs.status_file or "off",
            "mqtt": (
                f"{cfg.mqtt.host}:{cfg.mqtt.port}" + (" (tls)" if cfg.mqtt.tls else "")
                if cfg.mqtt.host
                else "off"
            ),
            "events": (
                f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
                f" ({', '.join(r.name for r in rules)}), kept in {events_dir(cfg)}"
                if rules
                else "off"
            ),
            "http": (
                f"http://{cfg.http.listen}/ (auth {cfg.http.auth or 'none'})"
                if cfg.http.listen
                else "off"
            ),
            "region": describe_region(cfg.preprocess.region),
            "gate": describe_gate(cfg, gives_luma(cfg, model.input.width, model.input.height)),
        }
        if cfg.source.kind == "picamera2":
            camera = _camera_summary(cfg, i.width, i.height)
            if "region" in camera and cfg.preprocess.region is not None:
                camera["region"] = f"{summary['region']}, {camera['region']}"
            summary.update(camera)
        if args.json:
            print(json.dumps(summary))
        else:
            width = max(len(k) for k in summary)
            for k, v in summary.items():
                print(f"{k:<{width}}  {v}")
            print("ok: the config is valid and the model runs")
    finally:
        model.close()
    return 0


def _teach_line(cfg: Config, taught: bool) -> str:
    from .teach import teach_dir
    from .teach.active import read_report

    if taught:
        report = read_report(teach_dir(cfg)) or {}
        accuracy = report.get("accuracy")
        return "the taught model runs" + (
            f" ({', '.join(report.get('classes', []))}; cross-validated accuracy"
            f" {100 * float(accuracy):.1f}%)"
            if isinstance(accuracy, (int, float))
            else ""
        )
    if not cfg.teach.use:
        return "off (teach.use: false)"
    return f"no taught model yet in {teach_dir(cfg)} (edge-daemon teach add, teach train)"


def _camera_summary(cfg: Config, width: int, height: int) -> dict[str, str]:
    """Open the camera as the daemon would: which one, the format chosen, who converts.

    A camera that cannot be opened is reported on the ``camera`` line, not
    an error of the check: the running service may hold it, and an image
    build or a Pi whose camera is attached later has none yet (the daemon
    then runs degraded with the same reason and keeps trying).
    """
    from .daemon import source_size
    from .errors import SourceBusy, SourceError, first_line
    from .sources import make_source

    source = make_source(cfg, source_size(cfg, width, height))
    try:
        source.open()
    except SourceBusy as exc:
        return {"camera": f"not opened: {first_line(exc)}"}
    except SourceError as exc:
        return {"camera": f"not usable: {first_line(exc)}"}
    try:
        details = getattr(source, "details", None)
        return details() if callable(details) else {"camera": source.describe()}
    finally:
        source.close()


# -- status ------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from .sinks.status_file import read_status

    cfg = _config(args)
    path = cfg.outputs.status_file
    if path is None:
        # Not EdgeDaemonError's exit 1: to a health check that would read "degraded".
        print(
            "edge-daemon: error: outputs.status_file is off in the config; there is no status",
            file=sys.stderr,
        )
        return STATUS_DOWN
    try:
        status = read_status(path)
    except FileNotFoundError:
        print(f"edge-daemon: {path}: no status file; the daemon is not running", file=sys.stderr)
        return STATUS_DOWN
    except (OSError, ValueError) as exc:
        print(f"edge-daemon: {path}: unreadable status ({exc})", file=sys.stderr)
        return STATUS_DOWN
    code, word = status_verdict(status, time.time())
    if args.json:
        print(json.dumps({**status, "health": word}))
        return code
    preds = status.get("predictions") or []
    top = preds[0] if preds else None
    lat = status.get("latency_ms") or {}
    print(f"state     {word}" + (f" ({status['reason']})" if status.get("reason") else ""))
    print(f"pid       {status.get('pid')}, started {status.get('started')}")
    print(f"updated   {status.get('updated')}")
    print(f"model     {status.get('model')}")
    print(f"engine    {status.get('runtime')}, delegate {status.get('delegate')}")
    print(f"frames    {status.get('frames')} at {status.get('fps')} fps")
    gate = status.get("gate")
    if isinstance(gate, dict) and gate.get("mode", "off") != "off":
        from .gate.describe import gate_line

        print(f"gate      {gate_line(gate)}")
    if lat:
        print("latency   " + ", ".join(f"{k} {v} ms" for k, v in lat.items() if v is not None))
    if top:
        print(f"top-1     {top['label']} ({top['score']:.3f})")
    events = status.get("events")
    if isinstance(events, dict):
        today = events.get("today") or {}
        counts = today.get("labels") or {}
        busiest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        opened = ", ".join(
            f"{e['label'].split(',')[0]} (#{e['id']})" for e in events.get("open", [])
        )
        print(
            f"events    {today.get('events', 0)} today"
            + (f" ({busiest})" if busiest else "")
            + (f"; now: {opened}" if opened else "")
        )
    if status.get("last_error"):
        print(f"error     {status.get('last_error_at')}: {status['last_error']}")
    return code


# -- tail --------------------------------------------------------------------
def format_line(raw: str) -> Optional[str]:
    """A prediction-log line in a readable form; None for a torn or foreign line."""
    try:
        rec = json.loads(raw)
        preds = rec["predictions"]
        best = ", ".join(f"{p['label'].split(',')[0]} {p['score']:.2f}" for p in preds[:3])
        image = f" {rec['image']}" if rec.get("image") else ""
        return f"{rec['ts']}  #{rec['frame']}{image}  {best or '-'}"
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def _tail_lines(f: BinaryIO, n: int) -> tuple[list[str], int]:
    f.seek(0, os.SEEK_END)
    end = f.tell()
    block, data = 64 * 1024, b""
    pos = end
    while pos > 0 and data.count(b"\n") <= n:
        pos = max(0, pos - block)
        f.seek(pos)
        data = f.read(end - pos)
    # Only complete lines: a last line without its newline may be mid-write.
    complete = data[: data.rfind(b"\n") + 1] if b"\n" in data else b""
    lines = complete.decode("utf-8", "replace").splitlines()
    if pos > 0 and lines:
        lines = lines[1:]  # the first may be a fragment of a longer line
    return lines[-n:] if n else [], pos + len(complete)


def _next_rotated(path: str, done: BinaryIO, backups: int) -> Optional[BinaryIO]:
    """The file written after ``done`` (now renamed ``path.K``): ``path.K-1``, or ``path``.

    A slow reader may see several rotations at once; taking ``path`` then
    would skip the files between. None when ``path`` is missing (the next line
    creates it); ``path`` when ``done`` is no longer among the backups.
    """
    inode = os.fstat(done.fileno()).st_ino

    def position() -> Optional[int]:
        for k in range(1, backups + 1):
            try:
                if os.stat(f"{path}.{k}").st_ino == inode:
                    return k
            except FileNotFoundError:
                continue
        return None

    for _ in range(10):  # the names shift under us while the writer rotates
        k = position()
        name = f"{path}.{k - 1}" if k is not None and k > 1 else path
        try:
            f = open(name, "rb")  # noqa: SIM115 (returned open)
        except FileNotFoundError:
            if name == path:
                return None
            continue
        if k is None or position() == k:
            return f
        f.close()
    return None


def cmd_tail(args: argparse.Namespace) -> int:
    cfg = _config(args)
    path = cfg.outputs.prediction_log
    if path is None:
        raise EdgeDaemonError("outputs.prediction_log is off in the config; nothing to tail")

    def show(line: str) -> None:
        text = line if args.raw else format_line(line)
        if text is not None:
            print(text, flush=True)

    # The file the last lines come from is the file followed: opening the name
    # again could land on the next file after a rotation, losing the lines
    # between. Between a rotation and the next line there is no file at all.
    f: Optional[BinaryIO] = None
    try:
        f = open(path, "rb")  # noqa: SIM115 (kept open while following)
    except FileNotFoundError:
        if not args.follow:
            message = f"{path}: no prediction log yet; start the daemon first"
            raise EdgeDaemonError(message) from None
    else:
        lines, offset = _tail_lines(f, args.n)
        for line in lines:
            show(line)
        f.seek(offset)
    if not args.follow:
        if f is not None:
            f.close()
        return 0
    # Follow the open file, not the name: after a rotation the rest of the old
    # file (lines written since the last read) is read, then each file after it.
    pending = b""

    def drain() -> None:
        nonlocal pending
        assert f is not None
        while chunk := f.read(65536):
            pending += chunk
            *whole, pending = pending.split(b"\n")  # an incomplete last line waits
            for part in whole:
                show(part.decode("utf-8", "replace"))

    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 (kept open across iterations)
                except FileNotFoundError:
                    time.sleep(0.2)
                    continue
                pending = b""
            drain()
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is None or st.st_ino != os.fstat(f.fileno()).st_ino:  # rotated
                drain()  # what was written just before the rename
                following = f
                f = _next_rotated(path, following, cfg.outputs.backups)
                following.close()
                pending = b""
                if f is None:
                    time.sleep(0.2)
                continue
            if st.st_size < f.tell():  # truncated in place (backups: 0)
                f.seek(0)
                pending = b""
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        if f is not None:
            f.close()


# -- models fetch ------------------------------------------------------------
def cmd_models_fetch(args: argparse.Namespace) -> int:
    from .fetch import DEFAULT_URL, fetch

    setup_logging("WARNING", debug=args.debug)
    lines = fetch(
        Path(args.dest),
        source_dir=Path(args.source) if args.source else None,
        images_dir=Path(args.images) if args.images else None,
        url=args.url or os.environ.get("EDGE_DAEMON_MODEL_URL") or DEFAULT_URL,
    )
    for line in lines:
        print(line)
    return 0


# -- config schema -----------------------------------------------------------
def cmd_config_schema(args: argparse.Namespace) -> int:
    from .config_schema import schema_text

    sys.stdout.write(schema_text())
    return 0


# -- bench -------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    cfg = _config(args)
    setup_logging("WARNING", debug=args.debug)
    code: int = run_bench(cfg, frames=args.frames, as_json=args.json)
    return code


# -- fleet, mqtt forget ------------------------------------------------------
def _mqtt_config(args: argparse.Namespace) -> Any:
    from .mqtt.broker import apply_broker_url

    cfg = _config(args)
    return apply_broker_url(cfg.mqtt, args.broker, args.password_file)


def _print_fleet(rows: list[dict[str, Any]], as_json: bool) -> None:
    from .mqtt.fleet import table

    if as_json:
        print(json.dumps(rows), flush=True)
    else:
        print(table(rows), flush=True)


def cmd_fleet(args: argparse.Namespace) -> int:
    from .mqtt.broker import where
    from .mqtt.fleet import FleetView

    setup_logging("WARNING", debug=args.debug)
    mq = _mqtt_config(args)
    view = FleetView(mq)
    try:
        view.settle()
        rows = view.rows()
        if not rows and not args.watch:
            print(
                f"edge-daemon: no edge-daemon has published under {mq.topic_prefix}/ on"
                f" {where(mq)}",
                file=sys.stderr,
            )
            return 1
        _print_fleet(rows, args.json)
        if not args.watch:
            return 0
        redraw = time.monotonic() + 5
        while True:
            changed = view.fleet.changed.wait(1.0)
            if not changed and time.monotonic() < redraw:
                continue
            time.sleep(0.2)  # let a burst of updates land together
            view.fleet.changed.clear()
            redraw = time.monotonic() + 5
            if not args.json and sys.stdout.isatty():
                print("\033[H\033[J", end="")
            elif not args.json:
                print()
            _print_fleet(view.rows(), args.json)
    finally:
        view.close()


def cmd_mqtt_forget(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .mqtt.broker import device_name, where
    from .mqtt.fleet import forget

    setup_logging("WARNING", debug=args.debug)
    mq = _mqtt_config(args)
    if args.device is not None:
        mq = replace(mq, device=args.device)
    cleared, online = forget(mq)
    print(
        f"removed the Home Assistant entities and retained topics of {device_name(mq)}"
        f" from {where(mq)} ({len(cleared)} topics)"
    )
    if online:
        print(
            f"edge-daemon: note: {device_name(mq)} is online; its daemon publishes them again"
            " when it reconnects. Stop it, or set mqtt.discovery: false, first",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (docs/usage.md lists its commands)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    cfg = argparse.ArgumentParser(add_help=False)
    cfg.add_argument(
        "--config",
        metavar="PATH",
        help="YAML config (default: $EDGE_DAEMON_CONFIG, /etc/edge-daemon/"
        "config.yaml, else built-in defaults)",
    )
    p = argparse.ArgumentParser(
        prog="edge-daemon",
        parents=[common],
        description="Always-on TFLite image classifier for a camera.",
    )
    p.add_argument("--version", action="version", version=f"edge-daemon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", parents=[common, cfg], help="run the daemon")
    r.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (exit 0)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("classify", parents=[common, cfg], help="classify image files once")
    c.add_argument(
        "--model",
        metavar="M",
        help="model file (labels then from --labels or the model's metadata)",
    )
    c.add_argument("--labels", metavar="L", help="labels file")
    c.add_argument("--top-k", type=int, metavar="K", help="how many predictions")
    c.add_argument("--json", action="store_true", help="one JSON object per image")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.set_defaults(func=cmd_classify)

    k = sub.add_parser(
        "check", parents=[common, cfg], help="validate the config, load and test-invoke the model"
    )
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_check)

    s = sub.add_parser(
        "status",
        parents=[common, cfg],
        help="show the running daemon's status (exit 0 running, 1 degraded, 2 stopped or stale)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    t = sub.add_parser("tail", parents=[common, cfg], help="show the prediction log")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    t.add_argument("-n", type=int, default=10, metavar="N", help="last N lines (default 10)")
    t.add_argument("--raw", action="store_true", help="print the JSON lines as they are")
    t.set_defaults(func=cmd_tail)

    m = sub.add_parser("models", parents=[common], help="get models")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    f = msub.add_parser(
        "fetch", parents=[common], help="download (or --from DIR copy) the default model and labels"
    )
    f.add_argument(
        "--from", dest="source", metavar="DIR", help="copy from this folder instead of downloading"
    )
    f.add_argument(
        "--dest", default="models", metavar="DIR", help="where to put them (default: ./models)"
    )
    f.add_argument(
        "--images", metavar="DIR", help="also copy sample images from DIR into DEST/samples"
    )
    f.add_argument("--url", help=argparse.SUPPRESS)
    f.set_defaults(func=cmd_models_fetch)

    g = sub.add_parser("config", parents=[common], help="about the config file")
    gsub = g.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    gs = gsub.add_parser(
        "schema",
        parents=[common],
        help="print the config's JSON Schema (editor completion and checks as you type)",
    )
    gs.set_defaults(func=cmd_config_schema)

    b = sub.add_parser(
        "bench",
        parents=[common, cfg],
        help="measure runtimes x delegates x threads on the configured model",
    )
    b.add_argument("--frames", type=int, default=50, metavar="N", help="frames per case")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
    brk = argparse.ArgumentParser(add_help=False)
    brk.add_argument(
        "--broker",
        metavar="URL",
        help="mqtt://[user@]host[:port] or mqtts://... (default: the config's mqtt section)",
    )
    brk.add_argument(
        "--password-file", metavar="PATH", help="file with the broker password (one line)"
    )
    fl = sub.add_parser(
        "fleet",
        parents=[common, cfg, brk],
        help="list every edge-daemon publishing to the MQTT broker",
    )
    fl.add_argument("--json", action="store_true", help="a JSON list of devices")
    fl.add_argument("--watch", action="store_true", help="keep the view updated")
    fl.set_defaults(func=cmd_fleet)

    mq = sub.add_parser("mqtt", parents=[common], help="MQTT and Home Assistant")
    mqsub = mq.add_subparsers(dest="mqtt_command", metavar="ACTION", required=True)
    fg = mqsub.add_parser(
        "forget",
        parents=[common, cfg, brk],
        help="remove this Pi's Home Assistant entities (empty retained discovery configs)",
    )
    fg.add_argument("--device", metavar="NAME", help="another Pi's mqtt.device name")
    fg.set_defaults(func=cmd_mqtt_forget)

    from .events.cli import add_parser as add_events_parser

    add_events_parser(sub, [common, cfg])
    from .daemon import signal_reload
    from .teach.cli import add_parser as add_teach_parser

    add_teach_parser(sub, [common, cfg], signal_reload)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``edge-daemon`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except EdgeDaemonError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"edge-daemon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"edge-daemon: internal error: {type(exc).__name__}: {exc} (run with --debug for"
            " the traceback and report it)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
