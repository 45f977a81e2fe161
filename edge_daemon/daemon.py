"""The daemon's lifecycle: the frame loop, signals, reload, systemd notification.

This is the only module that knows about signals and systemd. Data flows one
way: capture thread -> Classifier (preprocess, engine, postprocess) -> sinks.
The loop hands each result to the sinks the config turns on (see
``edge_daemon.sinks``) and knows none of them by name; it polls their health
and turns ``degraded`` while one is failing.

Signals only set flags; the loop acts on them between frames:
SIGTERM/SIGINT stop cleanly (exit 0), SIGHUP reloads the config and model.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import math
import os
import signal
import threading
import time
from typing import Any, Optional

from . import notify
from .capture import CaptureThread
from .config import Config, load_config, region_pixels_error
from .engine.model import LoadedModel
from .engine.runtimes import load_runtime
from .errors import ConfigError, EdgeDaemonError
from .events.engine import rules_for, tracker_for
from .events.rules import Tracker
from .gate import ChangeGate
from .journal import journal_fields
from .outputs import SINKS
from .pipeline import Classifier, Result
from .sinks.base import Classified, EventNotice, ModelInfo, Sink, SinkContext, Skipped
from .sinks.prediction_log import iso_utc
from .sources import make_source
from .sources.base import Frame
from .teach.active import load_running_model

log = logging.getLogger(__name__)

# How long the loop waits for a frame before it looks at flags and timers.
_TICK = 0.1


def source_size(cfg: Config, width: int, height: int) -> tuple[int, int]:
    """The frame size to ask a camera for, given the model's input size.

    A camera's ISP scales frames to this size, so for ``resize: crop`` it must
    keep the main stream's aspect ratio (covering the model's size) for the
    centre crop to have anything to cut; for ``stretch`` it is the model size.

    With ``preprocess.region`` the region, not the whole frame, must cover the
    model's size once cropped, so the frame is asked for larger, up to the
    configured ``source.width`` x ``source.height``.
    """
    if cfg.source.kind == "files":
        return width, height
    sw, sh = cfg.source.width, cfg.source.height
    region = cfg.preprocess.region
    rw, rh = (region.width, region.height) if region is not None else (1.0, 1.0)
    if cfg.preprocess.resize != "crop":
        if region is None:
            return width, height
        return min(sw, max(width, math.ceil(width / rw))), min(
            sh, max(height, math.ceil(height / rh))
        )
    scale = min(1.0, max(width / (sw * rw), height / (sh * rh)))
    return max(width, round(sw * scale)), max(height, round(sh * scale))


def _capture(cfg: Config, model: LoadedModel) -> CaptureThread:
    """A capture thread (not started) over the source ``cfg`` names.

    A files source is opened here: a folder that does not exist is a mistake
    in the config, reported at once (and a reload naming it is refused). A
    camera is opened by the thread, which retries with back-off: at boot it
    may still be busy or not yet enumerated.
    """
    size = source_size(cfg, model.input.width, model.input.height)
    source = make_source(cfg, size)
    live = cfg.source.kind != "files"
    if not live:
        source.open()
    return CaptureThread(
        source,
        live=live,
        retry_initial=cfg.source.retry_initial,
        retry_max=cfg.source.retry_max,
        opened=not live,
    )


def release_freed_memory() -> None:
    """Hand the heap freed by a replaced interpreter back to the system (glibc only).

    A reload builds the new interpreter before the old one is closed; glibc keeps
    the old one's pages in its arenas, so without this each reload leaves the
    resident size a few MB higher than it needs to be until a later allocation
    happens to reuse them. On a 512 MB Pi that is memory other services lack.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, macOS: nothing to trim
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def signal_reload(pid: int) -> None:
    """Ask the daemon running as ``pid`` to reload (SIGHUP, as ``systemctl reload`` does)."""
    os.kill(pid, signal.SIGHUP)


class _Latency:
    """Per-stage latency, smoothed (exponential moving average over ~20 frames)."""

    STAGES = ("capture", "preprocess", "inference", "postprocess")

    def __init__(self) -> None:
        self.values: dict[str, Optional[float]] = dict.fromkeys(self.STAGES)

    def add(self, **ms: float) -> None:
        for k, v in ms.items():
            old = self.values[k]
            self.values[k] = v if old is None else old + 0.05 * (v - old)

    def as_dict(self) -> dict[str, Optional[float]]:
        out = {k: (round(v, 3) if v is not None else None) for k, v in self.values.items()}
        known = [v for v in self.values.values() if v is not None]
        out["total"] = round(sum(known), 3) if known else None
        return out


def model_info(model: LoadedModel) -> ModelInfo:
    """What sinks are told about a loaded model."""
    return ModelInfo(
        name=model.name,
        path=model.path,
        sha256=model.sha256,
        runtime=model.engine.runtime,
        delegate=model.engine.delegate,
        labels=model.labels.labels,
        label=model.labels.label,
        width=model.input.width,
        height=model.input.height,
    )


def _source_inputs(cfg: Config) -> tuple[Any, ...]:
    """What a source is built from: a camera also crops the region and gives the gate's luma."""
    if cfg.source.kind == "files":
        return (cfg.source,)
    return (cfg.source, cfg.preprocess.region, cfg.gate.mode)


def _region_dict(cfg: Config) -> Optional[dict[str, float]]:
    region = cfg.preprocess.region
    return dataclasses.asdict(region) if region is not None else None


class Daemon:
    """Runs the classification loop until stopped."""

    def __init__(
        self,
        cfg: Config,
        *,
        config_path: Optional[str] = None,
        notifier: Optional[notify.Notifier] = None,
        max_frames: Optional[int] = None,
        environ: Optional[dict[str, str]] = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or notify.make_notifier(environ)
        self.max_frames = max_frames
        interval = notify.watchdog_interval(environ)
        self.gate = notify.WatchdogGate(interval, cfg.source.stall_timeout) if interval else None
        self.pid = os.getpid()
        self.started = time.time()
        self.state = "starting"
        self.reason: Optional[str] = None
        self.last_error: Optional[str] = None
        self.last_error_at: Optional[str] = None
        self.frames = 0
        self.latency = _Latency()
        self.last_result: Optional[Result] = None
        self.model: Optional[LoadedModel] = None
        self.classifier: Optional[Classifier] = None
        self.capture: Optional[CaptureThread] = None
        self.sinks: dict[str, Sink] = {}
        self.tracker: Optional[Tracker] = None
        self.change_gate = ChangeGate(cfg.gate)
        self._frame_size: Optional[tuple[int, int]] = None  # (width, height) of the last frame
        self._roi_seen = False  # the source crops the region itself (Frame.roi)
        self._notices: tuple[EventNotice, ...] = ()  # events ended by a reload, not yet sent
        self._sink_list: tuple[Sink, ...] = ()
        self.sink_context = SinkContext(request_reload=self.request_reload)
        self.reloads = 0
        self._stop_requested = False
        self._reload_requested = False
        self._ready = False
        self._fps = 0.0
        self._fps_mark = (time.monotonic(), 0)
        self._last_progress = time.monotonic()
        self._next_status = 0.0
        self._next_info = 0.0
        self._stalled_logged = False
        self._output_errors: dict[str, str] = {}

    # -- signals -------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        """Stop after the current frame (SIGTERM, SIGINT)."""
        self._stop_requested = True

    def request_reload(self, *_: Any) -> None:
        """Reload config and model before the next frame (SIGHUP)."""
        self._reload_requested = True

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        previous: dict[int, Any] = {}
        for sig, handler in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload),
        ):
            previous[sig] = signal.signal(sig, handler)
        return previous

    # -- errors --------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = iso_utc(time.time())

    def _output_failed(self, which: str, message: str) -> None:
        if self._output_errors.get(which) != message:
            log.error("%s; classification goes on", message)
            self._error(message)
        self._output_errors[which] = message

    def _output_ok(self, which: str, recovered: str) -> None:
        if which in self._output_errors:
            del self._output_errors[which]
            log.info("%s", recovered)

    def _poll_sinks(self) -> None:
        """Note each sink's health: a failing one degrades the daemon until it recovers."""
        for name, sink in self.sinks.items():
            health = sink.health()
            if health.state == "failing":
                self._output_failed(name, health.error or f"{name}: failing")
            else:
                self._output_ok(name, sink.recovered)

    # -- start, loop, stop ---------------------------------------------------
    def _open_outputs(self, cfg: Config, old: Optional[Config] = None) -> None:
        """Build the sinks ``cfg`` turns on; with ``old``, only those whose part changed.

        New sinks are built before any old one is closed: when one cannot be
        built, the error propagates and the running sinks stay as they were.
        """
        changed = [
            kind
            for kind, spec in SINKS.items()
            if old is None or spec.section(old) != spec.section(cfg)
        ]
        fresh: dict[str, Optional[Sink]] = {}
        try:
            for kind in changed:
                fresh[kind] = SINKS[kind].make(cfg, self.sink_context)
        except BaseException:
            for sink in fresh.values():
                if sink is not None:
                    sink.close()
            raise
        sinks = dict(self.sinks)
        for kind, sink in fresh.items():
            gone = sinks.pop(kind, None)
            if gone is not None:
                gone.close()
                self._output_errors.pop(kind, None)
            if sink is not None:
                sinks[kind] = sink
                if self.model is not None:
                    sink.model(model_info(self.model))
        self.sinks = {kind: sinks[kind] for kind in SINKS if kind in sinks}
        self._sink_list = tuple(self.sinks.values())

    def run(self) -> int:
        """Run until stopped, the source ends, or max_frames. Returns the exit code (0)."""
        previous = self._install_signals()
        try:
            try:
                self._open_outputs(self.cfg)
                self._write_status(force=True)
                self._start()
            except EdgeDaemonError as exc:
                self.state = "failed"
                self._error(str(exc))
                raise
            self._loop()
            return 0
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self) -> None:
        runtime = load_runtime(self.cfg.engine.runtime)
        # The taught model when teach.use and one is trained; a broken one falls back.
        model, note = load_running_model(self.cfg, runtime, fallback=True)
        if note:
            self._error(note)  # logged once by load_running_model; the status shows it
        try:
            rules = rules_for(self.cfg, model.labels)  # unknown labels: ConfigError
        except EdgeDaemonError:
            model.close()
            raise
        self.tracker, _ = tracker_for(None, rules, self.cfg, model.name, model.sha256)
        self._use_model(model, self.cfg)
        self._announce_model()
        self.capture = _capture(self.cfg, model)
        log.info("reading frames from %s", self.capture.source.describe())
        self.capture.start()
        self.state = "running"
        self._last_progress = time.monotonic()
        self._fps_mark = (self._last_progress, 0)  # frames per second of classifying, not loading

    def _use_model(self, model: LoadedModel, cfg: Config) -> None:
        self.model, self.cfg = model, cfg
        self.classifier = Classifier.from_config(model, cfg)
        info = model_info(model)
        for sink in self._sink_list:
            sink.model(info)

    def _announce_model(self) -> None:
        m = self.model
        assert m is not None
        log.info(
            "model %s (%dx%d %s) on %s with delegate %s, labels from %s",
            m.name,
            m.input.width,
            m.input.height,
            m.input.dtype.name,
            m.engine.runtime,
            m.engine.delegate,
            m.labels.source,
            extra=journal_fields(EDGE_MODEL=m.name, EDGE_DELEGATE=m.engine.delegate),
        )

    def _loop(self) -> None:
        assert self.capture is not None
        while not self._stop_requested:
            if self._reload_requested:
                self._reload()
                continue
            frame = self.capture.take(_TICK)
            if frame is not None:
                self._process(frame)
                if self.max_frames is not None and self.frames >= self.max_frames:
                    log.info("stopping after %d frames (--max-frames)", self.frames)
                    break
            elif self.capture.exhausted:
                log.info("%s: no more frames; stopping", self.capture.source.describe())
                break
            self._housekeeping(time.monotonic())

    def _process(self, frame: Frame) -> None:
        assert self.classifier is not None
        now = time.monotonic()
        self._last_progress = now  # the source delivers: progress, classified or not
        self._check_frame_size(frame)
        tracker = self.tracker
        if not self.change_gate.check(
            frame, self.cfg.preprocess.region, now, tracker is not None and tracker.any_open()
        ):
            skipped = Skipped(frame.name, frame.captured_at, frame.image)
            for sink in self._sink_list:
                sink.skipped(skipped)  # the live view only: no result, no report
            return
        result = self.classifier.classify(frame.image, frame.roi)
        self.frames += 1
        self.last_result = result
        self.latency.add(
            capture=frame.capture_ms,
            preprocess=result.preprocess_ms,
            inference=result.inference_ms,
            postprocess=result.postprocess_ms,
        )
        predictions = result.predictions
        smoothed = result.smoothed if result.smoothed is not None else predictions
        events: tuple[EventNotice, ...] = ()
        if self.tracker is not None:
            events = self.tracker.update(smoothed[0] if smoothed else None, frame.captured_at)
        if self._notices:
            events, self._notices = self._notices + events, ()
        item = Classified(
            self.frames,
            frame.name,
            frame.captured_at,
            frame.image,
            predictions,
            smoothed,
            result.inference_ms,
            events,
            result.embedding,
        )
        for sink in self._sink_list:
            sink.classified(item)
        if not self._ready:
            # Ready means ready: the status already shows this first prediction
            # (state running, frames >= 1) when systemd hears READY=1.
            self._ready = True
            self._write_status(force=True)
            notify.ready(self.notifier, self._status_line())
            log.info("ready: first frame classified (%s)", self._status_line())

    def _check_frame_size(self, frame: Frame) -> None:
        """The first frame tells the frame size: a region too small for it stops the start."""
        size = (frame.image.shape[1], frame.image.shape[0])
        self._roi_seen = frame.roi is not None
        if size == self._frame_size:
            return
        first, self._frame_size = self._frame_size is None and not self._ready, size
        problem = region_pixels_error(self.cfg.preprocess.region, *size)
        if first and problem is not None and frame.roi is None:
            message = f"{self.config_path or '<config>'}: {problem}"
            self.state = "failed"
            self._error(message)
            raise ConfigError(message)

    def _housekeeping(self, now: float) -> None:
        self._update_state(now)
        if (
            self.gate is not None
            and self._ready
            and self.gate.should_ping(now, self._last_progress)
        ):
            notify.watchdog(self.notifier)
        if now >= self._next_status:
            self._next_status = now + self.cfg.outputs.status_interval
            mark_t, mark_n = self._fps_mark
            if now > mark_t:
                self._fps = (self.frames - mark_n) / (now - mark_t)
            self._fps_mark = (now, self.frames)
            self._poll_sinks()
            self._write_status()
            if self._ready:
                notify.status(self.notifier, self._status_line())
        if now >= self._next_info:
            if self._next_info:
                self._log_summary()
            self._next_info = now + self.cfg.outputs.log_interval

    def _update_state(self, now: float) -> None:
        if self.state not in ("running", "degraded"):
            return
        reason = self.capture.fault if self.capture is not None else None
        idle = now - self._last_progress
        if reason is None and idle > self.cfg.source.stall_timeout:
            what = self.capture.source.describe() if self.capture else "the source"
            reason = f"no frame for {idle:.0f} s from {what}"
            if not self._stalled_logged:
                self._stalled_logged = True
                log.error(
                    "%s; the source may be hung. The systemd watchdog is no longer fed,"
                    " so systemd restarts the service if it is enabled",
                    reason,
                )
        elif idle <= self.cfg.source.stall_timeout:
            self._stalled_logged = False
        if reason is None and self._output_errors:
            reason = next(iter(self._output_errors.values()))
        if reason is not None:
            if self.state != "degraded":
                log.warning("degraded: %s", reason)
            self.state, self.reason = "degraded", reason
            if self.capture is not None and self.capture.fault:
                self._error(self.capture.fault)
        elif self.state == "degraded":
            log.info("running again")
            self.state, self.reason = "running", None

    def _status_line(self) -> str:
        top = self.last_result.top1 if self.last_result else None
        top_text = f"{top.label.split(',')[0]} {top.score:.2f}" if top else "none"
        delegate = self.model.engine.delegate if self.model else "none"
        gate = f", gate {self.change_gate.state}" if self.change_gate.on else ""
        return f"{self._fps:.1f} fps, top-1 {top_text}, delegate {delegate}{gate}"

    def _log_summary(self) -> None:
        top = self.last_result.top1 if self.last_result else None
        m = self.model
        inference = self.latency.values["inference"]
        g = self.change_gate
        log.info(
            "%s: %.1f fps, top-1 %s (%.2f), inference %.1f ms, %d frames%s",
            self.state,
            self._fps,
            top.label if top else "-",
            top.score if top else 0.0,
            inference or 0.0,
            self.frames,
            f" (gate {g.state}: {g.seen} seen)" if g.on else "",
            extra=journal_fields(
                EDGE_TOP1=top.label if top else "",
                EDGE_SCORE=f"{top.score:.4f}" if top else "",
                EDGE_FRAME=self.frames,
                EDGE_MODEL=m.name if m else "",
                EDGE_DELEGATE=m.engine.delegate if m else "",
                EDGE_FPS=f"{self._fps:.1f}",
                EDGE_STATE=self.state,
            ),
        )

    def status(self) -> dict[str, Any]:
        """The status object (what the status file holds)."""
        m = self.model
        return {
            "state": self.state,
            "reason": self.reason,
            "pid": self.pid,
            "started": iso_utc(self.started),
            "updated": iso_utc(time.time()),
            "config": self.config_path,
            "model": m.path if m else self.cfg.model.path,
            "model_sha256": m.sha256 if m else None,
            "labels": m.labels.source if m else self.cfg.model.labels,
            "input": (
                {"width": m.input.width, "height": m.input.height, "dtype": m.input.dtype.name}
                if m
                else None
            ),
            "runtime": m.engine.runtime if m else None,
            "delegate": m.engine.delegate if m else None,
            "source": self.capture.source.describe() if self.capture else None,
            "frames": self.frames,
            "frames_seen": self.change_gate.seen,
            "fps": round(self._fps, 2),
            "latency_ms": self.latency.as_dict(),
            "predictions": (
                [p.as_dict() for p in self.last_result.predictions] if self.last_result else []
            ),
            "reloads": self.reloads,
            "status_interval": self.cfg.outputs.status_interval,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "outputs": {name: sink.health().as_dict() for name, sink in self.sinks.items()},
            "events": self.tracker.status() if self.tracker is not None else None,
            "gate": self.change_gate.report(time.monotonic()),
            "region": _region_dict(self.cfg),
        }

    def _write_status(self, force: bool = False) -> None:
        """Hand the status to every sink: ``force`` for the first, ready and last one."""
        if not self._sink_list:
            return
        status = self.status()
        for sink in self._sink_list:
            sink.status(status, urgent=force)
        if force:
            self._poll_sinks()

    # -- reload ----------------------------------------------------------------
    def _reload(self) -> None:
        self._reload_requested = False
        notify.reloading(self.notifier)
        where = self.config_path or "built-in defaults"
        log.info("reloading (SIGHUP) from %s", where)
        old_model, old_cfg = self.model, self.cfg
        assert old_model is not None
        model: Optional[LoadedModel] = None
        capture: Optional[CaptureThread] = None
        try:
            cfg = load_config(self.config_path) if self.config_path else self.cfg
            runtime = load_runtime(cfg.engine.runtime)
            model, _ = load_running_model(cfg, runtime, fallback=False)
            size_changed = (model.input.width, model.input.height) != (
                old_model.input.width,
                old_model.input.height,
            )
            if size_changed or _source_inputs(cfg) != _source_inputs(old_cfg):
                capture = _capture(cfg, model)
            rules = rules_for(cfg, model.labels)
            problem = (
                region_pixels_error(cfg.preprocess.region, *self._frame_size)
                if self._frame_size is not None
                and not self._roi_seen
                and cfg.source == old_cfg.source
                else None
            )
            if problem is not None:
                raise ConfigError(f"{where}: {problem}")
            self._open_outputs(cfg, old_cfg)
        except Exception as exc:  # a reload must never take the daemon down
            if model is not None:
                model.close()
            if capture is not None:
                capture.source.close()
            reason = (
                str(exc) if isinstance(exc, EdgeDaemonError) else f"{type(exc).__name__}: {exc}"
            )
            message = f"reload failed, still running {old_model.name}: {reason}"
            log.error("%s", message, exc_info=not isinstance(exc, EdgeDaemonError))
            self._error(message)
            notify.ready(self.notifier, self._status_line())
            self._write_status()
            return
        self.tracker, ended = tracker_for(self.tracker, rules, cfg, model.name, model.sha256)
        self._notices += ended
        if (cfg.gate, cfg.preprocess.region) != (old_cfg.gate, old_cfg.preprocess.region):
            self.change_gate = self.change_gate.successor(cfg.gate)
        self._use_model(model, cfg)
        if capture is not None:
            self._replace_capture(capture)
        if self.gate is not None:
            self.gate.stall_timeout = cfg.source.stall_timeout
        old_model.close()
        release_freed_memory()
        self.reloads += 1
        self._announce_model()
        notify.ready(self.notifier, self._status_line())
        self._write_status()

    def _replace_capture(self, capture: CaptureThread) -> None:
        if self.capture is not None:
            self.capture.stop()
        self.capture = capture
        log.info("reading frames from %s", capture.source.describe())
        capture.start()

    def _shutdown(self) -> None:
        notify.stopping(self.notifier)
        if self.capture is not None:
            self.capture.stop()
        if self.state != "failed":
            self.state = "stopped"
        self.reason = None
        if self.tracker is not None:  # open events end, cut short, in every output
            ended = self._notices + self.tracker.close_all(time.time())
            for sink in self._sink_list:
                sink.events_ended(ended)
        self._write_status(force=True)
        for sink in self._sink_list:
            sink.close()
        if self.model is not None:
            self.model.close()
        log.info("stopped after %d frames", self.frames)
