"""Shared fixtures: golden expectations, each runtime in turn, config files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml

from edge_daemon.config import Config
from edge_daemon.engine.model import LoadedModel, load_model
from tests.helpers import IMAGES, MODELS, RUNTIMES, missing, runtime_available, shared_file


@pytest.fixture(scope="session")
def expected() -> dict[str, Any]:
    """../shared/images/expected.yaml: golden predictions."""
    data: dict[str, Any] = yaml.safe_load(shared_file(IMAGES / "expected.yaml").read_text())
    return data


@pytest.fixture(params=RUNTIMES)
def runtime_name(request: pytest.FixtureRequest) -> str:
    """Each TFLite runtime in turn (both are installed side by side in CI)."""
    name: str = request.param
    if not runtime_available(name):
        missing(f"runtime {name}")
    return name


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config YAML into tmp_path, outputs and state inside tmp_path.

    ``write_config(model=..., labels=..., runtime=..., source=..., overrides={...})``;
    ``overrides`` is merged section by section (e.g. ``{"source": {"loop": True}}``).
    Model and label names are looked up in ../shared/models unless absolute.
    """

    def make(
        model: str = "mobilenet_v1_1.0_224_quant.tflite",
        labels: Optional[str] = "labels_mobilenet_quant_v1_224.txt",
        runtime: str = "auto",
        source: Optional[str] = None,
        delegates: Any = "auto",
        overrides: Optional[dict[str, Any]] = None,
        name: str = "config.yaml",
    ) -> Path:
        model_path = model if os.path.isabs(model) else str(shared_file(MODELS / model))
        labels_value: Optional[str] = None
        if labels is not None:
            labels_value = labels if os.path.isabs(labels) else str(shared_file(MODELS / labels))
        src = source if source is not None else str(shared_file(IMAGES))
        data: dict[str, Any] = {
            "model": {"path": model_path, "labels": labels_value},
            "engine": {"runtime": runtime, "delegates": delegates},
            "source": {"kind": "files", "path": src},
            "outputs": {
                "prediction_log": str(tmp_path / "out" / "predictions.jsonl"),
                "status_file": str(tmp_path / "out" / "status.json"),
                "status_interval": 0.2,
            },
            "daemon": {"state_dir": str(tmp_path / "state")},
            # The server is on by default (127.0.0.1:8080): a test that wants it
            # asks for it, on a free port.
            "http": {"listen": None},
        }
        data = _merge(data, overrides or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


@pytest.fixture
def loaded() -> Iterator[Callable[[Config], LoadedModel]]:
    """load_model, closing every model it loaded at the end of the test."""
    models: list[LoadedModel] = []

    def load(cfg: Config) -> LoadedModel:
        m = load_model(cfg)
        models.append(m)
        return m

    yield load
    for m in models:
        m.close()


# -- a real MQTT broker (tests/broker.py) ------------------------------------------
@pytest.fixture(scope="session")
def broker_certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A test CA, the broker's certificate it signed, and an unrelated CA."""
    from tests.broker import make_certs

    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def mosquitto(tmp_path: Path, broker_certs: Any) -> Iterator[Any]:
    """A mosquitto broker on free 127.0.0.1 ports (plain + TLS), with a password file."""
    from tests.broker import broker_fixture

    yield from broker_fixture(tmp_path, broker_certs)
