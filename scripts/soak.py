#!/usr/bin/env python3
"""Soak test: run the daemon at full speed for a while and look for slow failures.

The daemon runs as a child process (``python -m edge_daemon run``) over the
files source, looping over a copy of the sample images as fast as it can.
While it runs, this script

* sends SIGHUP every ``--reload-every`` seconds (a full config and model reload);
* injects a source fault every ``--fault-every`` seconds by moving the image
  folder away for ``--fault-length`` seconds: the source fails, is reopened
  with back-off, the status says ``degraded`` and then ``running`` again;
* samples the child's RSS (/proc/PID/status) and open file descriptors
  (/proc/PID/fd) every ``--sample-every`` seconds, and parses the status file
  each time (it must always be complete JSON).

At the end it stops the daemon with SIGTERM and checks the prediction log
(all rotated files): every line whole JSON, every classified frame there
exactly once. It fails (exit 1) on:

* RSS growth over ``--max-growth-mb`` (2 MB) between the first window after
  warm-up and the last window, a tenth of the run or three reload cycles each,
  whichever is longer (the median of the samples in each: a decoded 720p frame
  in flight adds a few MB for a moment, and each reload settles the heap a
  little higher or lower);
* an fd leak: the fewest fds open in the last window above the fewest in the
  first window;
* a lost or duplicated prediction, a torn line, an unreadable status file;
* a fault the daemon did not report or did not recover from, a reload that
  did not complete, a non-zero exit.

Usage::

    python scripts/soak.py --duration 600 --reload-every 30 --fault-every 45
    python scripts/soak.py --duration 20 --reload-every 5 --fault-every 7   # CI

The model and images default to ./models (``edge-daemon models fetch``),
else the test fixtures ($EDGE_DAEMON_SHARED or ../shared beside the checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A line of the prediction log is about 1.3 kB with top_k 10; rotate often
# enough that a run rotates about ROTATIONS times whatever its length.
LINE_BYTES, EXPECTED_FPS, ROTATIONS = 1400, 200, 40
MAX_BACKUPS = 100


def _fixture_dirs() -> list[Path]:
    shared = Path(os.environ.get("EDGE_DAEMON_SHARED", REPO.parent / "shared"))
    return [REPO / "models", shared / "models"]


def default_model() -> Optional[Path]:
    for folder in _fixture_dirs():
        candidate = folder / "mobilenet_v1_1.0_224_quant.tflite"
        if candidate.is_file():
            return candidate
    return None


def default_labels(model: Path) -> Optional[Path]:
    candidate = model.parent / "labels_mobilenet_quant_v1_224.txt"
    return candidate if candidate.is_file() else None


def default_images() -> Optional[Path]:
    shared = Path(os.environ.get("EDGE_DAEMON_SHARED", REPO.parent / "shared"))
    for folder in (REPO / "models" / "samples", shared / "images"):
        if folder.is_dir():
            return folder
    return None


@dataclass
class Sample:
    t: float  # seconds since the daemon was ready
    rss_kb: int
    fds: int


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    status_reads: int = 0
    status_bad: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    degraded_reasons: list[str] = field(default_factory=list)
    faults: int = 0
    faults_seen: int = 0  # faults during which the status said degraded
    recoveries: int = 0  # degraded -> running transitions
    reloads_sent: int = 0
    last_status: dict[str, Any] = field(default_factory=dict)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def write_config(work: Path, args: argparse.Namespace) -> Path:
    max_bytes = int(args.duration * EXPECTED_FPS * LINE_BYTES / ROTATIONS)
    cfg = {
        "model": {"path": str(args.model), "labels": str(args.labels) if args.labels else None},
        "source": {
            "kind": "files",
            "path": str(work / "frames"),
            "loop": True,
            "retry_initial": 0.1,
            "retry_max": 1.0,
        },
        "outputs": {
            "prediction_log": str(work / "out" / "predictions.jsonl"),
            "max_bytes": max(max_bytes, 16_384),
            "backups": MAX_BACKUPS,
            "status_file": str(work / "out" / "status.json"),
            "status_interval": 0.25,
            "log_interval": 10.0,
        },
        "daemon": {"state_dir": str(work / "state")},
        "http": {"listen": None},  # port 8080 may be taken on this machine
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_status(path: Path, run: Run) -> Optional[dict[str, Any]]:
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    run.status_reads += 1
    try:
        status = json.loads(data)
        if not isinstance(status, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        run.status_bad.append(f"{exc}: {data[:80]!r}")
        return None
    return status


def check_log(out: Path, frames: int) -> tuple[list[str], dict[str, int]]:
    """Problems in the prediction log, and counts (lines, files)."""
    problems: list[str] = []
    base = out / "predictions.jsonl"
    files = [Path(f"{base}.{i}") for i in range(MAX_BACKUPS, 0, -1)] + [base]
    files = [f for f in files if f.exists()]
    seen: list[int] = []
    for f in files:
        data = f.read_bytes()
        if data and not data.endswith(b"\n"):
            problems.append(f"{f.name}: last line is torn")
        for n, raw in enumerate(data.splitlines(), 1):
            try:
                seen.append(int(json.loads(raw)["frame"]))
            except (ValueError, KeyError, TypeError):
                problems.append(f"{f.name}:{n}: not a whole JSON line: {raw[:60]!r}")
    if Path(f"{base}.{MAX_BACKUPS}").exists():
        problems.append("the log rotated through every backup: raise max_bytes to check it all")
    if sorted(seen) != list(range(1, frames + 1)):
        missing = sorted(set(range(1, frames + 1)) - set(seen))
        dupes = len(seen) - len(set(seen))
        problems.append(
            f"prediction log has {len(seen)} lines for {frames} frames"
            f" ({len(missing)} missing, e.g. {missing[:5]}; {dupes} duplicated)"
        )
    return problems, {"lines": len(seen), "files": len(files)}


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t < end]


def soak(args: argparse.Namespace) -> int:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="edge-daemon-soak-"))
    frames_dir = work / "frames"
    away = work / "frames.away"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for img in sorted(Path(args.images).iterdir()):
        if img.suffix.lower() in IMAGE_SUFFIXES:
            shutil.copy(img, frames_dir / img.name)
    config = write_config(work, args)
    status_path = work / "out" / "status.json"
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    log_path = work / "daemon.log"
    run = Run()
    failures: list[str] = []
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            failures += _drive(child, status_path, frames_dir, away, run, args)
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                code = child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            if away.exists():
                away.rename(frames_dir)
    if code != 0:
        failures.append(f"the daemon exited with {code} after SIGTERM (see {log_path})")
    final = read_status(status_path, run) or {}
    frames = int(final.get("frames") or 0)
    if final.get("state") != "stopped":
        failures.append(f"final status state is {final.get('state')!r}, not 'stopped'")
    log_problems, counts = check_log(work / "out", frames)
    failures += log_problems
    if run.status_bad:
        failures.append(f"{len(run.status_bad)} unreadable status reads: {run.status_bad[0]}")
    reloads_done = int(final.get("reloads") or 0)
    if reloads_done != run.reloads_sent:
        failures.append(f"{run.reloads_sent} reloads requested, {reloads_done} completed")
    if run.faults_seen != run.faults:
        failures.append(f"{run.faults} faults injected, {run.faults_seen} reported as degraded")
    if run.recoveries < run.faults:
        failures.append(f"{run.faults} faults injected, only {run.recoveries} recoveries")
    figures = _figures(run, args, frames, reloads_done, counts, failures)
    with open(work / "samples.csv", "w", encoding="ascii") as f:
        f.write("seconds,rss_kb,fds\n")
        f.writelines(f"{s.t:.2f},{s.rss_kb},{s.fds}\n" for s in run.samples)
    if args.json:
        print(json.dumps(figures))
    else:
        _print_figures(figures)
    if not args.keep and not failures:
        shutil.rmtree(work, ignore_errors=True)
    elif failures:
        print(f"soak: files kept in {work}", file=sys.stderr, flush=True)
    return 1 if failures else 0


def _drive(
    child: subprocess.Popen[bytes],
    status_path: Path,
    frames_dir: Path,
    away: Path,
    run: Run,
    args: argparse.Namespace,
) -> list[str]:
    """Run the schedule until the duration is over; problems found on the way."""
    deadline = time.monotonic() + args.startup_timeout
    while True:
        if child.poll() is not None:
            return [f"the daemon exited with {child.returncode} before it was running"]
        status = read_status(status_path, run)
        if status and status.get("state") == "running" and status.get("frames"):
            break
        if time.monotonic() > deadline:
            return [f"the daemon was not running after {args.startup_timeout:.0f} s"]
        time.sleep(0.1)
    t0 = time.monotonic()
    end = t0 + args.duration
    next_sample = t0
    next_reload = t0 + args.reload_every if args.reload_every > 0 else float("inf")
    next_fault = t0 + args.fault_every if args.fault_every > 0 else float("inf")
    fault_until: Optional[float] = None
    fault_reported = False
    state = "running"
    while True:
        now = time.monotonic()
        if child.poll() is not None:
            return [f"the daemon died with {child.returncode} during the soak"]
        status = read_status(status_path, run)
        if status is not None:
            run.last_status = status
            new_state = str(status.get("state"))
            if new_state != state:
                run.states.append(f"{now - t0:.1f}s {new_state}")
                if new_state == "degraded":
                    run.degraded_reasons.append(str(status.get("reason")))
                if state == "degraded" and new_state == "running":
                    run.recoveries += 1
                state = new_state
            if fault_until is not None and new_state == "degraded":
                fault_reported = True
        # Keep the folder away until the daemon has said so (a slow tick must
        # not make a fault go unseen), within reason.
        if (
            fault_until is not None
            and now >= fault_until
            and (fault_reported or now >= fault_until + 10)
        ):
            away.rename(frames_dir)
            run.faults_seen += fault_reported
            fault_until = None
        if now >= end and fault_until is None:
            break
        if now >= next_sample:
            run.samples.append(Sample(now - t0, rss_kb(child.pid), fd_count(child.pid)))
            next_sample += args.sample_every
        if now >= next_reload and now < end:
            child.send_signal(signal.SIGHUP)
            run.reloads_sent += 1
            next_reload += args.reload_every
        if now >= next_fault and fault_until is None and now < end:
            frames_dir.rename(away)
            run.faults += 1
            fault_reported = False
            fault_until = now + args.fault_length
            next_fault += args.fault_every
        time.sleep(0.05)
    # Let the last reload land before stopping (each reload is counted).
    settle = time.monotonic() + 30
    while time.monotonic() < settle:
        status = read_status(status_path, run)
        reloaded = status and int(status.get("reloads") or 0) >= run.reloads_sent
        if reloaded and status and status.get("state") == "running":
            break
        time.sleep(0.1)
    if status and status.get("state") == "degraded":
        run.states.append("end degraded")
    elif state == "degraded" and status and status.get("state") == "running":
        run.recoveries += 1
    return []


def _figures(
    run: Run,
    args: argparse.Namespace,
    frames: int,
    reloads: int,
    counts: dict[str, int],
    failures: list[str],
) -> dict[str, Any]:
    samples = run.samples
    warm = min(args.warmup, args.duration / 4)
    # Each window spans at least three reload cycles: a reload lands the heap a
    # megabyte or so above or below the last one, so a window holding one reload
    # state would compare two such draws rather than the trend a leak makes.
    cycles = 3 * args.reload_every if args.reload_every > 0 else 0.0
    span = max(args.duration / 10, 3 * args.sample_every, cycles)
    span = min(span, max((args.duration - warm) / 2, 3 * args.sample_every))
    first = window(samples, warm, warm + span) or samples[:3]
    last = window(samples, args.duration - span, args.duration + 1) or samples[-3:]
    figures: dict[str, Any] = {
        "duration_s": args.duration,
        "frames": frames,
        "fps": round(frames / args.duration, 1) if args.duration else 0.0,
        "reloads": reloads,
        "faults_injected": run.faults,
        "faults_reported": run.faults_seen,
        "recoveries": run.recoveries,
        "status_reads": run.status_reads,
        "log_lines": counts["lines"],
        "log_files": counts["files"],
        "samples": len(samples),
    }
    before = window(samples, 0, args.reload_every if args.reload_every > 0 else warm) or samples[:1]
    if first and last:
        rss_first = statistics.median(s.rss_kb for s in first)
        rss_last = statistics.median(s.rss_kb for s in last)
        growth_mb = (rss_last - rss_first) / 1024
        fds_first = min(s.fds for s in first)
        fds_last = min(s.fds for s in last)
        figures.update(
            rss_after_warmup_mb=round(rss_first / 1024, 1),
            rss_end_mb=round(rss_last / 1024, 1),
            rss_median_mb=round(statistics.median(s.rss_kb for s in samples) / 1024, 1),
            rss_before_reloads_mb=round(statistics.median(s.rss_kb for s in before) / 1024, 1),
            rss_peak_mb=round(max(s.rss_kb for s in samples) / 1024, 1),
            rss_growth_mb=round(growth_mb, 2),
            fds_after_warmup=fds_first,
            fds_end=fds_last,
            fds_max=max(s.fds for s in samples),
        )
        if growth_mb > args.max_growth_mb:
            failures.append(
                f"RSS grew {growth_mb:.2f} MB after warm-up (limit {args.max_growth_mb} MB)"
            )
        if fds_last > fds_first:
            failures.append(f"fd leak: {fds_first} fds open after warm-up, {fds_last} at the end")
    else:
        failures.append("too few samples to judge memory and fds")
    if run.degraded_reasons:
        figures["degraded_reason"] = run.degraded_reasons[0]
    figures["failures"] = failures
    figures["ok"] = not failures
    return figures


def _print_figures(figures: dict[str, Any]) -> None:
    for key, value in figures.items():
        if key not in ("failures", "ok"):
            print(f"{key:<22} {value}")
    for failure in figures["failures"]:
        print(f"FAIL: {failure}")
    print("soak: ok" if figures["ok"] else "soak: FAILED", flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds to run (600)")
    p.add_argument("--reload-every", type=float, default=30.0, help="SIGHUP period, 0 = off")
    p.add_argument("--fault-every", type=float, default=45.0, help="source fault period, 0 = off")
    p.add_argument("--fault-length", type=float, default=2.0, help="seconds a fault lasts")
    p.add_argument("--sample-every", type=float, default=1.0, help="RSS/fd sampling period")
    p.add_argument("--warmup", type=float, default=120.0, help="ignore memory before this (s)")
    p.add_argument("--max-growth-mb", type=float, default=2.0)
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--labels", type=Path, default=None)
    p.add_argument("--images", type=Path, default=None, help="folder of sample images")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new temp folder")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    args.model = args.model or default_model()
    args.images = args.images or default_images()
    if args.model is None or args.images is None:
        p.error("no model or images found: pass --model and --images")
    if args.labels is None:
        args.labels = default_labels(args.model)
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
