"""The taught model: the base network with its last layer replaced by the head (pure Python).

The base's classifier layer (MobileNet: CONV_2D 1x1 over the pooled
features, 1001 outputs, then RESHAPE and SOFTMAX, plus QUANTIZE in the int8io
model) keeps its ops and tensors; only what depends on the class count
changes, in place in the FlatBuffer (``engine.graph.Editor``): the layer's
weights and bias (data, shape, quantization), the last dimension of every
tensor after it, the RESHAPE target, the packed labels when the base has
metadata, and the model description (which marks the file as taught).

Quantized consistently with the base, as the TFLite kernels require:

* uint8 weights: per-tensor asymmetric, the range widened to include 0;
  int8 weights: symmetric, zero point 0 (per channel when the base is);
  float32 weights in a float model;
* bias int32, zero point 0, scale = input scale x weight scale;
* the layer's output (the logits): the range the calibration embeddings
  give, widened to include 0 and by ``LOGIT_MARGIN`` so unseen frames do not
  clip; tensors after a RESHAPE/SQUEEZE share it, SOFTMAX keeps 1/256 (zero
  point 0 uint8, -128 int8) and QUANTIZE keeps the base's output.

The head's embedding normalisation is a fixed scale folded into the weights
(see head.py), so the graph needs no extra op and XNNPACK takes all of it.
"""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np

from ..engine.embedding import find_head
from ..engine.graph import (
    Editor,
    Graph,
    deref,
    field_at,
    floats,
    ints,
    read_graph,
    scalar,
    tables,
    vector,
    zip_start,
)
from ..engine.metadata import TAUGHT_DESCRIPTION, read_model_file, verify_model
from ..errors import TeachError
from .head import Head, logits

TAUGHT = TAUGHT_DESCRIPTION
LOGIT_MARGIN = 1.25  # the calibration logit range, widened by this factor


def labels_text(head: Head) -> str:
    """The labels file of a taught model: one class per line, in output order."""
    return "".join(f"{name}\n" for name in head.classes)


def export_model(base: bytes, head: Head, calibration: np.ndarray) -> bytes:
    """A standalone .tflite: ``base`` with its last layer replaced by ``head``.

    ``calibration``: (N, D) embeddings (the training samples') that set the
    quantized logits' range. Raises TeachError when the base has no
    classifier layer over pooled features or the head does not fit it.
    """
    try:
        graph = read_graph(base)
    except (ValueError, IndexError, struct.error) as exc:
        raise TeachError(f"the base model cannot be read ({exc})") from None
    found, why = find_head(graph)
    if found is None:
        raise TeachError(f"the base model has no last layer to replace: {why}")
    layer = graph.operators[found.layer]
    x, w, b = (graph.tensors[i] for i in layer.inputs[:3])
    dims = x.shape[-1]
    if head.dims != dims:
        raise TeachError(
            f"the head was trained on {head.dims}-d embeddings, the base model gives {dims}-d;"
            " train again with this model"
        )
    old = w.shape[0]
    n = len(head.classes)
    calibration = np.atleast_2d(np.asarray(calibration, dtype=np.float32))
    if calibration.size == 0 or calibration.shape[1] != dims:
        raise TeachError(f"calibration embeddings must be (N, {dims}), not {calibration.shape}")
    for t in (w, b):
        if sum(1 for other in graph.tensors if other.buffer == t.buffer) > 1:
            raise TeachError(f"the base model shares the buffer of {t.name}; cannot replace it")

    editor = Editor(base)
    # Shapes: in place (same number of dimensions).
    after = [layer.outputs[0]] + [graph.operators[i].outputs[0] for i in found.tail]
    for index in after:
        _set_last_dim(editor, graph, index, old, n)
    _set_ints(editor, graph.tensors[w.index].pos, 0, [n, *w.shape[1:]])
    _set_ints(editor, graph.tensors[b.index].pos, 0, [n])
    for i in found.tail:
        op = graph.operators[i]
        if op.op == "RESHAPE":
            _reshape_target(editor, graph, op.index, old, n)

    # Weights, bias and the logits' quantization.
    z = logits(head, calibration)
    lo = min(float(z.min()), 0.0) * LOGIT_MARGIN
    hi = max(float(z.max()), 0.0) * LOGIT_MARGIN
    if hi - lo < 1e-6:
        hi = lo + 1.0
    if w.dtype == "float32":
        w_data = head.weights.astype("<f4").reshape(n, *w.shape[1:]).tobytes()
        b_data = head.bias.astype("<f4").tobytes()
        quant: dict[int, tuple[list[float], list[int]]] = {}
    elif w.dtype in ("uint8", "int8") and x.scale:
        w_data, w_scale, w_zero = _quantize_weights(head.weights, w.dtype, len(w.scale) > 1)
        bias_scale = [x.scale[0] * s for s in w_scale]
        per = np.asarray(bias_scale if len(bias_scale) > 1 else bias_scale * n)
        q_bias = np.clip(np.round(head.bias / per), -(2**31), 2**31 - 1).astype("<i4")
        b_data = q_bias.tobytes()
        out = graph.tensors[layer.outputs[0]]
        out_scale, out_zero = _asymmetric(lo, hi, out.dtype)
        quant = {
            w.index: (w_scale, w_zero),
            b.index: (bias_scale, [0] * len(bias_scale)),
            out.index: ([out_scale], [out_zero]),
        }
        for i in found.tail:
            op = graph.operators[i]
            if op.op in ("RESHAPE", "SQUEEZE"):
                quant[op.outputs[0]] = ([out_scale], [out_zero])
    else:
        raise TeachError(f"the base model's last layer has {w.dtype} weights; cannot export")

    for index, (scales, zeros) in quant.items():
        _set_quantization(editor, index, scales, zeros)
    _set_buffer(editor, w.index, w_data)
    _set_buffer(editor, b.index, b_data)
    _set_description(editor, f"{TAUGHT}: {n} classes on {dims}-d embeddings")
    data = _replace_packed_labels(bytes(editor.data), labels_text(head))
    try:
        verify_model(data)
    except ValueError as exc:  # a bug here, never the user's doing
        raise TeachError(f"the exported model does not verify ({exc})") from None
    return data


# -- quantization -------------------------------------------------------------------
def _asymmetric(lo: float, hi: float, dtype: str) -> tuple[float, int]:
    """Scale and zero point mapping [lo, hi] (which includes 0) onto the type's range."""
    scale = (hi - lo) / 255.0
    zero = round(-lo / scale)
    if dtype == "uint8":
        return scale, int(np.clip(zero, 0, 255))
    return scale, int(np.clip(zero - 128, -128, 127))


def _quantize_weights(
    weights: np.ndarray, dtype: str, per_channel: bool
) -> tuple[bytes, list[float], list[int]]:
    W = weights.astype(np.float64)
    if dtype == "uint8":  # per-tensor asymmetric, range including 0
        lo, hi = min(float(W.min()), 0.0), max(float(W.max()), 0.0)
        if hi - lo < 1e-12:
            hi = lo + 1e-6
        scale, zero = _asymmetric(lo, hi, "uint8")
        q = np.clip(np.round(W / scale) + zero, 0, 255).astype(np.uint8)
        return q.tobytes(), [scale], [zero]
    # int8: symmetric, zero point 0; one scale per output channel when the base has them.
    peak = np.abs(W).max(axis=1) if per_channel else np.array([np.abs(W).max()])
    scales = np.maximum(peak, 1e-12) / 127.0
    per = scales[:, None] if per_channel else scales[0]
    q8 = np.clip(np.round(W / per), -127, 127).astype(np.int8)
    return q8.tobytes(), [float(s) for s in scales], [0] * len(scales)


# -- edits -----------------------------------------------------------------------------
def _set_ints(editor: Editor, table: int, field_id: int, values: list[int]) -> None:
    editor.set_vector(table, field_id, struct.pack(f"<{len(values)}i", *values), len(values))


def _set_last_dim(editor: Editor, graph: Graph, tensor: int, old: int, new: int) -> None:
    pos = graph.tensors[tensor].pos
    for field_id in (0, 7):  # shape, shape_signature
        dims = ints(editor.data, pos, field_id)
        if dims and dims[-1] == old:
            _set_ints(editor, pos, field_id, [*dims[:-1], new])


def _reshape_target(editor: Editor, graph: Graph, op: int, old: int, new: int) -> None:
    """RESHAPE's target shape: its options' new_shape and its constant shape input."""
    operator = graph.operators[op]
    opt = field_at(editor.data, operator.pos, 4)
    if opt is not None:
        table = deref(editor.data, opt)
        dims = ints(editor.data, table, 0)
        if dims:
            _set_ints(editor, table, 0, [new if d == old else d for d in dims])
    for t in operator.inputs[1:]:
        where = graph.buffer_data(editor.data, t)
        if where is None or where[1] % 4:
            continue
        start, size = where
        dims = list(struct.unpack_from(f"<{size // 4}i", editor.data, start))
        struct.pack_into(
            f"<{len(dims)}i", editor.data, start, *[new if d == old else d for d in dims]
        )


def _tensor_table(editor: Editor, index: int) -> int:
    """Where tensor ``index`` of subgraph 0 is now (splices move tables)."""
    data = editor.data
    subgraph = tables(data, deref(data, 0), 2)[0]
    where = vector(data, subgraph, 0)
    assert where is not None
    return deref(data, where[0] + 4 * index)


def _quantization(editor: Editor, tensor: int) -> int:
    at = field_at(editor.data, _tensor_table(editor, tensor), 4)
    if at is None:
        raise TeachError(f"tensor {tensor} has no quantization to set")
    return deref(editor.data, at)


def _set_quantization(editor: Editor, tensor: int, scales: list[float], zeros: list[int]) -> None:
    for field_id in (0, 1):  # min / max no longer hold: empty them
        if floats(editor.data, _quantization(editor, tensor), field_id):
            editor.set_vector(_quantization(editor, tensor), field_id, b"", 0, item=4)
    payload = struct.pack(f"<{len(scales)}f", *scales)
    editor.set_vector(_quantization(editor, tensor), 2, payload, len(scales))
    payload = struct.pack(f"<{len(zeros)}q", *zeros)
    editor.set_vector(_quantization(editor, tensor), 3, payload, len(zeros))


def _set_buffer(editor: Editor, tensor: int, payload: bytes) -> None:
    data = editor.data
    index = scalar(data, _tensor_table(editor, tensor), 2, "I", 0)
    editor.set_vector(tables(data, deref(data, 0), 4)[index], 0, payload, len(payload))


def _set_description(editor: Editor, text: str) -> None:
    model = deref(editor.data, 0)
    if field_at(editor.data, model, 3) is None:
        return
    encoded = text.encode("utf-8")
    editor.set_vector(model, 3, encoded + b"\0", len(encoded), item=1)


def _replace_packed_labels(data: bytes, text: str) -> bytes:
    """The taught classes as the packed labels, when the base packs labels (metadata)."""
    info = read_model_file(data)
    start = zip_start(data)
    if info.label_file is None or start is None:
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(i, archive.read(i.filename)) for i in archive.infolist()]
    out = io.BytesIO()
    out.write(data[:start])
    with zipfile.ZipFile(out, "a") as archive:
        for member, content in members:
            if member.filename == info.label_file:
                content = text.encode("utf-8")
            archive.writestr(member, content)
    return out.getvalue()
