"""Logging setup: structured journald records under systemd, plain stderr elsewhere.

:func:`setup_logging` picks one of three outputs for the root logger:

* **journal** - stderr is connected to the journal (``$JOURNAL_STREAM`` names the device
  and inode of fd 2, which is how systemd says so) and python-systemd is importable: records
  go through ``systemd.journal.JournalHandler`` with ``SYSLOG_IDENTIFIER=edge-daemon`` and
  carry structured fields.
* **journal stream** - stderr is the journal but python-systemd is missing: one
  ``<N>logger: message`` line per line of text, ``<N>`` being the syslog priority prefix
  that journald understands (sd-daemon(3)). No timestamp: journald adds its own.
* **stderr** - anything else (a terminal, a pipe, ``StandardError=file:``): lines such as
  ``2026-11-21 08:10:00 INFO edge_daemon.daemon: message``.

Structured fields
-----------------
Pass them in one dict under the ``edge_fields`` key of ``extra``::

    log.info("top-1 %s %.2f", label, score,
             extra=journal_fields(EDGE_TOP1=label, EDGE_SCORE=f"{score:.2f}", EDGE_FRAME=n))

which is the same as ``extra={"edge_fields": {"EDGE_TOP1": label, ...}}``. Under the journal
output every entry becomes a journal field of that name (value ``str()``-ed, bytes kept),
so ``journalctl -u edge-daemon -o json EDGE_TOP1=macaw`` finds it. Names must be valid
journal field names (``A``-``Z``, ``0``-``9``, ``_``; not starting with a digit or ``_``;
at most 64 characters); others are dropped. Fields never override the entry's own
``MESSAGE``, ``PRIORITY``, ``CODE_*`` etc. The other outputs do not print them.

Why one nested dict rather than plain ``extra`` keys: JournalHandler sends every attribute
of the log record as a field, and journald silently discards names that are not upper-case,
so ``extra={"edge_fields": ...}`` alone would be lost (python-systemd issue #69). The
handler here is given a sender that unpacks ``edge_fields`` and drops the record's
lower-case attributes (``msg``, ``args``, ...) that journald would discard anyway. Keeping
all fields under one key also means they can never collide with a ``LogRecord`` attribute.

``systemd`` is imported only inside :func:`setup_logging`, so this module imports anywhere.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading
from types import ModuleType
from typing import Any, Mapping, Optional

from .errors import ConfigError

EDGE_FIELDS = "edge_fields"
"""The ``extra`` key whose dict holds a record's structured journal fields."""

SYSLOG_IDENTIFIER = "edge-daemon"

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_DATEFMT = "%Y-%m-%d %H:%M:%S"

# Syslog priorities (syslog.h); spelled out because the syslog module is Unix-only.
LOG_ALERT, LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG = 1, 2, 3, 4, 6, 7

# User-supplied journal field names; a leading '_' is reserved for journald's trusted fields.
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

_lock = threading.Lock()
_installed: Optional[logging.Handler] = None


def journal_fields(**fields: object) -> dict[str, dict[str, object]]:
    """``extra=`` for a log call that carries structured journal fields.

    ``log.info("...", extra=journal_fields(EDGE_TOP1="macaw", EDGE_SCORE="0.97"))``
    """
    return {EDGE_FIELDS: dict(fields)}


def journal_priority(levelno: int) -> int:
    """The syslog priority for a logging level, as python-systemd's JournalHandler maps it."""
    if levelno <= logging.DEBUG:
        return LOG_DEBUG
    if levelno <= logging.INFO:
        return LOG_INFO
    if levelno <= logging.WARNING:
        return LOG_WARNING
    if levelno <= logging.ERROR:
        return LOG_ERR
    if levelno <= logging.CRITICAL:
        return LOG_CRIT
    return LOG_ALERT


def stderr_is_journal(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when fd 2 is the journal stream systemd names in ``$JOURNAL_STREAM``.

    The variable is inherited by children whose stderr was redirected, so only a match on
    device and inode of fd 2 counts.
    """
    env = os.environ if environ is None else environ
    dev, sep, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        want = (int(dev), int(ino))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == want


class PriorityPrefixFormatter(logging.Formatter):
    """Formats ``<N>logger: message`` with the ``<N>`` prefix on every line.

    journald applies a prefix to one line only; a traceback's later lines would otherwise
    be logged at the unit's default priority.
    """

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as ``<N>``-prefixed lines."""
        prefix = f"<{journal_priority(record.levelno)}>"
        lines = super().format(record).splitlines() or [""]
        return "\n".join(prefix + line for line in lines)


class JournalStandIn:
    """Fake for ``systemd.journal.send``: records each entry as a dict of fields.

    Patch it over ``systemd.journal.send`` (the journal output looks that up on every
    record) to see exactly the fields the journal would get.
    """

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, message: str, /, **fields: Any) -> None:
        """Record one entry."""
        self.entries.append({"MESSAGE": message, **fields})


class _FieldSender:
    """``sender_function`` for JournalHandler: unpacks ``edge_fields``, keeps valid names."""

    def __init__(self, journal_module: ModuleType) -> None:
        self._journal = journal_module

    # Positional-only: the record's own attributes arrive as keywords and include "message".
    def __call__(self, text: str, /, **fields: Any) -> None:
        out: dict[str, Any] = {}
        extra = fields.pop(EDGE_FIELDS, None)
        if isinstance(extra, Mapping):
            for name, value in extra.items():
                if isinstance(name, str) and _FIELD_NAME.fullmatch(name):
                    out[name] = value if isinstance(value, bytes) else str(value)
        # The handler's and record's own fields win over edge_fields; lower-case record
        # attributes are dropped here rather than by journald.
        out.update((k, v) for k, v in fields.items() if _FIELD_NAME.fullmatch(k))
        # Looked up per record so a test can patch systemd.journal.send.
        self._journal.send(text, **out)


def _parse_level(level: str) -> int:
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ConfigError(
            f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        )
    return value


def _journal_handler() -> Optional[logging.Handler]:
    """A JournalHandler sending structured fields, or None without python-systemd."""
    try:
        module = importlib.import_module("systemd.journal")
        handler: logging.Handler = module.JournalHandler(
            sender_function=_FieldSender(module), SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER
        )
    except (ImportError, AttributeError, TypeError):
        # Missing, or a python-systemd too old for sender_function.
        return None
    # journald stores the timestamp, priority and logger (LOGGER=) itself.
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _make_handler(environ: Mapping[str, str]) -> logging.Handler:
    if stderr_is_journal(environ):
        handler = _journal_handler()
        if handler is not None:
            return handler
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(PriorityPrefixFormatter())
        return stream
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(PLAIN_FORMAT, PLAIN_DATEFMT))
    return stream


def setup_logging(
    level: str = "INFO", debug: bool = False, environ: Optional[Mapping[str, str]] = None
) -> None:
    """Configure the root logger for this environment (see the module docstring).

    ``debug=True`` means level DEBUG whatever ``level`` says. Calling it again (say after
    a reload) replaces the handler it installed before, never adding a second one, and
    leaves handlers installed by others alone. Raises :class:`ConfigError` for an unknown
    level name.
    """
    global _installed
    levelno = logging.DEBUG if debug else _parse_level(level)
    handler = _make_handler(os.environ if environ is None else environ)
    root = logging.getLogger()
    with _lock:
        if _installed is not None:
            root.removeHandler(_installed)
            _installed.close()
        root.addHandler(handler)
        root.setLevel(levelno)
        _installed = handler
