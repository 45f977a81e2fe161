"""``engine.delegates: auto``: measure the candidates once, cache the winner.

At start-up every candidate delegate is built, checked against the plain CPU
path on a check frame (same top-1, or a near-tie), and timed on a few
invokes within ``engine.auto_budget`` seconds. The fastest correct one wins.
The choice is cached in the state directory, keyed by the model's sha256,
the runtime and its version and the thread count, so the next start skips
the measurement.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from ..config import Config
from ..errors import DelegateError
from .interpreter import (
    DelegateSettings,
    TFLiteEngine,
    build_engine,
    check_against_cpu,
    check_frame,
    open_engine,
)
from .runtimes import Runtime

log = logging.getLogger(__name__)

CANDIDATES = ("edgetpu", "gpu", "xnnpack", "cpu")
CACHE_FILE = "delegates.json"


def cache_key(sha256: str, runtime: Runtime, threads: int) -> str:
    """What a cached choice depends on."""
    return f"{sha256}|{runtime.name}|{runtime.version}|threads={threads}"


def read_cache(state_dir: str) -> dict[str, Any]:
    """The cached choices; an unreadable or damaged cache is an empty one."""
    try:
        data = json.loads((Path(state_dir) / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(state_dir: str, cache: dict[str, Any]) -> None:
    """Save the cache atomically; failure only costs a re-measurement next start."""
    folder = Path(state_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".delegates.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
        os.replace(tmp, folder / CACHE_FILE)
    except OSError as exc:
        log.warning(
            "cannot write the delegate cache in %s (%s); it will be measured again",
            state_dir,
            exc.strerror,
        )


def _time_invokes(engine: TFLiteEngine, frame: Any, deadline: float, runs: int) -> float:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        engine.infer(frame)
        times.append(time.perf_counter() - t)
        if i >= 2 and time.monotonic() > deadline:
            break
    return statistics.median(times) * 1000.0


def measure_candidates(
    path: str, runtime: Runtime, settings: DelegateSettings, budget: float
) -> tuple[Optional[TFLiteEngine], dict[str, str]]:
    """Build, check and time every candidate; the fastest correct engine and each verdict."""
    deadline = time.monotonic() + budget
    verdicts: dict[str, str] = {}
    try:
        reference = build_engine(path, runtime, "cpu", settings)
    except DelegateError as exc:
        return None, {"cpu": f"failed: {exc}"}
    frame = check_frame(reference.input)
    share = max(budget / len(CANDIDATES), 0.05)
    best: Optional[tuple[float, TFLiteEngine]] = None
    for name in CANDIDATES:
        engine: Optional[TFLiteEngine] = reference if name == "cpu" else None
        try:
            if engine is None:
                engine = build_engine(path, runtime, name, settings)
                check_against_cpu(engine, reference, frame)
        except DelegateError as exc:
            verdicts[name] = f"skipped: {exc}"
            if engine is not None:
                engine.close()
            continue
        ms = _time_invokes(engine, frame, min(deadline, time.monotonic() + share), runs=15)
        verdicts[name] = f"{ms:.2f} ms"
        if best is None or ms < best[0]:
            if best is not None and best[1] is not reference:
                best[1].close()
            best = (ms, engine)
        elif engine is not reference:
            engine.close()
    if best is None:
        return None, verdicts
    if best[1] is not reference:
        reference.close()
    return best[1], verdicts


def choose_delegates(
    path: str,
    sha256: str,
    runtime: Runtime,
    settings: DelegateSettings,
    cfg: Config,
    *,
    cpu_model_path: Optional[str] = None,
    is_edgetpu_model: bool = False,
) -> TFLiteEngine:
    """The engine ``delegates: auto`` picks: from the cache, else measured now."""
    if is_edgetpu_model:
        # Nothing to compare: the Edge TPU or the plain fallback model.
        return open_engine(
            path,
            runtime,
            ["edgetpu"],
            settings,
            cpu_model_path=cpu_model_path,
            is_edgetpu_model=True,
        )
    key = cache_key(sha256, runtime, settings.threads)
    cache = read_cache(cfg.daemon.state_dir)
    cached = cache.get(key, {}).get("delegate") if isinstance(cache.get(key), dict) else None
    if cached in CANDIDATES:
        chosen = open_engine(path, runtime, [cached], settings)
        if chosen.delegate == cached:
            log.info("delegate %s for %s (cached choice)", cached, os.path.basename(path))
            return chosen
        cache.pop(key, None)  # the cached delegate no longer works here
        write_cache(cfg.daemon.state_dir, cache)
        return chosen
    engine, verdicts = measure_candidates(path, runtime, settings, cfg.engine.auto_budget)
    summary = ", ".join(f"{k} {v}" for k, v in verdicts.items())
    if engine is None:
        # Let open_engine produce its usual one-line error from the CPU attempt.
        return open_engine(path, runtime, ["cpu"], settings)
    log.info("delegate %s chosen for %s (%s)", engine.delegate, os.path.basename(path), summary)
    cache[key] = {
        "delegate": engine.delegate,
        "model": os.path.basename(path),
        "measured": verdicts,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_cache(cfg.daemon.state_dir, cache)
    return engine
