#!/usr/bin/env python3
"""Teaching on this machine: training time, accuracy on fixed-camera scenes, the export.

One run, one machine, the same base model (mobilenet_v1_1.0_224_quant by
default) and frames. The scenes are built from the fixture photos
(tests/teach/scenes.py: a garage door closed / half / open, and a feeder
with nothing / a chickadee / a cat / a dragonfly anywhere at 20-45 % of the
frame width), 640x480 JPEGs with lighting, noise, shift and quality varying
per frame. Figures:

1. **Training, embeddings cached**: ``edge-daemon teach train`` (the
   process a user runs) on 3 classes x 30 samples whose embeddings are in the
   cache; the wall time, and the seconds report.json gives per stage.
   Target <= 2 s.
2. **Training from scratch**: the same with the cache emptied (90 photos to
   embed), against ``edge-daemon classify`` of the same 90 photos, run
   alternately. Target <= 2x.
3. **Accuracy**: for each task, the trained layer (NumPy) on held-out frames
   with 3, 5, 10, 20, 50 samples per class (the samples are the first n of a
   fixed training set). Target >= 97 % at 20.
4. **Exported vs base** (the 20-sample garage model): invoke time ratio
   (alternating invokes of both on the same inputs, median of per-block
   ratios; target within 2 %), size, and top-1 agreement of the exported model
   with the NumPy layer on samples and held-out frames (target >= 99 %).

Exit status: 0 when every target is met, 1 otherwise (after every figure),
2 on a usage error. ``--quick``: fewer frames (held-out 20 per class, the
curve to 20, fewer invoke blocks); ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from edge_daemon.config import Config, load_config  # noqa: E402
from edge_daemon.engine.model import load_model  # noqa: E402
from edge_daemon.pipeline import Classifier  # noqa: E402
from edge_daemon.preprocess import apply_lut, fit_frame, is_identity  # noqa: E402
from edge_daemon.sources.files import decode_image  # noqa: E402
from edge_daemon.teach.head import fit_head, predict_proba  # noqa: E402
from tests.teach.scenes import TASKS, write_frames  # noqa: E402

CURVE = (3, 5, 10, 20, 50)
TARGET_CACHED_S = 2.0
TARGET_SCRATCH_RATIO = 2.0
TARGET_ACCURACY = 0.97
TARGET_INVOKE = 1.02
TARGET_AGREEMENT = 0.99


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli(*args: str, config: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "edge_daemon", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(REPO),
    )
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"edge-daemon {' '.join(args[:2])} failed: {r.stderr.strip()}")
    return took, r


def write_config(work: Path, model: Path, labels: Path) -> Path:
    data = {
        "model": {"path": str(model), "labels": str(labels)},
        "daemon": {"state_dir": str(work / "state")},
        "outputs": {"prediction_log": None, "status_file": None},
        "http": {"listen": None},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def embed_all(clf: Classifier, frames: dict[str, list[Path]]) -> tuple[np.ndarray, np.ndarray]:
    size = (clf.model.input.width, clf.model.input.height)
    X, y = [], []
    for ci, paths in enumerate(frames.values()):
        for p in paths:
            X.append(clf.embed(decode_image(p.read_bytes(), size)))
            y.append(ci)
    return np.stack(X).astype(np.float32), np.array(y)


def first_n(y: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([np.flatnonzero(y == c)[:n] for c in np.unique(y)])


def training_times(work: Path, cfg_path: Path, images: Path, pairs: int) -> dict[str, Any]:
    frames = write_frames(images, "garage", work / "t30", 30, seed=30)
    for cls, paths in frames.items():
        cli("teach", "add", cls, *map(str, paths), config=cfg_path)
    cli("teach", "train", config=cfg_path)  # the delegate choice and the cache, once
    samples = work / "state" / "teach" / "samples"
    photos = [str(p) for paths in frames.values() for p in paths]
    cached, scratch, classify, cpu, cpu_ratio = [], [], [], [], []
    stages: dict[str, float] = {}
    for _ in range(pairs):
        c0 = children_cpu()
        took, r = cli("teach", "train", "--json", config=cfg_path)
        cpu.append(children_cpu() - c0)
        cached.append(took)
        stages = json.loads(r.stdout)["seconds"]
        for npy in samples.rglob("*.npy"):
            npy.unlink()
        c0 = children_cpu()
        took, _ = cli("teach", "train", config=cfg_path)
        c1 = children_cpu()
        scratch.append(took)
        took, _ = cli("classify", *photos, config=cfg_path)
        classify.append(took)
        cpu_ratio.append((c1 - c0) / (children_cpu() - c1))
    return {
        "cached_s": round(statistics.median(cached), 3),
        "cached_cpu_s": round(statistics.median(cpu), 3),
        "cached_stages_s": stages,
        "scratch_s": round(statistics.median(scratch), 3),
        "classify_90_s": round(statistics.median(classify), 3),
        "scratch_ratio": round(statistics.median(s / c for s, c in zip(scratch, classify)), 3),
        "scratch_cpu_ratio": round(statistics.median(cpu_ratio), 3),
    }


def accuracy_curves(
    clf: Classifier, images: Path, work: Path, held: int, curve: tuple[int, ...]
) -> tuple[dict[str, dict[int, float]], dict[str, Any]]:
    out: dict[str, dict[int, float]] = {}
    kept: dict[str, Any] = {}
    for task, classes in TASKS.items():
        train = write_frames(images, task, work / task / "train", max(curve), seed=101)
        test = write_frames(images, task, work / task / "held", held, seed=202)
        Xtr, ytr = embed_all(clf, train)
        Xte, yte = embed_all(clf, test)
        out[task] = {}
        for n in curve:
            idx = first_n(ytr, n)
            head = fit_head(Xtr[idx], ytr[idx], list(classes), seed=0)
            pred = np.argmax(predict_proba(head, Xte), axis=1)
            out[task][n] = round(float(np.mean(pred == yte)), 4)
        kept[task] = (train, test, Xtr, ytr, Xte, yte)
    return out, kept


def export_figures(cfg: Config, kept: dict[str, Any], blocks: int) -> dict[str, Any]:
    from edge_daemon.teach.export import export_model, labels_text

    train, test, Xtr, ytr, _, _ = kept["garage"]
    idx = first_n(ytr, 20)
    classes = list(TASKS["garage"])
    head = fit_head(Xtr[idx], ytr[idx], classes, seed=0)
    base_bytes = Path(cfg.model.path).read_bytes()
    data = export_model(base_bytes, head, Xtr[idx])
    with tempfile.TemporaryDirectory() as tmp:
        mpath, lpath = Path(tmp) / "model.tflite", Path(tmp) / "labels.txt"
        mpath.write_bytes(data)
        lpath.write_text(labels_text(head))
        run = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, path=str(mpath), labels=str(lpath))
        )
        taught, base = load_model(run), load_model(cfg)
        try:
            clf = Classifier.from_config(taught, run)
            size = (taught.input.width, taught.input.height)
            frames = [p for paths in train.values() for p in paths[:20]]
            frames += [p for paths in test.values() for p in paths]
            agree = 0
            tensors = []
            for p in frames:
                pixels = decode_image(p.read_bytes(), size)
                r = clf.classify(pixels)
                want = int(np.argmax(predict_proba(head, r.embedding[None, :])[0]))
                agree += int(r.predictions[0].index == want)
                fitted = fit_frame(pixels, size[0], size[1], clf.resize)
                lut = taught.lut
                tensors.append(fitted if is_identity(lut) else apply_lut(fitted, lut))
            ratios = []
            for block in range(blocks):
                spent = {id(base): 0.0, id(taught): 0.0}
                order = (base, taught) if block % 2 == 0 else (taught, base)  # no order bias
                for t in tensors[:10]:
                    for m in order:
                        t0 = time.perf_counter()
                        m.engine.infer(t)
                        spent[id(m)] += time.perf_counter() - t0
                ratios.append(spent[id(taught)] / spent[id(base)])
            return {
                "invoke_ratio": round(statistics.median(ratios), 4),
                "delegate": f"{taught.engine.runtime} {taught.engine.delegate} /"
                f" {base.engine.runtime} {base.engine.delegate}",
                "size_bytes": len(data),
                "base_size_bytes": len(base_bytes),
                "agreement": round(agree / len(frames), 4),
                "agreement_frames": len(frames),
            }
        finally:
            taught.close()
            base.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer frames and repeats")
    p.add_argument("--models", default=str(REPO.parent / "shared" / "models"))
    p.add_argument("--images", default=str(REPO.parent / "shared" / "images"))
    p.add_argument("--model", default="mobilenet_v1_1.0_224_quant.tflite")
    p.add_argument("--labels", default="labels_mobilenet_quant_v1_224.txt")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = p.parse_args(argv)
    images, models = Path(args.images), Path(args.models)
    if not (models / args.model).is_file() or not images.is_dir():
        print(f"teach benchmark: no {models / args.model} or {images}", file=sys.stderr)
        return 2
    curve = CURVE[:4] if args.quick else CURVE
    held = 20 if args.quick else 50
    work = Path(tempfile.mkdtemp(prefix="teach-bench-"))
    try:
        cfg_path = write_config(work, models / args.model, models / args.labels)
        cfg = load_config(cfg_path)
        print("training 3 classes x 30 samples (edge-daemon teach train) ...", flush=True)
        times = training_times(work, cfg_path, images, 2 if args.quick else 5)
        print(f"  {times}", flush=True)
        print("accuracy on the scenes ...", flush=True)
        model = load_model(cfg)
        try:
            curves, kept = accuracy_curves(
                Classifier.from_config(model, cfg), images, work / "acc", held, curve
            )
        finally:
            model.close()
        print(f"  {curves}", flush=True)
        print("the exported model against the base ...", flush=True)
        export = export_figures(cfg, kept, 20 if args.quick else 60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"training": times, "accuracy": curves, "export": export, "quick": args.quick}
    checks = [
        ("training, embeddings cached (s)", times["cached_s"], times["cached_s"] <= TARGET_CACHED_S,
         f"<= {TARGET_CACHED_S}"),
        ("training from scratch / classifying the 90 photos", times["scratch_ratio"],
         times["scratch_ratio"] <= TARGET_SCRATCH_RATIO, f"<= {TARGET_SCRATCH_RATIO}x"),
        *[(f"{task}: held-out accuracy at 20 samples/class", c[20], c[20] >= TARGET_ACCURACY,
           f">= {TARGET_ACCURACY:.0%}") for task, c in curves.items()],
        ("exported / base invoke time", export["invoke_ratio"],
         export["invoke_ratio"] <= TARGET_INVOKE, f"<= {TARGET_INVOKE}"),
        ("exported top-1 = NumPy layer's", export["agreement"],
         export["agreement"] >= TARGET_AGREEMENT, f">= {TARGET_AGREEMENT:.0%}"),
    ]  # fmt: skip
    print()
    print(f"training stages (s, report.json): {times['cached_stages_s']}")
    print(f"training, embeddings cached: {times['cached_cpu_s']} s of CPU time (user + system)")
    print(
        f"from scratch {times['scratch_s']} s, classifying the 90: {times['classify_90_s']} s;"
        f" in CPU time, from scratch / classify = {times['scratch_cpu_ratio']}"
    )
    print(f"held-out frames per class: {held}")
    print("samples/class " + " ".join(f"{n:>6}" for n in curve))
    for task, c in curves.items():
        print(f"{task:<13} " + " ".join(f"{100 * c[n]:5.1f}%" for n in curve))
    print(
        f"exported model {export['size_bytes'] / 1e6:.2f} MB"
        f" (base {export['base_size_bytes'] / 1e6:.2f} MB),"
        f" {export['delegate']}, agreement on {export['agreement_frames']} frames"
    )
    print()
    failed = 0
    for name, value, ok, target in checks:
        print(f"{'ok  ' if ok else 'MISS'}  {name}: {value} (target {target})")
        failed += not ok
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
