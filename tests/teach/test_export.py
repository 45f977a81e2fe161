"""The taught model: loads in both runtimes, answers as the NumPy head does, keeps the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from edge_daemon.config import parse_config
from edge_daemon.engine.embedding import find_embedding
from edge_daemon.engine.graph import read_graph
from edge_daemon.engine.metadata import read_model_file
from edge_daemon.engine.model import LoadedModel
from edge_daemon.errors import ModelError, TeachError
from edge_daemon.pipeline import Classifier
from edge_daemon.teach.export import export_model, labels_text
from edge_daemon.teach.head import Head, fit_head, predict_proba
from tests.helpers import LABELS, MODELS, RUNTIMES, runtime_available, shared_file
from tests.teach.photos import photos, variant

BASES = (
    "mobilenet_v1_1.0_224_quant.tflite",
    "mobilenet_v1_1.0_224_quant_metadata.tflite",
    "mobilenet_v1_1.0_224_quant_int8io.tflite",
    "mobilenet_v1_1.0_224_float.tflite",
    "mobilenet_v2_1.0_224_quant.tflite",
    "mobilenet_v1_0.25_128_quant.tflite",
)
# An object task over real photos: which subject is in the frame.
CLASSES = {
    "cat": ("chelsea.png", "cat.bmp", "cat_720p.jpg"),
    "bird": ("bird.bmp", "parrot.jpg"),
    "person": ("astronaut.png", "grace_hopper.bmp"),
    "other": ("coffee.png", "rocket.jpg", "brick.png", "moon.png"),
}
TRAIN_VARIANTS = 6  # per photo
HELD_OUT_VARIANTS = 3  # per photo, every photo (also those of no class)


def config(model: str, labels: str, runtime: str) -> Any:
    data = {
        "model": {"path": model, "labels": labels},
        "engine": {"runtime": runtime, "delegates": ["xnnpack"]},
    }
    return parse_config(yaml.safe_dump(data))


def base_runtime() -> str:
    for name in RUNTIMES:
        if runtime_available(name):
            return name
    pytest.skip("no runtime")


class Taught:
    """A head fitted on one base model's embeddings of real photos, and held-out frames."""

    def __init__(self, base: str, loaded: Callable[[Any], LoadedModel]) -> None:
        self.base = base
        m = loaded(config(str(shared_file(MODELS / base)), str(LABELS), base_runtime()))
        clf = Classifier(m, top_k=1, min_score=0.0, resize="stretch")
        rng = np.random.default_rng(19)
        images = photos()
        names = list(CLASSES)
        X, y = [], []
        for index, cls in enumerate(names):
            for photo in CLASSES[cls]:
                for _ in range(TRAIN_VARIANTS):
                    X.append(clf.embed(variant(images[photo], rng)))
                    y.append(index)
        self.X, self.y = np.array(X), np.array(y)
        self.head = fit_head(self.X, self.y, names, seed=0)
        self.frames: list[np.ndarray] = []
        for image in images.values():
            self.frames.append(image)
            self.frames += [variant(image, rng) for _ in range(HELD_OUT_VARIANTS)]
        self.embeddings = np.array([clf.embed(f) for f in self.frames])
        self.model = export_model(shared_file(MODELS / base).read_bytes(), self.head, self.X)


_TAUGHT: dict[str, Taught] = {}


@pytest.fixture
def taught(loaded: Callable[[Any], LoadedModel]) -> Callable[[str], Taught]:
    def get(base: str) -> Taught:
        if base not in _TAUGHT:
            _TAUGHT[base] = Taught(base, loaded)
        return _TAUGHT[base]

    return get


def write(tmp_path: Path, t: Taught, head: Head | None = None) -> tuple[str, str]:
    model, labels = tmp_path / "model.tflite", tmp_path / "labels.txt"
    model.write_bytes(t.model)
    labels.write_text(labels_text(head or t.head))
    return str(model), str(labels)


@pytest.mark.parametrize("base", BASES)
def test_the_taught_model_answers_as_the_head_does(
    base: str, runtime_name: str, taught: Callable[[str], Taught], loaded: Any, tmp_path: Path
) -> None:
    t = taught(base)
    model, labels = write(tmp_path, t)
    m = loaded(config(model, labels, runtime_name))
    assert m.labels.labels == tuple(t.head.classes) and m.labels.offset == 0
    assert m.engine.output.shape == (1, len(t.head.classes))
    clf = Classifier(m, top_k=len(t.head.classes), min_score=0.0, resize="stretch")
    want = predict_proba(t.head, t.embeddings)
    agree, gaps = 0, []
    for frame, p in zip(t.frames, want):
        result = clf.classify(frame)
        agree += result.predictions[0].index == int(np.argmax(p))
        score = {pred.index: pred.score for pred in result.predictions}
        gaps.append(abs(score[int(np.argmax(p))] - float(p.max())))
        # The taught model still offers the base's embedding, and it is the same.
        assert result.embedding is not None
    print(
        f"{base} {runtime_name}: {agree}/{len(t.frames)} agree, mean score gap {np.mean(gaps):.4f}"
    )
    assert agree / len(t.frames) >= 0.99, f"{agree}/{len(t.frames)} frames agree"
    # The published score is the head's probability, to within quantization.
    assert float(np.mean(gaps)) < 0.02


@pytest.mark.parametrize("base", BASES)
def test_the_taught_model_keeps_the_base_network(
    base: str, taught: Callable[[str], Taught], loaded: Any, tmp_path: Path
) -> None:
    t = taught(base)
    data = shared_file(MODELS / base).read_bytes()
    before, after = read_graph(data), read_graph(t.model)
    n = len(t.head.classes)
    # Same ops and tensors; only the classifier layer's outputs changed size.
    assert [o.op for o in after.operators] == [o.op for o in before.operators]
    assert len(after.tensors) == len(before.tensors)
    changed = [
        i for i, (a, b) in enumerate(zip(before.tensors, after.tensors)) if a.shape != b.shape
    ]
    assert changed and all(after.tensors[i].shape[0 if i != changed[-1] else -1] for i in changed)
    assert after.tensors[after.outputs[0]].shape == [1, n]
    out_before, out_after = before.tensors[before.outputs[0]], after.tensors[after.outputs[0]]
    assert (out_after.dtype, out_after.scale, out_after.zero_point) == (
        out_before.dtype,
        out_before.scale,
        out_before.zero_point,
    )
    assert len(t.model) < len(data)  # 1001 outputs' weights gone
    # The body computes the same embedding.
    model, labels = write(tmp_path, t)
    m = loaded(config(model, labels, base_runtime()))
    assert m.embedding is not None
    clf = Classifier(m, top_k=1, min_score=0.0, resize="stretch")
    np.testing.assert_array_equal(clf.embed(t.frames[0]), t.embeddings[0])


def test_quantized_like_the_base(taught: Callable[[str], Taught]) -> None:
    t = taught("mobilenet_v1_1.0_224_quant.tflite")
    g = read_graph(t.model)
    conv = next(o for o in reversed(g.operators) if o.op == "CONV_2D")
    x, w, b = (g.tensors[i] for i in conv.inputs)
    out = g.tensors[conv.outputs[0]]
    assert w.dtype == "uint8" and len(w.scale) == 1 and 0 <= w.zero_point[0] <= 255
    assert b.dtype == "int32" and b.zero_point == [0]
    assert b.scale[0] == pytest.approx(x.scale[0] * w.scale[0], rel=1e-6)
    assert out.dtype == "uint8" and 0 < out.zero_point[0] < 255  # the range includes 0
    softmax = g.tensors[g.outputs[0]]
    assert softmax.scale == [1 / 256] and softmax.zero_point == [0]


def test_int8io_keeps_its_int8_output(taught: Callable[[str], Taught]) -> None:
    t = taught("mobilenet_v1_1.0_224_quant_int8io.tflite")
    g = read_graph(t.model)
    assert g.operators[-1].op == "QUANTIZE"
    out = g.tensors[g.outputs[0]]
    assert (out.dtype, out.scale, out.zero_point) == ("int8", [1 / 256], [-128])


def test_float_base_gives_a_float_head(taught: Callable[[str], Taught]) -> None:
    t = taught("mobilenet_v1_1.0_224_float.tflite")
    g = read_graph(t.model)
    conv = next(o for o in reversed(g.operators) if o.op == "CONV_2D")
    assert g.tensors[conv.inputs[1]].dtype == "float32"
    assert g.tensors[g.outputs[0]].dtype == "float32"


def test_packed_labels_are_the_taught_classes(taught: Callable[[str], Taught]) -> None:
    t = taught("mobilenet_v1_1.0_224_quant_metadata.tflite")
    info = read_model_file(t.model)
    assert info.is_taught
    assert info.labels_text == labels_text(t.head)
    assert info.mean == [127.5] and info.std == [127.5]


def test_taught_model_runs_with_its_packed_labels(
    taught: Callable[[str], Taught], loaded: Any, tmp_path: Path
) -> None:
    t = taught("mobilenet_v1_1.0_224_quant_metadata.tflite")
    model = tmp_path / "model.tflite"
    model.write_bytes(t.model)
    data = {"model": {"path": str(model), "labels": None}}
    m = loaded(parse_config(yaml.safe_dump(data)))
    assert m.labels.labels == tuple(t.head.classes)


@pytest.mark.parametrize("extra", [-1, 1])
def test_a_labels_file_that_does_not_match_is_refused(
    extra: int, taught: Callable[[str], Taught], loaded: Any, tmp_path: Path
) -> None:
    # One line short is not taken for a background class: a taught model has none.
    t = taught("mobilenet_v1_1.0_224_quant.tflite")
    model, labels = write(tmp_path, t)
    names = [*t.head.classes, "extra"] if extra > 0 else t.head.classes[:-1]
    Path(labels).write_text("".join(f"{n}\n" for n in names))
    with pytest.raises(ModelError, match=r"labels do not match the 4 outputs of model\.tflite"):
        loaded(config(model, labels, base_runtime()))


def test_export_refuses_a_head_of_other_dimensions(taught: Callable[[str], Taught]) -> None:
    t = taught("mobilenet_v1_0.25_128_quant.tflite")  # 256-d embeddings
    data = shared_file(MODELS / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    with pytest.raises(TeachError, match=r"256-d embeddings, the base model gives 1280-d"):
        export_model(data, t.head, t.X)


def test_export_refuses_an_edgetpu_base(taught: Callable[[str], Taught]) -> None:
    t = taught("mobilenet_v1_0.25_128_quant.tflite")
    data = shared_file(MODELS / "mobilenet_v1_0.75_192_quant_edgetpu.tflite").read_bytes()
    with pytest.raises(TeachError, match="Edge TPU"):
        export_model(data, t.head, t.X)


def test_a_taught_model_computes_the_features_of_its_base(taught: Callable[[str], Taught]) -> None:
    # Embeddings cached under the features hash stay valid from base to taught model.
    t = taught("mobilenet_v1_1.0_224_quant.tflite")
    base, _ = find_embedding(shared_file(MODELS / t.base).read_bytes())
    mine, _ = find_embedding(t.model)
    other, _ = find_embedding(
        shared_file(MODELS / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    )
    assert base is not None and mine is not None and other is not None
    assert mine.features_sha256 == base.features_sha256 != other.features_sha256
    assert (mine.tensor, mine.dims, mine.scale) == (base.tensor, base.dims, base.scale)
