"""Fault injection: the daemon keeps classifying when it can and says what is wrong.

Most tests run a real ``Daemon`` (real model, real sinks) in this process with a
``ScriptedSource`` (tests/fakes.py) in place of the camera, swapped in by
monkeypatching ``edge_daemon.daemon.make_source``. Tests about signals run
the daemon on the main thread so its real SIGHUP/SIGTERM handlers are
installed, or as a subprocess where SIGKILL and exit codes are the point.

Disk faults use a small tmpfs mounted for the test (ENOSPC when full, EROFS
when remounted read-only). Mounting needs root: without the privilege those
tests skip, even under CI; any other mount failure fails them under CI=true.
``/dev/full`` covers ENOSPC for the prediction log without privileges.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from edge_daemon import daemon as daemon_module
from edge_daemon.config import Config, load_config
from edge_daemon.daemon import Daemon
from edge_daemon.errors import OutputError, SourceError, SourceTimeout
from edge_daemon.notify import RecordingNotifier
from edge_daemon.sinks import prediction_log as prediction_log_module
from edge_daemon.sinks.prediction_log import PredictionLog
from edge_daemon.sinks.status_file import read_status
from tests.fakes import FRAME, HANG, ScriptedSource, flip_bit, subgraphs_offset_position
from tests.helpers import IMAGES, IN_CI, LABELS, MODELS, REPO, run_cli, shared_file

SMALL_MODEL = "mobilenet_v1_0.25_128_quant.tflite"
TIMEOUT = 60.0  # generous: every wait is for a condition, never a fixed time


# -- helpers ------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], Any], what: str, timeout: float = TIMEOUT, alive: Any = None
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive():
            raise AssertionError(f"the daemon stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def status_of(path: Path) -> dict[str, Any]:
    """The status file as a monitoring tool reads it; {} before the first write."""
    try:
        return read_status(str(path))
    except FileNotFoundError:
        return {}


def log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a prediction log, each of which must be whole JSON."""
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), f"{path.name} ends in a torn line"
    return [json.loads(line) for line in data.splitlines()]


def copy_model(tmp_path: Path, name: str = SMALL_MODEL) -> Path:
    target = tmp_path / "model.tflite"
    shutil.copyfile(shared_file(MODELS / name), target)
    return target


@pytest.fixture
def make_daemon(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[Daemon, Config, Path]]:
    """Build a Daemon over a ScriptedSource, with the small model on the CPU."""

    def make(
        source: ScriptedSource,
        *,
        model: Optional[Path] = None,
        runtime: str = "auto",
        overrides: Optional[dict[str, Any]] = None,
        environ: Optional[dict[str, str]] = None,
        notifier: Optional[RecordingNotifier] = None,
        max_frames: Optional[int] = None,
    ) -> tuple[Daemon, Config, Path]:
        base: dict[str, Any] = {
            "model": {"top_k": 3},
            # The scripted source stands in for a camera: opened (and reopened) by the
            # capture thread, newest frame wins.
            "source": {"kind": "picamera2"},
            "outputs": {"status_interval": 0.1, "log_interval": 1.0},
        }
        for key, value in (overrides or {}).items():
            base[key] = {**base.get(key, {}), **value}
        path = write_config(
            model=str(model or shared_file(MODELS / SMALL_MODEL)),
            labels=str(shared_file(LABELS)),
            runtime=runtime,
            delegates=["cpu"],
            overrides=base,
        )
        cfg = load_config(path)
        monkeypatch.setattr(daemon_module, "make_source", lambda _cfg, _size: source)
        daemon = Daemon(
            cfg,
            config_path=str(path),
            notifier=notifier or RecordingNotifier(),
            environ=environ or {},
            max_frames=max_frames,
        )
        return daemon, cfg, path

    return make


class Background:
    """A Daemon running on a thread (no signal handlers: those need the main thread)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.error: Optional[BaseException] = None
        self.code: Optional[int] = None
        self.thread = threading.Thread(target=self._run, name="daemon", daemon=True)

    def _run(self) -> None:
        try:
            self.code = self.daemon.run()
        except BaseException as exc:
            self.error = exc

    def alive(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the daemon did not stop"
        if self.error is not None:
            raise self.error


def run_on_main_thread(daemon: Daemon, scenario: Callable[[], None]) -> int:
    """Run the daemon here (real signal handlers) while ``scenario`` drives it from a thread.

    The scenario may send this process SIGHUP/SIGTERM once the daemon runs; the daemon
    is asked to stop when the scenario ends, whatever happens.
    """
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            scenario()
        except BaseException as exc:
            errors.append(exc)
        finally:
            daemon.request_stop()

    thread = threading.Thread(target=drive, name="scenario", daemon=True)
    thread.start()
    code = daemon.run()
    thread.join(TIMEOUT)
    if errors:
        raise errors[0]
    return code


def started(daemon: Daemon, status_path: Path, frames: int = 3) -> Callable[[], bool]:
    """Running (signal handlers in place) with at least ``frames`` classified."""
    return lambda: (
        status_of(status_path).get("state") == "running"
        and int(status_of(status_path).get("frames") or 0) >= frames
    )


# -- the source fails or hangs --------------------------------------------------------------


def test_failing_source_backs_off_reports_degraded_and_recovers_by_itself(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    source = ScriptedSource(
        [FRAME] * 5, then=SourceError("camera0: Camera frontend has timed out!")
    )
    daemon, cfg, config_path = make_daemon(
        source, overrides={"source": {"retry_initial": 0.1, "retry_max": 0.4}}
    )
    status_path = Path(cfg.outputs.status_file or "")
    with Background(daemon) as bg:
        degraded = wait_until(
            lambda: (s := status_of(status_path)).get("state") == "degraded" and s,
            "state: degraded",
            alive=bg.alive,
        )
        assert degraded["reason"] == "camera0: Camera frontend has timed out!"
        assert "Camera frontend has timed out!" in (degraded["last_error"] or "")
        wait_until(lambda: source.raised >= 6, "six failed reads", alive=bg.alive)
        # The health check says degraded (exit 1) while the camera is failing.
        health = run_cli("status", "--config", str(config_path))
        assert health.returncode == 1, health.stdout + health.stderr
        assert "degraded (camera0: Camera frontend has timed out!)" in health.stdout

        # A timeout is a fault too, then frames come back by themselves.
        source.add(SourceTimeout("camera0: no frame within 2.0 s"))
        source.set_then(FRAME)
        frames_before = int(status_of(status_path)["frames"])
        recovered = wait_until(
            lambda: (
                (s := status_of(status_path)).get("state") == "running"
                and int(s["frames"]) > frames_before + 5
                and s
            ),
            "running again with new frames",
            alive=bg.alive,
        )
        assert recovered["reason"] is None
        health = run_cli("status", "--config", str(config_path))
        assert health.returncode == 0, health.stdout + health.stderr

    delays = [
        r.getMessage().rsplit("reopening in ", 1)[1]
        for r in caplog.records
        if r.name == "edge_daemon.capture" and "reopening in" in r.getMessage()
    ]
    # Exponential from retry_initial, capped at retry_max.
    assert delays[:5] == ["0.1 s", "0.2 s", "0.4 s", "0.4 s", "0.4 s"]
    # Each failure closed the source before the next open.
    assert len(source.opens) >= 7
    assert source.closes >= len(source.opens) - 1
    assert any("frames are back" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage() == "running again" for r in caplog.records)


def test_source_that_cannot_be_opened_is_retried_until_it_can(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
) -> None:
    busy = [SourceError("camera0: Device or resource busy") for _ in range(4)]
    source = ScriptedSource(open_errors=busy)
    daemon, cfg, _ = make_daemon(
        source, overrides={"source": {"retry_initial": 0.1, "retry_max": 0.2}}
    )
    status_path = Path(cfg.outputs.status_file or "")
    with Background(daemon) as bg:
        status = wait_until(
            lambda: (
                (s := status_of(status_path)).get("state") == "running"
                and int(s.get("frames") or 0) > 3
                and s
            ),
            "frames after four failed opens",
            alive=bg.alive,
        )
    assert len(source.opens) == 5
    assert status["last_error"] == "camera0: Device or resource busy"


def test_hung_source_stops_watchdog_pings_and_the_log_says_why(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    notifier = RecordingNotifier()
    source = ScriptedSource()
    daemon, cfg, _ = make_daemon(
        source,
        overrides={"source": {"stall_timeout": 0.5}},
        environ={"WATCHDOG_USEC": "100000"},  # ping every 0.05 s while frames flow
        notifier=notifier,
    )
    status_path = Path(cfg.outputs.status_file or "")

    def pings() -> int:
        return len(notifier.values("WATCHDOG"))

    with Background(daemon) as bg:
        wait_until(lambda: pings() >= 3, "watchdog pings while frames flow", alive=bg.alive)
        source.add(HANG)
        wait_until(source.hanging.is_set, "the source to hang")
        stalled = wait_until(
            lambda: (s := status_of(status_path)).get("state") == "degraded" and s,
            "state: degraded",
            alive=bg.alive,
        )
        assert stalled["reason"].startswith("no frame for ")
        assert stalled["reason"].endswith("from scripted source scripted")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert any(
            "the source may be hung" in r.getMessage()
            and "systemd watchdog is no longer fed" in r.getMessage()
            for r in errors
        ), [r.getMessage() for r in errors]
        # From here on not one ping, though the loop is alive and still sends STATUS.
        silent_from = pings()
        statuses = len(notifier.values("STATUS"))
        wait_until(
            lambda: len(notifier.values("STATUS")) >= statuses + 10,
            "ten more STATUS updates (one second at status_interval 0.1)",
            alive=bg.alive,
        )
        assert pings() == silent_from
        assert source.hanging.is_set()

        # The camera answers again: pings resume and the state is running.
        source.release()
        wait_until(lambda: pings() > silent_from, "pings to resume", alive=bg.alive)
        wait_until(lambda: status_of(status_path).get("state") == "running", "running again")


# -- SIGHUP with a broken model or config ---------------------------------------------------


def truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def bit_flipped(good: bytes) -> bytes:
    # One flipped bit in a structural offset: tflite-runtime 2.14 crashed on this
    # (SIGSEGV) before the structure check; the check rejects it first.
    return flip_bit(good, subgraphs_offset_position(good) + 3, 6)


def edgetpu_only(_: bytes) -> bytes:
    return shared_file(MODELS / "mobilenet_v1_0.75_192_quant_edgetpu.tflite").read_bytes()


def unknown_op(_: bytes) -> bytes:
    return shared_file(MODELS / "model_invoking_error.tflite").read_bytes()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (truncated, "damaged FlatBuffer"),
        (bit_flipped, "damaged FlatBuffer"),
        (edgetpu_only, "compiled for the Edge TPU"),
        (unknown_op, "unresolved custom op: fake-op-double"),
    ],
    ids=["truncated", "bit-flipped", "edgetpu-only", "unknown-op"],
)
def test_sighup_with_a_broken_model_keeps_the_old_model_running(
    damage: Callable[[bytes], bytes],
    says: str,
    runtime_name: str,
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    tmp_path: Path,
) -> None:
    model = copy_model(tmp_path)
    good = model.read_bytes()
    daemon, cfg, _ = make_daemon(ScriptedSource(), model=model, runtime=runtime_name)
    status_path = Path(cfg.outputs.status_file or "")
    seen: dict[str, Any] = {}

    def scenario() -> None:
        before = wait_until(started(daemon, status_path), "running") and status_of(status_path)
        model.write_bytes(damage(good))
        os.kill(os.getpid(), signal.SIGHUP)
        failed = wait_until(
            lambda: (s := status_of(status_path)).get("last_error") and s, "last_error"
        )
        seen["before"], seen["failed"] = before, failed
        seen["after"] = wait_until(
            lambda: (s := status_of(status_path)).get("frames", 0) > failed["frames"] + 5 and s,
            "frames from the old model after the failed reload",
        )

    assert run_on_main_thread(daemon, scenario) == 0
    before, failed, after = seen["before"], seen["failed"], seen["after"]
    error = failed["last_error"]
    assert error.startswith(f"reload failed, still running model.tflite: {model}: "), error
    assert says in error
    assert "\n" not in error
    for status in (failed, after):
        assert status["state"] == "running"
        assert status["model_sha256"] == before["model_sha256"]
        assert status["reloads"] == 0
    assert after["predictions"], "the old model still classifies"


@pytest.mark.parametrize(
    ("broken_yaml", "says"),
    [
        ("model:\n  top_k: [1, 2\n", "not valid YAML"),
        ("model:\n  top_k: 0\n", "model.top_k: must be between 1 and 1000 (got 0)"),
        ("modle:\n  top_k: 5\n", "modle: unknown section (did you mean model?)"),
    ],
    ids=["syntax", "out-of-range", "unknown-section"],
)
def test_sighup_with_an_invalid_config_keeps_the_old_config_running(
    broken_yaml: str,
    says: str,
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
) -> None:
    daemon, cfg, config_path = make_daemon(ScriptedSource())
    status_path = Path(cfg.outputs.status_file or "")
    good_yaml = config_path.read_text()
    seen: dict[str, Any] = {}

    def scenario() -> None:
        wait_until(started(daemon, status_path), "running")
        config_path.write_text(broken_yaml)
        os.kill(os.getpid(), signal.SIGHUP)
        failed = wait_until(
            lambda: (s := status_of(status_path)).get("last_error") and s, "last_error"
        )
        seen["failed"] = failed
        seen["after"] = wait_until(
            lambda: (s := status_of(status_path)).get("frames", 0) > failed["frames"] + 5 and s,
            "frames after the failed reload",
        )
        # Fixed again (top_k 5 this time): the next SIGHUP applies it.
        config_path.write_text(good_yaml.replace("top_k: 3", "top_k: 5"))
        os.kill(os.getpid(), signal.SIGHUP)
        seen["fixed"] = wait_until(
            lambda: (
                (s := status_of(status_path)).get("reloads") == 1
                and len(s["predictions"]) == 5
                and s
            ),
            "the fixed config applied",
        )

    assert run_on_main_thread(daemon, scenario) == 0
    failed, after = seen["failed"], seen["after"]
    assert failed["last_error"].startswith(f"reload failed, still running {SMALL_MODEL}: ")
    assert f"{config_path}:" in failed["last_error"]
    assert says in failed["last_error"]
    assert "\n" not in failed["last_error"]
    for status in (failed, after):
        assert status["state"] == "running"
        assert status["reloads"] == 0
        assert len(status["predictions"]) == 3  # the old config's top_k
    assert seen["fixed"]["state"] == "running"


# -- the disk: unwritable, full, read-only --------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MNT_DETACH = 1, 32, 2


def _mount(target: Path, flags: int, options: str) -> None:
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


@contextlib.contextmanager
def tmpfs(target: Path, size: str) -> Iterator[Path]:
    """``target`` (created) as a tmpfs of ``size`` for the block; skipped without the
    privilege to mount one, and a failure in CI for any other reason."""
    target.mkdir()
    try:
        _mount(target, 0, f"size={size},mode=0755")
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            pytest.skip(f"mounting a tmpfs needs privileges: {exc.strerror}")
        if IN_CI:
            pytest.fail(f"cannot mount a tmpfs for the disk-full tests: {exc}")
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    try:
        yield target
    finally:
        with contextlib.suppress(OSError):
            _mount(target, MS_REMOUNT, f"size={size}")  # writable again, so it can be left
        _libc.umount2(os.fsencode(target), MNT_DETACH)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: fill it for ENOSPC, remount it read-only for EROFS."""
    with tmpfs(tmp_path / "small-disk", "64k") as target:
        yield target


def fill(disk: Path) -> Path:
    """Write a filler file until the disk is full (ENOSPC); the filler's path."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, pytest.raises(OSError) as info:
        while True:
            f.write(b"\0" * 4096)
    assert info.value.errno == errno.ENOSPC
    return filler


def remount(disk: Path, read_only: bool) -> None:
    _mount(disk, MS_REMOUNT | (MS_RDONLY if read_only else 0), "size=64k")


def test_full_disk_for_the_prediction_log_classification_goes_on_and_writing_resumes(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    small_disk: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    log_path = small_disk / "predictions.jsonl"
    # At most two 16 KiB files: the log alone never fills the 64 KiB disk.
    outputs = {"prediction_log": str(log_path), "max_bytes": 16384, "backups": 1}
    daemon, cfg, _ = make_daemon(ScriptedSource(), overrides={"outputs": outputs})
    status_path = Path(cfg.outputs.status_file or "")

    def logged() -> list[int]:
        older = log_path.with_name("predictions.jsonl.1")
        return [line["frame"] for f in (older, log_path) for line in log_lines(f)]

    with Background(daemon) as bg:
        wait_until(lambda: len(logged()) >= 5, "lines in the log", alive=bg.alive)
        filler = fill(small_disk)
        full = wait_until(
            lambda: (s := status_of(status_path)).get("state") == "degraded" and s,
            "state: degraded",
            alive=bg.alive,
        )
        assert full["reason"] == (
            f"{log_path}: cannot write the prediction log: the disk is full;"
            " free some space (writing resumes by itself)"
        )
        assert full["last_error"] == full["reason"]
        # Inference goes on while nothing can be written.
        wait_until(
            lambda: status_of(status_path)["frames"] > full["frames"] + 20,
            "frames while the disk is full",
            alive=bg.alive,
        )
        logged()  # whole lines only, even on a full disk
        freed_at = status_of(status_path)["frames"]
        # The lines of every frame counted so far are tried against the full disk
        # before it is freed: the writer thread may lag the loop on a busy machine.
        daemon.sinks["prediction_log"].status({}, urgent=True)
        filler.unlink()
        wait_until(lambda: status_of(status_path).get("state") == "running", "running again")
        wait_until(lambda: max(logged()) > freed_at + 5, "lines written again", alive=bg.alive)
    frames = logged()
    assert frames == sorted(set(frames))
    assert full["frames"] + 20 not in frames, "frames during the outage are not logged"
    reports = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "the disk is full" in r.getMessage()
    ]
    assert len(reports) == 1, "one error for the outage, not one per frame"
    assert any(r.getMessage() == "prediction log writable again" for r in caplog.records)


def test_full_disk_for_the_status_file_keeps_the_old_one_whole_and_resumes(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    small_disk: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    status_path = small_disk / "status.json"
    daemon, cfg, _ = make_daemon(
        ScriptedSource(), overrides={"outputs": {"status_file": str(status_path)}}
    )
    log_path = Path(cfg.outputs.prediction_log or "")
    with Background(daemon) as bg:
        wait_until(started(daemon, status_path), "running", alive=bg.alive)
        filler = fill(small_disk)
        wait_until(
            lambda: any("the disk is full" in r.getMessage() for r in caplog.records),
            "the error in the log",
            alive=bg.alive,
        )
        frozen = status_of(status_path)  # complete JSON: the last good status
        lines_then = len(log_lines(log_path))
        wait_until(
            lambda: len(log_lines(log_path)) > lines_then + 20,
            "predictions while the status cannot be written",
            alive=bg.alive,
        )
        assert status_of(status_path) == frozen
        # Each failed attempt removes its temporary file: none piles up.
        wait_until(
            lambda: sorted(p.name for p in small_disk.iterdir()) == ["filler", "status.json"],
            "no temporary files left",
        )
        filler.unlink()
        resumed = wait_until(
            lambda: (
                (s := status_of(status_path))["frames"] > frozen["frames"]
                and s["state"] == "running"
                and s
            ),
            "the status file updated again",
            alive=bg.alive,
        )
    assert "cannot write the status file: the disk is full" in resumed["last_error"]
    assert any(r.getMessage() == "status file writable again" for r in caplog.records)


def test_read_only_status_folder_inference_goes_on_and_writing_resumes(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    small_disk: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An SD card the kernel remounted read-only after I/O errors; root cannot write either.
    caplog.set_level(logging.INFO)
    status_path = small_disk / "status.json"
    daemon, _, _ = make_daemon(
        ScriptedSource(), overrides={"outputs": {"status_file": str(status_path)}}
    )
    with Background(daemon) as bg:
        wait_until(started(daemon, status_path), "running", alive=bg.alive)
        remount(small_disk, read_only=True)
        wait_until(
            lambda: any("Read-only file system" in r.getMessage() for r in caplog.records),
            "the error in the log",
            alive=bg.alive,
        )
        frozen = status_of(status_path)
        wait_until(lambda: daemon.frames > frozen["frames"] + 20, "frames", alive=bg.alive)
        assert daemon.state == "degraded"
        assert daemon.reason == (
            f"{status_path}: cannot write the status file: Read-only file system;"
            " make the folder writable for the service user"
        )
        remount(small_disk, read_only=False)
        wait_until(
            lambda: (
                (s := status_of(status_path))["frames"] > frozen["frames"]
                and s["state"] == "running"
            ),
            "the status file updated again",
            alive=bg.alive,
        )


def test_status_folder_that_is_a_file_is_reported_and_writing_resumes_once_fixed(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    tmp_path: Path,
) -> None:
    # Needs no privileges: a file where the status folder should be.
    folder = tmp_path / "run"
    folder.write_text("not a folder")
    status_path = folder / "status.json"
    daemon, _, _ = make_daemon(
        ScriptedSource(), overrides={"outputs": {"status_file": str(status_path)}}
    )
    with Background(daemon) as bg:
        wait_until(lambda: daemon.frames > 20, "frames without a status file", alive=bg.alive)
        assert daemon.state == "degraded"
        assert (daemon.reason or "").startswith(f"{status_path}: cannot write the status file: ")
        folder.unlink()
        wait_until(
            lambda: status_of(status_path).get("state") == "running",
            "the status file written",
            alive=bg.alive,
        )


def test_dev_full_as_the_prediction_log_classification_goes_on(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
) -> None:
    dev_full = Path("/dev/full")
    if not dev_full.is_char_device():
        pytest.skip("no /dev/full")
    daemon, cfg, _ = make_daemon(
        ScriptedSource(), overrides={"outputs": {"prediction_log": str(dev_full)}}
    )
    status_path = Path(cfg.outputs.status_file or "")
    with Background(daemon) as bg:
        status = wait_until(
            lambda: (s := status_of(status_path)).get("frames", 0) > 20 and s,
            "frames with every write failing",
            alive=bg.alive,
        )
    assert status["state"] == "degraded"
    assert status["reason"] == (
        "/dev/full: cannot write the prediction log: the disk is full;"
        " free some space (writing resumes by itself)"
    )
    assert stat.S_ISCHR(os.stat(dev_full).st_mode)  # never rotated (renamed) away
    assert not Path("/dev/full.1").exists()


def test_a_write_cut_short_by_enospc_leaves_only_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk fills in the middle of a line: part of it is written, then ENOSPC.
    path = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(path))
    log.write({"frame": 1, "predictions": []}, 1)
    real_write = os.write
    calls: list[int] = []

    def short_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    class OsWithAFullDisk:
        write = staticmethod(short_then_full)

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

    monkeypatch.setattr(prediction_log_module, "os", OsWithAFullDisk())
    with pytest.raises(OutputError, match="the disk is full"):
        log.write({"frame": 2, "predictions": [], "pad": "x" * 200}, 2)
    assert len(calls) == 2
    assert [line["frame"] for line in log_lines(path)] == [1]
    monkeypatch.undo()
    log.write({"frame": 3, "predictions": []}, 3)
    assert [line["frame"] for line in log_lines(path)] == [1, 3]


# -- the prediction log under load ----------------------------------------------------------


def rotated_files(log_path: Path) -> list[Path]:
    """The prediction log's files, oldest first."""
    backups = sorted(log_path.parent.glob("predictions.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, log_path]


def test_rotation_under_load_never_loses_or_splits_a_line(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
) -> None:
    frames = 400
    daemon, cfg, _ = make_daemon(
        ScriptedSource(interval=0),  # as fast as the model goes
        # As a files source: every frame is handed over, none replaced by a newer one.
        overrides={"source": {"kind": "files"}, "outputs": {"max_bytes": 4096, "backups": 100}},
        max_frames=frames,
    )
    log_path = Path(cfg.outputs.prediction_log or "")
    torn: list[bytes] = []

    def reader() -> None:
        # Reads the live file over and over, as any reader may, mid-write and mid-rotation.
        while bg.alive():
            with contextlib.suppress(FileNotFoundError):
                data = log_path.read_bytes()
                for line in data[: data.rfind(b"\n") + 1].splitlines():
                    try:
                        json.loads(line)
                    except ValueError:
                        torn.append(line)
            time.sleep(0.001)

    with Background(daemon) as bg:
        reading = threading.Thread(target=reader)
        reading.start()
        bg.thread.join(TIMEOUT)
        reading.join(TIMEOUT)
    assert bg.code == 0
    assert torn == []
    files = rotated_files(log_path)
    assert len(files) > 20, "the log rotated many times"
    seen: list[int] = []
    for f in files:
        assert f.stat().st_size <= 4096
        seen += [line["frame"] for line in log_lines(f)]  # every line whole JSON
    assert seen == list(range(1, frames + 1))  # none lost, none twice, in order


def test_tail_follow_prints_every_line_across_rotations(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    tmp_path: Path,
) -> None:
    # A rotation every half second or so (tail -f looks every 0.2 s; the default
    # max_bytes rotates every few minutes): the lines written to the old file
    # just before each rename must still be printed.
    frames = 300
    daemon, cfg, config_path = make_daemon(
        ScriptedSource(interval=0.02),
        overrides={"source": {"kind": "files"}, "outputs": {"max_bytes": 8192, "backups": 100}},
        max_frames=frames,
    )
    followed_path = tmp_path / "followed.jsonl"

    def followed() -> list[int]:
        """Frame numbers `tail -f` has printed (whole lines)."""
        data = followed_path.read_bytes()
        return [json.loads(line)["frame"] for line in data[: data.rfind(b"\n") + 1].splitlines()]

    command = ["tail", "-f", "--raw", "--config", str(config_path)]
    with open(followed_path, "wb") as out:
        tail = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", *command],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    log = Path(cfg.outputs.prediction_log or "")

    def logged() -> int:
        return sum(p.stat().st_size for p in log.parent.glob(log.name + "*"))

    try:
        with Background(daemon) as bg:
            # As long as lines keep coming: a loaded machine may take longer than
            # TIMEOUT for all frames, and stopping early leaves no last line to wait for.
            seen = -1
            while bg.alive() and logged() != seen:
                seen = logged()
                bg.thread.join(TIMEOUT)
        assert bg.code == 0
        wait_until(lambda: frames in followed(), "tail -f to print the last line")
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=TIMEOUT)
    assert len(rotated_files(Path(cfg.outputs.prediction_log or ""))) > 10
    printed = followed()
    assert printed, err.decode()
    # From where it started (the last 10 lines then), every line once, in order.
    assert printed == list(range(printed[0], frames + 1))


def test_tail_follow_reads_every_file_when_it_falls_behind_two_rotations(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # On a loaded Pi `tail -f` may not run for longer than two rotations take:
    # the file between the one it follows and the newest must not be skipped.
    log = tmp_path / "predictions.jsonl"

    def lines(*frames: int) -> bytes:
        return b"".join(json.dumps({"frame": n}).encode() + b"\n" for n in frames)

    def rotate() -> None:  # as the prediction log rotates: .1 -> .2, the log -> .1
        if Path(f"{log}.1").exists():
            os.replace(f"{log}.1", f"{log}.2")
        os.replace(log, f"{log}.1")

    log.write_bytes(lines(1, 2, 3))
    config = write_config(overrides={"outputs": {"prediction_log": str(log), "backups": 5}})
    followed_path = tmp_path / "followed.jsonl"

    def followed() -> list[int]:
        data = followed_path.read_bytes()
        return [json.loads(line)["frame"] for line in data[: data.rfind(b"\n") + 1].splitlines()]

    with open(followed_path, "wb") as out:
        tail = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "tail", "-f", "--raw", "--config", str(config)],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def running() -> bool:
        return tail.poll() is None

    try:
        wait_until(
            lambda: followed() == [1, 2, 3], "tail -f to print the first lines", alive=running
        )
        tail.send_signal(signal.SIGSTOP)  # the reader gets no CPU for a while
        with open(log, "ab") as f:
            f.write(lines(4, 5))
        rotate()
        log.write_bytes(lines(6, 7))
        rotate()
        log.write_bytes(lines(8, 9))
        tail.send_signal(signal.SIGCONT)
        wait_until(lambda: 9 in followed(), "tail -f to print the newest line", alive=running)
    finally:
        tail.send_signal(signal.SIGCONT)
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=TIMEOUT)
    assert followed() == list(range(1, 10)), err.decode()


# -- kills, power cuts, signals (subprocesses) ----------------------------------------------


@pytest.fixture
def subprocess_config(write_config: Callable[..., Path], tmp_path: Path) -> Path:
    """A config for `edge-daemon run`: the sample images looping at full speed."""
    return write_config(
        model=str(shared_file(MODELS / SMALL_MODEL)),
        source=str(shared_file(IMAGES)),
        delegates=["cpu"],
        overrides={
            "model": {"top_k": 3},
            "source": {"loop": True},
            "outputs": {"status_interval": 0.05, "max_bytes": 4096, "backups": 3},
        },
    )


def start_daemon(config: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    with open(tmp_path / "daemon.stderr", "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_complete_status_and_whole_lines(
    subprocess_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    status_path = out / "status.json"
    rng = random.Random(20261121)
    kills_while_running = 0

    def running_as(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
        return lambda: (
            status_of(status_path).get("pid") == proc.pid
            and (status_of(status_path).get("state") == "running")
        )

    def alive(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
        return lambda: proc.poll() is None

    for _ in range(8):
        proc = start_daemon(subprocess_config, tmp_path)
        try:
            # Sometimes during start-up (model loading), mostly while classifying.
            if rng.random() < 0.75:
                wait_until(running_as(proc), "running", alive=alive(proc))
                kills_while_running += 1
            time.sleep(rng.uniform(0.0, 0.8))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT)
        if status_path.exists():
            status = json.loads(status_path.read_text())  # always complete JSON
            assert {"state", "pid", "updated", "frames"} <= set(status)
        for f in out.glob("predictions.jsonl*"):
            log_lines(f)  # only whole lines
        leftovers = (
            [p.name for p in out.iterdir() if p.name.endswith(".tmp")] if out.exists() else []
        )
        assert len(leftovers) <= 1, f"temporary files pile up: {leftovers}"
    assert kills_while_running >= 4
    # A killed daemon left "running" behind: the health check sees through it.
    health = run_cli("status", "--config", str(subprocess_config))
    assert health.returncode == 2, health.stdout + health.stderr
    assert "stale" in health.stdout
    shown = run_cli("tail", "-n", "5", "--config", str(subprocess_config))
    assert shown.returncode == 0, shown.stderr
    last = log_lines(out / "predictions.jsonl")[-5:]
    assert [line.split()[1] for line in shown.stdout.splitlines()] == [
        f"#{line['frame']}" for line in last
    ]


def test_power_cut_mid_line_tail_skips_it_and_the_next_run_starts_clean(
    subprocess_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_cli("run", "--max-frames", "6", "--config", str(subprocess_config))
    assert done.returncode == 0, done.stderr
    log_path = out / "predictions.jsonl"
    whole = log_lines(log_path)
    # What a power cut in the middle of a write can leave: the start of a line.
    torn = b'{"ts":"2026-11-21T08:00:00.000Z","frame":7,"image":"ca'
    with open(log_path, "ab") as f:
        f.write(torn)
    raw = run_cli("tail", "-n", "3", "--raw", "--config", str(subprocess_config))
    assert raw.returncode == 0, raw.stderr
    assert [json.loads(line) for line in raw.stdout.splitlines()] == whole[-3:]
    shown = run_cli("tail", "-n", "3", "--config", str(subprocess_config))
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[1] for line in shown.stdout.splitlines()] == ["#4", "#5", "#6"]
    # The daemon starts again after the power cut: its lines must not glue onto the torn one.
    again = run_cli("run", "--max-frames", "3", "--config", str(subprocess_config))
    assert again.returncode == 0, again.stderr
    lines = log_lines(log_path)
    assert len(lines) == len(whole) + 3
    assert lines[: len(whole)] == whole


def test_stale_status_temp_file_from_a_crash_is_cleaned_up(
    subprocess_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # Killed between creating the temporary status file and renaming it.
    (out / ".status.json.k2j4x9.tmp").write_text('{"state": "runn')
    done = run_cli("run", "--max-frames", "3", "--config", str(subprocess_config))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("predictions")) == [
        "status.json"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("new_config", ["valid", "invalid"])
def test_sigterm_during_a_reload_exits_cleanly(
    new_config: str, subprocess_config: Path, tmp_path: Path
) -> None:
    status_path = tmp_path / "out" / "status.json"
    good_yaml = subprocess_config.read_text()
    proc = start_daemon(subprocess_config, tmp_path)
    try:
        wait_until(
            lambda: status_of(status_path).get("state") == "running",
            "running",
            alive=lambda: proc.poll() is None,
        )
        # The config becomes a FIFO: the reload blocks reading it until the test writes,
        # so SIGTERM lands while the reload is certainly in progress.
        fifo = tmp_path / "config.fifo"
        os.mkfifo(fifo)
        os.replace(fifo, subprocess_config)
        proc.send_signal(signal.SIGHUP)

        def reader_waiting() -> Optional[int]:
            try:
                return os.open(subprocess_config, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nobody reading yet
                    return None
                raise

        fd = wait_until(reader_waiting, "the reload to read the config")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # the signal is handled while the reload waits
        assert proc.poll() is None, "the daemon must finish or abandon the reload cleanly"
        text = good_yaml if new_config == "valid" else "model: [unclosed\n"
        os.set_blocking(fd, True)
        os.write(fd, text.encode())
        os.close(fd)
        code = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = (tmp_path / "daemon.stderr").read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "reloading (SIGHUP)" in stderr
    assert "stopped after" in stderr
    final = json.loads(status_path.read_text())
    assert final["state"] == "stopped"
    if new_config == "invalid":
        assert "reload failed" in final["last_error"]


# -- the soak, short (docs/reliability.md reports a 10-minute run) -------------


@pytest.mark.slow
def test_short_soak_with_reloads_and_faults_passes(tmp_path: Path) -> None:
    # A reload builds the new interpreter before the old one is closed, then hands the
    # old one's heap back: RSS is flat from the first reload on, and eleven reloads
    # end no higher than the daemon stood before any.
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "soak.py"),
            "--duration", "60",
            "--reload-every", "5",
            "--fault-every", "7",
            "--warmup", "15",
            "--sample-every", "0.25",
            "--model", str(shared_file(MODELS / "mobilenet_v1_1.0_224_quant.tflite")),
            "--labels", str(shared_file(LABELS)),
            "--images", str(shared_file(IMAGES)),
            "--workdir", str(tmp_path / "soak"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.stdout, result.stderr
    figures = json.loads(result.stdout)
    assert result.returncode == 0, figures["failures"]
    assert figures["reloads"] >= 10
    assert figures["faults_injected"] >= 6
    assert figures["faults_reported"] == figures["recoveries"] == figures["faults_injected"]
    assert figures["log_lines"] == figures["frames"] > 0
    assert figures["rss_growth_mb"] <= 2.0
    assert figures["rss_end_mb"] <= figures["rss_before_reloads_mb"] + 2.0
    assert figures["fds_end"] <= figures["fds_after_warmup"]
