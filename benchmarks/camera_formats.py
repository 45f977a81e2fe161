#!/usr/bin/env python3
"""What each camera format costs per frame, against one model invoke, side by side in one run.

The picamera2 source reads RGB from a Pi's ISP at the model size (the fast
path: one copy, maybe a channel reorder) and converts everything else in
software: NV12 / YUV420 (libcamera's virtual camera, a Pi 4's lores), YUYV
and MJPEG (USB webcams), sampled to the model size first, converted after.
This script times exactly that per-frame work, the adapter's own
``_to_rgb`` on buffers shaped as picamera2's ``make_array`` /
``make_buffer`` return them, for the sizes a camera settles on, and the
model's ``invoke()`` (the runtime and delegate edge-daemon picks), in
alternating rounds so load from other processes hits both. It prints the
median per-frame milliseconds and each path's share of one invoke.

Frames are made from a fixture photo with the in-repo fake camera's
renderer (tests/sources/fake_picamera2.py), so they hold a real scene.

    python benchmarks/camera_formats.py            # ~1 minute
    python benchmarks/camera_formats.py --quick    # ~15 s

Exit status: 0, or 1 when a software path costs more than the target share
of one invoke (50%: converting must not become the bottleneck), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_daemon.config import Config, EngineConfig, ModelConfig, SourceConfig  # noqa: E402
from edge_daemon.engine.model import load_model  # noqa: E402
from edge_daemon.sources import yuv  # noqa: E402
from edge_daemon.sources.files import decode_image  # noqa: E402
from edge_daemon.sources.picamera2 import Picamera2Source, _Stream  # noqa: E402
from tests.sources.fake_picamera2 import render, render_buffer  # noqa: E402

TARGET_SHARE = 0.5
# (what, format, the size the camera settled on)
PATHS = [
    ("Pi 5 lores RGB (fast path)", "BGR888", (224, 224)),
    ("Pi XBGR8888, drop X", "XBGR8888", (224, 224)),
    ("virtual camera NV12", "NV12", (224, 224)),
    ("YUV420 at the model size", "YUV420", (224, 224)),
    ("webcam NV12 640x480", "NV12", (640, 480)),
    ("webcam YUYV 640x480", "YUYV", (640, 480)),
    ("webcam YUYV 1280x720", "YUYV", (1280, 720)),
    ("webcam MJPEG 640x480", "MJPEG", (640, 480)),
    ("webcam MJPEG 1280x720", "MJPEG", (1280, 720)),
]


def timed(fn: Callable[[], Any], seconds: float) -> list[float]:
    """Per-call milliseconds of ``fn`` for about ``seconds``."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < 3:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds")
    parser.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "images")
    parser.add_argument("--model", default="mobilenet_v1_1.0_224_quant.tflite")
    parser.add_argument("--labels", default="labels_mobilenet_quant_v1_224.txt")
    args = parser.parse_args()
    model_path = args.models / args.model
    if not model_path.exists():
        print(f"camera_formats: {model_path}: no such model (see --models)", file=sys.stderr)
        return 2
    rounds, window = (3, 0.3) if args.quick else (7, 0.6)

    cfg = dataclasses.replace(
        Config(),
        model=dataclasses.replace(
            ModelConfig(), path=str(model_path), labels=str(args.models / args.labels)
        ),
        engine=dataclasses.replace(EngineConfig(), delegates=["xnnpack", "cpu"]),
    )
    model = load_model(cfg)
    size = (model.input.width, model.input.height)
    scene = decode_image((args.images / "grace_hopper.bmp").read_bytes(), (1, 1))
    source = Picamera2Source(SourceConfig(kind="picamera2"), size)
    tensor = scene[: size[1], : size[0]].copy()

    work: list[tuple[str, Callable[[], Any]]] = []
    for what, fmt, (w, h) in PATHS:
        if fmt in ("BGR888", "XBGR8888", "RGB888", "XRGB8888"):
            raw: Any = render(scene, w, h, fmt)
            stride = w * raw.shape[2]
        else:
            stride = 0 if fmt == "MJPEG" else w * (2 if fmt == "YUYV" else 1)
            raw = render_buffer(scene, w, h, fmt, stride)
        stream = _Stream("main", fmt, (w, h), stride, yuv.JPEG_COLOUR)
        # The copy make_array / make_buffer does is part of the cost.
        work.append((what, lambda raw=raw, stream=stream: source._to_rgb(raw.copy(), stream)))

    def invoke() -> None:
        model.engine.infer(tensor)

    samples: dict[str, list[float]] = {what: [] for what, _ in work}
    samples["invoke"] = []
    try:
        for _ in range(rounds):
            samples["invoke"] += timed(invoke, window)
            for what, fn in work:
                samples[what] += timed(fn, window / 3)
    finally:
        model.close()

    invoke_ms = statistics.median(samples["invoke"])
    print(
        f"model {args.model}, {model.engine.runtime}, delegate {model.engine.delegate};"
        f" {rounds} alternating rounds; figures are medians per frame"
    )
    print(f"\n| path | format, size | ms/frame | share of one invoke ({invoke_ms:.2f} ms) |")
    print("| --- | --- | --- | --- |")
    missed = []
    for what, fmt, (w, h) in PATHS:
        ms = statistics.median(samples[what])
        share = ms / invoke_ms
        print(f"| {what} | {fmt} {w}x{h} -> {size[0]}x{size[1]} RGB | {ms:.3f} | {share:.1%} |")
        if share > TARGET_SHARE:
            missed.append(what)
    if missed:
        print(f"\ntarget missed (> {TARGET_SHARE:.0%} of one invoke): {', '.join(missed)}")
        return 1
    print(f"\nevery path costs at most {TARGET_SHARE:.0%} of one invoke")
    return 0


if __name__ == "__main__":
    sys.exit(main())
