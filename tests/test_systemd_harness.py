"""The daemon under a systemd stand-in: the whole sd_notify sequence of a Type=notify service.

Each test runs ``edge-daemon run`` as a subprocess through :class:`SystemdStandIn` (a
notify socket, ``WATCHDOG_USEC`` of 1 s, so pings every 0.5 s) over a folder of three
images read in a loop at 20 fps, and checks what systemd would see: READY=1 once the
first prediction is written, WATCHDOG=1 while frames flow and not once they stop,
RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 and exit 0 on SIGTERM.

The hung camera is a FIFO swapped in for one of the images: the files source blocks in
``open()`` on it, exactly like a capture call that never returns, while the rest of the
daemon keeps running. Writing an image into the FIFO later brings the frames back.

The last test checks the structured journal fields in-process, with the journal's
``send`` replaced by a recorder.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from edge_daemon import journal
from edge_daemon.config import load_config
from edge_daemon.daemon import Daemon
from edge_daemon.journal import JournalStandIn, setup_logging
from edge_daemon.notify import RecordingNotifier
from edge_daemon.sinks.status_file import read_status
from tests.helpers import IMAGES, LABELS, first_name, missing, shared_file
from tests.systemd_standin import Notification, SystemdStandIn, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(socket, "SO_PASSCRED"),
    reason="the stand-in needs Linux AF_UNIX sockets with SO_PASSCRED",
)

MODEL_V1 = "mobilenet_v1_1.0_224_quant.tflite"
MODEL_V2 = "mobilenet_v2_1.0_224_quant.tflite"
WATCHDOG_USEC = 1_000_000
PING_INTERVAL = WATCHDOG_USEC / 2 / 1e6  # what the daemon derives from WATCHDOG_USEC
STALL_TIMEOUT = 1.0
# The source's files, in the order it reads them. The second one plays the hung camera.
FRAMES = {"1-parrot.jpg": "parrot.jpg", "2-hot_dog.jpg": "hot_dog.jpg", "3-cat.bmp": "cat.bmp"}
HUNG = "2-hot_dog.jpg"
# "12.3 fps, top-1 macaw 0.98, delegate xnnpack"
STATUS_LINE = re.compile(r"(\d+\.\d) fps, top-1 (.+) (\d\.\d\d), delegate (\S+)")


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """A folder of three images (copies, so a test may swap one for a FIFO)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, original in FRAMES.items():
        shutil.copyfile(shared_file(IMAGES / original), folder / name)
    return folder


@pytest.fixture
def daemon_config(write_config: Callable[..., Path], frames: Path) -> Callable[..., Path]:
    """Write the config the stand-in runs: looping files at 20 fps, DEBUG logs."""

    def make(model: str = MODEL_V1) -> Path:
        overrides = {
            "source": {"loop": True, "fps": 20, "stall_timeout": STALL_TIMEOUT},
            "outputs": {"status_interval": 0.2, "log_interval": 1.0},
            # DEBUG shows which notifier the daemon chose ("... via socket").
            "daemon": {"log_level": "DEBUG"},
        }
        return write_config(model=model, source=str(frames), overrides=overrides)

    return make


@pytest.fixture
def standins() -> Iterator[list[SystemdStandIn]]:
    """Every stand-in a test creates is closed (its daemon killed) afterwards."""
    made: list[SystemdStandIn] = []
    yield made
    for sd in made:
        sd.close()


@pytest.fixture
def standin(
    tmp_path: Path, daemon_config: Callable[..., Path], standins: list[SystemdStandIn]
) -> SystemdStandIn:
    """A stand-in for the default config, not yet started."""
    sd = SystemdStandIn(daemon_config(), workdir=tmp_path, watchdog_usec=WATCHDOG_USEC)
    standins.append(sd)
    return sd


def out_file(tmp_path: Path, name: str) -> Path:
    """Where the write_config fixture puts outputs."""
    return tmp_path / "out" / name


def prediction_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of the prediction log (none if it does not exist yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def status_of(path: Path) -> Optional[dict[str, Any]]:
    try:
        return read_status(str(path))
    except (OSError, ValueError):
        return None


def status_where(path: Path, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Wait until the status file satisfies ``check``; return it."""

    def found() -> Optional[dict[str, Any]]:
        status = status_of(path)
        return status if status is not None and check(status) else None

    return wait_until(found, timeout=30, what=what)


def systemd_python_importable() -> bool:
    try:
        import systemd.daemon  # noqa: F401
    except ImportError:
        return False
    return True


def open_fifo_writer(path: Path) -> Optional[list[int]]:
    """A write end of the FIFO once a reader waits on it (``[fd]``), else None."""
    try:
        return [os.open(path, os.O_WRONLY | os.O_NONBLOCK)]
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


# -- the sequence ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("notify_via", ["systemd-python", "socket"])
def test_ready_after_first_prediction_then_status(
    notify_via: str,
    tmp_path: Path,
    daemon_config: Callable[..., Path],
    standins: list[SystemdStandIn],
) -> None:
    # "socket": python-systemd hidden behind a package on PYTHONPATH that raises
    # ImportError, as on a system without it; READY must arrive all the same.
    if notify_via == "systemd-python" and not systemd_python_importable():
        missing("systemd-python")
    sd = SystemdStandIn(
        daemon_config(),
        workdir=tmp_path,
        watchdog_usec=WATCHDOG_USEC,
        hide_systemd_python=notify_via == "socket",
    )
    standins.append(sd)
    plog = out_file(tmp_path, "predictions.jsonl")
    status_file = out_file(tmp_path, "status.json")
    log_at_ready: list[list[dict[str, Any]]] = []
    status_at_ready: list[dict[str, Any]] = []

    def look_at_the_log(m: Notification) -> None:
        if m.has("READY"):
            log_at_ready.append(prediction_lines(plog))
            status_at_ready.append(json.loads(status_file.read_text()))

    sd.on_message(look_at_the_log)

    sd.start()
    ready = sd.wait_for(READY="1")

    # What was in the prediction log the moment READY=1 came in.
    assert log_at_ready, "the hook never saw READY=1"
    assert log_at_ready[0], "READY=1 arrived before the first prediction was written"
    first = log_at_ready[0][0]
    assert first["frame"] == 1
    captured = datetime.fromisoformat(first["ts"].replace("Z", "+00:00")).timestamp()
    assert captured <= ready.wall

    # Ready means ready: `edge-daemon status` run right after `systemctl start`
    # already reads running with that first prediction, not starting with 0 frames.
    status = status_at_ready[0]
    assert status["state"] == "running"
    assert status["frames"] >= 1
    assert status["predictions"][0]["label"] == first["predictions"][0]["label"]

    # READY carries the status of that first frame.
    match = STATUS_LINE.fullmatch(ready.fields.get("STATUS", ""))
    assert match, ready.fields
    top = first["predictions"][0]
    assert match.group(2) == first_name(top["label"])
    assert match.group(3) == f"{top['score']:.2f}"
    assert match.group(4) == first["delegate"]

    # Later STATUS= lines keep fps, top-1 and delegate current.
    def with_frame_rate(m: Notification) -> bool:
        line = STATUS_LINE.fullmatch(m.fields.get("STATUS", ""))
        return line is not None and float(line.group(1)) > 0

    later = sd.wait_for(with_frame_rate, since=ready.seq + 1)
    status_match = STATUS_LINE.fullmatch(later.fields["STATUS"])
    assert status_match is not None
    labels = {first_name(line) for line in shared_file(LABELS).read_text().splitlines()}
    assert status_match.group(2) in labels
    assert status_match.group(4) == first["delegate"]

    # The daemon said how it notifies, and the harness really hid python-systemd (or not).
    assert f"via {notify_via}" in sd.stderr()
    probe = subprocess.run(
        sd.command("-c", "import systemd.daemon"),
        env=sd.environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if notify_via == "socket":
        assert probe.returncode != 0 and "hidden by the test harness" in probe.stderr
    else:
        assert probe.returncode == 0, probe.stderr

    assert sd.stop() == 0
    assert sd.rejected == [] and sd.dropped == []


@pytest.mark.slow
def test_watchdog_pings_while_frames_flow(tmp_path: Path, standin: SystemdStandIn) -> None:
    plog = out_file(tmp_path, "predictions.jsonl")
    frames_at_ping: dict[int, int] = {}

    def count_frames(m: Notification) -> None:
        if m.has("WATCHDOG"):
            frames_at_ping[m.seq] = len(prediction_lines(plog))

    standin.on_message(count_frames)
    standin.start()
    ready = standin.wait_for(READY="1")
    pings = [standin.wait_for(WATCHDOG="1", since=ready.seq + 1)]
    while len(pings) < 5:
        pings.append(standin.wait_for(WATCHDOG="1", since=pings[-1].seq + 1))

    # No ping before READY (systemd would not expect one), all from the main process.
    assert [m for m in standin.find(WATCHDOG="1") if m.seq < ready.seq] == []
    assert standin.rejected == []
    # Gated to about once per WATCHDOG_USEC / 2, not once per frame (20 fps here).
    for a, b in zip(pings, pings[1:]):
        assert b.at - a.at > PING_INTERVAL / 2, (a, b)
    # The frames went on between the pings.
    counts = [frames_at_ping[p.seq] for p in pings]
    assert counts == sorted(counts) and counts[-1] > counts[0] >= 1, counts
    assert standin.running
    assert standin.stop() == 0


@pytest.mark.slow
def test_pings_stop_while_the_source_hangs_and_resume_after(
    tmp_path: Path, frames: Path, standin: SystemdStandIn
) -> None:
    plog = out_file(tmp_path, "predictions.jsonl")
    status = out_file(tmp_path, "status.json")
    standin.start()
    ready = standin.wait_for(READY="1")
    standin.wait_for(WATCHDOG="1", since=ready.seq + 1)  # fed while frames flow

    # The camera hangs: the next open() of this file blocks, as on a FIFO with no writer.
    # The FIFO keeps a second name outside the folder so the test can write into it later.
    fifo = tmp_path / "hung-camera"
    os.mkfifo(fifo)
    os.link(fifo, frames / ".swap")
    os.replace(frames / ".swap", frames / HUNG)

    degraded = status_where(
        status,
        lambda s: s["state"] == "degraded" and "no frame for" in (s["reason"] or ""),
        "the status file to say degraded: no frame for ...",
    )
    # Seen here at most a status interval after the daemon noticed.
    detected_at = time.monotonic()
    detected = standin.mark()
    frames_at_detection = len(prediction_lines(plog))
    assert frames_at_detection >= 1
    assert degraded["frames"] <= frames_at_detection

    # The loop stays alive (STATUS= goes on) for three more ping intervals, without a ping.
    standin.wait_for(
        lambda m: m.has("STATUS") and m.at > detected_at + 3 * PING_INTERVAL, since=detected
    )
    late_pings = [m for m in standin.find(WATCHDOG="1") if m.at > detected_at + PING_INTERVAL]
    assert late_pings == [], (detected_at, late_pings)
    assert len(prediction_lines(plog)) == frames_at_detection, "frames came during the stall"
    assert standin.running
    assert re.search(
        r"no frame for \d+ s from files .*watchdog is no longer fed", standin.stderr()
    ), standin.stderr()

    # The camera comes back: the real file returns, and the blocked reader gets an image.
    (frames / ".restore").write_bytes(shared_file(IMAGES / FRAMES[HUNG]).read_bytes())
    os.replace(frames / ".restore", frames / HUNG)
    resumed_from = standin.mark()
    (fd,) = wait_until(
        lambda: open_fifo_writer(fifo), timeout=30, what="the daemon to block on the FIFO"
    )
    try:
        os.set_blocking(fd, True)
        os.write(fd, (frames / HUNG).read_bytes())
    finally:
        os.close(fd)
    standin.wait_for(WATCHDOG="1", since=resumed_from)
    status_where(status, lambda s: s["state"] == "running", "the status file to say running")
    assert standin.stop() == 0


@pytest.mark.slow
def test_sighup_swaps_the_model_between_reloading_and_ready(
    tmp_path: Path, daemon_config: Callable[..., Path], standin: SystemdStandIn
) -> None:
    plog = out_file(tmp_path, "predictions.jsonl")
    status = out_file(tmp_path, "status.json")
    standin.start()
    ready = standin.wait_for(READY="1")
    standin.wait_for(WATCHDOG="1", since=ready.seq + 1)

    assert daemon_config(model=MODEL_V2) == standin.config  # rewritten in place
    mark = standin.mark()
    sent_usec = time.monotonic_ns() // 1000
    standin.send_signal(signal.SIGHUP)
    reloading = standin.wait_for(RELOADING="1", since=mark)
    # CLOCK_MONOTONIC of the daemon, the clock this process reads too.
    usec = int(reloading.fields["MONOTONIC_USEC"])
    assert sent_usec <= usec <= reloading.at_ns // 1000

    ready_again = standin.wait_for(READY="1", since=reloading.seq + 1)
    assert standin.find(READY="1", since=mark) == [ready_again]
    assert "STATUS" in ready_again.fields
    after = status_where(
        status,
        lambda s: s["model"].endswith(MODEL_V2) and s["reloads"] == 1,
        f"the status file to show {MODEL_V2}",
    )
    assert after["state"] == "running"
    wait_until(
        lambda: any(r["model"] == MODEL_V2 for r in prediction_lines(plog)),
        timeout=30,
        what="a prediction from the new model",
    )
    standin.wait_for(WATCHDOG="1", since=ready_again.seq + 1)  # still fed after the swap
    assert "reloading (SIGHUP)" in standin.stderr()
    assert standin.stop() == 0


@pytest.mark.slow
def test_sigterm_sends_stopping_and_exits_zero(tmp_path: Path, standin: SystemdStandIn) -> None:
    standin.start()
    ready = standin.wait_for(READY="1")
    standin.wait_for(WATCHDOG="1", since=ready.seq + 1)

    assert standin.stop() == 0
    messages = standin.messages
    stopping = standin.find(STOPPING="1")
    assert len(stopping) == 1, messages
    assert messages[-1] is stopping[0], "something was sent after STOPPING=1"
    assert ready.seq < stopping[0].seq
    final = status_of(out_file(tmp_path, "status.json"))
    assert final is not None and final["state"] == "stopped"
    assert "stopped after" in standin.stderr()


# -- structured journal fields (in-process) -------------------------------------------------


@pytest.fixture
def journal_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[JournalStandIn]:
    """systemd.journal.send replaced by a recorder; the root logger restored afterwards."""
    systemd_journal = pytest.importorskip("systemd.journal")
    fake = JournalStandIn()
    monkeypatch.setattr(systemd_journal, "send", fake)
    monkeypatch.setattr(journal, "_installed", None)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield fake
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def test_journal_records_carry_edge_fields(
    tmp_path: Path,
    frames: Path,
    write_config: Callable[..., Path],
    journal_stand_in: JournalStandIn,
) -> None:
    # stderr (fd 2) is "the journal": JOURNAL_STREAM names its device and inode.
    st = os.fstat(2)
    setup_logging("INFO", environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    path = write_config(
        source=str(frames),
        overrides={
            # Paced so the run spans several log intervals (the summary carries the fields).
            "source": {"loop": True, "fps": 10},
            "outputs": {"log_interval": 0.1},
        },
    )
    daemon = Daemon(
        load_config(path),
        config_path=str(path),
        notifier=RecordingNotifier(),
        max_frames=6,
        environ={},
    )
    assert daemon.run() == 0

    entries = journal_stand_in.entries
    assert entries
    for entry in entries:
        assert entry["SYSLOG_IDENTIFIER"] == "edge-daemon"
        # journald adds the time; the text must not carry one of its own.
        assert not re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d", entry["MESSAGE"]), entry

    summaries = [e for e in entries if "EDGE_TOP1" in e]
    assert summaries, [e["MESSAGE"] for e in entries]
    by_frame = {r["frame"]: r for r in prediction_lines(out_file(tmp_path, "predictions.jsonl"))}
    for entry in summaries:
        assert entry["EDGE_MODEL"] == MODEL_V1
        frame = int(entry["EDGE_FRAME"])
        top = by_frame[frame]["predictions"][0]
        assert entry["EDGE_TOP1"] == top["label"]
        assert float(entry["EDGE_SCORE"]) == pytest.approx(top["score"], abs=1e-4)
        assert entry["PRIORITY"] == "6"
    announced = [e for e in entries if e["MESSAGE"].startswith("model ")]
    assert announced and announced[0]["EDGE_MODEL"] == MODEL_V1
