#!/usr/bin/env python3
"""Events on against events off, side by side, and what smoothing costs per frame.

One run, one machine, the same model and frames. Two real daemons
(``edge_daemon.daemon.Daemon`` on a looping files source, prediction log and
status file on) run on background threads of this process and take turns in
short windows, parked between them (``PausableDaemon`` from compare.py):

- **off**: no event rules, no smoothing.
- **on**: ``model.smoothing: 5`` and two rules (``@birds``, ``@cats``) that
  fire on the photos, with snapshots and thumbnails, so events start, improve
  and end all the time (far more often than at a bird feeder: a worst case
  for the SQLite writer and the JPEG encoder). The files source delivers the
  640x480 JPEGs decoded at half size (320x240) and snapshots are of those;
  the cost of encoding a whole 640x480 frame is printed beside.

The verdict is the median of the per-pair ratios on/off (target >= 0.97x).
It also prints the events made, and the cost of smoothing one frame (the
moving average of the 1001-class output and its top-k) against the top-k
alone, measured with timeit.

Exit status: 0 when the target is met, 1 otherwise (after every figure),
2 on a usage error. ``--quick`` (scripts/test.sh): fewer, shorter windows.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

TARGET_RATIO = 0.97
SMOOTHING = 5
# Frames per photo in a row: enough for a rule's min_frames, short enough
# that events keep starting and ending.
RUN = 12


def make_frames(images: Path, dest: Path) -> Path:
    """640x480 JPEGs of the photos, each repeated RUN times in a row, in a loop."""
    folder = dest / "frames"
    folder.mkdir()
    n = 0
    for path in sorted(images.iterdir()):
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((640, 480), Image.Resampling.BILINEAR)
        except OSError:
            continue  # checksums, yaml
        for _ in range(RUN):
            rgb.save(folder / f"{n:05d}.jpg", quality=90)
            n += 1
    if not n:
        raise SystemExit(f"events.py: no images in {images}")
    return folder


def write_config(work: Path, name: str, model: Path, labels: Path, frames: Path, on: bool) -> Path:
    out = work / f"out_{name}"
    data: dict[str, Any] = {
        "model": {"path": str(model), "labels": str(labels), "smoothing": SMOOTHING if on else 0},
        "source": {"kind": "files", "path": str(frames), "loop": True},
        "outputs": {
            "prediction_log": str(out / "predictions.jsonl"),
            "status_file": str(out / "status.json"),
        },
        "engine": {"delegates": ["xnnpack", "cpu"]},
        "daemon": {"state_dir": str(work / "state")},
        # Both sides without the web server: it would serve on one side only
        # (the port is taken by the first), and it is not what is measured here.
        "http": {"listen": None},
    }
    if on:
        rule = {"min_score": 0.3, "min_frames": 3, "end_after": 0.0}
        data["events"] = {
            "rules": [
                {"name": "birds", "labels": ["@birds"], **rule},
                {"name": "cats", "labels": ["@cats"], **rule},
            ],
            "dir": str(work / "events"),
            "thumbnail": 160,
        }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def smoothing_cost(repeat: int) -> tuple[float, float]:
    """Microseconds per frame: top-k alone, and smoothing + top-k (1001 uint8 outputs)."""
    from edge_daemon.events.smoothing import Smoother
    from edge_daemon.postprocess import top_k_quantized

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(64, 1, 1001), dtype=np.uint8)
    smoother = Smoother(SMOOTHING, 1 / 256, 0)
    state = {"i": 0}

    def plain() -> None:
        state["i"] += 1
        top_k_quantized(frames[state["i"] % 64], 1 / 256, 0, 10)

    def smoothed() -> None:
        state["i"] += 1
        smoother.top_k(frames[state["i"] % 64], 10)

    a = min(timeit.repeat(plain, number=1000, repeat=repeat)) / 1000 * 1e6
    b = min(timeit.repeat(smoothed, number=1000, repeat=repeat)) / 1000 * 1e6
    return a, b


def snapshot_cost(images: Path, repeat: int) -> float:
    """Milliseconds to encode one 640x480 frame as a snapshot JPEG (the writer thread's work)."""
    from edge_daemon.events.snapshots import encode_jpeg

    photo = next(p for p in sorted(images.iterdir()) if p.suffix in (".jpg", ".bmp"))
    with Image.open(photo) as img:
        frame = np.asarray(img.convert("RGB").resize((640, 480)))
    return min(timeit.repeat(lambda: encode_jpeg(frame, 85), number=20, repeat=repeat)) / 20 * 1e3


def main(argv: list[str] | None = None) -> int:
    shared = REPO.parent / "shared"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter windows (about 40 s)")
    p.add_argument("--pairs", type=int, help="window pairs (default 15, quick 8)")
    p.add_argument("--models", type=Path, default=shared / "models")
    p.add_argument("--images", type=Path, default=shared / "images")
    p.add_argument("--model", default="mobilenet_v1_1.0_224_quant.tflite")
    p.add_argument("--labels", default="labels_mobilenet_quant_v1_224.txt")
    args = p.parse_args(argv)
    model, labels = args.models / args.model, args.models / args.labels
    for f in (model, labels, args.images):
        if not f.exists():
            print(f"events.py: {f} not found", file=sys.stderr)
            return 2
    pairs = args.pairs or (8 if args.quick else 15)
    seconds = 0.75 if args.quick else 1.5
    logging.basicConfig(level=logging.WARNING)

    from compare import SETTLE_S, PausableDaemon, median

    plain_us, smooth_us = smoothing_cost(3 if args.quick else 7)
    print(f"smoothing ({SMOOTHING} frames, 1001 classes): top-k alone {plain_us:.1f} us/frame,")
    print(f"   moving average + top-k {smooth_us:.1f} us/frame (+{smooth_us - plain_us:.1f} us)")
    jpeg_ms = snapshot_cost(args.images, 3 if args.quick else 7)
    print(f"a 640x480 snapshot: {jpeg_ms:.1f} ms to encode, on the events writer thread")

    with tempfile.TemporaryDirectory(prefix="edge-events-bench-") as tmp:
        work = Path(tmp)
        frames = make_frames(args.images, work)
        off = PausableDaemon(write_config(work, "off", model, labels, frames, on=False))
        on = PausableDaemon(write_config(work, "on", model, labels, frames, on=True))
        off.start(0.5)
        on.start(0.5)
        try:
            a: list[float] = []
            b: list[float] = []
            for i in range(pairs + 1):  # the first pair warms both up, unmeasured
                first, second = (off, on) if i % 2 == 0 else (on, off)
                first.window(SETTLE_S)
                x = first.window(seconds)
                second.window(SETTLE_S)
                y = second.window(seconds)
                if i:
                    a.append(x if first is off else y)
                    b.append(y if first is off else x)
        finally:
            on.stop()
            off.stop()
        from edge_daemon.events.history import EventHistory

        events = EventHistory(str(work / "events")).list()
        snaps = sum(1 for e in events if e["snapshot"])
    ratios = [y / x for x, y in zip(a, b) if x > 0]
    ratio = median(ratios)
    print(f"events on against off, {pairs} pairs of {seconds:g} s windows, model {args.model}:")
    print("   off  fps " + " ".join(f"{x:6.1f}" for x in a))
    print("   on   fps " + " ".join(f"{y:6.1f}" for y in b))
    print("   ratio    " + " ".join(f"{r:6.3f}" for r in ratios))
    print(f"   {len(events)} events made ({snaps} with a snapshot) by the 'on' daemon")
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"throughput with events on: {ratio:.3f}x of off (target >= {TARGET_RATIO}x): {verdict}")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
