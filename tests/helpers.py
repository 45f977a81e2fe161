"""Test helpers: where the fixture models and images are, running the CLI.

The fixtures live outside the repository (../shared beside the checkout, or
$EDGE_DAEMON_SHARED). Under CI=true a missing fixture or runtime is a test
failure, not a skip: CI installs everything, so absence there is a bug.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_DAEMON_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
IMAGES = SHARED / "images"
LABELS = MODELS / "labels_mobilenet_quant_v1_224.txt"
IN_CI = os.environ.get("CI") == "true"
RUNTIMES = ("ai_edge_litert", "tflite_runtime")


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} is missing (CI=true: fixtures and runtimes must be installed)")
    pytest.skip(f"{what} is missing")


def shared_file(path: Path) -> Path:
    """``path`` under ../shared, or skip/fail when it is absent."""
    if not path.exists():
        missing(str(path))
    return path


def require_tool(name: str, install_hint: str = "") -> str:
    """The path of command ``name``; skip locally, fail in CI, when it is absent."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name}{f' ({install_hint})' if install_hint else ''}")
    assert path is not None
    return path


def runtime_available(name: str) -> bool:
    """Whether a runtime imports here."""
    module = {
        "ai_edge_litert": "ai_edge_litert.interpreter",
        "tflite_runtime": "tflite_runtime.interpreter",
    }[name]
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def first_name(label: str) -> str:
    """expected.yaml compares the first label name (text before the first comma)."""
    return label.split(",")[0].strip()


def run_cli(
    *args: str,
    timeout: float = 120,
    env: Optional[dict[str, str]] = None,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``edge-daemon ARGS`` as a user would, in a subprocess."""
    full_env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        full_env.pop(key, None)  # never talk to a real systemd from a test
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "edge_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(cwd) if cwd else None,
        check=False,
    )
