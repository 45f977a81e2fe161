"""The sd_notify client against real datagram sockets, with and without python-systemd."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edge_daemon import notify
from edge_daemon.notify import (
    NullNotifier,
    RecordingNotifier,
    SystemdNotifier,
    WatchdogGate,
    make_notifier,
    watchdog_interval,
)

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "AF_UNIX") or not sys.platform.startswith("linux"),
    reason="sd_notify needs Linux AF_UNIX sockets",
)


@dataclass
class Listener:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    sock: socket.socket
    address: str  # as it would appear in $NOTIFY_SOCKET

    def recv(self) -> str:
        return self.sock.recv(8192).decode("utf-8")

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(8192)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False


@pytest.fixture
def path_listener() -> Iterator[Listener]:
    # mkdtemp, not tmp_path: sun_path is limited to 108 bytes and pytest's paths can be long.
    directory = tempfile.mkdtemp(prefix="edn-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield Listener(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"edge-daemon-test/{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        yield Listener(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture(params=["systemd-python", "socket"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with python-systemd, and again as if it were not installed."""
    if request.param == "systemd-python":
        pytest.importorskip("systemd.daemon")
    else:
        # A None entry makes `import systemd.daemon` raise ImportError.
        monkeypatch.setitem(sys.modules, "systemd.daemon", None)
    return str(request.param)


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest) -> Listener:
    name = "path_listener" if request.param == "path" else "abstract_listener"
    result: Listener = request.getfixturevalue(name)
    return result


def notifier_for(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> SystemdNotifier:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    n = make_notifier()
    assert isinstance(n, SystemdNotifier)
    return n


# -- the wire format, each way of sending, both address kinds ------------------------------


def test_uses_systemd_python_only_when_importable(
    mode: str, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert notifier_for(path_listener, monkeypatch).via == mode


def test_ready(mode: str, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    n = notifier_for(listener, monkeypatch)
    notify.ready(n)
    assert listener.recv() == "READY=1"
    notify.ready(n, "fps 9.8 | top-1 macaw 0.97 | delegate xnnpack")
    assert listener.recv() == "READY=1\nSTATUS=fps 9.8 | top-1 macaw 0.97 | delegate xnnpack"


def test_status_is_one_line(mode: str, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    n = notifier_for(listener, monkeypatch)
    notify.status(n, "fps 9.8\ntop-1 macaw\r\n\n delegate cpu \n")
    assert listener.recv() == "STATUS=fps 9.8 top-1 macaw delegate cpu"


def test_reloading_carries_clock_monotonic_usec(
    mode: str, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = notifier_for(listener, monkeypatch)
    before = time.monotonic_ns() // 1000
    notify.reloading(n)
    after = time.monotonic_ns() // 1000
    first, second = listener.recv().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_stopping_and_watchdog(
    mode: str, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = notifier_for(listener, monkeypatch)
    notify.stopping(n)
    assert listener.recv() == "STOPPING=1"
    notify.watchdog(n)
    assert listener.recv() == "WATCHDOG=1"


def test_newline_cannot_inject_an_assignment(
    mode: str, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = notifier_for(path_listener, monkeypatch)
    n.send("STATUS=camera\nREADY=1")
    assert path_listener.recv() == "STATUS=camera READY=1"


def test_nothing_sent_for_no_assignments(
    mode: str, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = notifier_for(path_listener, monkeypatch)
    n.send()
    n.send("")
    assert path_listener.nothing_pending()


def test_long_status_stays_one_datagram_under_pid1_limit(
    path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = notifier_for(path_listener, monkeypatch)
    notify.ready(n, "é" * 5000)
    received = path_listener.sock.recv(65536)
    assert received.startswith(b"READY=1\nSTATUS=")
    assert len(received) < 4096


# -- socket fallback specifics ---------------------------------------------------------------


def test_constructor_flag_forces_plain_socket(
    path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.address)
    n = SystemdNotifier(use_library=False)
    assert n.via == "socket"
    notify.ready(n)
    assert path_listener.recv() == "READY=1"


def test_explicit_address_other_than_environment_uses_plain_socket(
    path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libsystemd would read $NOTIFY_SOCKET itself and miss the address we were given.
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = make_notifier({"NOTIFY_SOCKET": path_listener.address})
    assert isinstance(n, SystemdNotifier)
    assert n.via == "socket"
    notify.ready(n)
    assert path_listener.recv() == "READY=1"


def test_library_falls_back_to_socket_when_environment_unset_later(
    path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("systemd.daemon")
    n = notifier_for(path_listener, monkeypatch)
    assert n.via == "systemd-python"
    monkeypatch.delenv("NOTIFY_SOCKET")
    notify.watchdog(n)
    assert path_listener.recv() == "WATCHDOG=1"


@pytest.mark.parametrize("address", ["/nonexistent-dir/notify", "relative/notify", "vsock:2:9"])
def test_send_failures_never_raise_and_log_at_debug(
    mode: str, address: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    n = SystemdNotifier()
    with caplog.at_level(logging.DEBUG, logger="edge_daemon.notify"):
        notify.ready(n, "up")
    failures = [r for r in caplog.records if r.levelno == logging.DEBUG and "READY=1" in r.message]
    assert failures, caplog.text


# -- choosing a notifier ---------------------------------------------------------------------


def test_make_notifier_without_notify_socket_is_null() -> None:
    assert isinstance(make_notifier({}), NullNotifier)
    assert isinstance(make_notifier({"NOTIFY_SOCKET": ""}), NullNotifier)


def test_make_notifier_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert isinstance(make_notifier(), NullNotifier)
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    n = make_notifier()
    assert isinstance(n, SystemdNotifier)
    assert n.address == "@x"


# -- the recording fake ----------------------------------------------------------------------


def test_recording_notifier_records_fields_with_clock() -> None:
    ticks = iter([1.0, 2.5, 4.0])
    rec = RecordingNotifier(clock=lambda: next(ticks))
    notify.ready(rec, "loading done")
    notify.status(rec, "fps 10\n")
    notify.stopping(rec)
    assert [m.at for m in rec.messages] == [1.0, 2.5, 4.0]
    assert rec.messages[0].fields == {"READY": "1", "STATUS": "loading done"}
    assert rec.values("STATUS") == ["loading done", "fps 10"]
    assert rec.last("STOPPING") == "1"
    assert rec.last("WATCHDOG") is None


def test_recording_notifier_sees_reload_sequence() -> None:
    rec = RecordingNotifier()
    notify.reloading(rec)
    notify.ready(rec)
    first, second = rec.messages
    assert first.fields["RELOADING"] == "1"
    assert int(first.fields["MONOTONIC_USEC"]) > 0
    assert second.assignments == ("READY=1",)
    assert first.at <= second.at


# -- WATCHDOG_USEC / WATCHDOG_PID ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "3000"}, 0.0015),
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-10"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({"WATCHDOG_USEC": "1.5"}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "junk"}, None),
    ],
)
def test_watchdog_interval_parsing(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_pid_must_be_this_process() -> None:
    mine = str(os.getpid())
    other = str(os.getpid() + 1)
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": mine}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": other}) is None


def test_watchdog_interval_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "8000000")
    assert watchdog_interval() == 4.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


# -- WatchdogGate ----------------------------------------------------------------------------


def test_gate_pings_at_most_once_per_interval() -> None:
    gate = WatchdogGate(interval=5.0, stall_timeout=30.0)
    assert gate.should_ping(now=100.0, last_progress=100.0)
    assert not gate.should_ping(now=101.0, last_progress=101.0)
    assert not gate.should_ping(now=104.9, last_progress=104.9)
    assert gate.should_ping(now=105.0, last_progress=104.9)
    assert gate.last_ping == 105.0
    assert not gate.should_ping(now=109.0, last_progress=109.0)
    assert gate.should_ping(now=112.0, last_progress=111.0)


def test_gate_stops_pinging_when_frames_stall() -> None:
    gate = WatchdogGate(interval=5.0, stall_timeout=20.0)
    assert gate.should_ping(now=100.0, last_progress=99.0)
    # Last frame at 99: progress until 119, a stall after.
    assert gate.should_ping(now=119.0, last_progress=99.0)
    assert not gate.should_ping(now=124.5, last_progress=99.0)
    assert not gate.should_ping(now=200.0, last_progress=99.0)
    # A refused ping is not recorded as one.
    assert gate.last_ping == 119.0
    # Frames come back: ping at once, the interval long since passed.
    assert gate.should_ping(now=201.0, last_progress=200.5)


def test_gate_progress_after_now_counts_as_progress() -> None:
    # The helper thread may read `now` just before the frame loop records progress.
    gate = WatchdogGate(interval=1.0, stall_timeout=2.0)
    assert gate.should_ping(now=10.0, last_progress=10.2)


@pytest.mark.parametrize(("interval", "stall"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_gate_rejects_non_positive_times(interval: float, stall: float) -> None:
    with pytest.raises(ValueError):
        WatchdogGate(interval=interval, stall_timeout=stall)


def test_gate_gives_one_ping_to_concurrent_callers() -> None:
    gate = WatchdogGate(interval=5.0, stall_timeout=30.0)
    workers = 16
    barrier = threading.Barrier(workers)
    answers: list[bool] = []
    answers_lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        answer = gate.should_ping(now=50.0, last_progress=49.0)
        with answers_lock:
            answers.append(answer)

    threads = [threading.Thread(target=ask) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count(True) == 1
    assert len(answers) == workers
