"""`edge-daemon status` as a health check: exit 0 running, 1 degraded, 2 stopped or stale.

Most cases write a status file by hand (every state, age and pid a monitor
can meet) and run the command as a health check would. The last test runs
the daemon for real through running, degraded, stopped and killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from edge_daemon.sinks.prediction_log import iso_utc
from tests.helpers import IMAGES, MODELS, REPO, run_cli, shared_file

RUNNING, DEGRADED, DOWN = 0, 1, 2


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def status(
    state: str,
    *,
    age: float = 0.0,
    pid: Optional[int] = None,
    interval: float = 1.0,
    reason: Optional[str] = None,
    last_error: Optional[str] = None,
) -> dict[str, Any]:
    now = time.time()
    return {
        "state": state,
        "reason": reason,
        "pid": os.getpid() if pid is None else pid,
        "started": iso_utc(now - age - 60),
        "updated": iso_utc(now - age),
        "model": "/models/mobilenet_v1_1.0_224_quant.tflite",
        "runtime": "ai_edge_litert 2.3.0",
        "delegate": "xnnpack",
        "frames": 1234,
        "fps": 29.8,
        "latency_ms": {"capture": 1.0, "inference": 11.2, "total": 14.0},
        "predictions": [{"label": "tabby, tabby cat", "index": 282, "score": 0.83}],
        "status_interval": interval,
        "last_error": last_error,
        "last_error_at": iso_utc(now - 5) if last_error else None,
    }


@pytest.fixture
def health(write_config: Callable[..., Path], tmp_path: Path) -> Callable[..., Any]:
    """Write ``content`` as the status file and run `edge-daemon status [--json]`."""
    config = write_config()
    status_path = tmp_path / "out" / "status.json"

    def check(content: Any, *args: str) -> subprocess.CompletedProcess[str]:
        status_path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            status_path.unlink(missing_ok=True)
        elif isinstance(content, str):
            status_path.write_text(content)
        else:
            status_path.write_text(json.dumps(content))
        return run_cli("status", *args, "--config", str(config))

    return check


@pytest.mark.parametrize(
    ("spec", "code", "first_line"),
    [
        ({"state": "running"}, RUNNING, "state     running"),
        (
            {"state": "degraded", "reason": "camera0: Camera frontend has timed out!"},
            DEGRADED,
            "state     degraded (camera0: Camera frontend has timed out!)",
        ),
        ({"state": "starting"}, DEGRADED, "state     starting"),
        ({"state": "stopped"}, DOWN, "state     stopped"),
        ({"state": "failed", "last_error": "model.tflite: damaged"}, DOWN, "state     failed"),
        # A few intervals late is still healthy (a slow frame, a busy SD card)...
        ({"state": "running", "age": 20.0, "interval": 10.0}, RUNNING, "state     running"),
        ({"state": "running", "age": 100.0, "interval": 60.0}, RUNNING, "state     running"),
        # ...many are not: the loop is stuck even if the process lives.
        ({"state": "running", "age": 30.0}, DOWN, "state     stale"),
        ({"state": "degraded", "age": 30.0}, DOWN, "state     stale"),
        ({"state": "running", "age": 400.0, "interval": 60.0}, DOWN, "state     stale"),
    ],
    ids=[
        "running",
        "degraded",
        "starting",
        "stopped",
        "failed",
        "2-intervals-late",
        "100s-old-at-60s-interval",
        "30s-old",
        "degraded-30s-old",
        "400s-old-at-60s-interval",
    ],
)
def test_exit_code_by_state_and_age(
    spec: dict[str, Any], code: int, first_line: str, health: Callable[..., Any]
) -> None:
    result = health(status(**spec))  # built now: its age counts from this moment
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == first_line


def test_a_dead_pid_is_stale_even_when_the_status_is_fresh(health: Callable[..., Any]) -> None:
    # SIGKILL or a power cut: the last word was "running", the process is gone.
    result = health(status("running", pid=dead_pid()))
    assert result.returncode == DOWN
    assert result.stdout.splitlines()[0] == "state     stale"


def test_json_output_carries_the_verdict(health: Callable[..., Any]) -> None:
    result = health(status("degraded", reason="disk full"), "--json")
    assert result.returncode == DEGRADED
    out = json.loads(result.stdout)
    assert out["health"] == "degraded"
    assert out["reason"] == "disk full"
    stale = json.loads(health(status("running", pid=dead_pid()), "--json").stdout)
    assert stale["health"] == "stale"


def test_errors_are_shown(health: Callable[..., Any]) -> None:
    result = health(status("failed", last_error="model.tflite: damaged FlatBuffer"))
    assert result.returncode == DOWN
    assert "model.tflite: damaged FlatBuffer" in result.stdout


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no status file; the daemon is not running"),
        ('{"state": "runn', "unreadable status"),
        ("[1, 2]", "unreadable status"),
        ("", "unreadable status"),
    ],
    ids=["missing", "torn", "not-an-object", "empty"],
)
def test_no_readable_status_is_down(
    content: Optional[str], says: str, health: Callable[..., Any]
) -> None:
    result = health(content)
    assert result.returncode == DOWN
    assert says in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("updated", ["yesterday", None, 12345], ids=["text", "missing", "number"])
def test_a_garbled_timestamp_is_stale(updated: Any, health: Callable[..., Any]) -> None:
    content = status("running")
    if updated is None:
        del content["updated"]
    else:
        content["updated"] = updated
    result = health(content)
    assert result.returncode == DOWN, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_status_file_off_in_the_config_is_down_not_degraded(
    write_config: Callable[..., Path],
) -> None:
    config = write_config(overrides={"outputs": {"status_file": None}})
    result = run_cli("status", "--config", str(config))
    assert result.returncode == DOWN
    assert result.stderr.strip() == (
        "edge-daemon: error: outputs.status_file is off in the config; there is no status"
    )


def test_a_missing_config_is_down(tmp_path: Path) -> None:
    result = run_cli("status", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == DOWN
    assert "config file not found" in result.stderr


@pytest.mark.slow
def test_a_real_daemon_running_degraded_stopped_and_killed(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("cat.bmp", "parrot.jpg"):
        shutil.copyfile(shared_file(IMAGES / name), frames / name)
    config = write_config(
        model=str(shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite")),
        source=str(frames),
        delegates=["cpu"],
        overrides={
            "source": {"loop": True, "fps": 20, "retry_initial": 0.2, "retry_max": 0.5},
            "outputs": {"status_interval": 0.1},
        },
    )

    def verdict() -> int:
        return run_cli("status", "--config", str(config)).returncode

    def wait_for(code: int) -> None:
        deadline = time.monotonic() + 60
        while (got := verdict()) != code:
            assert time.monotonic() < deadline, f"status still exits {got}, not {code}"
            time.sleep(0.1)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(RUNNING)
        frames.rename(tmp_path / "away")  # the camera fails
        wait_for(DEGRADED)
        (tmp_path / "away").rename(frames)
        wait_for(RUNNING)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert verdict() == DOWN  # stopped
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        wait_for(RUNNING)
        proc.kill()
        proc.wait(60)
        assert verdict() == DOWN  # the status still says running; the pid is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
