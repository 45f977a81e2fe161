"""Logging setup: which output per environment, priority prefixes, journal fields."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from edge_daemon import journal
from edge_daemon.errors import ConfigError
from edge_daemon.journal import (
    JournalStandIn,
    PriorityPrefixFormatter,
    journal_fields,
    journal_priority,
    setup_logging,
    stderr_is_journal,
)

LOGGER = "edge_daemon.test"


@pytest.fixture(autouse=True)
def root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """Give each test the root logger back as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(journal, "_installed", None)
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def journal_env() -> dict[str, str]:
    """The environment systemd gives a unit whose stderr is the journal."""
    st = os.fstat(2)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": "0" * 32}


def without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes `import systemd.journal` raise ImportError.
    monkeypatch.setitem(sys.modules, "systemd.journal", None)


def added_handlers(root: logging.Logger, before: list[logging.Handler]) -> list[logging.Handler]:
    return [h for h in root.handlers if h not in before]


# -- is stderr the journal? -----------------------------------------------------------------


def test_stderr_is_journal_when_stream_matches_fd2() -> None:
    assert stderr_is_journal(journal_env())


@pytest.mark.parametrize("value", ["", "123", "a:b", "1:", ":1", "1:2:3"])
def test_stderr_is_not_journal_for_malformed_stream(value: str) -> None:
    assert not stderr_is_journal({"JOURNAL_STREAM": value})


def test_stderr_is_not_journal_when_inode_differs() -> None:
    # Inherited by a child whose stderr was redirected elsewhere.
    st = os.fstat(2)
    assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})


def test_invocation_id_alone_is_not_the_journal() -> None:
    # e.g. StandardError=file:...: systemd runs us but stderr is a file.
    assert not stderr_is_journal({"INVOCATION_ID": "0" * 32})


def test_stderr_is_journal_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_env()["JOURNAL_STREAM"])
    assert stderr_is_journal()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not stderr_is_journal()


# -- plain stderr ---------------------------------------------------------------------------


def test_plain_stderr_has_timestamp_level_and_logger(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    before = list(root_logger.handlers)
    setup_logging("INFO", environ={})
    (handler,) = added_handlers(root_logger, before)
    assert type(handler) is logging.StreamHandler

    log = logging.getLogger(LOGGER)
    log.info("classified %s", "macaw", extra=journal_fields(EDGE_TOP1="toucan"))
    log.debug("hidden at INFO")
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO edge_daemon\.test: classified macaw\n", err
    ), err
    # Structured fields are for the journal only.
    assert "toucan" not in err


def test_debug_flag_overrides_level(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("ERROR", debug=True, environ={})
    assert root_logger.level == logging.DEBUG
    logging.getLogger(LOGGER).debug("visible")
    assert "DEBUG edge_daemon.test: visible" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "level"), [("warning", logging.WARNING), (" Debug ", 10)])
def test_level_names_are_case_insensitive(
    root_logger: logging.Logger, name: str, level: int
) -> None:
    setup_logging(name, environ={})
    assert root_logger.level == level


@pytest.mark.parametrize("name", ["LOUD", "", "10"])
def test_unknown_level_is_a_config_error(root_logger: logging.Logger, name: str) -> None:
    before = list(root_logger.handlers)
    with pytest.raises(ConfigError, match="log level"):
        setup_logging(name, environ={})
    assert added_handlers(root_logger, before) == []


def test_setup_is_idempotent_and_keeps_foreign_handlers(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = logging.NullHandler()
    root_logger.addHandler(foreign)
    before = list(root_logger.handlers)
    setup_logging("INFO", environ={})
    setup_logging("INFO", environ={})
    setup_logging("WARNING", environ={})
    assert len(added_handlers(root_logger, before)) == 1
    assert foreign in root_logger.handlers
    assert root_logger.level == logging.WARNING
    logging.getLogger(LOGGER).warning("once")
    assert capsys.readouterr().err.count("once") == 1


# -- journal stream without python-systemd --------------------------------------------------


def test_journal_stream_without_systemd_writes_priority_prefixes(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_systemd(monkeypatch)
    before = list(root_logger.handlers)
    setup_logging("DEBUG", environ=journal_env())
    (handler,) = added_handlers(root_logger, before)
    assert isinstance(handler.formatter, PriorityPrefixFormatter)

    log = logging.getLogger(LOGGER)
    log.debug("d")
    log.info("i", extra=journal_fields(EDGE_TOP1="toucan"))
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert capsys.readouterr().err.splitlines() == [
        "<7>edge_daemon.test: d",
        "<6>edge_daemon.test: i",
        "<4>edge_daemon.test: w",
        "<3>edge_daemon.test: e",
        "<2>edge_daemon.test: c",
    ]


def test_journal_stream_prefixes_every_traceback_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_systemd(monkeypatch)
    setup_logging("INFO", environ=journal_env())
    try:
        raise RuntimeError("camera gone")
    except RuntimeError:
        logging.getLogger(LOGGER).exception("frame failed\nsecond line")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "<3>edge_daemon.test: frame failed"
    assert lines[1] == "<3>second line"
    assert lines[-1] == "<3>RuntimeError: camera gone"
    assert all(line.startswith("<3>") for line in lines)


def test_too_old_systemd_python_falls_back_to_prefixes(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd_journal = pytest.importorskip("systemd.journal")

    class OldJournalHandler(logging.Handler):
        def __init__(self, **fields: Any) -> None:
            if "sender_function" in fields:
                raise TypeError("unexpected keyword argument 'sender_function'")
            super().__init__()

    monkeypatch.setattr(systemd_journal, "JournalHandler", OldJournalHandler)
    before = list(root_logger.handlers)
    setup_logging(environ=journal_env())
    (handler,) = added_handlers(root_logger, before)
    assert isinstance(handler.formatter, PriorityPrefixFormatter)


@pytest.mark.parametrize(
    ("levelno", "priority"),
    [(1, 7), (10, 7), (15, 6), (20, 6), (25, 4), (30, 4), (40, 3), (50, 2), (60, 1)],
)
def test_priority_mapping(levelno: int, priority: int) -> None:
    assert journal_priority(levelno) == priority


# -- JournalHandler with structured fields --------------------------------------------------


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> JournalStandIn:
    systemd_journal = pytest.importorskip("systemd.journal")
    fake = JournalStandIn()
    monkeypatch.setattr(systemd_journal, "send", fake)
    return fake


def test_journal_uses_journal_handler(root_logger: logging.Logger) -> None:
    systemd_journal = pytest.importorskip("systemd.journal")
    before = list(root_logger.handlers)
    setup_logging(environ=journal_env())
    (handler,) = added_handlers(root_logger, before)
    assert isinstance(handler, systemd_journal.JournalHandler)


def test_edge_fields_arrive_as_journal_fields(
    stand_in: JournalStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(environ=journal_env())
    logging.getLogger(LOGGER).info(
        "top-1 %s",
        "macaw",
        extra=journal_fields(EDGE_TOP1="macaw", EDGE_SCORE=0.97, EDGE_FRAME=42, EDGE_MODEL="m"),
    )
    (entry,) = stand_in.entries
    assert entry["MESSAGE"] == "top-1 macaw"  # no timestamp or level in the text
    assert entry["EDGE_TOP1"] == "macaw"
    assert entry["EDGE_SCORE"] == "0.97"
    assert entry["EDGE_FRAME"] == "42"
    assert entry["EDGE_MODEL"] == "m"
    assert entry["SYSLOG_IDENTIFIER"] == "edge-daemon"
    assert entry["PRIORITY"] == "6"
    assert entry["LOGGER"] == LOGGER
    assert "edge_fields" not in entry
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", k) for k in entry), sorted(entry)
    assert capsys.readouterr().err == ""


def test_plain_extra_dict_works_too(stand_in: JournalStandIn) -> None:
    setup_logging(environ=journal_env())
    logging.getLogger(LOGGER).warning("w", extra={"edge_fields": {"EDGE_TOP1": "kea"}})
    (entry,) = stand_in.entries
    assert entry["EDGE_TOP1"] == "kea"
    assert entry["PRIORITY"] == "4"


def test_invalid_or_reserved_field_names_are_dropped(stand_in: JournalStandIn) -> None:
    setup_logging(environ=journal_env())
    fields = {"lower": "a", "_TRUSTED": "b", "1ST": "c", "X" * 65: "d", "PRIORITY": "0"}
    logging.getLogger(LOGGER).error("e", extra=journal_fields(EDGE_OK="yes", **fields))
    (entry,) = stand_in.entries
    assert entry["EDGE_OK"] == "yes"
    assert entry["PRIORITY"] == "3"  # the record's own priority wins
    for name in ("lower", "_TRUSTED", "1ST", "X" * 65):
        assert name not in entry


def test_exception_text_reaches_journal(stand_in: JournalStandIn) -> None:
    setup_logging(environ=journal_env())
    try:
        raise OSError("no camera")
    except OSError:
        logging.getLogger(LOGGER).exception("open failed")
    (entry,) = stand_in.entries
    assert entry["MESSAGE"].startswith("open failed\nTraceback")
    assert "OSError: no camera" in entry["EXCEPTION_TEXT"]


def test_real_journal_send_gets_edge_fields(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One level lower than the stand-in: python-systemd's own send() builds the lines.
    systemd_journal = pytest.importorskip("systemd.journal")
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(systemd_journal, "sendv", lambda *lines: sent.append(lines))
    setup_logging(environ=journal_env())
    logging.getLogger(LOGGER).info("hi", extra=journal_fields(EDGE_TOP1="macaw"))
    (lines,) = sent
    assert "MESSAGE=hi" in lines
    assert "EDGE_TOP1=macaw" in lines
    assert "SYSLOG_IDENTIFIER=edge-daemon" in lines
    assert not [line for line in lines if not re.match(r"[A-Z][A-Z0-9_]*=", line)], lines
    assert capsys.readouterr().err == ""


def test_stand_in_records_what_it_is_given() -> None:
    fake = JournalStandIn()
    fake("m", PRIORITY="6", EDGE_TOP1="macaw")
    assert fake.entries == [{"MESSAGE": "m", "PRIORITY": "6", "EDGE_TOP1": "macaw"}]
