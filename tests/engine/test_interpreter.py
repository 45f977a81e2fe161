"""Runtimes and delegates: forcing a runtime, none importable, fallback order, auto, its cache."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_daemon.config import Config, parse_config
from edge_daemon.engine import runtimes
from edge_daemon.engine.autoselect import CACHE_FILE, cache_key
from edge_daemon.engine.interpreter import check_against_cpu, check_frame
from edge_daemon.engine.model import load_model
from edge_daemon.engine.runtimes import load_runtime
from edge_daemon.errors import RuntimeNotFoundError
from tests.helpers import LABELS, MODELS, RUNTIMES, runtime_available, shared_file

# The small model: what is tested here does not depend on the network's size.
SMALL = "mobilenet_v1_0.25_128_quant.tflite"


def config(delegates: Any, runtime: str = "auto", state_dir: str = "", **engine: Any) -> Config:
    data: dict[str, Any] = {
        "model": {"path": str(shared_file(MODELS / SMALL)), "labels": str(shared_file(LABELS))},
        "engine": {"runtime": runtime, "delegates": delegates, **engine},
    }
    if state_dir:
        data["daemon"] = {"state_dir": state_dir}
    return parse_config(yaml.safe_dump(data))


def delegate_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("delegate ")
    ]


# -- runtimes ------------------------------------------------------------------------------


def test_forcing_a_runtime_uses_it(loaded: Any, runtime_name: str) -> None:
    runtime = load_runtime(runtime_name)
    assert runtime.name == runtime_name
    m = loaded(config(["xnnpack"], runtime=runtime_name))
    assert m.engine.runtime == f"{runtime_name} {runtime.version}"


def test_auto_takes_the_first_importable_runtime() -> None:
    first = next((name for name in RUNTIMES if runtime_available(name)), None)
    if first is None:
        pytest.skip("no runtime installed")
    assert load_runtime("auto").name == first


def test_no_runtime_importable_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runtimes,
        "RUNTIMES",
        {name: (f"edge_daemon_test_absent_{name}", name) for name in runtimes.RUNTIMES},
    )
    with pytest.raises(RuntimeNotFoundError) as info:
        load_runtime("auto")
    message = str(info.value)
    assert "no TFLite runtime could be imported" in message
    assert "edge-daemon[litert]" in message and "edge-daemon[tflite]" in message
    assert "\n" not in message
    with pytest.raises(RuntimeNotFoundError) as forced:
        load_runtime("tflite_runtime")
    assert str(forced.value).startswith("engine.runtime: tflite_runtime could not be imported")
    assert "edge-daemon[litert]" in str(forced.value)


# -- explicit delegate lists ---------------------------------------------------------------


def test_full_delegate_list_falls_back_to_xnnpack(
    loaded: Any, runtime_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # No Coral and no GPU delegate here: one WARNING each, then XNNPACK runs it.
    caplog.set_level(logging.INFO)
    m = loaded(
        config(
            ["edgetpu", "gpu", "xnnpack", "cpu"],
            runtime=runtime_name,
            edgetpu_library="libedgetpu-absent-for-test.so.1",
            gpu_library="libgpu-delegate-absent-for-test.so",
        )
    )
    assert m.engine.delegate == "xnnpack"
    assert m.engine.delegated_nodes() > 0
    warnings = delegate_warnings(caplog)
    assert len(warnings) == 2
    assert warnings[0].startswith(f"delegate edgetpu unavailable for {SMALL}")
    assert "libedgetpu-absent-for-test.so.1" in warnings[0]
    assert warnings[1].startswith("delegate gpu unavailable")


def test_with_the_default_libraries_it_also_ends_on_xnnpack(
    loaded: Any, runtime_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Whether or not this machine has libedgetpu or the GPU delegate, neither can
    # run a plain CPU model: each fails with one warning and XNNPACK takes over.
    caplog.set_level(logging.INFO)
    m = loaded(config(["edgetpu", "gpu", "xnnpack", "cpu"], runtime=runtime_name))
    assert m.engine.delegate == "xnnpack"
    assert [w.split()[1] for w in delegate_warnings(caplog)] == ["edgetpu", "gpu"]


def test_cpu_only(loaded: Any, runtime_name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m = loaded(config(["cpu"], runtime=runtime_name))
    assert m.engine.delegate == "cpu"
    assert m.engine.delegated_nodes() == 0
    assert delegate_warnings(caplog) == []


def test_xnnpack_computes_what_the_cpu_computes(loaded: Any, runtime_name: str) -> None:
    fast = loaded(config(["xnnpack"], runtime=runtime_name)).engine
    plain = loaded(config(["cpu"], runtime=runtime_name)).engine
    check_against_cpu(fast, plain, check_frame(fast.input))  # raises when they disagree
    frame = check_frame(fast.input)
    assert int(np.argmax(fast.infer(frame))) == int(np.argmax(plain.infer(frame)))


def test_a_closed_engine_refuses_to_run(runtime_name: str) -> None:
    m = load_model(config(["cpu"], runtime=runtime_name))
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.engine.infer(np.zeros((128, 128, 3), dtype=np.uint8))


# -- delegates: auto -------------------------------------------------------------------------


def auto_config(state_dir: Path, runtime: str = "auto", **engine: Any) -> Config:
    return config("auto", runtime, str(state_dir), threads=2, auto_budget=0.1, **engine)


def test_auto_measures_once_and_caches_the_choice(
    loaded: Any, runtime_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state = tmp_path / "state"
    first = loaded(auto_config(state, runtime_name))
    chosen = first.engine.delegate
    assert chosen in ("edgetpu", "gpu", "xnnpack", "cpu")
    cache = json.loads((state / CACHE_FILE).read_text())
    key = cache_key(first.sha256, load_runtime(runtime_name), 2)
    assert cache[key]["delegate"] == chosen
    assert cache[key]["model"] == SMALL
    assert [m for m in caplog.messages if "chosen for" in m]
    caplog.clear()
    second = loaded(auto_config(state, runtime_name))
    assert second.engine.delegate == chosen
    assert any(f"delegate {chosen} for {SMALL} (cached choice)" in m for m in caplog.messages)
    assert not [m for m in caplog.messages if "chosen for" in m]


def test_a_damaged_cache_is_measured_again(loaded: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / CACHE_FILE).write_text("{not json")
    m = loaded(auto_config(state))
    cache = json.loads((state / CACHE_FILE).read_text())
    assert [v["delegate"] for v in cache.values()] == [m.engine.delegate]


def test_a_cached_delegate_that_no_longer_works_is_forgotten(loaded: Any, tmp_path: Path) -> None:
    # Say the Coral was unplugged since the choice was cached.
    state = tmp_path / "state"
    state.mkdir()
    sha = hashlib.sha256(shared_file(MODELS / SMALL).read_bytes()).hexdigest()
    key = cache_key(sha, load_runtime("auto"), 2)
    (state / CACHE_FILE).write_text(json.dumps({key: {"delegate": "edgetpu"}}))
    m = loaded(auto_config(state, edgetpu_library="libedgetpu-absent-for-test.so.1"))
    assert m.engine.delegate == "cpu"
    assert key not in json.loads((state / CACHE_FILE).read_text())
