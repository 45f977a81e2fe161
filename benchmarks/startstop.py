#!/usr/bin/env python3
"""Start and stop times with the web server off and on: what ``systemctl start/stop`` feels.

Runs ``edge-daemon run`` over a looping files source again and again, in
turns with ``http.listen: null`` and ``127.0.0.1:0`` (who goes first alternates),
with the prediction log and status file on. Measured per run: start-to-ready
(process start to the log's "ready:" line, which follows READY=1) and
SIGTERM-to-exit. Printed: the median of each, on and off, and the differences.
``--quick`` does 4 pairs; the default 10. No target: a figure to read.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_DAEMON_SHARED", REPO.parent / "shared"))
MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS = "labels_mobilenet_quant_v1_224.txt"


def write_config(folder: Path, http: bool) -> Path:
    name = "on" if http else "off"
    out = folder / name
    out.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"model:\n  path: {SHARED / 'models' / MODEL}\n  labels: {SHARED / 'models' / LABELS}\n"
        "engine:\n  delegates: [cpu]\n"
        f"source:\n  kind: files\n  path: {SHARED / 'images'}\n  loop: true\n  fps: 10\n"
        f"outputs:\n  prediction_log: {out / 'predictions.jsonl'}\n"
        f"  status_file: {out / 'status.json'}\n"
        f"daemon:\n  state_dir: {out / 'state'}\n"
        f"http:\n  listen: {'127.0.0.1:0' if http else 'null'}\n"
    )
    return path


def one_run(config: Path) -> tuple[float, float]:
    """(start-to-ready, SIGTERM-to-exit) in seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "ready:" in line:
            break
    else:
        raise SystemExit(f"{config}: the daemon exited before it was ready")
    ready = time.monotonic() - start
    time.sleep(0.5)
    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.stderr.read()
    proc.wait(30)
    return ready, time.monotonic() - stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 pairs instead of 10")
    args = parser.parse_args()
    pairs = 4 if args.quick else 10
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="edge-daemon-startstop-") as tmp:
        configs = {http: write_config(Path(tmp), http) for http in (False, True)}
        for i in range(pairs):
            for http in (False, True) if i % 2 == 0 else (True, False):
                results[http].append(one_run(configs[http]))
    med = {
        http: (statistics.median(r for r, _ in runs), statistics.median(s for _, s in runs))
        for http, runs in results.items()
    }
    for http in (False, True):
        ready, stop = med[http]
        print(f"web server {'on ' if http else 'off'}: start-to-ready {ready:.3f} s,"
              f" SIGTERM-to-exit {stop:.3f} s (medians of {pairs})")  # fmt: skip
    print(f"on - off: start {med[True][0] - med[False][0]:+.3f} s,"
          f" stop {med[True][1] - med[False][1]:+.3f} s")  # fmt: skip
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
