"""The output seam: every sink gets every frame and the status; a failing one degrades."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from edge_daemon import outputs as sink_registry
from edge_daemon.config import Config
from edge_daemon.daemon import Daemon
from edge_daemon.errors import EdgeDaemonError
from edge_daemon.outputs import SINKS, SinkKind
from edge_daemon.sinks.base import QueueWorker, SinkContext
from edge_daemon.sinks.memory import MemorySink
from edge_daemon.sinks.prediction_log import PredictionLogSink
from edge_daemon.sinks.status_file import StatusFileSink
from tests.fakes import ScriptedSource
from tests.test_reliability_faults import Background, make_daemon, status_of, wait_until

__all__ = ["make_daemon"]  # a fixture, used by name below


@pytest.fixture
def memory_sinks(monkeypatch: pytest.MonkeyPatch) -> list[MemorySink]:
    """Register a "memory" sink kind; every MemorySink the daemon builds lands in the list."""
    built: list[MemorySink] = []

    def make(cfg: Config, ctx: SinkContext) -> MemorySink:
        sink = MemorySink(ctx)
        built.append(sink)
        return sink

    monkeypatch.setitem(SINKS, "memory", SinkKind(lambda c: c.model.top_k, make))
    return built


def test_every_frame_reaches_every_sink_with_the_camera_image(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    memory_sinks: list[MemorySink],
) -> None:
    daemon, cfg, _ = make_daemon(ScriptedSource(), max_frames=12)
    assert daemon.run() == 0
    (sink,) = memory_sinks
    assert [item.number for item in sink.items] == list(range(1, 13))
    first = sink.items[0]
    assert first.image.ndim == 3 and first.image.shape[2] == 3
    assert (first.image.shape[1], first.image.shape[0]) != (sink.models[0].width,) * 2
    assert first.predictions and first.top1 is first.smoothed[0]
    assert sink.models[0].name == Path(cfg.model.path).name
    assert sink.statuses[-1]["state"] == "stopped"
    assert sink.closed
    # The ready status and the last one are urgent; files are written before going on.
    assert sink.urgent >= 2
    # The status names every output and its health.
    outputs = status_of(Path(cfg.outputs.status_file or ""))["outputs"]
    assert outputs == {
        "prediction_log": {"state": "ok", "last_error": None},
        "status_file": {"state": "ok", "last_error": None},
        "memory": {"state": "ok", "last_error": None},
    }


def test_a_failing_sink_degrades_the_daemon_once_and_it_recovers_by_itself(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    memory_sinks: list[MemorySink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    daemon, cfg, _ = make_daemon(ScriptedSource())
    status_path = Path(cfg.outputs.status_file or "")
    reason = "mqtt://127.0.0.1:1: connection refused; is the broker running?"
    with Background(daemon) as bg:
        wait_until(lambda: memory_sinks and memory_sinks[0].count >= 3, "frames", alive=bg.alive)
        sink = memory_sinks[0]
        sink.fail(reason)
        degraded = wait_until(
            lambda: (s := status_of(status_path)).get("state") == "degraded" and s,
            "degraded",
            alive=bg.alive,
        )
        assert degraded["reason"] == reason
        assert degraded["outputs"]["memory"] == {"state": "failing", "last_error": reason}
        # Classification goes on while the output fails.
        wait_until(lambda: sink.count > degraded["frames"] + 20, "frames", alive=bg.alive)
        sink.recover()
        back = wait_until(
            lambda: (s := status_of(status_path)).get("state") == "running" and s,
            "running again",
            alive=bg.alive,
        )
        assert back["outputs"]["memory"]["state"] == "ok"
        assert back["last_error"] == reason
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and reason in r.message]
    assert len(errors) == 1, "one error for the outage, not one per poll"
    assert any(r.getMessage() == "memory output working again" for r in caplog.records)


def test_reload_rebuilds_only_the_sinks_whose_config_changed(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    memory_sinks: list[MemorySink],
    tmp_path: Path,
) -> None:
    daemon, cfg, config_path = make_daemon(ScriptedSource())
    status_path = Path(cfg.outputs.status_file or "")
    with Background(daemon) as bg:
        wait_until(lambda: status_of(status_path).get("frames", 0) >= 3, "frames", alive=bg.alive)
        before = dict(daemon.sinks)
        new_log = tmp_path / "elsewhere" / "predictions.jsonl"
        text = config_path.read_text().replace(str(cfg.outputs.prediction_log), str(new_log))
        config_path.write_text(text)
        daemon.request_reload()
        wait_until(lambda: daemon.reloads == 1, "the reload", alive=bg.alive)
        wait_until(lambda: new_log.exists() and new_log.stat().st_size > 0, "the new log")
        after = dict(daemon.sinks)
    assert after["prediction_log"] is not before["prediction_log"]
    assert after["status_file"] is before["status_file"]
    assert after["memory"] is before["memory"] and len(memory_sinks) == 1
    # A sink that stays is told about the reloaded model.
    assert len(memory_sinks[0].models) == 2


def test_a_sink_that_cannot_be_built_fails_the_reload_and_the_old_ones_stay(
    make_daemon: Callable[..., tuple[Daemon, Config, Path]],
    memory_sinks: list[MemorySink],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon, cfg, config_path = make_daemon(ScriptedSource())
    status_path = Path(cfg.outputs.status_file or "")
    with Background(daemon) as bg:
        wait_until(lambda: status_of(status_path).get("frames", 0) >= 3, "frames", alive=bg.alive)

        def refuse(cfg: Config, ctx: SinkContext) -> Optional[MemorySink]:
            raise EdgeDaemonError("memory: cannot start; install the extra")

        monkeypatch.setitem(SINKS, "memory", SinkKind(lambda c: c.model.top_k, refuse))
        config_path.write_text(config_path.read_text().replace("top_k: 3", "top_k: 4"))
        kept = dict(daemon.sinks)
        daemon.request_reload()
        failed = wait_until(
            lambda: (
                "reload failed" in (status_of(status_path).get("last_error") or "")
                and status_of(status_path)
            ),
            "the failed reload",
            alive=bg.alive,
        )
        assert failed["last_error"].endswith("memory: cannot start; install the extra")
        assert daemon.sinks == kept and not memory_sinks[0].closed
        count = memory_sinks[0].count
        wait_until(lambda: memory_sinks[0].count > count + 5, "frames after", alive=bg.alive)
    assert daemon.reloads == 0


def test_the_registry_builds_the_file_sinks_the_config_turns_on(
    write_config: Callable[..., Path],
) -> None:
    from edge_daemon.config import load_config

    on = sink_registry.make_sinks(load_config(write_config()), SinkContext())
    assert isinstance(on["prediction_log"], PredictionLogSink)
    assert isinstance(on["status_file"], StatusFileSink)
    for sink in on.values():
        sink.close()
    off = load_config(
        write_config(overrides={"outputs": {"prediction_log": None, "status_file": None}})
    )
    assert sink_registry.make_sinks(off, SinkContext()) == {}


def test_queue_worker_never_blocks_and_drops_the_oldest_when_full() -> None:
    gate = threading.Event()
    done: list[Any] = []
    worker = QueueWorker("test", limit=3)
    worker.put(gate.wait)  # occupies the thread until released
    wait_until(lambda: worker.pending() == 0, "the first job started")
    for n in range(6):
        worker.put(lambda n=n: done.append(n))
    assert worker.dropped == 3
    gate.set()
    worker.close()
    assert done == [3, 4, 5]
