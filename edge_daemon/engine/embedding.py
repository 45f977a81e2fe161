"""The base network's pooled feature vector as a second output of the same invoke.

``find_embedding`` locates the tensor generically: walking back from the
scores output over the tail ops (SOFTMAX, RESHAPE, SQUEEZE, QUANTIZE,
DEQUANTIZE) to the classifier layer (CONV_2D or FULLY_CONNECTED), whose input
must be the output of an AVERAGE_POOL_2D or MEAN with 1x1 spatial size
(possibly through a RESHAPE/SQUEEZE): MobileNet v1's 1024-d
``AvgPool_1a`` (tensor 82 in mobilenet_v1_1.0_224_quant), v2's 1280-d.

``with_embedding_output`` appends that tensor to subgraph 0's outputs by
editing the FlatBuffer bytes (``graph.Editor``), so the metadata buffer and
the appended zip stay as they were. The runtime then keeps the tensor's data
after every invoke; XNNPACK still takes the whole graph and the invoke costs
the same (``experimental_preserve_all_tensors`` would split XNNPACK's graph
into one-op pieces, and tflite-runtime turns the default delegates off with
it).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .graph import Editor, Graph, read_graph

TAIL_OPS = ("SOFTMAX", "RESHAPE", "SQUEEZE", "QUANTIZE", "DEQUANTIZE")
CLASSIFIER_OPS = ("CONV_2D", "FULLY_CONNECTED")
POOL_OPS = ("AVERAGE_POOL_2D", "MEAN")
FLATTEN_OPS = ("RESHAPE", "SQUEEZE")


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which tensor holds the pooled features, and how to read it."""

    tensor: int  # tensor index in subgraph 0
    name: str
    dims: int
    dtype: str  # "uint8" | "int8" | "float32"
    scale: float
    zero_point: int
    # sha256 of what computes the tensor (the ops up to it, their weights and
    # quantization): the same for a base model and every model taught on it,
    # so embeddings cached under it stay valid across those models.
    features_sha256: str = ""
    # uint8/int8 code (as uint8) -> float32 value: one table look-up per frame.
    _lut: Optional[np.ndarray] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dtype in ("uint8", "int8"):
            codes = np.arange(256, dtype=np.uint8).view(np.dtype(self.dtype)).astype(np.float32)
            lut = ((codes - self.zero_point) * self.scale).astype(np.float32)
            object.__setattr__(self, "_lut", lut)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """The float32 (dims,) vector from the tensor's raw contents (a new array)."""
        flat = raw.reshape(-1)
        if self._lut is not None:
            out: np.ndarray = np.take(self._lut, flat.view(np.uint8))
            return out
        return flat.astype(np.float32, copy=True)


@dataclass(frozen=True)
class Head:
    """Where the classifier layer sits: the embedding, the layer, the tail to the output."""

    embedding: int  # tensor index
    layer: int  # operator index of the CONV_2D / FULLY_CONNECTED
    tail: tuple[int, ...]  # operator indices after the layer, in order, to the output


def find_head(graph: Graph) -> tuple[Optional[Head], str]:
    """The classifier layer and the pooled tensor it reads, or why there is none."""
    if not graph.outputs:
        return None, "the model has no output"
    if any(op.op == "edgetpu-custom-op" for op in graph.operators):
        return None, (
            "it is compiled for the Edge TPU: the whole network is one edgetpu-custom-op whose"
            " inner tensors cannot be read; teach with the plain (CPU) model"
        )
    tensor = graph.outputs[0]
    tail: list[int] = []
    op = graph.producer(tensor)
    while op is not None and op.op in TAIL_OPS:
        tail.append(op.index)
        op = graph.producer(op.inputs[0])
    if op is None or op.op not in CLASSIFIER_OPS:
        found = op.op if op is not None else "the input"
        return None, (
            f"its scores do not come from a CONV_2D or FULLY_CONNECTED layer (found {found})"
        )
    layer = op
    x = layer.inputs[0]
    source = graph.producer(x)
    if source is not None and source.op in FLATTEN_OPS:
        x = source.inputs[0]
        source = graph.producer(x)
    if source is None or source.op not in POOL_OPS:
        found = source.op if source is not None else "the input"
        return None, (
            f"its last layer does not read a pooled tensor (it reads the output of {found},"
            " not of AVERAGE_POOL_2D or MEAN)"
        )
    shape = graph.tensors[x].shape
    if len(shape) not in (2, 4) or shape[0] != 1 or (len(shape) == 4 and shape[1:3] != [1, 1]):
        return None, f"its pooled tensor has shape {shape}, not [1, 1, 1, D]"
    if len(graph.consumers(layer.outputs[0])) > 1:
        return None, "its last layer's output feeds more than one operator"
    return Head(x, layer.index, tuple(reversed(tail))), ""


def find_embedding(data: bytes) -> tuple[Optional[EmbeddingSpec], str]:
    """The pooled feature tensor of the model in ``data``: (spec, "") or (None, why not)."""
    try:
        graph = read_graph(data)
    except (ValueError, IndexError, struct.error) as exc:
        return None, f"its graph cannot be read ({exc})"
    head, why = find_head(graph)
    if head is None:
        return None, why
    t = graph.tensors[head.embedding]
    if t.dtype not in ("uint8", "int8", "float32"):
        return None, f"its pooled tensor is {t.dtype}, not uint8, int8 or float32"
    if t.dtype != "float32" and len(t.scale) != 1:
        return None, "its pooled tensor is not quantized per tensor"
    scale = t.scale[0] if t.scale else 0.0
    zero = t.zero_point[0] if t.zero_point else 0
    return (
        EmbeddingSpec(
            head.embedding,
            t.name,
            t.shape[-1],
            t.dtype,
            float(scale),
            int(zero),
            features_sha256(data, graph, head.embedding),
        ),
        "",
    )


def features_sha256(data: bytes, graph: Graph, tensor: int) -> str:
    """sha256 over the ops that compute ``tensor``: kinds, tensors, constants."""
    needed = {tensor}
    ops = []
    for op in reversed(graph.operators):
        if needed.intersection(op.outputs):
            ops.append(op)
            needed.update(i for i in op.inputs if i >= 0)
    digest = hashlib.sha256()
    for op in reversed(ops):
        digest.update(f"{op.op}|{op.inputs}|{op.outputs}\n".encode())
        for i in [*op.inputs, *op.outputs]:
            if i < 0:
                continue
            t = graph.tensors[i]
            digest.update(f"{i}|{t.shape}|{t.dtype}|{t.scale}|{t.zero_point}\n".encode())
            where = graph.buffer_data(data, i)
            if where is not None and i in op.inputs:
                digest.update(data[where[0] : where[0] + where[1]])
    return digest.hexdigest()


def with_embedding_output(data: bytes, spec: EmbeddingSpec) -> bytes:
    """The same model with ``spec.tensor`` appended to subgraph 0's outputs.

    Only the outputs vector changes; every other byte (weights, metadata,
    the appended zip) is kept, moved by a multiple of 16 bytes.
    """
    graph = read_graph(data)
    if spec.tensor in graph.outputs:
        return data
    outputs = [*graph.outputs, spec.tensor]
    editor = Editor(data)
    editor.append_vector(
        graph.subgraph, 2, struct.pack(f"<{len(outputs)}i", *outputs), len(outputs)
    )
    return bytes(editor.data)
