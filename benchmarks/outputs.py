#!/usr/bin/env python3
"""The cost of publishing to MQTT: the daemon with the MQTT sink against the same daemon without.

One run, one machine, the same model, frames and config except the ``mqtt``
section. Three daemons, ``edge-daemon run`` subprocesses over a looping folder
of 224x224 frames whose top-1 changes on every frame:

- ``mqtt-off``: no MQTT;
- ``mqtt-on``: the MQTT sink with its defaults (a state message on every label
  change, at most every ``min_interval`` = 0.2 s; the status every second);
- ``mqtt-every``: ``mqtt.min_interval: 0``, a state message for every frame,
  the most the sink can be asked to do.

A local mosquitto (started here on a free 127.0.0.1 port) receives them, and a
paho subscriber in this process stands for Home Assistant (both share the
machine's CPU with the daemons, as a broker on the Pi itself would).

The daemons take turns: while one has its window the others are stopped
(SIGSTOP), so they never share the CPU. Frames are counted from each daemon's
prediction log (the capture time of every frame), so a window's rate is
exact. Printed:

- frames/s of each side per round, and the median of the per-round ratios
  against ``mqtt-off`` (target: ``mqtt-on`` >= 0.97x; ``mqtt-every`` is shown
  for what it costs);
- capture-to-publish latency of each MQTT side: from a frame's capture to its
  state message arriving at the subscriber (through the broker), p50 and p99;
- RSS of each daemon after the run.

Exit status: 0 when the target is met, 1 when it is missed (after printing
every figure), 2 on a usage or set-up error. ``--quick`` (scripts/test.sh)
runs 5 rounds of 1.2 s windows, well under a minute.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmarks"))

from daemon_process import rss_mb_of, spawn, terminate  # noqa: E402

from tests.broker import Mosquitto, Subscriber  # noqa: E402  (the tests' broker, reused)

TARGET = 0.97
PHOTOS = ("parrot.jpg", "hot_dog.jpg", "cat.bmp", "dragonfly.bmp")


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def make_frames(images: Path, folder: Path) -> None:
    """224x224 BMP frames (what an ISP scaled to the model's size delivers), labels alternating."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        with Image.open(images / name) as im:
            im.convert("RGB").resize((224, 224), Image.BILINEAR).save(folder / f"{i}.bmp")


class Side:
    """One daemon: its config, process, prediction log."""

    def __init__(self, name: str, work: Path, base: dict[str, Any], mqtt: Optional[dict[str, Any]]):
        import yaml

        self.name = name
        self.dir = work / name
        self.dir.mkdir()
        self.log = self.dir / "predictions.jsonl"
        cfg = json.loads(json.dumps(base))
        cfg["outputs"] = {
            "prediction_log": str(self.log),
            "status_file": str(self.dir / "status.json"),
            "status_interval": 1.0,
        }
        cfg["daemon"] = {"state_dir": str(work / "state"), "log_level": "WARNING"}
        cfg["http"] = {"listen": None}  # one port for three daemons; not what is measured
        if mqtt is not None:
            cfg["mqtt"] = mqtt
        self.config = self.dir / "config.yaml"
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.stderr = (self.dir / "stderr.log").open("wb")
        self.proc = spawn(["-m", "edge_daemon", "run", "--config", str(self.config)], self.stderr)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(
                f"outputs.py: the {self.name} daemon exited ({self.proc.returncode}):"
                f" {(self.dir / 'stderr.log').read_text()[-1500:]}"
            )
        return self.log.exists() and self.log.stat().st_size > 0

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def captured(self) -> list[float]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(epoch(json.loads(line)["ts"]))
            except (ValueError, KeyError):
                continue
        return out

    def rss_mb(self) -> float:
        return rss_mb_of(self.proc.pid)

    def delegate(self) -> str:
        try:
            return str(json.loads((self.dir / "status.json").read_text()).get("delegate"))
        except (OSError, ValueError):
            return "?"

    def stop(self) -> None:
        terminate(self.proc, timeout=20)
        self.stderr.close()


def rate(times: list[float], start: float, end: float) -> float:
    return sum(1 for t in times if start <= t < end) / (end - start)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latencies_of(messages: list[Any], windows: list[tuple[float, float]]) -> list[float]:
    """Capture to arrival at the subscriber (ms), for frames captured and delivered
    inside one of the side's windows (never across a pause)."""
    out = []
    for m in messages:
        captured = epoch(m.json()["ts"])
        if any(a <= captured and m.at <= b for a, b in windows):
            out.append((m.at - captured) * 1000)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = REPO.parent / "shared"
    parser.add_argument("--models", type=Path, default=shared / "models")
    parser.add_argument("--images", type=Path, default=shared / "images")
    parser.add_argument("--model", default="mobilenet_v1_1.0_224_quant.tflite")
    parser.add_argument("--labels", default="labels_mobilenet_quant_v1_224.txt")
    parser.add_argument("--rounds", type=int, help="rounds of windows (default 12; 5 quick)")
    parser.add_argument("--window", type=float, help="seconds per window (default 3; 1.2 quick)")
    parser.add_argument("--quick", action="store_true", help="a short run (for scripts/test.sh)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 12)
    window = args.window or (1.2 if args.quick else 3.0)
    for path in (args.models / args.model, args.models / args.labels, args.images):
        if not path.exists():
            print(f"outputs.py: {path}: not found (see --models, --images)", file=sys.stderr)
            return 2

    names = ("mqtt-off", "mqtt-on", "mqtt-every")
    with tempfile.TemporaryDirectory(prefix="edge-outputs-") as tmp:
        work = Path(tmp)
        make_frames(args.images, work / "frames")
        broker = Mosquitto(work / "broker").start()
        sub: Optional[Subscriber] = None
        sides: list[Side] = []
        try:
            base = {
                "model": {
                    "path": str(args.models / args.model),
                    "labels": str(args.models / args.labels),
                },
                "engine": {"delegates": ["xnnpack", "cpu"]},
                "source": {"kind": "files", "path": str(work / "frames"), "loop": True},
            }
            sub = Subscriber(broker, "edge-daemon/+/state")
            sides = [
                Side("mqtt-off", work, base, None),
                Side("mqtt-on", work, base, broker.mqtt_config(device="on")),
                Side("mqtt-every", work, base, broker.mqtt_config(device="every", min_interval=0)),
            ]
            deadline = time.monotonic() + 120
            while not all(s.ready() for s in sides):
                if time.monotonic() > deadline:
                    print("outputs.py: the daemons did not start within 120 s", file=sys.stderr)
                    return 2
                time.sleep(0.1)
            for device in ("on", "every"):
                sub.wait_for(f"edge-daemon/{device}/state", timeout=30)
            for s in sides:
                s.pause()
            windows: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
            for i in range(rounds):
                order = sides[i % 3 :] + sides[: i % 3]  # each side goes first in turn
                for s in order:
                    s.resume()
                    time.sleep(0.3)  # settle: caches, the capture thread's queue
                    start = time.time()
                    time.sleep(window)
                    end = time.time()
                    s.pause()
                    windows[s.name].append((start, end))
            rss = {s.name: s.rss_mb() for s in sides}
            delegates = {s.name: s.delegate() for s in sides}
            time.sleep(0.3)  # the last messages in flight
            messages = {
                "mqtt-on": sub.on("edge-daemon/on/state"),
                "mqtt-every": sub.on("edge-daemon/every/state"),
            }
        finally:
            for s in sides:
                s.stop()
            if sub is not None:
                sub.close()
            broker.kill()

        times = {s.name: s.captured() for s in sides}
        rates = {n: [rate(times[n], a, b) for a, b in windows[n]] for n in names}
        ratio = {
            n: statistics.median(
                [b / a for a, b in zip(rates["mqtt-off"], rates[n]) if a > 0] or [0.0]
            )
            for n in ("mqtt-on", "mqtt-every")
        }
        latencies = {n: latencies_of(messages[n], windows[n]) for n in messages}

    print(f"MQTT sink cost: {rounds} rounds of {window:g} s windows, {args.model}")
    print("  delegates: " + ", ".join(f"{n} {delegates[n]}" for n in names))
    print("  round  off fps  on fps  every fps")
    for i in range(rounds):
        print(
            f"  {i + 1:5d}  {rates['mqtt-off'][i]:7.1f}  {rates['mqtt-on'][i]:6.1f}"
            f"  {rates['mqtt-every'][i]:9.1f}"
        )
    ok = ratio["mqtt-on"] >= TARGET
    print(
        f"  throughput, MQTT on (defaults) / off: {ratio['mqtt-on']:.3f}x (median of rounds;"
        f" target >= {TARGET}x) {'ok' if ok else 'MISSED'}"
    )
    print(
        f"  throughput, MQTT publishing every frame / off: {ratio['mqtt-every']:.3f}x"
        " (median of rounds; no target)"
    )
    for n, lat in latencies.items():
        if lat:
            print(
                f"  capture-to-publish latency, {n} ({len(lat)} state messages at a"
                f" subscriber): p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms"
            )
        else:
            print(f"  capture-to-publish latency, {n}: no state message arrived inside a window")
    print(
        "  RSS: "
        + ", ".join(f"{n} {rss[n]:.1f} MB" for n in names)
        + f" (MQTT on: +{rss['mqtt-on'] - rss['mqtt-off']:.1f} MB)"
    )
    if args.json:
        summary = {
            "ratio": ratio,
            "rates": rates,
            "latency_ms": {
                n: {
                    "p50": percentile(lat, 50) if lat else None,
                    "p99": percentile(lat, 99) if lat else None,
                    "n": len(lat),
                }
                for n, lat in latencies.items()
            },
            "rss_mb": rss,
        }
        args.json.write_text(json.dumps(summary, indent=1))
    return 0 if ok and all(latencies.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
