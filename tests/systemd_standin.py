"""A stand-in for systemd's side of a ``Type=notify`` service, for tests.

:class:`SystemdStandIn` does what PID 1 does for the unit in ``deploy/``, as far as the
notify protocol goes:

* binds an AF_UNIX datagram socket and passes it as ``$NOTIFY_SOCKET``;
* sets ``$WATCHDOG_USEC``, and ``$WATCHDOG_PID`` to the daemon's own PID (a ``/bin/sh``
  wrapper exports its ``$$``, then execs Python, so the PID stays the same);
* runs ``python -m edge_daemon run --config CONFIG`` as the main process;
* reads notifications on a thread, with their arrival time and the sender's PID from
  ``SCM_CREDENTIALS``. Like ``NotifyAccess=main``, only the main process counts:
  :attr:`messages` holds its notifications, :attr:`rejected` anything sent by others.
  Like PID 1, a datagram longer than 4096 bytes is dropped whole (:attr:`dropped`).

It never enforces the watchdog (it kills nothing on a missed ping); tests look at the
recorded pings instead. The child's stdout and stderr go to files in ``workdir``.

``hide_systemd_python=True`` puts a ``systemd`` package that raises ImportError first on
the child's ``PYTHONPATH``, so the daemon runs as if python-systemd were not installed
(``import systemd.daemon`` fails in the child exactly as it would there).

Use it as a context manager: leaving the block always kills the child if it still runs,
stops the reader thread and removes the socket.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Callable, Optional, TypeVar

from edge_daemon.notify import NotifyMessage
from tests.helpers import REPO

T = TypeVar("T")

# PID 1 receives notifications into a buffer of this size and drops longer ones.
NOTIFY_BUFFER_MAX = 4096
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid

# Variables a real service manager (or the shell running the tests) may have set.
_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID")

_HIDING_PACKAGE = '''"""Stands in for python-systemd: importing it fails as if it were absent."""

raise ImportError("systemd-python is hidden by the test harness")
'''

# $$ is the shell's PID; exec keeps it, so WATCHDOG_PID names the daemon as systemd's does.
_EXEC_WITH_WATCHDOG_PID = 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"'


@dataclass(frozen=True)
class Notification(NotifyMessage):
    """One datagram received on the notify socket.

    ``at`` (inherited) is ``time.monotonic()`` at arrival; ``at_ns`` the same instant from
    ``time.monotonic_ns()``, ``wall`` from ``time.time()``. ``fields`` parses the
    assignments as PID 1 does (newline-separated ``KEY=value``).
    """

    at_ns: int = 0
    wall: float = 0.0
    pid: Optional[int] = None
    """Sender PID from the kernel's SCM_CREDENTIALS."""
    seq: int = 0
    """Arrival order (0, 1, ...) among everything received; ``since=m.seq + 1`` means after m."""

    def has(self, key: str, value: Optional[str] = None) -> bool:
        """Whether ``key`` was sent (with ``value``, if given)."""
        fields = self.fields
        return key in fields and (value is None or fields[key] == value)


Predicate = Callable[[Notification], bool]


@dataclass
class _Received:
    all: list[Notification] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)


def wait_until(condition: Callable[[], Optional[T]], *, timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; return that. Fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class SystemdStandIn:
    """Runs ``edge-daemon run`` as a ``Type=notify`` service would be run, and listens."""

    def __init__(
        self,
        config: Path,
        *,
        workdir: Path,
        watchdog_usec: Optional[int] = 1_000_000,
        hide_systemd_python: bool = False,
        env: Optional[dict[str, str]] = None,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.watchdog_usec = watchdog_usec
        self.hide_systemd_python = hide_systemd_python
        self.extra_env = dict(env or {})
        self.stderr_path = workdir / "daemon.stderr"
        self.stdout_path = workdir / "daemon.stdout"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        # sun_path holds 108 bytes and pytest's tmp_path can be longer: a short dir of its own.
        self._sockdir = tempfile.mkdtemp(prefix="sd-standin-")
        self.socket_path = os.path.join(self._sockdir, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(self.socket_path)
        self._sock.settimeout(0.05)
        self._received = _Received()
        self._cond = threading.Condition()
        self._hooks: list[Callable[[Notification], None]] = []
        self._hook_errors: list[BaseException] = []
        self._stop_reading = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._reader.start()

    # -- the child -------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The child's environment (without ``WATCHDOG_PID``, which the wrapper adds)."""
        env = {k: v for k, v in os.environ.items() if k not in _INHERITED}
        path = [str(REPO)]
        if self.hide_systemd_python:
            hidden = Path(self._sockdir) / "hide-systemd"
            (hidden / "systemd").mkdir(parents=True, exist_ok=True)
            (hidden / "systemd" / "__init__.py").write_text(_HIDING_PACKAGE)
            path.insert(0, str(hidden))
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PYTHONUNBUFFERED"] = "1"  # as the unit sets it: log lines in order
        env["NOTIFY_SOCKET"] = self.socket_path
        if self.watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        env.update(self.extra_env)
        return env

    def command(self, *args: str) -> list[str]:
        """``python ARGS`` behind the shell wrapper that sets ``WATCHDOG_PID``."""
        return ["/bin/sh", "-c", _EXEC_WITH_WATCHDOG_PID, sys.executable, *args]

    def start(self) -> SystemdStandIn:
        """Start the daemon (once)."""
        assert self.proc is None, "already started"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.command("-m", "edge_daemon", "run", "--config", str(self.config)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.environment(),
                cwd=str(self.workdir),
            )
        return self

    @property
    def running(self) -> bool:
        """Whether the main process has been started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        """What the daemon has written to stderr so far."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the main process (as ``systemctl kill``/``reload`` would)."""
        assert self.proc is not None and self.running, self._context("not running")
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit, collect the last notifications; the exit code."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            headline = f"no exit within {timeout:g} s of SIGTERM"
            raise AssertionError(self._context(headline)) from None
        self._finish_reading()
        return code

    def close(self) -> None:
        """Kill the child if it still runs, stop reading, remove the socket."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        finally:
            self._finish_reading()
            self._sock.close()
            shutil.rmtree(self._sockdir, ignore_errors=True)

    def __enter__(self) -> SystemdStandIn:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- notifications ---------------------------------------------------------------------
    def on_message(self, hook: Callable[[Notification], None]) -> None:
        """Call ``hook`` on the reader thread for each notification, as it arrives.

        It runs before the notification becomes visible to :meth:`wait_for`, so it can look
        at the world (files the daemon writes) at the moment a message came in.
        """
        self._hooks.append(hook)

    @property
    def messages(self) -> list[Notification]:
        """Notifications from the main process, oldest first."""
        with self._cond:
            return self._main_since(0)

    @property
    def rejected(self) -> list[Notification]:
        """Notifications from any other process (PID 1 ignores them under NotifyAccess=main)."""
        with self._cond:
            return [m for m in self._received.all if not self._from_main(m)]

    @property
    def dropped(self) -> list[bytes]:
        """Datagrams too long for PID 1's buffer (the first 4096 bytes of each)."""
        with self._cond:
            return list(self._received.dropped)

    def mark(self) -> int:
        """The ``seq`` the next notification will get: as ``since``, "from now on"."""
        with self._cond:
            return len(self._received.all)

    def find(
        self, predicate: Optional[Predicate] = None, *, since: int = 0, **fields: str
    ) -> list[Notification]:
        """Messages with ``seq >= since`` that match ``predicate`` and every field."""
        match = _matcher(predicate, fields)
        with self._cond:
            return [m for m in self._main_since(since) if match(m)]

    def wait_for(
        self,
        predicate: Optional[Predicate] = None,
        *,
        since: int = 0,
        timeout: float = 30.0,
        **fields: str,
    ) -> Notification:
        """The first message with ``seq >= since`` that matches; waits for it.

        ``wait_for(READY="1")`` or ``wait_for(lambda m: ..., since=mark)``. Fails with the
        messages so far and the daemon's stderr when the timeout passes or the daemon exits.
        """
        match = _matcher(predicate, fields)
        what = ", ".join(f"{k}={v}" for k, v in fields.items()) or "a matching message"
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._raise_hook_errors()
                for m in self._main_since(since):
                    if match(m):
                        return m
                left = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if left <= 0 or (exited and not self._reader.is_alive()):
                    break
                if exited:
                    # Still collecting what was queued before the exit.
                    self._stop_reading.set()
                self._cond.wait(min(left, 0.1))
        state = "exited" if exited else f"timed out after {timeout:g} s"
        raise AssertionError(self._context(f"{state} waiting for {what}"))

    # -- internals -------------------------------------------------------------------------
    def _from_main(self, m: Notification) -> bool:
        return self.proc is not None and m.pid == self.proc.pid

    def _main_since(self, since: int) -> list[Notification]:
        return [m for m in self._received.all[since:] if self._from_main(m)]

    def _raise_hook_errors(self) -> None:
        if self._hook_errors:
            raise AssertionError("an on_message hook failed") from self._hook_errors[0]

    def _finish_reading(self) -> None:
        self._stop_reading.set()
        self._reader.join(10)
        with self._cond:
            self._raise_hook_errors()

    def _context(self, headline: str) -> str:
        with self._cond:
            received = list(self._received.all)
        lines = [headline, f"notifications ({len(received)}):"]
        lines += [f"  {m.at:.3f} pid {m.pid}: {' | '.join(m.assignments)}" for m in received[-30:]]
        code = self.proc.poll() if self.proc is not None else None
        lines.append(f"exit code: {code}")
        lines.append("stderr (last 40 lines):")
        lines += ["  " + line for line in self.stderr().splitlines()[-40:]]
        return "\n".join(lines)

    def _read(self) -> None:
        # After a stop request, keep reading until the queue is empty, then end.
        while True:
            try:
                datagram = self._receive()
            except (socket.timeout, BlockingIOError):
                if self._stop_reading.is_set():
                    break
                continue
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    break
                raise
            if datagram is not None:
                self._deliver(datagram)
        with self._cond:
            self._cond.notify_all()

    def _receive(self) -> Optional[Notification]:
        data, ancdata, flags, _ = self._sock.recvmsg(
            NOTIFY_BUFFER_MAX, socket.CMSG_SPACE(_UCRED.size)
        )
        at_ns = time.monotonic_ns()
        wall = time.time()
        if flags & socket.MSG_TRUNC:
            with self._cond:
                self._received.dropped.append(data)
            return None
        pid: Optional[int] = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(payload[: _UCRED.size])[0]
        text = data.decode("utf-8", "replace")
        assignments = tuple(line for line in text.split("\n") if line)
        with self._cond:
            seq = len(self._received.all)
        return Notification(at_ns / 1e9, assignments, at_ns=at_ns, wall=wall, pid=pid, seq=seq)

    def _deliver(self, m: Notification) -> None:
        # Only this thread appends, so seq stays equal to the list position.
        for hook in self._hooks:
            try:
                hook(m)
            except BaseException as exc:
                with self._cond:
                    self._hook_errors.append(exc)
        with self._cond:
            self._received.all.append(m)
            self._cond.notify_all()


def _matcher(predicate: Optional[Predicate], fields: dict[str, str]) -> Predicate:
    def match(m: Notification) -> bool:
        if any(not m.has(k, v) for k, v in fields.items()):
            return False
        return predicate is None or predicate(m)

    return match
