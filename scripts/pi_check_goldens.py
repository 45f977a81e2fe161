"""Inside an emulated Pi root (scripts/pi-os-check.sh): goldens and what was installed.

Run with the installed venv's Python. Two jobs:

  classify RUNTIME   classify the fixture photos with every 224x224 model of
                     expected.yaml through `edge-daemon classify --json`, compare
                     them with the goldens, and print one JSON summary line
                     (versions, the wheels pip resolved, goldens passed)
  log PATH           check a prediction log written by `edge-daemon run` over
                     the fixture photos with the default model

Exit 0 when every golden holds, 1 otherwise (the misses are printed).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS = "labels_mobilenet_quant_v1_224.txt"
# The runtime's module name (engine.runtime) and its distribution on PyPI.
DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}


def first_name(label: str) -> str:
    return label.split(",")[0].strip()


def misses(expected: dict[str, Any], got: dict[str, list[str]], model: str) -> list[str]:
    """Where predictions (image -> labels, best first) break the goldens."""
    out = []
    for image, want in expected["images"].items():
        labels = [first_name(x) for x in got.get(image, [])]
        if "top1" in want and labels[:1] != [want["top1"]]:
            out.append(f"{model} {image}: top-1 {labels[:1]}, expected {want['top1']}")
        if "top3" in want and want["top3"] not in labels[:3]:
            out.append(f"{model} {image}: top-3 {labels[:3]}, expected {want['top3']} among them")
    return out


def origin(dist: str) -> str:
    """Where a distribution came from: the wheel's tag, or apt (Debian's dist-packages)."""
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return f"{dist} missing"
    where = str(d.locate_file(""))
    if "/dist-packages" in where:
        return f"{dist} {d.version} apt"
    tags = [line.split(":", 1)[1].strip() for line in (d.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]  # fmt: skip
    platforms = sorted({t.split("-")[-1] for t in tags}) or ["?"]
    return f"{dist} {d.version} {'.'.join(platforms)}"


def classify(args: argparse.Namespace) -> int:
    shared = Path(args.shared)
    expected = yaml.safe_load((shared / "images" / "expected.yaml").read_text())
    images = [str(shared / "images" / name) for name in expected["images"]]
    models = [m for m in expected["models_224"] if (shared / "models" / m).is_file()]
    if args.quick:
        models = [DEFAULT_MODEL]
    failures: list[str] = []
    passed = total = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        # Everything else at its default, as a user's config leaves it
        # (engine.delegates: auto measures XNNPACK against the plain CPU).
        data = {"engine": {"runtime": args.runtime}, "daemon": {"state_dir": str(Path(tmp))}}
        config.write_text(yaml.safe_dump(data))
        for model in models:
            cmd = [args.edge_daemon, "classify", "--config", str(config), "--json", "--top-k", "3"]
            cmd += ["--model", str(shared / "models" / model)]
            if "_metadata" not in model:
                cmd += ["--labels", str(shared / "models" / LABELS)]
            proc = subprocess.run([*cmd, *images], capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append(f"{model}: exit {proc.returncode}: {proc.stderr.strip()}")
                total += len(images)
                continue
            got = {}
            for line in proc.stdout.splitlines():
                item = json.loads(line)
                got[Path(item["image"]).name] = [p["label"] for p in item["predictions"]]
            wrong = misses(expected, got, model)
            failures += wrong
            total += len(expected["images"])
            passed += len(expected["images"]) - len({w.split(":")[0] for w in wrong})
    for line in failures:
        print(f"golden: {line}", file=sys.stderr)
    summary = {
        "runtime": args.runtime,
        "versions": f"{DISTRIBUTIONS[args.runtime]} {md.version(DISTRIBUTIONS[args.runtime])},"
        f" numpy {md.version('numpy')}, Python {platform.python_version()},"
        f" glibc {platform.libc_ver()[1]}",
        "wheels": "; ".join(origin(d) for d in (DISTRIBUTIONS[args.runtime], "numpy", "pillow")),
        "goldens": f"{passed}/{total} ({len(models)} models x {len(images)} photos)",
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(summary))
    return 0 if not failures and passed == total else 1


def check_log(args: argparse.Namespace) -> int:
    shared = Path(args.shared)
    expected = yaml.safe_load((shared / "images" / "expected.yaml").read_text())
    lines = [json.loads(x) for x in Path(args.path).read_text().splitlines()]
    got = {Path(x["image"]).name: [p["label"] for p in x["predictions"]] for x in lines}
    wrong = misses(expected, got, "run")
    if len(lines) != len(expected["images"]):
        wrong.append(f"run: {len(lines)} lines in {args.path}, expected {len(expected['images'])}")
    for line in wrong:
        print(f"golden: {line}", file=sys.stderr)
    print(f"run: {len(lines)} frames logged, {len(expected['images']) - len(wrong)} goldens held")
    return 1 if wrong else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", required=True, help="the fixtures folder (models/, images/)")
    sub = p.add_subparsers(dest="job", required=True)
    c = sub.add_parser("classify")
    c.add_argument("runtime", choices=sorted(DISTRIBUTIONS))
    c.add_argument("--edge-daemon", default="edge-daemon", help="the installed command")
    c.add_argument("--quick", action="store_true", help="the default model only")
    c.set_defaults(func=classify)
    g = sub.add_parser("log")
    g.add_argument("path")
    g.set_defaults(func=check_log)
    args = p.parse_args()
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
