#!/usr/bin/env python3
"""Where the daemon loses frames when other programs load the cores: its own threads or not.

One run, one machine, the same model and 224x224 BMP frames. Four sides take
turns in short windows (the others stopped with SIGSTOP, the bare loop idle):

- ``bare``: a bare ``invoke()`` loop in a child process, with the runtime,
  delegate and threads the daemon chose (so only the daemon's own work
  differs);
- ``daemon``: ``edge-daemon run`` with the reference config's outputs: the
  prediction log, the status file and the web server on a free loopback port
  (as users run it);
- ``web off``: the same with ``http.listen: null``;
- ``log only``: only the prediction log (no web server, no status file); the
  log stays because it is how frames are counted.

Each round runs every side once quiet and once while ``--burners`` busy loops
(processes of their own, bounded: each ends by itself) load the cores. The
burners are stopped (SIGSTOP) during the quiet windows, so quiet and loaded
windows interleave and see the same machine otherwise. Printed per condition:
frames/s of each side, each daemon's ratio to the bare loop (median of the
per-round ratios), CPU per frame, and the daemon's wake-ups per second by
thread (voluntary context switches from /proc/PID/task/*/status: each one is a
thread going to sleep, to be woken again). The daemons run with their Python
threads' names set as OS thread names so the threads can be told apart.

Exit status 0, or 2 on a set-up error: there is no target here (compare.py
has the 0.90x one); ``--quick`` takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import LoopProcess, make_frames
from daemon_process import (
    CpuBurner,
    DaemonProcess,
    Window,
    daemon_config,
    window,
)

REPO = Path(__file__).resolve().parent.parent
SIDES = ("daemon", "web off", "log only")
SETTLE_S = 0.5


def bare_label(status: dict[str, Any], loops: list[str]) -> Optional[str]:
    """The bare loop matching the daemon's runtime, delegate and threads, if any."""
    runtime = str(status.get("runtime") or "")
    delegate = str(status.get("delegate") or "")
    for label in loops:
        name, kind = label.split(" ")[0], label.split(" ")[-3]
        if runtime.startswith(name) and delegate.startswith(kind):
            return label
    return loops[0] if loops else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = REPO.parent / "shared"
    parser.add_argument("--models", type=Path, default=shared / "models")
    parser.add_argument("--images", type=Path, default=shared / "images")
    parser.add_argument("--model", default="mobilenet_v1_1.0_224_quant.tflite")
    parser.add_argument("--labels", default="labels_mobilenet_quant_v1_224.txt")
    parser.add_argument("--rounds", type=int, help="rounds (default 8; quick 3)")
    parser.add_argument("--window", type=float, help="seconds per window (default 1.5; quick 1)")
    parser.add_argument("--burners", type=int, default=1, help="busy loops while loaded (1)")
    parser.add_argument("--quick", action="store_true", help="a short run, about a minute")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 8)
    seconds = args.window or (1.0 if args.quick else 1.5)
    model, labels = args.models / args.model, args.models / args.labels
    for p in (model, labels, args.images):
        if not p.exists():
            print(f"load.py: {p}: not found (see --models, --images)", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory(prefix="edge-daemon-load-") as tmp:
        work = Path(tmp)
        _, small, _ = make_frames(args.images, work)
        state = work / "state"
        common = {"model": model, "labels": labels, "frames": small, "state": state}
        configs = {
            "daemon": daemon_config(work / "daemon", **common),
            "web off": daemon_config(work / "web-off", web=False, **common),
            "log only": daemon_config(work / "log-only", web=False, status_file=False, **common),
        }
        daemons: dict[str, DaemonProcess] = {}
        burners: list[CpuBurner] = []
        bare: Optional[LoopProcess] = None
        try:
            # The first daemon alone: it measures the delegates and caches its choice.
            for name in SIDES:
                daemons[name] = DaemonProcess(name, configs[name], named_threads=True)
                daemons[name].wait_classifying()
                daemons[name].pause()
            status = daemons["daemon"].status()
            threads = len(os.sched_getaffinity(0))  # engine.threads: null = every core
            runtime = str(status.get("runtime") or "ai_edge_litert").split(" ")[0]
            frame0 = sorted(small.iterdir())[0]
            bare = LoopProcess(
                {
                    "kind": "bare",
                    "runtime": runtime,
                    "model": str(model),
                    "threads": [threads],
                    "frame": str(frame0),
                }
            )
            label = bare_label(status, bare.loops)
            if label is None:
                print("load.py: no bare loop could be built", file=sys.stderr)
                return 2
            budget = rounds * 2 * (len(SIDES) + 1) * (seconds + SETTLE_S + 0.2) + 60
            burners = [CpuBurner(budget) for _ in range(args.burners)]
            for b in burners:
                b.pause()
            print(
                f"daemon: {status.get('runtime')}, {status.get('delegate')}; bare loop: {label};"
                f" {rounds} rounds of {seconds:g} s windows, quiet and with {args.burners}"
                f" busy loop(s)"
            )
            results: dict[str, dict[str, list[Any]]] = {
                cond: {s: [] for s in ("bare", *SIDES)} for cond in ("quiet", "loaded")
            }
            for warm in range(2):  # unmeasured: every side warm, quiet and loaded
                for b in burners:
                    b.resume() if warm else b.pause()
                for d in daemons.values():
                    window(d, seconds / 2, SETTLE_S)
                bare.fps(label, seconds / 2)
            for i in range(rounds):
                conditions = ("quiet", "loaded") if i % 2 == 0 else ("loaded", "quiet")
                for cond in conditions:
                    for b in burners:
                        b.resume() if cond == "loaded" else b.pause()
                    order = ["bare", *SIDES]
                    order = order[i % len(order) :] + order[: i % len(order)]
                    for side in order:
                        if side == "bare":
                            bare.fps(label, SETTLE_S)
                            results[cond]["bare"].append(bare.fps(label, seconds))
                        else:
                            results[cond][side].append(window(daemons[side], seconds, SETTLE_S))
            for b in burners:
                b.pause()
            rss = {name: d.rss_mb() for name, d in daemons.items()}
        finally:
            for b in burners:
                b.stop()
            for d in daemons.values():
                d.stop()
            if bare is not None:
                bare.close()

    report(results, rss, args.burners)
    return 0


def report(results: dict[str, dict[str, list[Any]]], rss: dict[str, float], burners: int) -> None:
    for cond, sides in results.items():
        what = "quiet" if cond == "quiet" else f"loaded ({burners} busy loop(s))"
        bare: list[float] = sides["bare"]
        print(f"\n{what}: frames/s per round, ratio to the bare loop (median of per-round ratios)")
        print(f"   {'bare':<10} " + " ".join(f"{x:6.1f}" for x in bare))
        for side in SIDES:
            wins: list[Window] = sides[side]
            ratios = [w.fps / b for w, b in zip(wins, bare) if b > 0]
            frames = sum(w.frames for w in wins)
            cpu_ms = 1000 * sum(w.cpu for w in wins) / max(frames, 1)
            print(
                f"   {side:<10} "
                + " ".join(f"{w.fps:6.1f}" for w in wins)
                + f"   ratio {statistics.median(ratios):.3f}x, CPU {cpu_ms:.2f} ms/frame"
            )
        for side in SIDES:
            wins = sides[side]
            total = sum(w.seconds for w in wins)
            by_thread: dict[str, list[int]] = {}
            for w in wins:
                for name, (vol, invol) in w.wakeups.items():
                    acc = by_thread.setdefault(name, [0, 0])
                    acc[0] += vol
                    acc[1] += invol
            frames = sum(w.frames for w in wins) / total
            parts = ", ".join(
                f"{name} {v / total:.0f}/s (+{i / total:.0f} preempted)"
                for name, (v, i) in sorted(by_thread.items(), key=lambda kv: -kv[1][0])
            )
            print(f"   wake-ups, {side} ({frames:.0f} frames/s): {parts}")
    print("\nRSS: " + ", ".join(f"{n} {mb:.1f} MB" for n, mb in rss.items()))


if __name__ == "__main__":
    sys.exit(main())
