"""The systemd notify protocol (``sd_notify``) for a ``Type=notify`` service.

A notification is one datagram of newline-separated ``KEY=value`` assignments sent to the
AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract
namespace). The daemon uses it like this:

* ``ready(n, status)`` once the model is loaded and the first frame is classified;
* ``status(n, text)`` to keep the one-line status (fps, top-1, delegate) current;
* ``watchdog(n)`` every ``watchdog_interval()`` seconds, gated by a :class:`WatchdogGate`
  so that pings stop when frames stop and systemd restarts the service;
* ``reloading(n)`` then ``ready(n)`` around a SIGHUP reload;
* ``stopping(n)`` on shutdown.

:class:`SystemdNotifier` uses python-systemd's ``systemd.daemon.notify`` when it can be
imported and otherwise sends the datagram itself, so the service reaches READY either way.
Nothing here imports ``systemd`` at module import time, so the package imports anywhere.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Protocol

log = logging.getLogger(__name__)

# PID 1 reads notifications into a 4096-byte buffer and drops a longer datagram whole,
# which would lose a READY=1 sent with the status. 1024 characters stay below that even at
# four UTF-8 bytes per character.
STATUS_MAX_CHARS = 1024


class Notifier(Protocol):
    """Something that delivers sd_notify assignments such as ``"READY=1"``."""

    def send(self, *assignments: str) -> None:
        """Send the assignments as one notification; never raises."""
        ...


def _load_library_notify() -> Optional[Callable[..., object]]:
    """``systemd.daemon.notify`` if python-systemd can be imported, else None."""
    try:
        module = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    func = getattr(module, "notify", None)
    return func if callable(func) else None


def _socket_address(address: str) -> Optional[bytes]:
    """The sockaddr for a ``$NOTIFY_SOCKET`` value, or None if it is not an AF_UNIX one."""
    if address.startswith("@"):
        # Abstract namespace: the kernel name starts with a NUL byte instead of '@'.
        return b"\0" + os.fsencode(address[1:])
    if address.startswith("/"):
        return os.fsencode(address)
    # systemd also knows vsock: addresses; only libsystemd can reach those.
    return None


class SystemdNotifier:
    """Sends notifications to the service manager at ``$NOTIFY_SOCKET``.

    ``address`` defaults to ``$NOTIFY_SOCKET`` of this process. python-systemd is used when
    importable (``use_library=True``) and only when ``address`` is the ``$NOTIFY_SOCKET``
    of this process, because libsystemd reads the address from the environment itself.
    Otherwise a plain AF_UNIX datagram is sent. Failures are logged at DEBUG and swallowed:
    a missed status line must never take the daemon down.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        use_library: bool = True,
        timeout: float = 1.0,
    ) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        self.timeout = timeout
        self._library: Optional[Callable[..., object]] = None
        if use_library and os.environ.get("NOTIFY_SOCKET") == self.address:
            self._library = _load_library_notify()
        log.debug("notify socket %r via %s", self.address, self.via)

    @property
    def via(self) -> str:
        """``"systemd-python"`` or ``"socket"``: how notifications are sent."""
        return "systemd-python" if self._library is not None else "socket"

    def send(self, *assignments: str) -> None:
        """Send the assignments as one datagram; log at DEBUG and return on failure."""
        message = _join(assignments)
        if not message:
            return
        if self._library is not None:
            try:
                # unset_environment=False: the daemon notifies for its whole life. fds is
                # left out on purpose: python-systemd rejects an explicit fds=None.
                if self._library(message, unset_environment=False):
                    return
                # False means libsystemd saw no $NOTIFY_SOCKET (it was unset after we
                # started); the address we were given still works over the plain socket.
            except Exception as exc:
                log.debug("sd_notify(%r) failed: %s", message, exc)
                return
        self._send_datagram(message.encode("utf-8"))

    def _send_datagram(self, data: bytes) -> None:
        target = _socket_address(self.address)
        if target is None:
            log.debug("not sending %r: %r is not an AF_UNIX address", data, self.address)
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # A full receive queue at PID 1 would otherwise block the frame loop.
                sock.settimeout(self.timeout)
                sock.sendto(data, target)
        except OSError as exc:
            log.debug("sending %r to %r failed: %s", data, self.address, exc)


class NullNotifier:
    """Notifier for when the daemon is not run by systemd: drops everything."""

    def send(self, *assignments: str) -> None:
        """Do nothing."""


@dataclass(frozen=True)
class NotifyMessage:
    """One notification seen by :class:`RecordingNotifier`."""

    at: float
    """``time.monotonic()`` (or the given clock) when it was sent."""
    assignments: tuple[str, ...]

    @property
    def fields(self) -> dict[str, str]:
        """The assignments as a dict, ``{"READY": "1", "STATUS": "..."}``."""
        out: dict[str, str] = {}
        for item in self.assignments:
            key, _, value = item.partition("=")
            out[key] = value
        return out


class RecordingNotifier:
    """Test fake: records every notification with a monotonic timestamp.

    Messages go through the same newline sanitising as the real notifier, so a test sees
    what systemd would.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.messages: list[NotifyMessage] = []
        self._clock = clock
        self._lock = threading.Lock()

    def send(self, *assignments: str) -> None:
        """Record the assignments as one message."""
        cleaned = tuple(a for a in (_clean(a) for a in assignments) if a)
        if not cleaned:
            return
        with self._lock:
            self.messages.append(NotifyMessage(self._clock(), cleaned))

    def values(self, key: str) -> list[str]:
        """Every value sent for ``key``, oldest first."""
        with self._lock:
            messages = list(self.messages)
        return [m.fields[key] for m in messages if key in m.fields]

    def last(self, key: str) -> Optional[str]:
        """The newest value sent for ``key``, or None."""
        found = self.values(key)
        return found[-1] if found else None


def _clean(assignment: str) -> str:
    # A newline inside one assignment would smuggle in another (e.g. "READY=1").
    return assignment.replace("\r", " ").replace("\n", " ") if assignment else ""


def _join(assignments: tuple[str, ...]) -> str:
    return "\n".join(a for a in (_clean(a) for a in assignments) if a)


def make_notifier(environ: Optional[Mapping[str, str]] = None) -> Notifier:
    """A :class:`SystemdNotifier` when ``NOTIFY_SOCKET`` is set, else a :class:`NullNotifier`."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if address:
        return SystemdNotifier(address)
    return NullNotifier()


def watchdog_interval(environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC``.

    None when the watchdog is off: ``WATCHDOG_USEC`` unset, not a positive integer, or
    ``WATCHDOG_PID`` set to another process (the variables were inherited by a child).
    """
    env = os.environ if environ is None else environ
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid is not None and raw_pid.strip() != "":
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def _one_line(text: str) -> str:
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line[:STATUS_MAX_CHARS]


def ready(n: Notifier, status: Optional[str] = None) -> None:
    """Tell systemd the service is up (start-up done, or a reload finished)."""
    if status is None:
        n.send("READY=1")
    else:
        n.send("READY=1", "STATUS=" + _one_line(status))


def reloading(n: Notifier) -> None:
    """Tell systemd a reload started; ``ready()`` must follow when it is done.

    ``MONOTONIC_USEC`` is CLOCK_MONOTONIC in microseconds, which ``Type=notify-reload``
    requires to match the reload to the SIGHUP that caused it.
    """
    n.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping(n: Notifier) -> None:
    """Tell systemd the service is shutting down."""
    n.send("STOPPING=1")


def status(n: Notifier, text: str) -> None:
    """Set the one-line status shown by ``systemctl status`` (newlines become spaces)."""
    n.send("STATUS=" + _one_line(text))


def watchdog(n: Notifier) -> None:
    """Ping the systemd watchdog; call through a :class:`WatchdogGate`."""
    n.send("WATCHDOG=1")


class WatchdogGate:
    """Decides when to ping the watchdog: at most once per interval, only while progressing.

    ``interval`` is the ping period (from :func:`watchdog_interval`); ``stall_timeout`` is how
    long without a classified frame still counts as progress. Once frames stop, pings stop
    and systemd's own timeout restarts the service. Times are caller-supplied monotonic
    seconds, so the gate has no clock and is deterministic. It is safe to call from the
    frame loop and a helper thread at once: only one of two simultaneous callers gets True.
    """

    def __init__(self, interval: float, stall_timeout: float) -> None:
        if not interval > 0:
            raise ValueError(f"watchdog interval must be > 0 s, got {interval!r}")
        if not stall_timeout > 0:
            raise ValueError(f"stall timeout must be > 0 s, got {stall_timeout!r}")
        self.interval = interval
        self.stall_timeout = stall_timeout
        self._last_ping: Optional[float] = None
        self._lock = threading.Lock()

    @property
    def last_ping(self) -> Optional[float]:
        """When ``should_ping`` last returned True, or None."""
        with self._lock:
            return self._last_ping

    def should_ping(self, now: float, last_progress: float) -> bool:
        """True if a ping is due at ``now`` and a frame completed within the stall timeout.

        A True answer is recorded as a ping at ``now``, so send the ping when it is True.
        """
        with self._lock:
            if now - last_progress > self.stall_timeout:
                return False
            if self._last_ping is not None and now - self._last_ping < self.interval:
                return False
            self._last_ping = now
            return True
