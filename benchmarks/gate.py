#!/usr/bin/env python3
"""The change gate's figures: a long still scene with a few visits, gate on against gate off.

One run, one machine, the same model, region and frames. It prints:

1. The scene, played through two ``edge-daemon run`` processes at the same
   time (``source: files`` at 30 fps, one with ``gate.mode: motion``, one with
   ``off``; the reference config's outputs: prediction log, status file, web
   server on a free loopback port; one event rule ``@birds``):
   CPU-seconds of the gate-on daemon / the gate-off one (target <= 0.15x; the
   visits themselves are the floor), the events each found (target: every
   visit, the same labels, each starting within 0.5 s of the gate-off
   daemon's; none from the exposure jump), and how many frames each
   classified.
2. The gate's own cost per frame (the daemon's ``ChangeGate.check`` on a
   640x480 RGB frame, sampled in software, and on a 320x240 luma plane as a
   camera's lores stream gives it) against one ``invoke()`` of the model
   (target <= 2%).
3. A small subject (a bird 14% of the frame's width): the model's top-1 on
   the whole frame and with ``preprocess.region`` around the bird.

The scene (10 minutes, 18,000 frames of 640x480; ``--quick``: 45 s, one
visit): a still background from a real photo (``cat_720p.jpg``: a cat lying
still on a sofa) with fresh Gaussian sensor noise on every frame (sigma 3
grey levels), a slow lighting drift (-15% over the scene, dusk), one sudden
lasting exposure jump (+30% at 40% of the scene, auto exposure), and visits:
a bird (cut from ``bird.bmp``) slides into the region, stays, and slides
out, 3-10 s each, under a tenth of the time in all.

Frames are binary PPM (P6) files: uncompressed R, G, B rows, which the files
source hands on as a view of the bytes it read, the nearest a file gets to a
camera's buffer. 18,000 distinct 640x480 frames would be 16 GB. The folder the
daemons read holds one name per frame, in order, each a symbolic link to the
file with its content. The light level moves in 1% steps (about one grey
level, far below what the gate counts as a change) and jumps once; for
each level there are 32 noisy copies of the background (12 with
``--quick``), each with its own noise, and a frame without the subject is
one of them picked at random, never the previous frame's. Every frame of a
visit is a file of its own (fresh noise, the bird where it is then). So
consecutive frames always differ by independent sensor noise, which is
what the gate has to see through; the noise repeats only as one of 32
fields. Both daemons read the same folder, each paced at 30 fps by its
files source from its own start; events are compared by scene time (the
frame's name), CPU per scene second by the frame each daemon was at.

Exit status 0 when every target is met, 1 when one is missed (after every
figure), 2 on a set-up error. ``--quick`` (scripts/test.sh: a 45 s scene with one
3 s visit, which with the hold after it is 11% of the scene, so its CPU ratio
is above the full form's) takes about 70 s on a quiet machine; the full form
about 11 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_process import DaemonProcess, cpu_seconds_of, daemon_config  # noqa: E402

MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS = "labels_mobilenet_quant_v1_224.txt"
FPS = 30
WIDTH, HEIGHT = 640, 480
LIGHT_STEP = 0.01
# Where the bird lands, as fractions of the frame: what the model sees (both daemons).
REGION = {"x": 0.5, "y": 0.3, "width": 0.4, "height": 0.5}
NOISE_SIGMA = 3.0
DRIFT = -0.15  # lighting over the whole scene
JUMP_AT, JUMP = 0.4, 0.30  # share of the scene, gain step
SLIDE_S = 0.5  # a visit's way in and out
VISITS_FULL = (3.0, 6.0, 10.0, 4.0, 8.0, 5.0)  # seconds each
TARGET_CPU = 0.15
TARGET_START_S = 0.5
TARGET_GATE_SHARE = 0.02


# -- the scene --------------------------------------------------------------------------
def fit_4_3(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The largest centred 4:3 part of ``img``, resized to ``size``, as uint8 RGB."""
    w, h = img.size
    cw = min(w, h * 4 // 3)
    ch = cw * 3 // 4
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    return np.asarray(img.convert("RGB").crop(box).resize(size, Image.Resampling.BILINEAR))


def subject_patch(images: Path, width: int) -> np.ndarray:
    """The bird of ``bird.bmp`` (its middle 70%), ``width`` pixels wide, uint8 RGB."""
    with Image.open(images / "bird.bmp") as img:
        w, h = img.size
        crop = img.convert("RGB").crop((int(w * 0.15), int(h * 0.1), int(w * 0.85), int(h * 0.9)))
        height = round(width * crop.height / crop.width)
        return np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class Visit:
    start: float  # scene seconds
    seconds: float


class Scene:
    """The scene's frames: (background + noise) x light, the subject in the region on a visit.

    The light level moves in steps of ``LIGHT_STEP`` (about one grey level:
    far below what the gate counts as a change, as a real drift is), and
    jumps once. For each level there are ``fields`` noisy copies of the
    background, each with its own Gaussian noise; a frame without the
    subject is one of them, picked at random and never the previous frame's.
    Every frame of a visit is rendered on its own (its own noise, the bird
    where it is at that moment).
    """

    def __init__(self, images: Path, seconds: float, visits: list[Visit], fields: int) -> None:
        with Image.open(images / "cat_720p.jpg") as img:
            self.background = fit_4_3(img, (WIDTH, HEIGHT))
        self.frames = int(seconds * FPS)
        self.seconds = seconds
        self.visits = visits
        self.fields = fields
        x0, y0 = int(REGION["x"] * WIDTH), int(REGION["y"] * HEIGHT)
        rw, rh = int(REGION["width"] * WIDTH), int(REGION["height"] * HEIGHT)
        self.box = (x0, y0, rw, rh)
        self.patch = subject_patch(images, int(rw * 0.9))[:rh]
        self.jump_frame = int(JUMP_AT * self.frames)
        self.rng = np.random.default_rng(20)

    def gain(self, i: int) -> float:
        """The light level of frame ``i``: the drift in LIGHT_STEP steps, then the jump."""
        drift = DRIFT * i / max(1, self.frames - 1)
        g = 1.0 + round(drift / LIGHT_STEP) * LIGHT_STEP
        return g * (1.0 + JUMP) if i >= self.jump_frame else g

    def subject_offset(self, i: int) -> Optional[int]:
        """How far (px) the bird has come into the region from its right edge, or None."""
        t = i / FPS
        rw = self.box[2]
        pw = self.patch.shape[1]
        for v in self.visits:
            if v.start <= t < v.start + v.seconds:
                into = min(t - v.start, v.start + v.seconds - t, SLIDE_S) / SLIDE_S
                return int(into * (pw + (rw - pw) // 2)) or None
        return None

    def render(self, gain: float, offset: Optional[int]) -> np.ndarray:
        """One frame with fresh noise: (H, W, 3) uint8 RGB."""
        frame = self.background.astype(np.float32)
        if offset:
            x0, y0, rw, rh = self.box
            ph, pw = self.patch.shape[:2]
            left = x0 + rw - offset  # the bird's left edge, sliding in from the right
            top = y0 + (rh - ph) // 2
            a, b = max(left, x0), min(left + pw, x0 + rw)
            if b > a:
                frame[top : top + ph, a:b] = self.patch[:, a - left : b - left]
        frame *= gain
        noise = self.rng.standard_normal(frame.shape, dtype=np.float32)
        frame += NOISE_SIGMA * noise
        return np.clip(frame, 0, 255).astype(np.uint8)

    def write(self, folder: Path) -> int:
        """The scene as a files-source folder: one name per frame, in order, each a link to
        the file of its content. Returns how many distinct files there are."""
        pool = folder / "pool"
        frames = folder / "frames"
        pool.mkdir(parents=True)
        frames.mkdir()
        made: set[str] = set()
        last = -1
        for i in range(self.frames):
            gain, offset = self.gain(i), self.subject_offset(i)
            if offset:
                name, last = f"visit{i:05d}.ppm", -1
            else:
                k = int(self.rng.integers(0, self.fields - 1))
                last = k + 1 if last >= 0 and k >= last else k  # never the previous field
                name = f"light{gain:.4f}_noise{last:02d}.ppm"
            if name not in made:
                Image.fromarray(self.render(gain, offset)).save(pool / name)
                made.add(name)
            os.symlink(pool / name, frames / f"f{i:05d}.ppm")
        return len(made)


def status_position(daemon: DaemonProcess) -> Optional[float]:
    """The frame index ``daemon`` is reading now, from its status file (None before one)."""
    from daemon_process import epoch

    s = daemon.status()
    seen, updated = s.get("frames_seen"), s.get("updated")
    if not isinstance(seen, int) or not isinstance(updated, str) or not seen:
        return None
    return seen + (time.time() - epoch(updated)) * FPS


# -- reading the daemons' results ----------------------------------------------------------
def frame_index(name: str) -> int:
    return int(Path(name).stem.lstrip("f"))


def events_of(daemon: DaemonProcess, state: Path) -> list[dict[str, Any]]:
    """The daemon's events, each with ``scene_start``: the scene time of its first frame."""
    db = state / "events" / "events.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM events ORDER BY start")]
    from daemon_process import epoch

    by_ts: dict[int, int] = {}
    for r in daemon.read():
        try:
            by_ts[round(epoch(r["ts"]) * 1000)] = frame_index(r["image"])
        except (KeyError, ValueError):
            continue
    for e in rows:  # the log's ts is the capture time cut to milliseconds
        index = by_ts.get(math.floor(e["start"] * 1000 + 1e-6))
        e["scene_start"] = index / FPS if index is not None else None
    return rows


def visit_schedule(seconds: float, durations: tuple[float, ...]) -> list[Visit]:
    """Visits spread evenly over the scene, at least 8 s apart (an event ends 5 s after
    its subject leaves), none from 3 s before the exposure jump to 5 s after it."""
    n = len(durations)
    jump = JUMP_AT * seconds
    out: list[Visit] = []
    end = 0.0
    for k, d in enumerate(durations):
        start = max(seconds * (k + 0.5) / (n + 0.5), end + 8 if out else 2.0)
        if start < jump + 5 and start + d > jump - 3:
            start = jump + 5
        out.append(Visit(round(start, 2), d))
        end = start + d
    if end > seconds - 2:
        raise SystemExit(f"gate.py: {n} visits do not fit in {seconds:g} s; make the scene longer")
    return out


@dataclass
class Side:
    name: str
    daemon: DaemonProcess
    state: Path
    cpu: list[tuple[float, float]]  # (time, CPU s) samples


def play(args: argparse.Namespace, work: Path, scene: Scene, frames: Path) -> dict[str, Any]:
    """Part 1: the scene through a gate-on and a gate-off daemon at the same time.

    Each daemon's files source paces it at 30 fps from its own start; events
    are compared by scene time (the frame's name), not by clock.
    """
    models = args.models
    sides: list[Side] = []
    try:
        for mode in ("motion", "off"):
            state = work / f"state-{mode}"
            config = daemon_config(
                work / f"gate-{mode}",
                model=models / MODEL,
                labels=models / LABELS,
                frames=frames,
                state=state,
                extra={
                    "source": {"loop": False, "fps": FPS, "stall_timeout": 10.0},
                    "preprocess": {"region": REGION},
                    "gate": {"mode": mode},
                    "events": {"rules": [{"name": "visit", "labels": ["@birds"]}]},
                },
            )
            sides.append(Side(mode, DaemonProcess(f"gate {mode}", config), state, []))
        while any(s.daemon.proc.poll() is None for s in sides):
            for s in sides:
                # Read the log as it grows: the reader follows one rotation a
                # call, and the gate-off daemon's log rotates a few times.
                s.daemon.read()
                if s.daemon.proc.poll() is None:
                    pos = status_position(s.daemon)
                    with contextlib.suppress(OSError):  # it just ended
                        s.cpu.append((pos or 0.0, cpu_seconds_of(s.daemon.pid)))
            time.sleep(0.2)
    finally:
        codes = {s.name: s.daemon.stop() for s in sides}

    results: dict[str, Any] = {}
    for s in sides:
        records = s.daemon.read()
        if not records or codes[s.name] != 0:
            tail = s.daemon.stderr_path.read_text(errors="replace")[-1500:]
            raise SystemExit(f"gate.py: gate {s.name}: exit {codes[s.name]}:\n{tail}")
        # CPU per scene second, from 2 s into the scene to 1 s before its end
        # (by the frame the daemon was at: its start-up is outside).
        a, b = 2 * FPS, scene.frames - FPS
        inside = [(p, c) for p, c in s.cpu if a <= p <= b]
        cpu = (
            (inside[-1][1] - inside[0][1]) / ((inside[-1][0] - inside[0][0]) / FPS)
            if len(inside) > 1 and inside[-1][0] > inside[0][0]
            else float("nan")
        )
        status = s.daemon.status()
        in_visits = sum(
            1
            for r in records
            if "image" in r
            and any(
                v.start <= frame_index(r["image"]) / FPS < v.start + v.seconds for v in scene.visits
            )
        )
        results[s.name] = {
            "classified": len(records),
            "in_visits": in_visits,
            "seen": (status.get("gate") or {}).get("frames_seen"),
            "events": events_of(s.daemon, s.state),
            "cpu_per_s": cpu,
            "cpu_span_s": (inside[-1][0] - inside[0][0]) / FPS if len(inside) > 1 else 0.0,
        }
    return results


# -- the gate's own cost -------------------------------------------------------------------
def gate_cost(models: Path, scene: Scene, rounds: int, work: Path) -> dict[str, float]:
    """Per-frame ChangeGate.check at 640x480 (software) and on a 320x240 luma plane, and
    one invoke() of the model, interleaved; medians in ms."""
    from compare import bare_engines, prepared_input

    from edge_daemon.config import GateConfig, RegionConfig
    from edge_daemon.gate import ChangeGate
    from edge_daemon.sources.base import Frame

    region = RegionConfig(**REGION)
    rgb = [scene.render(1.0, None) for _ in range(8)]
    luma = [np.ascontiguousarray(f[::2, ::2, 1]) for f in rgb]  # a 320x240 Y plane stand-in
    frames_rgb = [Frame(f, "f", i, 0.0, 0.0) for i, f in enumerate(rgb)]
    frames_luma = [Frame(f, "f", i, 0.0, 0.0, luma=y) for i, (f, y) in enumerate(zip(rgb, luma))]
    engines, _ = bare_engines(str(models / MODEL), [len(os.sched_getaffinity(0))], "ai_edge_litert")
    engine = next(e for label, e in engines if "xnnpack" in label)
    sample = work / "invoke-input.bmp"
    Image.fromarray(rgb[0]).resize((224, 224)).save(sample)
    prepared_input(engine, sample)
    invoke = engine._interpreter.invoke

    def per_call(fn: Any, n: int) -> float:
        t0 = time.perf_counter()
        for k in range(n):
            fn(k)
        return 1000 * (time.perf_counter() - t0) / n

    out: dict[str, list[float]] = {"software_640x480": [], "luma_320x240": [], "invoke": []}
    for _ in range(rounds):
        for key, frames in (("software_640x480", frames_rgb), ("luma_320x240", frames_luma)):
            gate = ChangeGate(GateConfig(mode="motion", keepalive=86400.0, hold=0.0))
            gate.check(frames[0], region, 0.0, False)
            out[key].append(
                per_call(
                    lambda k, g=gate, fs=frames: g.check(fs[k % 8], region, k * 0.033, False), 2000
                )
            )
        out["invoke"].append(per_call(lambda k: invoke(), 50))
    return {k: statistics.median(v) for k, v in out.items()}


# -- a small subject -----------------------------------------------------------------------
def small_subject(models: Path, images: Path, scene: Scene, work: Path) -> dict[str, Any]:
    """A bird 14% of the frame's width: top-1 on the whole frame and with a region around it."""
    import json

    from edge_daemon.config import load_config
    from edge_daemon.engine.model import load_model
    from edge_daemon.events.labels import LabelIndex
    from edge_daemon.pipeline import Classifier

    frame = scene.background.copy()
    bird = subject_patch(images, int(0.14 * WIDTH))
    bh, bw = bird.shape[:2]
    x, y = 60, 300
    frame[y : y + bh, x : x + bw] = bird
    # A region twice the bird's size, around it.
    region = {
        "x": (x - bw / 2) / WIDTH,
        "y": (y - bh / 2) / HEIGHT,
        "width": 2 * bw / WIDTH,
        "height": 2 * bh / HEIGHT,
    }
    tmp = work / "small-subject"
    tmp.mkdir()
    answers: dict[str, Any] = {"bird_width_share": bw / WIDTH, "region": region}
    for name, reg in (("whole frame", None), ("region around it", region)):
        cfg_path = tmp / "c.yaml"
        cfg_path.write_text(
            json.dumps(
                {
                    "model": {"path": str(models / MODEL), "labels": str(models / LABELS)},
                    "preprocess": {"region": reg},
                    "engine": {"delegates": ["xnnpack", "cpu"]},
                    "daemon": {"state_dir": str(tmp / "state")},
                }
            )
        )
        cfg = load_config(cfg_path)
        model = load_model(cfg)
        try:
            top = Classifier.from_config(model, cfg).classify(frame).predictions[0]
            labels = LabelIndex(len(model.labels.labels), model.labels.label)
        finally:
            model.close()
        answers[name] = {
            "label": top.label,
            "score": round(top.score, 3),
            "bird": top.index in labels.resolve("@birds"),  # the rule's own group
        }
    return answers


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = REPO.parent / "shared"
    parser.add_argument("--models", type=Path, default=shared / "models")
    parser.add_argument("--images", type=Path, default=shared / "images")
    parser.add_argument("--quick", action="store_true", help="45 s, one visit (for CI)")
    parser.add_argument("--minutes", type=float, help="scene length (default 10; quick 0.75)")
    args = parser.parse_args(argv)
    args.models, args.images = args.models.resolve(), args.images.resolve()
    for p in (args.models / MODEL, args.models / LABELS, args.images / "cat_720p.jpg"):
        if not p.exists():
            print(f"gate.py: {p}: not found (see --models, --images)", file=sys.stderr)
            return 2
    minutes = args.minutes or (0.75 if args.quick else 10.0)
    seconds = minutes * 60
    durations = (3.0,) if args.quick else VISITS_FULL
    visits = visit_schedule(seconds, durations)
    targets: list[tuple[str, bool]] = []

    with tempfile.TemporaryDirectory(prefix="edge-daemon-gate-") as tmp:
        work = Path(tmp)
        scene = Scene(args.images, seconds, visits, 12 if args.quick else 32)
        print(
            f"scene: {minutes:g} min at {FPS} fps ({scene.frames} frames of {WIDTH}x{HEIGHT}),"
            f" region {REGION}; {len(visits)} visit(s): "
            + ", ".join(f"{v.seconds:g} s at {v.start:g} s" for v in visits)
            + f"; exposure +{JUMP:.0%} at {scene.jump_frame / FPS:g} s; drift {DRIFT:+.0%};"
            f" noise sigma {NOISE_SIGMA:g}; load average {os.getloadavg()[0]:.2f}"
        )
        print("\n1) the scene through edge-daemon run, gate on and gate off at once")
        t0 = time.monotonic()
        frames = work / "scene"
        files = scene.write(frames)
        print(
            f"   {scene.frames} frames, {files} distinct files made in"
            f" {time.monotonic() - t0:.0f} s; load average {os.getloadavg()[0]:.2f}"
        )
        results = play(args, work, scene, frames / "frames")
        on, off = results["motion"], results["off"]
        for name, r in (("gate on", on), ("gate off", off)):
            print(
                f"   {name:<8}: {r['classified']} frames classified (of {scene.frames};"
                f" {r['in_visits']} during visits),"
                f" {r['cpu_per_s']:.3f} CPU-s per scene second, {len(r['events'])} event(s)"
            )
        cpu_ratio = on["cpu_per_s"] / off["cpu_per_s"] if off["cpu_per_s"] else float("nan")
        floor = sum(v.seconds for v in visits) / seconds
        met = cpu_ratio <= TARGET_CPU
        targets.append((f"CPU-seconds gate on / off {cpu_ratio:.3f}x <= {TARGET_CPU}x", met))
        print(
            f"   CPU-seconds, gate on / gate off: {cpu_ratio:.3f}x"
            f"  [target <= {TARGET_CPU}x: {'met' if met else 'MISSED'}; the visits are"
            f" {floor:.1%} of the scene]"
        )
        matched = 0
        worst = 0.0
        for v in visits:

            def near(events: list[dict[str, Any]], v: Visit = v) -> Optional[dict[str, Any]]:
                for e in events:
                    s = e["scene_start"]
                    if s is not None and v.start - 1 <= s <= v.start + v.seconds:
                        return e
                return None

            a, b = near(on["events"]), near(off["events"])
            text = "missed"
            if a and b:
                delta = a["scene_start"] - b["scene_start"]
                same = a["label"] == b["label"]
                ok = same and abs(delta) <= TARGET_START_S
                matched += ok
                worst = max(worst, abs(delta))
                text = (
                    f"gate on {a['label'].split(',')[0]} at {a['scene_start']:.2f} s,"
                    f" gate off {b['label'].split(',')[0]} at {b['scene_start']:.2f} s"
                    f" ({delta:+.2f} s){'' if ok else '  MISMATCH'}"
                )
            elif b:
                label = b["label"].split(",")[0]
                text = f"gate off {label} at {b['scene_start']:.2f} s; gate on: none"
            elif a:
                text = f"gate on at {a['scene_start']:.2f} s; gate off: none"
            print(f"   visit {v.start:7.2f} s ({v.seconds:g} s): {text}")
        extra = {
            name: [
                e
                for e in r["events"]
                if not any(
                    e["scene_start"] is not None
                    and v.start - 1 <= e["scene_start"] <= v.start + v.seconds
                    for v in visits
                )
            ]
            for name, r in (("gate on", on), ("gate off", off))
        }
        met = matched == len(visits)
        targets.append((f"visits found alike {matched}/{len(visits)}", met))
        print(
            f"   visits found as events by both, same label, start within {TARGET_START_S} s:"
            f" {matched}/{len(visits)} (largest difference {worst:.2f} s)"
            f"  [{'met' if met else 'MISSED'}]"
        )
        stray = sum(len(x) for x in extra.values())
        targets.append((f"events outside visits (exposure jump included): {stray}", stray == 0))
        print(
            "   events outside the visits (the exposure jump included): "
            + ", ".join(f"{k} {len(x)}" for k, x in extra.items())
            + f"  [{'met' if not stray else 'MISSED'}]"
        )

        print(f"\n2) the gate's own cost per frame (load average {os.getloadavg()[0]:.2f})")
        cost = gate_cost(args.models, scene, 5 if args.quick else 15, work)
        for key, text in (
            ("software_640x480", "640x480 RGB, sampled in software"),
            ("luma_320x240", "320x240 luma plane (lores)"),
        ):
            share = cost[key] / cost["invoke"]
            met = share <= TARGET_GATE_SHARE
            targets.append((f"gate cost {text} {share:.2%} of an invoke", met))
            print(
                f"   {text}: {1000 * cost[key]:.1f} us = {share:.2%} of one invoke"
                f" ({cost['invoke']:.2f} ms)  [target <= {TARGET_GATE_SHARE:.0%}:"
                f" {'met' if met else 'MISSED'}]"
            )

        print("\n3) a small subject")
        small = small_subject(args.models, args.images, scene, work)
        print(f"   a bird {small['bird_width_share']:.0%} of the frame's width, on the background")
        for key in ("whole frame", "region around it"):
            a = small[key]
            print(f"   {key}: top-1 {a['label'].split(',')[0]} ({a['score']:.2f})")
        targets.append(
            ("small subject: top-1 a bird with the region", small["region around it"]["bird"])
        )

    print("\ntargets")
    for text, met in targets:
        print(f"   {'met   ' if met else 'MISSED'}  {text}")
    return 0 if all(m for _, m in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
