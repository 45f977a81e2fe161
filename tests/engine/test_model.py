"""Loading a model: labels (file, metadata, offset), normalisation, Edge TPU fallback, bad files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import yaml

from edge_daemon.config import Config, parse_config
from edge_daemon.engine import model as model_module
from edge_daemon.engine.metadata import ModelFileInfo
from edge_daemon.engine.model import LoadedModel, load_model
from edge_daemon.errors import ModelError
from edge_daemon.pipeline import Classifier
from edge_daemon.sources.files import decode_image
from tests.helpers import IMAGES, LABELS, MODELS, first_name, shared_file

QUANT = "mobilenet_v1_1.0_224_quant.tflite"
FLOAT = "mobilenet_v1_1.0_224_float.tflite"
METADATA = "mobilenet_v1_1.0_224_quant_metadata.tflite"
INT8IO = "mobilenet_v1_1.0_224_quant_int8io.tflite"
EDGETPU = "mobilenet_v1_0.75_192_quant_edgetpu.tflite"
BROKEN = "model_invoking_error.tflite"


def fixture_path(name: str) -> str:
    return str(shared_file(MODELS / name))


def config(
    model: str,
    labels: Optional[str] = "fixture",
    runtime: str = "auto",
    **model_keys: Any,
) -> Config:
    """A config for ``model`` (a fixture name or a path); labels "fixture" = the shared file."""
    path = model if "/" in model else fixture_path(model)
    if labels == "fixture":
        labels = str(shared_file(LABELS))
    data = {
        "model": {"path": path, "labels": labels, **model_keys},
        "engine": {"runtime": runtime, "delegates": ["xnnpack"]},
    }
    return parse_config(yaml.safe_dump(data))


def golden_parrot(expected: dict[str, Any]) -> tuple[str, int]:
    """The parrot's golden label and its index in the fixture labels file."""
    label = expected["images"]["parrot.jpg"]["top1"]
    names = [first_name(line) for line in shared_file(LABELS).read_text().splitlines()]
    return label, names.index(label)


def classify(m: LoadedModel, image: str, k: int = 5) -> list[tuple[str, int]]:
    pixels = decode_image(shared_file(IMAGES / image).read_bytes(), (m.input.width, m.input.height))
    clf = Classifier(m, top_k=k, min_score=0.0, resize="stretch")
    return [(first_name(p.label), p.index) for p in clf.classify(pixels).predictions]


# -- inputs and normalisation --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"), [(QUANT, np.uint8), (INT8IO, np.int8), (FLOAT, np.float32)]
)
def test_input_spec(loaded: Any, runtime_name: str, name: str, dtype: Any) -> None:
    m = loaded(config(name, runtime=runtime_name))
    assert (m.input.width, m.input.height) == (224, 224)
    assert m.input.dtype == dtype
    assert m.engine.runtime.startswith(runtime_name)
    assert m.labels.offset == 0 and len(m.labels.labels) == 1001


def test_the_128_model_input(loaded: Any) -> None:
    m = loaded(config("mobilenet_v1_0.25_128_quant.tflite"))
    assert (m.input.width, m.input.height) == (128, 128)


def test_quantized_model_gets_raw_pixels(loaded: Any) -> None:
    m = loaded(config(QUANT))
    np.testing.assert_array_equal(m.lut, np.arange(256))


def test_int8_model_gets_pixels_shifted_into_int8(loaded: Any) -> None:
    m = loaded(config(INT8IO))
    assert m.lut.dtype == np.int8
    np.testing.assert_array_equal(m.lut.astype(int), np.arange(256) - 128)


def test_float_model_defaults_to_127_5(loaded: Any) -> None:
    m = loaded(config(FLOAT))
    np.testing.assert_allclose(m.lut, (np.arange(256) - 127.5) / 127.5, rtol=1e-6)


def test_float_model_uses_metadata_normalisation_over_the_default(
    loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No fixture float model carries metadata: give the float model's file
    # metadata normalisation (as a model with metadata would have).
    real = model_module.inspect_model

    def with_metadata(path: str, data: bytes) -> ModelFileInfo:
        info = real(path, data)
        info.mean, info.std = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
        return info

    monkeypatch.setattr(model_module, "inspect_model", with_metadata)
    m = loaded(config(FLOAT))
    np.testing.assert_allclose(m.lut, np.arange(256) / 255.0, rtol=1e-6)
    # The config beats the metadata.
    m = loaded(config(FLOAT, mean=127.5, std=127.5))
    np.testing.assert_allclose(m.lut, (np.arange(256) - 127.5) / 127.5, rtol=1e-6)


def test_float_model_with_config_normalisation(loaded: Any) -> None:
    m = loaded(config(FLOAT, mean=0.0, std=1.0))
    np.testing.assert_allclose(m.lut, np.arange(256), rtol=1e-6)


def test_wrong_normalisation_changes_the_answer(loaded: Any, expected: dict[str, Any]) -> None:
    # The normalisation reaches the model: [0, 255] inputs instead of [-1, 1]
    # no longer give the golden answer.
    want = expected["images"]["parrot.jpg"]["top1"]
    assert classify(loaded(config(FLOAT)), "parrot.jpg")[0][0] == want
    assert classify(loaded(config(FLOAT, mean=0.0, std=1.0)), "parrot.jpg")[0][0] != want


# -- labels ----------------------------------------------------------------------------


def test_metadata_labels_when_labels_is_null(loaded: Any, expected: dict[str, Any]) -> None:
    m = loaded(config(METADATA, labels=None))
    assert m.labels.source.endswith(f"{METADATA}!labels.txt")
    assert len(m.labels.labels) == 1001
    assert classify(m, "parrot.jpg")[0][0] == expected["images"]["parrot.jpg"]["top1"]


def test_labels_null_on_a_model_without_metadata_says_what_to_do() -> None:
    with pytest.raises(ModelError) as info:
        load_model(config(QUANT, labels=None))
    assert "has no labels packed in its metadata; set model.labels" in str(info.value)


def test_a_labels_file_beats_the_metadata(
    loaded: Any, tmp_path: Path, expected: dict[str, Any]
) -> None:
    names = [f"class{i}" for i in range(1001)]
    labels = tmp_path / "mine.txt"
    labels.write_text("\n".join(names) + "\n")
    m = loaded(config(METADATA, labels=str(labels)))
    assert m.labels.source == str(labels)
    index = golden_parrot(expected)[1]
    assert classify(m, "parrot.jpg")[0] == (f"class{index}", index)


def labels_file(tmp_path: Path, lines: list[str], name: str = "labels.txt") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def fixture_labels() -> list[str]:
    return shared_file(LABELS).read_text(encoding="utf-8").splitlines()


def test_1000_labels_for_1001_outputs_shift_by_one(
    loaded: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, expected: dict[str, Any]
) -> None:
    caplog.set_level(logging.INFO)
    path = labels_file(tmp_path, fixture_labels()[1:])  # without "background"
    m = loaded(config(QUANT, labels=path))
    assert m.labels.offset == 1
    top = classify(m, "parrot.jpg")[0]
    assert top == golden_parrot(expected)
    said = [r for r in caplog.records if "shifting labels by one" in r.getMessage()]
    assert len(said) == 1


@pytest.mark.parametrize("count", [999, 1002])
def test_other_label_counts_are_refused_with_both_counts(tmp_path: Path, count: int) -> None:
    lines = (fixture_labels() * 2)[:count]
    path = labels_file(tmp_path, lines)
    with pytest.raises(ModelError) as info:
        load_model(config(QUANT, labels=path))
    message = str(info.value)
    assert f"{count} labels" in message and "1001 outputs" in message
    assert "\n" not in message


def test_indexed_labels_files_load(loaded: Any, tmp_path: Path, expected: dict[str, Any]) -> None:
    lines = [f"{i}: {name}" for i, name in enumerate(fixture_labels())]
    m = loaded(config(QUANT, labels=labels_file(tmp_path, lines[::-1])))
    assert classify(m, "parrot.jpg")[0] == golden_parrot(expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "labels file not found; fix model.labels"),
        (b"\xff\xfe\x00b", "labels file is not UTF-8 text"),
        (b"\n\n", "the labels file is empty"),
    ],
)
def test_bad_labels_files(tmp_path: Path, content: Optional[bytes], message: str) -> None:
    path = tmp_path / "labels.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_model(config(QUANT, labels=str(path)))
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


# -- Edge TPU models and broken models --------------------------------------------------


def test_edgetpu_model_without_an_edgetpu_asks_for_a_plain_model() -> None:
    with pytest.raises(ModelError) as info:
        load_model(config(EDGETPU))
    message = str(info.value)
    assert "compiled for the Edge TPU" in message
    assert "a plain (non-Edge TPU) model is needed" in message
    assert "model.cpu_fallback" in message
    assert "\n" not in message


def test_edgetpu_model_with_cpu_fallback_runs_the_plain_model(
    loaded: Any, runtime_name: str, expected: dict[str, Any]
) -> None:
    m = loaded(config(EDGETPU, runtime=runtime_name, cpu_fallback=fixture_path(QUANT)))
    assert m.engine.model_path == fixture_path(QUANT)
    assert m.engine.delegate in ("xnnpack", "cpu")
    assert classify(m, "parrot.jpg")[0][0] == expected["images"]["parrot.jpg"]["top1"]


def test_cpu_fallback_that_is_itself_an_edgetpu_model_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other_edgetpu.tflite"
    shutil.copyfile(fixture_path(EDGETPU), other)
    with pytest.raises(ModelError) as info:
        load_model(config(EDGETPU, cpu_fallback=str(other)))
    assert "model.cpu_fallback is itself compiled for the Edge TPU" in str(info.value)


def test_model_that_fails_to_allocate(runtime_name: str) -> None:
    with pytest.raises(ModelError) as info:
        load_model(config(BROKEN, runtime=runtime_name))
    message = str(info.value)
    assert message.startswith(fixture_path(BROKEN))
    assert "fake-op-double" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "model file not found"),
        (b"", "the model file is empty"),
        (b"this is not a model at all", "not a TFLite model"),
    ],
)
def test_bad_model_files(tmp_path: Path, content: Optional[bytes], message: str) -> None:
    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_model(config(str(path)))
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_model_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a folder"):
        load_model(config(str(tmp_path)))
