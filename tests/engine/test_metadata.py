"""Reading a .tflite file without a runtime: custom ops, normalisation, packed labels."""

from __future__ import annotations

import pytest

from edge_daemon.engine.metadata import read_model_file
from tests.helpers import LABELS, MODELS, shared_file


def model_bytes(name: str) -> bytes:
    return shared_file(MODELS / name).read_bytes()


def test_metadata_model_carries_normalisation_and_labels() -> None:
    info = read_model_file(model_bytes("mobilenet_v1_1.0_224_quant_metadata.tflite"))
    assert info.mean == [127.5]
    assert info.std == [127.5]
    assert info.label_file == "labels.txt"
    assert info.labels_text is not None
    # The packed file is the same labels file the plain model uses.
    assert info.labels_text.splitlines() == shared_file(LABELS).read_text().splitlines()
    assert not info.is_edgetpu


@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v1_1.0_224_quant.tflite",
        "mobilenet_v1_1.0_224_float.tflite",
        "mobilenet_v1_1.0_224_quant_int8io.tflite",
    ],
)
def test_plain_models_have_no_metadata(name: str) -> None:
    info = read_model_file(model_bytes(name))
    assert info.mean is None and info.std is None
    assert info.labels_text is None and info.label_file is None
    assert info.custom_ops == []
    assert not info.is_edgetpu


def test_edgetpu_model_is_recognised() -> None:
    info = read_model_file(model_bytes("mobilenet_v1_0.75_192_quant_edgetpu.tflite"))
    assert info.is_edgetpu
    assert "edgetpu-custom-op" in info.custom_ops


def test_unknown_custom_op_is_listed_but_not_edgetpu() -> None:
    info = read_model_file(model_bytes("model_invoking_error.tflite"))
    assert info.custom_ops == ["fake-op-double"]
    assert not info.is_edgetpu


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world, not a model", b"\x89PNG\r\n\x1a\n" + bytes(64)],
)
def test_not_a_tflite_file(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a TFLite model"):
        read_model_file(data)


def test_a_zip_appended_to_a_plain_model_is_not_read_as_labels() -> None:
    # Only models whose metadata names a labels file (or gives normalisation) get
    # their appended archive read; garbage after a plain model changes nothing.
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("labels.txt", "a\nb\n")
    info = read_model_file(model_bytes("mobilenet_v1_1.0_224_quant.tflite") + archive.getvalue())
    assert info.labels_text is None
