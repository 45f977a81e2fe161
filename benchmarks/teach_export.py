#!/usr/bin/env python3
"""The taught model against its base, side by side in one run.

For each base model and each installed runtime it prints:

1. The head: fitting 3 classes x 30 samples (embeddings cached), median of
   5 fits (target: < 1 s), and exporting the model (pure Python).
2. Sizes: the base model, the taught model.
3. Agreement: the taught model's top-1 against the NumPy head's
   (``predict_proba``) on held-out frames: every photo plus camera-like
   variants of it (crop/shift, exposure, noise, JPEG quality, mirror);
   target >= 99%.
4. Invoke time: the base model as the user had it (no embedding output),
   the base with the embedding output (the daemon's engine) and the taught
   model (the daemon's engine), invoked in turn on the same frames (the
   order rotating each round, so load from other processes hits all three
   alike); the ratios of the median invoke times. Targets: taught / base
   <= 1.02, embedding overhead <= 1.02.

Engines are built as the daemon builds them (``build_engine`` with the
xnnpack delegate: the runtime's own XNNPACK on LiteRT, edge-daemon's
quantized XNNPACK setup on tflite-runtime), 224x224 inputs from real photos.

Photos: ../shared/images and, when scikit-image is installed, the photos in
its wheel (skimage/data). Exit 0 when every target is met, 1 otherwise (all
figures printed first), 2 on a usage error. ``--quick``: one base model,
30 rounds instead of 300.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_daemon.engine.interpreter import (  # noqa: E402
    DelegateSettings,
    TFLiteEngine,
    build_engine,
    cpu_count,
)
from edge_daemon.engine.runtimes import RUNTIMES, load_runtime  # noqa: E402
from edge_daemon.preprocess import fit_frame  # noqa: E402
from edge_daemon.teach.export import export_model  # noqa: E402
from edge_daemon.teach.head import fit_head, predict_proba  # noqa: E402

SHARED = REPO.parent / "shared"
BASES = (
    "mobilenet_v1_1.0_224_quant.tflite",
    "mobilenet_v1_1.0_224_quant_int8io.tflite",
    "mobilenet_v2_1.0_224_quant.tflite",
    "mobilenet_v1_1.0_224_float.tflite",
)
SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
CLASSES = (("cat.bmp", "chelsea.png"), ("parrot.jpg", "bird.bmp"), ("coffee.png", "hot_dog.jpg"))


def load_photos(images: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(images.iterdir()):
        if path.suffix.lower() in (".bmp", ".jpg", ".png"):
            out[path.name] = _rgb(path)
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        for name in SKIMAGE:
            if (data / name).exists():
                out[name] = _rgb(data / name)
    return out


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        rgb.thumbnail((640, 640))
        return np.asarray(rgb)


def variant(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w, _ = image.shape
    s = rng.uniform(0.5, 1.0)
    ch, cw = int(h * s), int(w * s)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    frame = image[y : y + ch, x : x + cw].astype(np.float32) * rng.uniform(0.6, 1.35)
    frame += rng.normal(0.0, rng.uniform(0.0, 8.0), frame.shape)
    if rng.random() < 0.5:
        frame = frame[:, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=int(rng.integers(30, 95))
    )
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def model_input(engine: TFLiteEngine, frame: np.ndarray) -> np.ndarray:
    """The daemon's preprocessing for these models (stretch; int8 shift; [-1, 1] floats)."""
    shape, dtype = engine.input.shape, engine.input.dtype
    tensor = fit_frame(frame, shape[2], shape[1], "stretch")
    if dtype == np.int8:
        return (tensor.astype(np.int16) - 128).astype(np.int8)
    if dtype == np.float32:
        return ((tensor - 127.5) / 127.5).astype(np.float32)
    return tensor


def embed(engine: TFLiteEngine, frame: np.ndarray) -> np.ndarray:
    engine.infer(model_input(engine, frame))
    assert engine.embedding is not None and engine.last_embedding is not None
    return engine.embedding.dequantize(engine.last_embedding)


def interleaved(engines: list[TFLiteEngine], tensors: list[np.ndarray], rounds: int) -> list[float]:
    """Median ms per invoke of each engine, invoking them in turn (rotating the order)."""
    times: list[list[float]] = [[] for _ in engines]
    for r in range(rounds):
        tensor = tensors[r % len(tensors)]
        for k in range(len(engines)):
            i = (r + k) % len(engines)
            t = time.perf_counter()
            engines[i].infer(tensor)
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) * 1000.0 for t in times]


def bench_base(base: str, runtime_name: str, args: argparse.Namespace) -> list[str]:
    missed: list[str] = []
    path = SHARED / "models" / base
    runtime = load_runtime(runtime_name)
    settings = DelegateSettings(threads=args.threads)
    daemon_base = build_engine(str(path), runtime, "xnnpack", settings)
    plain_base = build_engine(str(path), runtime, "xnnpack", settings, embedding=False)
    photos = load_photos(SHARED / "images")
    rng = np.random.default_rng(19)
    X, y = [], []
    for index, names in enumerate(CLASSES):
        for k in range(30):
            X.append(embed(daemon_base, variant(photos[names[k % len(names)]], rng)))
            y.append(index)
    Xa, ya = np.array(X), np.array(y)
    classes = [n[0].split(".")[0] for n in CLASSES]
    fits = []
    for _ in range(5):
        t = time.perf_counter()
        head = fit_head(Xa, ya, classes)
        fits.append(time.perf_counter() - t)
    t = time.perf_counter()
    data = export_model(path.read_bytes(), head, Xa)
    export_s = time.perf_counter() - t
    fit_ms = statistics.median(fits) * 1000
    print(f"  head: fit 3x30 ({head.method}) {fit_ms:.0f} ms, export {export_s * 1000:.0f} ms")
    if fit_ms >= 1000:
        missed.append(f"{base}: fitting took {fit_ms:.0f} ms (target < 1000)")
    print(f"  size: base {path.stat().st_size / 1e6:.2f} MB, taught {len(data) / 1e6:.2f} MB")

    with tempfile.TemporaryDirectory() as tmp:
        taught_path = Path(tmp) / "model.tflite"
        taught_path.write_bytes(data)
        taught = build_engine(str(taught_path), runtime, "xnnpack", settings)
    frames = []
    for image in photos.values():
        frames.append(image)
        frames += [variant(image, rng) for _ in range(args.variants)]
    agree = 0
    for frame in frames:
        want = int(np.argmax(predict_proba(head, embed(daemon_base, frame))))
        got = int(np.argmax(taught.infer(model_input(taught, frame))))
        agree += got == want
    share = agree / len(frames)
    print(f"  agreement with the NumPy head: {agree}/{len(frames)} frames ({share:.1%})")
    if share < 0.99:
        missed.append(f"{base}: agreement {share:.1%} (target >= 99%)")

    tensors = [model_input(plain_base, f) for f in frames[:: max(1, len(frames) // 16)]]
    for engine in (plain_base, daemon_base, taught):
        interleaved([engine], tensors, 3)  # warm-up
    base_ms, emb_ms, taught_ms = interleaved(
        [plain_base, daemon_base, taught], tensors, args.rounds
    )
    taught_ratio, embedding_ratio = taught_ms / base_ms, emb_ms / base_ms
    print(
        f"  invoke: base {base_ms:.2f} ms ({plain_base.delegated_nodes()} delegated nodes),"
        f" base + embedding output {emb_ms:.2f} ms ({daemon_base.delegated_nodes()}),"
        f" taught {taught_ms:.2f} ms ({taught.delegated_nodes()}); medians of {args.rounds}"
        " interleaved invokes each"
    )
    print(
        f"  ratio taught / base: {taught_ratio:.3f}x;"
        f" embedding output / base: {embedding_ratio:.3f}x"
    )
    if taught_ratio > 1.02:
        missed.append(f"{base}: taught/base invoke ratio {taught_ratio:.3f} (target <= 1.02)")
    if embedding_ratio > 1.02:
        missed.append(f"{base}: embedding overhead {embedding_ratio:.3f} (target <= 1.02)")
    for engine in (plain_base, daemon_base, taught):
        engine.close()
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one model, short windows (CI)")
    parser.add_argument("--models", nargs="*", help=f"base models (default: {', '.join(BASES)})")
    parser.add_argument("--threads", type=int, default=cpu_count())
    parser.add_argument("--rounds", type=int, help="interleaved invokes per engine (30 quick, 300)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (30 if args.quick else 300)
    args.variants = 2 if args.quick else 5
    bases = args.models or (BASES[:1] if args.quick else BASES)
    runtimes = []
    for name in RUNTIMES:
        try:
            load_runtime(name)
        except Exception:
            continue
        runtimes.append(name)
    if not runtimes:
        print("no TFLite runtime installed", file=sys.stderr)
        return 2
    missed: list[str] = []
    print("taught model vs its base (figures from one run on this machine, which may be loaded)")
    for base in bases:
        if not (SHARED / "models" / base).exists():
            print(f"{base}: not in {SHARED / 'models'}", file=sys.stderr)
            return 2
        for runtime_name in runtimes:
            print(f"{base}, {runtime_name}, {args.threads} threads:")
            missed += bench_base(base, runtime_name, args)
    for line in missed:
        print(f"target missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
