"""Fuzzing model files: damaged bytes give one line naming the file, never a crash.

A model downloaded halfway, flipped by a failing SD card, or something else
renamed ``.tflite``: ``engine.read_model_bytes``/``inspect_model``/``load_model``
either load it (a flip in the weights is a valid model) or raise ModelError
with one line that starts with the path. These run in-process on purpose:
a runtime crash (SIGSEGV on a damaged FlatBuffer, which tflite-runtime 2.14
does without the structure check in edge_daemon.engine.metadata) takes the test
run down with it, loudly. A few cases go through ``edge-daemon check`` to
show what a user sees: one line on stderr, no traceback.
"""

from __future__ import annotations

import bisect
import io
import itertools
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
from flatbuffers.table import Table
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_daemon.config import Config, parse_config
from edge_daemon.engine.interpreter import read_model_bytes
from edge_daemon.engine.metadata import _root, _tables
from edge_daemon.engine.model import inspect_model, load_model
from edge_daemon.engine.runtimes import load_runtime
from edge_daemon.errors import ModelError
from edge_daemon.pipeline import Classifier
from tests.fakes import flatbuffer_end, flip_bit, subgraphs_offset_position
from tests.helpers import IMAGES, LABELS, MODELS, run_cli, shared_file

SMALL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
WITH_METADATA = MODELS / "mobilenet_v1_1.0_224_quant_metadata.tflite"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def structure_offsets(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """Byte ranges outside the large weight buffers (where tables and offsets live)."""
    buffers = []
    for buf in _tables(_root(data), 4):  # Model.buffers
        off = buf.Offset(4)  # Buffer.data
        if off:
            start, size = buf.Vector(off), buf.VectorLen(off)
            if size > 64:
                buffers.append((start, start + size))
    ranges, pos = [], 0
    for start, end in sorted(buffers):
        if start > pos:
            ranges.append((pos, start))
        pos = max(pos, end)
    ranges.append((pos, len(data)))
    return ranges, sum(b - a for a, b in ranges)


def offsets(data: bytes) -> st.SearchStrategy[int]:
    """Anywhere in the file, or (more often) in its structure."""
    ranges, total = structure_offsets(data)
    starts = list(itertools.accumulate(b - a for a, b in ranges))

    def place(i: int) -> int:
        k = bisect.bisect_right(starts, i)
        before = starts[k - 1] if k else 0
        return ranges[k][0] + i - before

    return st.integers(0, len(data) - 1) | st.integers(0, total - 1).map(place)


def config_for(model: Path, runtime: str, labels: Optional[Path] = None) -> Config:
    label_path = labels if labels is not None else shared_file(LABELS)
    return parse_config(
        f"model: {{path: '{model}', labels: '{label_path}', top_k: 3}}\n"
        f"engine: {{runtime: {runtime}, delegates: [cpu]}}\n"
    )


class Outcome:
    LOADED = "loaded"
    REFUSED = "refused"


def try_everything(path: Path, cfg: Config) -> str:
    """Read, inspect and load ``path``; a loaded model classifies a frame. What happened."""
    try:
        data = read_model_bytes(str(path))
        inspect_model(str(path), data)
        model = load_model(cfg, load_runtime(cfg.engine.runtime))
    except ModelError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert message.startswith(f"{path}: "), message
        event(f"refused: {message[len(str(path)) + 2 :][:24]}")
        return Outcome.REFUSED
    try:
        clf = Classifier(model, top_k=3, min_score=0.0, resize="stretch")
        frame = np.full((model.input.height, model.input.width, 3), 128, np.uint8)
        result = clf.classify(frame)
        assert len(result.predictions) == 3
    finally:
        model.close()
    event("loaded and classified")
    return Outcome.LOADED


@pytest.fixture(scope="module")
def small() -> bytes:
    return shared_file(SMALL).read_bytes()


@pytest.fixture(scope="module")
def with_metadata() -> bytes:
    return shared_file(WITH_METADATA).read_bytes()


@pytest.fixture
def write_model(tmp_path: Path) -> Callable[[bytes], Path]:
    def write(data: bytes) -> Path:
        path = tmp_path / "model.tflite"
        path.write_bytes(data)
        return path

    return write


@FUZZ
@given(data=st.data())
def test_truncated_at_any_offset(
    data: st.DataObject, small: bytes, runtime_name: str, write_model: Callable[[bytes], Path]
) -> None:
    cut = data.draw(st.integers(0, len(small) - 1) | offsets(small), label="cut")
    path = write_model(small[:cut])
    outcome = try_everything(path, config_for(path, runtime_name))
    if cut < flatbuffer_end(small):
        assert outcome == Outcome.REFUSED


@FUZZ
@given(data=st.data())
def test_bit_flips_anywhere(
    data: st.DataObject, small: bytes, runtime_name: str, write_model: Callable[[bytes], Path]
) -> None:
    flips = data.draw(
        st.lists(st.tuples(offsets(small), st.integers(0, 7)), min_size=1, max_size=16),
        label="flips",
    )
    damaged = bytearray(small)
    for offset, bit in flips:
        damaged[offset] ^= 1 << bit
    path = write_model(bytes(damaged))
    try_everything(path, config_for(path, runtime_name))  # loads, or one line


@FUZZ
@given(data=st.data())
def test_overwritten_bytes_anywhere(
    data: st.DataObject, small: bytes, runtime_name: str, write_model: Callable[[bytes], Path]
) -> None:
    offset = data.draw(offsets(small), label="offset")
    junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
    damaged = small[:offset] + junk + small[offset + len(junk) :]
    path = write_model(damaged[: len(small)])
    try_everything(path, config_for(path, runtime_name))


def vector_start(table: Table, field_id: int) -> int:
    """Where the first element of ``table``'s vector field ``field_id`` is stored."""
    return int(table.Vector(table.Offset(4 + 2 * field_id)))


def logits_output_index(data: bytes) -> int:
    """Operator 28's (the logits convolution's) output tensor index, in the file."""
    operators = _tables(_tables(_root(data), 2)[0], 3)  # Model.subgraphs[0].operators
    return vector_start(operators[28], 2)  # Operator.outputs


def subgraphs_vtable_slot(data: bytes) -> int:
    """Where the Model's vtable says where its subgraphs field is (0: absent)."""
    root = int.from_bytes(data[0:4], "little")
    vtable = root - int.from_bytes(data[root : root + 4], "little", signed=True)
    return vtable + 4 + 2 * 2


def input_channels(data: bytes) -> int:
    """Where the input tensor's channel count (shape[3]) is stored."""
    tensors = _tables(_tables(_root(data), 2)[0], 0)  # SubGraph.tensors
    return vector_start(tensors[0], 0) + 4 * 3  # Tensor.shape[3]


# Overwrites the fuzz tests above found that passed the structure check and
# killed the test run: five zero bytes over the logits convolution's output
# index (it then writes the model's input, and the next operator reads a tensor
# nothing wrote: SIGSEGV in invoke() on both runtimes); the Model vtable's
# subgraphs slot zeroed (SIGSEGV while LiteRT builds the interpreter); the
# input's channel count zeroed (SIGFPE in tflite-runtime 2.14's convolution).
CRASHERS = {
    "op-output-index": (
        logits_output_index,
        5,
        "operator 28 of subgraph 0 writes tensor 0, an input of the subgraph",
    ),
    "no-subgraphs": (subgraphs_vtable_slot, 5, "it has no subgraph (no graph to run)"),
    "zero-channels": (input_channels, 4, "input tensor 0 of subgraph 0 has shape [1, 128, 128, 0]"),
}


@pytest.mark.parametrize("case", list(CRASHERS))
def test_overwrites_that_crashed_a_runtime_are_refused(
    case: str, small: bytes, runtime_name: str, write_model: Callable[[bytes], Path]
) -> None:
    where, length, says = CRASHERS[case]
    at = where(small)
    path = write_model(small[:at] + bytes(length) + small[at + length :])
    with pytest.raises(ModelError) as info:
        load_model(config_for(path, runtime_name))
    assert str(info.value) == (
        f"{path}: damaged model: {says}; the file is damaged or not a .tflite model, fetch it again"
    )


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_model_with_packed_labels_truncated(
    data: st.DataObject, with_metadata: bytes, write_model: Callable[[bytes], Path]
) -> None:
    # Labels come from the zip appended to the FlatBuffer: a cut there loses the labels.
    end = flatbuffer_end(with_metadata)
    cut = data.draw(
        st.integers(0, len(with_metadata) - 1) | st.integers(end, len(with_metadata) - 1)
    )
    path = write_model(with_metadata[:cut])
    cfg = parse_config(f"model: {{path: '{path}', labels: null}}\nengine: {{delegates: [cpu]}}\n")
    assert try_everything(path, cfg) == Outcome.REFUSED


def test_cut_in_the_packed_labels_says_the_file_is_damaged(
    with_metadata: bytes, write_model: Callable[[bytes], Path]
) -> None:
    path = write_model(with_metadata[: len(with_metadata) - 100])
    cfg = parse_config(f"model: {{path: '{path}', labels: null}}\nengine: {{delegates: [cpu]}}\n")
    with pytest.raises(ModelError) as info:
        load_model(cfg)
    assert str(info.value) == (
        f"{path}: the labels packed in the model (labels.txt) cannot be read;"
        " the file is damaged, fetch it again"
    )


def image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, fmt)
    return out.getvalue()


NOT_MODELS = {
    "empty": (b"", "the model file is empty; fetch it again"),
    "text": (b"<html><body>404 Not Found</body></html>\n", "no TFL3 identifier"),
    "png": (image_bytes("PNG"), "no TFL3 identifier"),
    "jpeg": (image_bytes("JPEG"), "no TFL3 identifier"),
    "eight-bytes": (b"\x00\x00\x00\x00TFL3", "damaged FlatBuffer"),
    "header-only": (b"\x10\x00\x00\x00TFL3" + b"\x00" * 16, "damaged FlatBuffer"),
}


@pytest.mark.parametrize("case", list(NOT_MODELS))
def test_files_that_are_not_models(
    case: str, runtime_name: str, write_model: Callable[[bytes], Path]
) -> None:
    data, says = NOT_MODELS[case]
    path = write_model(data)
    with pytest.raises(ModelError) as info:
        load_model(config_for(path, runtime_name))
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert says in message
    assert "\n" not in message


def test_an_image_renamed_tflite(tmp_path: Path) -> None:
    path = tmp_path / "cat.tflite"
    path.write_bytes(shared_file(IMAGES / "cat_720p.jpg").read_bytes())
    with pytest.raises(ModelError) as info:
        inspect_model(str(path), read_model_bytes(str(path)))
    assert str(info.value) == (
        f"{path}: not a TFLite model (no TFL3 identifier); the file is damaged or not a"
        " .tflite model, fetch it again"
    )


def test_a_folder_named_as_the_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"is a folder; model\.path must name a \.tflite file"):
        read_model_bytes(str(tmp_path))


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda d: b"", "the model file is empty"),
        (lambda d: b"just some text\n", "not a TFLite model"),
        (lambda d: image_bytes("PNG"), "not a TFLite model"),
        (lambda d: d[:100], "damaged FlatBuffer"),
        (lambda d: d[: len(d) // 2], "damaged FlatBuffer"),
        # The Model table's offset to its subgraphs, top bits flipped (a SIGSEGV
        # in tflite-runtime 2.14 without the structure check).
        (lambda d: flip_bit(d, subgraphs_offset_position(d) + 3, 6), "damaged FlatBuffer"),
    ],
    ids=["empty", "text", "png", "100-bytes", "half", "bit-flip"],
)
def test_check_command_prints_one_line_naming_the_file(
    damage: Callable[[bytes], bytes],
    says: str,
    small: bytes,
    tmp_path: Path,
    write_config: Callable[..., Path],
) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(damage(small))
    config = write_config(model=str(path), delegates=["cpu"])
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"edge-daemon: error: {path}: ")
    assert says in lines[0]
