"""Embeddings from the same invoke: the rewritten output list, for every shared MobileNet."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pytest
import yaml

from edge_daemon.config import parse_config
from edge_daemon.engine.embedding import EmbeddingSpec, find_embedding, with_embedding_output
from edge_daemon.engine.graph import read_graph
from edge_daemon.engine.interpreter import DelegateSettings, build_engine
from edge_daemon.engine.metadata import read_model_file
from edge_daemon.engine.runtimes import load_runtime
from edge_daemon.errors import TeachError
from edge_daemon.pipeline import Classifier
from edge_daemon.preprocess import fit_frame
from edge_daemon.sources.files import decode_image
from tests.helpers import IMAGES, LABELS, MODELS, run_cli, shared_file

# model -> (tensor, dims) of its pooled features
MOBILENETS = {
    "mobilenet_v1_1.0_224_quant.tflite": (82, 1024),
    "mobilenet_v1_1.0_224_quant_metadata.tflite": (82, 1024),
    "mobilenet_v1_1.0_224_quant_int8io.tflite": (82, 1024),
    "mobilenet_v1_1.0_224_float.tflite": (82, 1024),
    "mobilenet_v2_1.0_224_quant.tflite": (169, 1280),
    "mobilenet_v1_0.25_128_quant.tflite": (84, 256),
}
EDGETPU = "mobilenet_v1_0.75_192_quant_edgetpu.tflite"
PHOTOS = ("parrot.jpg", "cat.bmp", "grace_hopper.bmp")


def model_bytes(name: str) -> bytes:
    return shared_file(MODELS / name).read_bytes()


def config(name: str, runtime: str, delegate: str) -> Any:
    data = {
        "model": {"path": str(shared_file(MODELS / name)), "labels": str(shared_file(LABELS))},
        "engine": {"runtime": runtime, "delegates": [delegate]},
    }
    return parse_config(yaml.safe_dump(data))


def model_input(photo: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A photo as the daemon feeds it to a model of this input (stretch; int8 shift; [-1, 1])."""
    width, height = shape[2], shape[1]
    pixels = decode_image(shared_file(IMAGES / photo).read_bytes(), (width, height))
    tensor = fit_frame(pixels, width, height, "stretch")
    if dtype == np.int8:
        return (tensor.astype(np.int16) - 128).astype(np.int8)
    if dtype == np.float32:
        return ((tensor - 127.5) / 127.5).astype(np.float32)
    return tensor


def preserved_tensor(runtime_name: str, data: bytes, tensor: np.ndarray, index: int) -> np.ndarray:
    """Tensor ``index`` after one invoke of the unmodified model, all tensors preserved."""
    runtime = load_runtime(runtime_name)
    interpreter = runtime.Interpreter(
        model_content=data,
        num_threads=2,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=runtime.resolver(False),
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    out: np.ndarray = interpreter.get_tensor(index)
    return out


@pytest.mark.parametrize("name", list(MOBILENETS))
def test_find_embedding_names_the_pooled_tensor(name: str) -> None:
    spec, why = find_embedding(model_bytes(name))
    assert spec is not None, why
    assert (spec.tensor, spec.dims) == MOBILENETS[name]
    assert spec.name.endswith("AvgPool")
    assert spec.dtype == ("float32" if "float" in name else "uint8")


def test_the_edgetpu_model_has_no_embedding_and_says_why() -> None:
    spec, why = find_embedding(model_bytes(EDGETPU))
    assert spec is None
    assert "Edge TPU" in why and "edgetpu-custom-op" in why


def test_a_model_without_a_classifier_layer_says_why() -> None:
    spec, why = find_embedding(model_bytes("model_invoking_error.tflite"))
    assert spec is None and "CONV_2D or FULLY_CONNECTED" in why


@pytest.mark.parametrize("name", list(MOBILENETS))
def test_the_rewrite_only_adds_an_output(name: str) -> None:
    data = model_bytes(name)
    spec, _ = find_embedding(data)
    assert spec is not None
    new = with_embedding_output(data, spec)
    before, after = read_graph(data), read_graph(new)
    assert after.outputs == [*before.outputs, spec.tensor]
    assert [(t.name, t.shape, t.scale) for t in after.tensors] == [
        (t.name, t.shape, t.scale) for t in before.tensors
    ]
    assert [(o.op, o.inputs, o.outputs) for o in after.operators] == [
        (o.op, o.inputs, o.outputs) for o in before.operators
    ]
    # Every weight is where its tensor says, byte for byte, still 16-byte aligned.
    for t in before.tensors:
        old, moved = before.buffer_data(data, t.index), after.buffer_data(new, t.index)
        assert (old is None) == (moved is None)
        if old is not None and moved is not None:
            assert new[moved[0] : moved[0] + moved[1]] == data[old[0] : old[0] + old[1]]
            assert (moved[0] - old[0]) % 16 == 0
    # Metadata (normalisation, packed labels) reads the same from the new bytes.
    old_info, new_info = read_model_file(data), read_model_file(new)
    assert new_info.labels_text == old_info.labels_text
    assert (new_info.mean, new_info.std) == (old_info.mean, old_info.std)
    if old_info.labels_text is not None:
        with zipfile.ZipFile(io.BytesIO(new)) as archive:
            assert archive.testzip() is None  # every member's CRC checks out


def test_metadata_labels_read_from_the_rewritten_model() -> None:
    data = model_bytes("mobilenet_v1_1.0_224_quant_metadata.tflite")
    spec, _ = find_embedding(data)
    assert spec is not None
    info = read_model_file(with_embedding_output(data, spec))
    assert info.labels_text is not None
    lines = info.labels_text.splitlines()
    assert len(lines) == 1001 and lines[0] == "background"


@pytest.mark.parametrize("name", list(MOBILENETS))
def test_embedding_equals_the_pooled_tensor_read_another_way(name: str, runtime_name: str) -> None:
    # Plain kernels on both sides: the rewritten model's extra output against
    # the unmodified model run with every tensor preserved.
    runtime = load_runtime(runtime_name)
    engine = build_engine(str(MODELS / name), runtime, "cpu", DelegateSettings(threads=2))
    try:
        assert engine.embedding is not None
        for photo in PHOTOS:
            tensor = model_input(photo, engine.input.shape, engine.input.dtype)
            engine.infer(tensor)
            pooled = preserved_tensor(
                runtime_name, model_bytes(name), tensor[None], engine.embedding.tensor
            )
            assert engine.last_embedding is not None
            np.testing.assert_array_equal(engine.last_embedding.reshape(-1), pooled.reshape(-1))
    finally:
        engine.close()


@pytest.mark.parametrize("name", list(MOBILENETS))
def test_xnnpack_keeps_the_whole_graph_and_the_top1(name: str, runtime_name: str) -> None:
    runtime = load_runtime(runtime_name)
    rewritten = build_engine(str(MODELS / name), runtime, "xnnpack", DelegateSettings(threads=2))
    try:
        plain = build_engine(
            str(MODELS / name), runtime, "xnnpack", DelegateSettings(threads=2), embedding=False
        )
        assert plain.embedding is None
        assert rewritten.delegated_nodes() == plain.delegated_nodes() > 0
        assert rewritten.embedding is not None
        for photo in PHOTOS:
            tensor = model_input(photo, rewritten.input.shape, rewritten.input.dtype)
            got = rewritten.infer(tensor)
            want = plain.infer(tensor)
            assert int(np.argmax(got)) == int(np.argmax(want))
            np.testing.assert_array_equal(got, want)
    finally:
        rewritten.close()
        plain.close()


@pytest.mark.parametrize("name", ["mobilenet_v1_1.0_224_quant.tflite"])
def test_classifier_results_carry_the_embedding(loaded: Any, name: str) -> None:
    m = loaded(config(name, "auto", "xnnpack"))
    assert m.embedding is not None and m.embedding_reason == ""
    clf = Classifier(m, top_k=3, min_score=0.0, resize="stretch")
    pixels = decode_image(shared_file(IMAGES / "parrot.jpg").read_bytes(), (224, 224))
    result = clf.classify(pixels)
    assert result.embedding is not None
    assert result.embedding.shape == (1024,) and result.embedding.dtype == np.float32
    assert float(result.embedding.min()) >= 0.0  # pooled ReLU6 features
    np.testing.assert_array_equal(clf.embed(pixels), result.embedding)
    other = clf.embed(decode_image(shared_file(IMAGES / "cat.bmp").read_bytes(), (224, 224)))
    assert not np.array_equal(other, result.embedding)


def test_embed_refuses_a_model_without_embedding(loaded: Any) -> None:
    m = loaded(config("mobilenet_v1_1.0_224_quant.tflite", "auto", "cpu"))
    m.embedding, m.embedding_reason = None, "its last layer is not a 1x1 conv"
    clf = Classifier(m, top_k=3, min_score=0.0, resize="stretch")
    with pytest.raises(TeachError, match=r"offers no embedding.*1x1 conv"):
        clf.embed(np.zeros((224, 224, 3), dtype=np.uint8))


def test_check_says_whether_the_model_offers_embeddings(write_config: Any) -> None:
    cfg = write_config()
    out = run_cli("check", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "tensor 82 MobilenetV1/Logits/AvgPool_1a/AvgPool, 1024 dimensions uint8" in out.stdout


@pytest.mark.parametrize(
    ("dtype", "zero"), [("uint8", 0), ("uint8", 7), ("int8", -128), ("int8", 3)]
)
def test_dequantize_is_scale_times_code_minus_zero_point(dtype: str, zero: int) -> None:
    spec = EmbeddingSpec(1, "pool", 256, dtype, 0.0235, zero)
    raw = np.arange(256, dtype=np.uint8).view(np.dtype(dtype)).reshape(1, 1, 1, 256)
    want = (raw.reshape(-1).astype(np.float64) - zero) * 0.0235
    got = spec.dequantize(raw)
    assert got.dtype == np.float32 and got.shape == (256,)
    np.testing.assert_allclose(got, want, rtol=1e-6)
