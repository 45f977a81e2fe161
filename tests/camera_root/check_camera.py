"""The camera source against the real stack: picamera2 (PyPI) over libcamera's virtual camera.

Run by scripts/camera-check.sh inside its Debian unstable root, as root,
with the venv's python (picamera2 0.3.38 from PyPI, Debian's libcamera and
python3-libcamera, edge-daemon installed from the source tree). What it
checks, each as a user would see it:

1. ``edge-daemon check`` names the virtual camera, the NV12 stream libcamera
   settled on and that the conversion to RGB happens in software;
2. frames flow through ``edge-daemon run`` (source kind picamera2) from the
   virtual camera playing a real photo, and the top-1 equals ``edge-daemon
   classify`` of that photo, its score within one quantization step (and for
   a second, channel-order sensitive photo, the same top-1);
3. a second daemon on the same camera reports, in one line, that the camera
   is busy (and keeps running, degraded);
4. SIGTERM closes the camera: a new daemon opens it again and gets frames.

The root's stand-ins (memfd_allocator.py: frame buffers without a DMA heap,
sensor modes for a camera without raw, the media-device lock; pykms.py: the
DRM bindings Debian lacks) are explained in those files; edge_daemon/ knows
none of them. Prints the figures (versions, formats, frames, times) as
``figure:`` lines; exits 1 on the first failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

VIRTUAL_CONFIG = Path("/usr/share/libcamera/pipeline/virtual/virtual.yaml")
MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS = "labels_mobilenet_quant_v1_224.txt"
# The photos the virtual camera plays. The parrot has a clear answer (0.996):
# its score through the camera must be within one quantization step of
# classify's. Grace Hopper is channel-order sensitive (swapped R and B give
# "bow tie") and less sure (0.875), so small differences in the pixels move
# her score by a few steps: the virtual camera decodes the JPEG with libyuv,
# whose Y' differs from Pillow's by about one level on average, and its
# NV12 keeps a quarter of the chroma. Her top-1 must be classify's; the
# score difference is printed as a figure.
PHOTO = "parrot.jpg"
SECOND_PHOTO = "grace_hopper.bmp"
FRAMES = 20  # frames the first daemon must classify
T0 = time.monotonic()


def figure(name: str, value: Any) -> None:
    print(f"figure: {name}: {value}", flush=True)


def fail(message: str) -> None:
    print(f"FAILED: {message}", flush=True)
    sys.exit(1)


def ok(message: str) -> None:
    print(f"ok: {message} ({time.monotonic() - T0:.1f} s)", flush=True)


def edge_daemon(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["edge-daemon", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def versions() -> None:
    dpkg = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}, ", "libcamera0.7", "python3-libcamera"],
        capture_output=True,
        text=True,
        check=False,
    )
    figure("libcamera (Debian)", dpkg.stdout.strip(", ") or "unknown")
    for dist in ("picamera2", "ai-edge-litert", "numpy", "edge-daemon"):
        try:
            figure(dist, metadata.version(dist))
        except metadata.PackageNotFoundError:
            figure(dist, "not installed")
    figure("python", sys.version.split()[0])


def play(shared: Path, work: Path, name: str) -> Path:
    """Photo ``name`` as the JPEG the virtual camera plays, at the model's size; its config."""
    from PIL import Image

    photo = work / (Path(name).stem + ".jpg")
    with Image.open(shared / "images" / name) as image:
        # At the model's size: neither the camera nor `classify` resamples it.
        image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR).save(photo, quality=95)
    VIRTUAL_CONFIG.write_text(
        "%YAML 1.1\n---\n"
        '"Virtual0":\n'
        "  supported_formats:\n"
        "  - width: 224\n    height: 224\n"
        "  - width: 640\n    height: 480\n"
        f'  frames:\n    path: "{photo}"\n'
        '  model: "Virtual photo"\n'
    )
    return photo


def write_config(shared: Path, work: Path, name: str) -> Path:
    out = work / name
    if out.exists():
        shutil.rmtree(out)  # a run's outputs only
    out.mkdir(parents=True)
    path = out / "config.yaml"
    path.write_text(
        "model:\n"
        f"  path: {shared / 'models' / MODEL}\n"
        f"  labels: {shared / 'models' / LABELS}\n"
        "engine: {delegates: [xnnpack]}\n"
        "source:\n"
        "  kind: picamera2\n"
        "  camera: 0\n"
        "  width: 640\n"
        "  height: 480\n"
        "  fps: 15\n"
        "  retry_initial: 0.5\n"
        "  retry_max: 2.0\n"
        "outputs:\n"
        f"  prediction_log: {out / 'predictions.jsonl'}\n"
        f"  status_file: {out / 'status.json'}\n"
        "  status_interval: 0.5\n"
        f"daemon: {{state_dir: {out / 'state'}}}\n"
        "http: {listen: null}\n"
    )
    return path


def log_lines(config: Path) -> list[dict[str, Any]]:
    path = config.parent / "predictions.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            lines.append(json.loads(line))
    return lines


def status(config: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((config.parent / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["edge-daemon", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(what: str, test: Any, proc: subprocess.Popen[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        if proc.poll() is not None:
            _out, err = proc.communicate()
            fail(f"{what}: the daemon exited ({proc.returncode}) first: {err[-2000:]}")
        time.sleep(0.2)
    stop(proc)
    fail(f"{what}: not within {timeout:g} s")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
    return proc.returncode, err


def classify(config: Path, photo: Path) -> dict[str, Any]:
    """``edge-daemon classify``'s top prediction for ``photo``."""
    done = edge_daemon("classify", "--json", "--config", str(config), str(photo))
    if done.returncode != 0:
        fail(f"edge-daemon classify exited {done.returncode}: {done.stderr[-2000:]}")
    top: dict[str, Any] = json.loads(done.stdout.splitlines()[0])["predictions"][0]
    return top


def output_step(shared: Path) -> float:
    """One quantization step of the model's output (its scale)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(shared / "models" / MODEL))
    scale, _zero = interpreter.get_output_details()[0]["quantization"]
    return float(scale)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/camera-check"))
    args = parser.parse_args(argv)
    shared, work = args.shared, args.work
    work.mkdir(parents=True, exist_ok=True)
    versions()
    photo = play(shared, work, PHOTO)
    figure("photo", f"{PHOTO} as a 224x224 JPEG, played by libcamera's virtual camera")

    # 1. what check says about the camera
    first = write_config(shared, work, "first")
    checked = edge_daemon("check", "--config", str(first))
    print(checked.stdout, end="")
    if checked.returncode != 0:
        fail(f"edge-daemon check exited {checked.returncode}: {checked.stderr[-2000:]}")
    lines = dict(
        (line.split("  ", 1)[0], line.split("  ", 1)[1].strip())
        for line in checked.stdout.splitlines()
        if "  " in line
    )
    for key, want in (
        ("camera", "camera0 (Virtual photo)"),
        ("camera stream", "main 224x224 NV12"),
        ("conversion", "NV12 to RGB in software (BT.601 full range)"),
    ):
        if lines.get(key) != want:
            fail(f"check's {key!r} line is {lines.get(key)!r}, expected {want!r}")
    figure("camera stream", lines["camera stream"])
    figure("conversion", lines["conversion"])
    ok("check names the camera, the NV12 stream and the software conversion")

    # 2. the photo, classified directly
    direct = classify(first, photo)
    figure("classify top-1", f"{direct['label']} {direct['score']:.4f}")

    # 3. the same photo through the camera
    started = time.monotonic()
    daemon = start(first)
    wait_for(f"{FRAMES} frames", lambda: len(log_lines(first)) >= FRAMES, daemon, 120)
    elapsed = time.monotonic() - started
    frames = log_lines(first)
    tops = {(f["predictions"][0]["label"], f["predictions"][0]["score"]) for f in frames}
    figure("frames", f"{len(frames)} in {elapsed:.1f} s from start (model load included)")
    figure("camera top-1", ", ".join(f"{label} {score:.4f}" for label, score in sorted(tops)))
    step = output_step(shared)
    for label, score in tops:
        if label != direct["label"]:
            stop(daemon)
            fail(f"camera top-1 {label!r}, classify says {direct['label']!r}")
        if abs(score - direct["score"]) > step + 1e-9:
            stop(daemon)
            fail(f"camera score {score} vs classify {direct['score']}: more than one step {step}")
    ok(f"{len(frames)} frames through edge-daemon run, top-1 = classify within {step:g}")
    state = status(first)
    figure("latency_ms", json.dumps(state.get("latency_ms")))
    figure("source", state.get("source"))

    # 4. a second daemon on the same camera: busy, in one line
    second = write_config(shared, work, "second")
    other = start(second)

    def busy_reason() -> Optional[str]:
        reason = status(second).get("reason") or ""
        return reason if "busy" in reason else None

    reason = wait_for("the second daemon's busy reason", busy_reason, other, 90)
    code, err = stop(other)
    figure("second daemon", reason)
    busy_lines = [line for line in err.splitlines() if "busy" in line]
    if not busy_lines or "Traceback" in err:
        fail(f"the second daemon's log has no one-line busy error: {err[-2000:]}")
    if code != 0:
        fail(f"the second daemon did not stop cleanly on SIGTERM (exit {code})")
    if log_lines(second):
        fail("the second daemon classified frames from a camera another daemon holds")
    ok("a second daemon says the camera is busy, in one line, and stops on SIGTERM")

    # 5. SIGTERM closes the camera: a new daemon opens it
    code, err = stop(daemon)
    if code != 0:
        fail(f"the first daemon exited {code} on SIGTERM: {err[-2000:]}")
    # (now playing the second photo: libcamera reads the camera's config when
    # the new process starts its camera manager)
    third = write_config(shared, work, "third")
    photo = play(shared, work, SECOND_PHOTO)
    direct = classify(third, photo)
    reopened = start(third)
    wait_for("frames after the restart", lambda: len(log_lines(third)) >= 3, reopened, 90)
    code, err = stop(reopened)
    if code != 0:
        fail(f"the new daemon exited {code} on SIGTERM: {err[-2000:]}")
    ok("after SIGTERM the camera is free: a new daemon gets frames")
    tops = {(f["predictions"][0]["label"], f["predictions"][0]["score"]) for f in log_lines(third)}
    figure(f"{SECOND_PHOTO} classify top-1", f"{direct['label']} {direct['score']:.4f}")
    figure(f"{SECOND_PHOTO} camera top-1", ", ".join(f"{lb} {sc:.4f}" for lb, sc in sorted(tops)))
    if {label for label, _ in tops} != {direct["label"]}:
        fail(f"{SECOND_PHOTO}: camera top-1 {sorted(tops)}, classify says {direct['label']!r}")
    steps = max(abs(score - direct["score"]) for _, score in tops) / step
    figure(f"{SECOND_PHOTO} score difference", f"{steps:.0f} steps")
    ok(f"{SECOND_PHOTO}: the same top-1 through the camera as through classify")
    figure("check time", f"{time.monotonic() - T0:.1f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:WARN")
    sys.exit(main())
