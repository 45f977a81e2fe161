"""The one exception family. Every message says what is wrong and what to do."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's text, else its type name.

    Libraries put the useful part first (TFLite: "Encountered unresolved
    custom op: ..." followed by a node dump), and an error here is one line.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class EdgeDaemonError(Exception):
    """Base of every error edge-daemon reports to a user as one line."""

    exit_code = 1


class ConfigError(EdgeDaemonError):
    """A config file, key or value is wrong: the message names file, line and key path."""

    exit_code = 2


class ModelError(EdgeDaemonError):
    """A model or labels file cannot be used: the message names the file."""

    exit_code = 3


class RuntimeNotFoundError(EdgeDaemonError):
    """No TFLite runtime can be imported: the message names the extras to install."""

    exit_code = 4


class DelegateError(EdgeDaemonError):
    """A delegate could not be loaded or run the model (it is then skipped)."""

    exit_code = 3


class SourceError(EdgeDaemonError):
    """A frame source failed to open or deliver a frame."""

    exit_code = 5


class SourceTimeout(SourceError):
    """A frame source produced no frame within its timeout."""


class SourceBusy(SourceError):
    """The camera is held by another process (retried: it may be released)."""


class PermanentSourceError(SourceError):
    """A source fault no retry can fix (an unreadable format, a camera that does not exist).

    The message says what to change. The capture thread reports it once and
    tries again only every ``source.retry_max`` seconds (the config or the
    hardware may have been changed meanwhile), never with the fast back-off.
    """


class OutputError(EdgeDaemonError):
    """A status file or prediction log could not be written."""

    exit_code = 6


class EventsError(EdgeDaemonError):
    """The events database cannot be used (the daemon then runs without keeping events)."""

    exit_code = 7


class TeachError(EdgeDaemonError):
    """Teaching cannot go on: a bad sample, too few samples, no embedding in the model."""

    exit_code = 8
