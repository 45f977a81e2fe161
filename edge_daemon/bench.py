"""``edge-daemon bench``: where the time goes, per runtime x delegate x threads.

For the configured model, every importable runtime (ai_edge_litert,
tflite_runtime; tensorflow only when the config names it) is tried with each
delegate (xnnpack, cpu) and each thread count from 1 to the number of cores.
Each case is loaded exactly as the daemon loads it (``load_model`` with that
one delegate, so tflite-runtime's quantized XNNPACK is checked against the CPU
path first) and measured two ways, alternating in chunks so that a noisy
machine slows both alike:

* **bare**: ``interpreter.invoke()`` in a loop on one prepared input, the
  floor no pipeline can beat;
* **pipeline**: what the daemon does per frame: decode, ``Classifier.classify``
  (resize, quantize through the lookup table, set/invoke/get, dequantize,
  top-k). Stages run one after the other here so that each can be timed; the
  daemon itself decodes in its capture thread, overlapped with inference.

Frames. With ``source.kind: files`` the configured images (at most
``MAX_FILES``) are read into memory once, so disk reads are not measured, and
every pipeline pass decodes them from memory as the files source does (JPEG
draft decoding down to the model size). Any other source (a camera) is stood
in for by synthetic 640x480 RGB frames, which need no decoding; that is a
worst case for resizing, since the picamera2 source has the ISP deliver
frames at the model size.

All figures are medians. A case gets ``frames`` bare invokes and ``frames``
pipeline frames, or fewer when it exceeds ``CASE_BUDGET`` seconds (the
reference kernels at one thread take ~100 ms per invoke on a Pi-class CPU),
so a default run stays around a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .config import Config
from .engine.interpreter import cpu_count
from .errors import EdgeDaemonError, RuntimeNotFoundError, SourceError
from .preprocess import ResizeMode

log = logging.getLogger(__name__)

# Runtimes compared by default; tensorflow is added only when configured
# (importing it takes seconds and hundreds of MB).
BENCH_RUNTIMES = ("ai_edge_litert", "tflite_runtime")
DELEGATES = ("xnnpack", "cpu")
# Seconds of measurement per case before it stops short of ``frames``.
CASE_BUDGET = 6.0
# Distinct frames taken from the files source; more only costs memory.
MAX_FILES = 16
# Bare and pipeline passes alternate in this many chunks per case.
CHUNKS = 5
SYNTHETIC_SIZE = (640, 480)


@dataclass
class BenchFrame:
    """One test frame: the encoded bytes (files) or the pixels (synthetic)."""

    name: str
    data: Optional[bytes]
    pixels: Optional[np.ndarray]
    size: tuple[int, int]
    kind: str  # "JPEG", "BMP", ..., or "raw" for synthetic frames


@dataclass
class Case:
    """One runtime x delegate x threads combination and its measurements."""

    runtime: str
    version: str
    delegate: str
    threads: int
    error: Optional[str] = None
    bare: list[float] = field(default_factory=list)
    pipeline: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    preprocess: list[float] = field(default_factory=list)
    invoke: list[float] = field(default_factory=list)
    postprocess: list[float] = field(default_factory=list)
    top1: list[int] = field(default_factory=list)
    top1_matches_cpu: Optional[bool] = None

    def row(self) -> dict[str, Any]:
        """The JSON row; timing fields are None when the case failed."""
        bare, pipe = _median(self.bare), _median(self.pipeline)
        return {
            "runtime": self.runtime,
            "version": self.version,
            "delegate": self.delegate,
            "threads": self.threads,
            "error": self.error,
            "invokes": len(self.bare),
            "frames": len(self.pipeline),
            "bare_ms": _round(bare),
            "bare_fps": _round(1000.0 / bare if bare else None, 1),
            "pipeline_ms": _round(pipe),
            "pipeline_fps": _round(1000.0 / pipe if pipe else None, 1),
            "ratio": _round(pipe / bare if pipe and bare else None),
            "stages": {
                "decode_ms": _round(_median(self.decode)),
                "preprocess_ms": _round(_median(self.preprocess)),
                "invoke_ms": _round(_median(self.invoke)),
                "postprocess_ms": _round(_median(self.postprocess)),
            },
            "top1": self.top1 or None,
            "top1_matches_cpu": self.top1_matches_cpu,
        }


def _median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _round(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(value, digits)


# -- frames --------------------------------------------------------------------
def load_frames(cfg: Config, model_size: tuple[int, int]) -> tuple[list[BenchFrame], str]:
    """The frames to measure on and a one-line description of where they came from."""
    from PIL import Image

    from .sources.files import decode_image, list_files

    frames: list[BenchFrame] = []
    if cfg.source.kind == "files":
        try:
            names = list_files(cfg.source.path)
        except SourceError:
            names = []
        for name in names:
            try:
                data = Path(name).read_bytes()
                decode_image(data, model_size)  # skip what the files source would skip
                with Image.open(name) as img:
                    size, kind = img.size, str(img.format)
            except (OSError, ValueError):
                continue
            frames.append(BenchFrame(os.path.basename(name), data, None, size, kind))
            if len(frames) >= MAX_FILES:
                break
        if frames:
            sizes = sorted({f"{w}x{h}" for w, h in (f.size for f in frames)})
            kinds = sorted({f.kind for f in frames})
            shown = ", ".join(sizes[:3]) + (", ..." if len(sizes) > 3 else "")
            return frames, (
                f"{len(frames)} {'/'.join(kinds)} files from {cfg.source.path} ({shown})"
            )
        what = f"no readable images in {cfg.source.path}"
    else:
        what = f"source.kind is {cfg.source.kind}"
    w, h = SYNTHETIC_SIZE
    for i, pixels in enumerate(synthetic_frames(w, h, count=4)):
        frames.append(BenchFrame(f"synthetic-{i}", None, pixels, (w, h), "raw"))
    return frames, f"{len(frames)} synthetic {w}x{h} RGB frames ({what})"


def synthetic_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Deterministic camera-like frames: smooth gradients with a little noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(count):
        base = np.stack(
            [
                128 + 100 * np.sin(xx / (37 + 11 * i)),
                128 + 100 * np.cos(yy / (23 + 7 * i)),
                128 + 100 * np.sin((xx + yy) / (53 + 5 * i)),
            ],
            axis=-1,
        )
        noise = rng.normal(0, 8, size=base.shape)
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


# -- one case --------------------------------------------------------------------
def _decode(frame: BenchFrame, model_size: tuple[int, int]) -> np.ndarray:
    from .sources.files import decode_image

    if frame.pixels is not None:
        return frame.pixels
    assert frame.data is not None
    return decode_image(frame.data, model_size)


def measure_case(
    cfg: Config, runtime: Any, delegate: str, threads: int, frames: list[BenchFrame], n: int
) -> Case:
    """Load the model with one delegate and thread count; time bare invokes and the pipeline."""
    from .engine.model import load_model
    from .pipeline import Classifier
    from .preprocess import apply_lut, fit_frame

    case = Case(runtime.name, runtime.version, delegate, threads)
    only: list[Any] = [delegate]  # one delegate: open_engine then adds only the cpu fallback
    engine_cfg = dataclasses.replace(
        cfg.engine, runtime=runtime.name, delegates=only, threads=threads
    )
    try:
        model = load_model(dataclasses.replace(cfg, engine=engine_cfg), runtime)
    except EdgeDaemonError as exc:
        case.error = str(exc)
        return case
    try:
        if model.engine.delegate != delegate:
            # open_engine fell back to the CPU: not the case that was asked for.
            case.error = f"{delegate} could not run this model (it fell back to cpu)"
            return case
        clf = Classifier.from_config(model, cfg)
        size = (model.input.width, model.input.height)
        # Top-1 of each distinct frame (and a warm-up for caches and thread pools).
        for frame in frames:
            top = clf.classify(_decode(frame, size)).predictions
            case.top1.append(top[0].index if top else -1)
        first = fit_frame(_decode(frames[0], size), size[0], size[1], cfg.preprocess.resize)
        model.engine.infer(apply_lut(first, model.lut))
        # The bare loop calls the interpreter directly: no set/get, no Python around it.
        invoke = model.engine._interpreter.invoke
        deadline = time.perf_counter() + CASE_BUDGET
        chunk = max(1, -(-n // CHUNKS))
        i = 0
        perf = time.perf_counter
        while len(case.pipeline) < n:
            for _ in range(min(chunk, n - len(case.bare))):
                t = perf()
                invoke()
                case.bare.append((perf() - t) * 1e3)
            for _ in range(min(chunk, n - len(case.pipeline))):
                frame = frames[i % len(frames)]
                i += 1
                t0 = perf()
                pixels = _decode(frame, size)
                t1 = perf()
                result = clf.classify(pixels)
                t2 = perf()
                case.pipeline.append((t2 - t0) * 1e3)
                if frame.data is not None:  # synthetic frames have nothing to decode
                    case.decode.append((t1 - t0) * 1e3)
                case.preprocess.append(result.preprocess_ms)
                case.invoke.append(result.inference_ms)
                case.postprocess.append(result.postprocess_ms)
            if perf() > deadline and len(case.pipeline) >= 3:
                break
    finally:
        model.close()
    return case


# -- the frame path, engine-independent ----------------------------------------------
def frame_path(frames: list[BenchFrame], model: Any, resize: ResizeMode, n: int) -> dict[str, Any]:
    """Median decode, resize and quantize (lookup table) times per frame, on one core."""
    from .preprocess import apply_lut, fit_frame, is_identity

    size = (model.input.width, model.input.height)
    identity = is_identity(model.lut)
    buf = np.empty((size[1], size[0], 3), dtype=model.lut.dtype)
    dec, res, quant = [], [], []
    perf = time.perf_counter
    for i in range(max(n, len(frames))):
        frame = frames[i % len(frames)]
        t0 = perf()
        pixels = _decode(frame, size)
        t1 = perf()
        fitted = fit_frame(pixels, size[0], size[1], resize)
        t2 = perf()
        if not identity:
            apply_lut(fitted, model.lut, buf)
        t3 = perf()
        dec.append((t1 - t0) * 1e3)
        res.append((t2 - t1) * 1e3)
        quant.append((t3 - t2) * 1e3)
    decoded = _decode(frames[0], size)
    return {
        "decode_ms": _round(_median(dec)) if frames[0].data is not None else 0.0,
        "resize_ms": _round(_median(res)),
        "quantize_ms": _round(_median(quant)),
        "decoded_size": f"{decoded.shape[1]}x{decoded.shape[0]}",
        "lut": "identity: uint8 pixels are the input, skipped" if identity else "table lookup",
    }


# -- the run ------------------------------------------------------------------------------
def _runtimes(cfg: Config) -> tuple[list[Any], dict[str, str]]:
    from .engine.runtimes import load_runtime

    names = list(BENCH_RUNTIMES)
    if cfg.engine.runtime == "tensorflow":
        names.append("tensorflow")
    found, missing = [], {}
    for name in names:
        try:
            found.append(load_runtime(name))
        except RuntimeNotFoundError as exc:
            missing[name] = str(exc).split(" (", 1)[-1].split(");", 1)[0]
    return found, missing


def thread_counts(cores: int) -> list[int]:
    """1..cores; on many-core machines powers of two and the core count."""
    if cores <= 8:
        return list(range(1, cores + 1))
    counts = [t for t in (1, 2, 4, 8, 16, 32) if t < cores]
    return [*counts, cores]


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, Python."""
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                # "Model" names the board on a Pi; "model name" the CPU elsewhere.
                if key.strip() in ("Model", "model name") and value.strip():
                    cpu = value.strip()
                    if key.strip() == "Model":
                        break
    except OSError:
        pass
    try:
        # Other processes' load skews every figure; worth knowing when reading them.
        load: Optional[float] = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "arch": platform.machine(),
        "cores": cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average": load,
    }


def _summary(cases: list[Case]) -> str:
    ok = [c for c in cases if c.error is None and c.pipeline]
    if not ok:
        return "no case ran; see the errors above"
    best = min(ok, key=lambda c: _median(c.pipeline) or float("inf"))
    pipe = _median(best.pipeline) or 0.0
    bare = _median(best.bare) or 0.0
    parts = {
        "invoke": _median(best.invoke) or 0.0,
        "resize+quantize": _median(best.preprocess) or 0.0,
        "postprocess": _median(best.postprocess) or 0.0,
    }
    if best.decode:
        parts["decode"] = _median(best.decode) or 0.0
    total = sum(parts.values()) or 1.0
    ranked = sorted(parts.items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in ranked)
    outside = 100 * max(0.0, pipe - bare) / pipe if pipe else 0.0
    overlap = (
        " (the daemon decodes in its capture thread, overlapped with inference)"
        if best.decode
        else ""
    )
    plural = "s" if best.threads > 1 else ""
    return (
        f"fastest: {best.runtime} {best.delegate}, {best.threads} thread{plural}:"
        f" {pipe:.2f} ms per frame ({1000 / pipe if pipe else 0:.0f} fps) against"
        f" {bare:.2f} ms bare invoke. {ranked[0][0].capitalize()} dominates ({shares});"
        f" {outside:.0f}% of the frame is spent outside invoke{overlap}."
    )


def run_bench(cfg: Config, frames: int, as_json: bool) -> int:
    """Measure every runtime x delegate x threads case; print a table (or JSON). 0 if any ran."""
    from .engine.model import load_model

    if frames < 1:
        raise EdgeDaemonError(f"--frames: must be at least 1 (got {frames})")
    runtimes, missing = _runtimes(cfg)
    if not runtimes:
        from .engine.runtimes import INSTALL_HINT

        raise RuntimeNotFoundError(f"no TFLite runtime could be imported; {INSTALL_HINT}")
    cores = cpu_count()
    # Load once on the first runtime's CPU path: input size, lookup table and
    # the engine-independent frame path.
    probe_cfg = dataclasses.replace(
        cfg, engine=dataclasses.replace(cfg.engine, runtime=runtimes[0].name, delegates=["cpu"])
    )
    probe = load_model(probe_cfg, runtimes[0])
    try:
        size = (probe.input.width, probe.input.height)
        bench_frames, frame_note = load_frames(cfg, size)
        path = frame_path(bench_frames, probe, cfg.preprocess.resize, frames)
        model_info = {
            "path": probe.path,
            "sha256": probe.sha256,
            "input": f"{size[0]}x{size[1]} {probe.input.dtype.name}",
        }
    finally:
        probe.close()
    host = machine()
    if not as_json:
        print(
            f"edge-daemon bench: {os.path.basename(model_info['path'])} ({model_info['input']}),"
            f" {frame_note}, up to {frames} frames per case; {host['cpu']}, {cores} cores,"
            f" load average {host['load_average']}",
            flush=True,
        )
    cases: list[Case] = []
    for runtime in runtimes:
        for delegate in DELEGATES:
            for threads in thread_counts(cores):
                case = measure_case(cfg, runtime, delegate, threads, bench_frames, frames)
                cases.append(case)
                if not as_json:
                    _print_row(case, header=len(cases) == 1)
    # Top-1 agreement with the plain CPU kernels of the same runtime, frame by frame.
    for case in cases:
        ref = next(
            (c for c in cases if c.runtime == case.runtime and c.delegate == "cpu" and c.top1),
            None,
        )
        if case.top1 and ref is not None and case is not ref:
            case.top1_matches_cpu = case.top1 == ref.top1
    summary = _summary(cases)
    if as_json:
        report = {
            "model": model_info,
            "machine": host,
            "runtimes": {r.name: r.version for r in runtimes},
            "unavailable": missing,
            "frames": {
                "source": frame_note,
                "kind": "synthetic" if bench_frames[0].data is None else "files",
                "count": len(bench_frames),
                "per_case": frames,
            },
            "frame_path": path,
            "cases": [c.row() for c in cases],
            "summary": summary,
        }
        print(json.dumps(report, indent=1))
    else:
        for name, why in missing.items():
            print(f"{name}: not measured ({why})")
        dec = (
            f"decode {path['decode_ms']:.2f} ms to {path['decoded_size']}, "
            if path["decode_ms"]
            else ""
        )
        print(
            f"frame path (one core, any engine): {dec}resize {path['resize_ms']:.2f} ms,"
            f" quantize {path['quantize_ms']:.2f} ms ({path['lut']})"
        )
        print(_agreement(cases))
        print(summary)
    sys.stdout.flush()
    return 0 if any(c.error is None for c in cases) else 1


def _agreement(cases: list[Case]) -> str:
    checked = [c for c in cases if c.top1_matches_cpu is not None]
    differ = [f"{c.runtime} {c.delegate} {c.threads}t" for c in checked if not c.top1_matches_cpu]
    if not checked:
        return "top-1: nothing to compare with a cpu case"
    if not differ:
        return f"top-1: all {len(checked)} cases agree with their runtime's cpu path on every frame"
    return "top-1: differs from the cpu path (near-ties?) for " + ", ".join(differ)


_COLUMNS = (
    ("runtime", 22, "<"),
    ("delegate", 8, "<"),
    ("thr", 3, ">"),
    ("bare ms", 8, ">"),
    ("pipe ms", 8, ">"),
    ("fps", 6, ">"),
    ("ratio", 5, ">"),
    ("decode", 7, ">"),
    ("preproc", 7, ">"),
    ("invoke", 7, ">"),
    ("post", 5, ">"),
)


def _print_row(case: Case, header: bool) -> None:
    if header:
        print("  ".join(f"{name:{align}{width}}" for name, width, align in _COLUMNS))
    r = case.row()
    runtime = f"{case.runtime} {case.version}"
    if case.error is not None:
        print(f"{runtime:<22}  {case.delegate:<8}  {case.threads:>3}  failed: {case.error}")
        return
    st = r["stages"]
    values = (
        runtime,
        case.delegate,
        case.threads,
        f"{r['bare_ms']:.2f}",
        f"{r['pipeline_ms']:.2f}",
        f"{r['pipeline_fps']:.1f}",
        f"{r['ratio']:.2f}",
        "-" if st["decode_ms"] is None else f"{st['decode_ms']:.2f}",
        f"{st['preprocess_ms']:.2f}",
        f"{st['invoke_ms']:.2f}",
        f"{st['postprocess_ms']:.2f}",
    )
    print(
        "  ".join(f"{v!s:{align}{width}}" for v, (_, width, align) in zip(values, _COLUMNS)),
        flush=True,
    )
