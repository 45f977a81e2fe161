"""A TFLite model's graph, read and edited in place at the byte level (pure Python).

Rebuilding a model through a generated schema's object API drops what that
API does not model (the packed labels of a model with metadata), and
ai-edge-litert's generated schema module is not there with tflite-runtime.
So edits here keep the file as it is and change only what they must:

* ``read_graph`` reads subgraph 0's tensors and operators by schema field id.
* ``Editor.splice`` replaces a byte range by another of a different length
  and fixes every offset that crosses it: each table's vtable offset, each
  offset to a table, vector or string (found by walking the whole FlatBuffer
  with the schema of ``metadata._TABLES``), ``Buffer.offset`` and the
  absolute offsets of the zip archive appended after the FlatBuffer. Lengths
  change by multiples of 16, so every object behind the splice keeps its
  alignment (tensor data, the nested metadata FlatBuffer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from .metadata import _TABLES, _UNIONS, verify_model

# TensorType in schema.fbs
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}
TYPE_CODES = {v: k for k, v in TENSOR_TYPES.items()}
# BuiltinOperator in schema.fbs (the ones this project looks at)
OPS = {
    1: "AVERAGE_POOL_2D",
    3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE",
    9: "FULLY_CONNECTED",
    11: "L2_NORMALIZATION",
    22: "RESHAPE",
    25: "SOFTMAX",
    32: "CUSTOM",
    40: "MEAN",
    43: "SQUEEZE",
    114: "QUANTIZE",
}
ALIGN = 16


def _u32(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _i32(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little", signed=True)


def _u16(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def field_at(data: bytes | bytearray, table: int, field_id: int) -> Optional[int]:
    """Where a table's field lies, or None when it is absent (default)."""
    vtable = table - _i32(data, table)
    vsize = _u16(data, vtable)
    slot = 4 + 2 * field_id
    if slot >= vsize:
        return None
    off = _u16(data, vtable + slot)
    return table + off if off else None


def deref(data: bytes | bytearray, at: int) -> int:
    """The object a uoffset at ``at`` points to."""
    return at + _u32(data, at)


def vector(data: bytes | bytearray, table: int, field_id: int) -> Optional[tuple[int, int]]:
    """(first element position, length) of a vector field, None when absent."""
    at = field_at(data, table, field_id)
    if at is None:
        return None
    start = deref(data, at)
    return start + 4, _u32(data, start)


def ints(data: bytes | bytearray, table: int, field_id: int, fmt: str = "i") -> list[int]:
    v = vector(data, table, field_id)
    if v is None:
        return []
    start, n = v
    size = struct.calcsize(fmt)
    return list(struct.unpack_from(f"<{n}{fmt}", data, start)) if size else []


def floats(data: bytes | bytearray, table: int, field_id: int) -> list[float]:
    v = vector(data, table, field_id)
    if v is None:
        return []
    start, n = v
    return list(struct.unpack_from(f"<{n}f", data, start))


def tables(data: bytes | bytearray, table: int, field_id: int) -> list[int]:
    v = vector(data, table, field_id)
    if v is None:
        return []
    start, n = v
    return [deref(data, start + 4 * i) for i in range(n)]


def string(data: bytes | bytearray, table: int, field_id: int) -> str:
    at = field_at(data, table, field_id)
    if at is None:
        return ""
    start = deref(data, at)
    return bytes(data[start + 4 : start + 4 + _u32(data, start)]).decode("utf-8", "replace")


def scalar(data: bytes | bytearray, table: int, field_id: int, fmt: str, default: int) -> int:
    at = field_at(data, table, field_id)
    return int(struct.unpack_from("<" + fmt, data, at)[0]) if at is not None else default


# -- the graph -----------------------------------------------------------------
@dataclass
class Tensor:
    index: int
    pos: int  # the Tensor table's position
    name: str
    shape: list[int]
    dtype: str
    buffer: int
    scale: list[float]
    zero_point: list[int]


@dataclass
class Operator:
    index: int
    pos: int
    op: str  # builtin name, the custom code for a custom op, or "BUILTIN_<n>"
    inputs: list[int]
    outputs: list[int]


@dataclass
class Graph:
    """Subgraph 0 of a model, with the positions an edit needs."""

    model: int  # the Model table's position
    subgraph: int
    subgraphs: int
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    buffers: list[int]  # Buffer table positions

    def producer(self, tensor: int) -> Optional[Operator]:
        for op in self.operators:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: int) -> list[Operator]:
        return [op for op in self.operators if tensor in op.inputs]

    def buffer_data(self, data: bytes | bytearray, tensor: int) -> Optional[tuple[int, int]]:
        """(position, length) of a tensor's constant data, None when it has none."""
        index = self.tensors[tensor].buffer
        if not 0 < index < len(self.buffers):
            return None
        return vector(data, self.buffers[index], 0)


def _op_name(data: bytes | bytearray, code: int) -> str:
    custom = string(data, code, 1)
    if custom:
        return custom
    deprecated = scalar(data, code, 0, "b", 0)
    builtin = scalar(data, code, 3, "i", 0)
    n = max(deprecated, builtin)
    return OPS.get(n, f"BUILTIN_{n}")


def read_graph(data: bytes | bytearray, *, verify: bool = True) -> Graph:
    """Subgraph 0's tensors and operators. Raises ValueError for a damaged model.

    ``verify=False`` skips the bounds check, for bytes an Editor is changing.
    """
    if verify:
        verify_model(bytes(data))
    model = deref(data, 0)
    codes = [_op_name(data, c) for c in tables(data, model, 1)]
    subgraphs = tables(data, model, 2)
    if not subgraphs:
        raise ValueError("the model has no subgraph")
    sub = subgraphs[0]
    tensors = []
    for i, t in enumerate(tables(data, sub, 0)):
        q = deref(data, field_at(data, t, 4) or 0) if field_at(data, t, 4) else None
        tensors.append(
            Tensor(
                index=i,
                pos=t,
                name=string(data, t, 3),
                shape=ints(data, t, 0),
                dtype=TENSOR_TYPES.get(scalar(data, t, 1, "b", 0), "other"),
                buffer=scalar(data, t, 2, "I", 0),
                scale=floats(data, q, 2) if q is not None else [],
                zero_point=ints(data, q, 3, "q") if q is not None else [],
            )
        )
    operators = []
    for i, o in enumerate(tables(data, sub, 3)):
        code = scalar(data, o, 0, "I", 0)
        operators.append(
            Operator(
                index=i,
                pos=o,
                op=codes[code] if code < len(codes) else "?",
                inputs=ints(data, o, 1),
                outputs=ints(data, o, 2),
            )
        )
    return Graph(
        model=model,
        subgraph=sub,
        subgraphs=len(subgraphs),
        tensors=tensors,
        operators=operators,
        inputs=ints(data, sub, 1),
        outputs=ints(data, sub, 2),
        buffers=tables(data, model, 4),
    )


# -- every offset in the file ----------------------------------------------------
@dataclass
class Offsets:
    uoffsets: set[int]  # positions of uoffset fields (and vector-of-table elements)
    tables: set[int]  # table positions (each holds an soffset to its vtable)
    absolute: set[int]  # positions of Buffer.offset (u64, from the file start)


def find_offsets(data: bytes | bytearray) -> Offsets:
    """Walk the whole FlatBuffer and note every offset. Raises ValueError on the unknown."""
    found = Offsets(set(), set(), set())
    found.uoffsets.add(0)
    _walk(data, deref(data, 0), "Model", found)
    return found


def _walk(data: bytes | bytearray, at: int, name: str, found: Offsets) -> None:
    if at in found.tables:
        return
    found.tables.add(at)
    spec = _TABLES.get(name)
    vtable = at - _i32(data, at)
    vsize = _u16(data, vtable)
    for slot in range((vsize - 4) // 2):
        off = _u16(data, vtable + 4 + 2 * slot)
        if not off:
            continue
        kind = spec.get(slot) if spec is not None else None
        where = at + off
        if kind is None or isinstance(kind, int):
            if spec is None and name.startswith("BuiltinOptions2"):
                raise ValueError(f"cannot edit a model using {name}")
            continue
        found.uoffsets.add(where)
        if kind == "str" or kind.startswith("v"):
            continue
        if kind.startswith("T:"):
            _walk(data, deref(data, where), kind[2:], found)
        elif kind.startswith("V:"):
            start = deref(data, where)
            for i in range(_u32(data, start)):
                element = start + 4 + 4 * i
                found.uoffsets.add(element)
                _walk(data, deref(data, element), kind[2:], found)
        else:  # union
            type_off = _u16(data, vtable + 2 + 2 * slot)
            member = data[at + type_off] if type_off else 0
            union = kind[2:]
            table = _UNIONS[union].get(member)
            if table is None and union == "BuiltinOptions2":
                raise ValueError("cannot edit a model using StableHLO options")
            _walk(data, deref(data, where), table or f"{union} {member}", found)
    if name == "Buffer":
        at_offset = field_at(data, at, 1)
        if at_offset is not None and int.from_bytes(data[at_offset : at_offset + 8], "little") > 1:
            found.absolute.add(at_offset)


def _zip_layout(data: bytes | bytearray) -> Optional[tuple[int, list[int]]]:
    """The appended zip's end record position and its central directory entries."""
    end = bytes(data).rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return None
    count = _u16(data, end + 10)
    size, offset = _u32(data, end + 12), _u32(data, end + 16)
    cd = end - size
    if cd < 0 or offset != cd:  # offsets not absolute (or not a zip of ours): leave alone
        return None
    entries = []
    at = cd
    for _ in range(count):
        if data[at : at + 4] != b"PK\x01\x02":
            return None
        entries.append(at)
        at += 46 + _u16(data, at + 28) + _u16(data, at + 30) + _u16(data, at + 32)
    return end, entries


def zip_start(data: bytes | bytearray) -> Optional[int]:
    """Where the appended zip begins (the FlatBuffer's end), None without one."""
    layout = _zip_layout(data)
    if layout is None:
        return None
    end, entries = layout
    heads = [_u32(data, e + 42) for e in entries]
    return min(heads) if heads else end - _u32(data, end + 12)


class Editor:
    """A model's bytes being edited; ``data`` is the result."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.offsets = find_offsets(self.data)

    def splice(self, pos: int, delete: int, insert: bytes, *, keep_start: bool = True) -> None:
        """Replace ``delete`` bytes at ``pos`` by ``insert``; fix every crossing offset.

        An offset to ``pos`` itself keeps pointing there when ``keep_start``
        (the object at ``pos`` was replaced), else follows what was there.
        Nothing may point inside the replaced range.
        """
        delta = len(insert) - delete
        if delta % ALIGN:
            raise ValueError(f"a splice must change the length by a multiple of {ALIGN}")
        data = self.data
        end = pos + delete

        def moved(x: int) -> int:
            if x < pos or (x == pos and keep_start):
                return x
            if x >= end:
                return x + delta
            raise ValueError(f"byte {x} lies in the replaced range {pos}..{end}")

        new_u = set()
        for at in self.offsets.uoffsets:
            target = deref(data, at)
            if pos <= at < end:
                raise ValueError(f"an offset at byte {at} lies in the replaced range")
            value = moved(target) - moved(at)
            struct.pack_into("<I", data, at, value)
            new_u.add(moved(at))
        new_t = set()
        for at in self.offsets.tables:
            vt = at - _i32(data, at)
            struct.pack_into("<i", data, at, moved(at) - moved(vt))
            new_t.add(moved(at))
        new_a = set()
        for at in self.offsets.absolute:
            value = int.from_bytes(data[at : at + 8], "little")
            struct.pack_into("<Q", data, at, moved(value))
            new_a.add(moved(at))
        layout = _zip_layout(data)
        if layout is not None and delta:
            zend, entries = layout
            for e in entries:
                struct.pack_into("<I", data, e + 42, _u32(data, e + 42) + delta)
            struct.pack_into("<I", data, zend + 16, _u32(data, zend + 16) + delta)
        data[pos:end] = insert
        self.offsets = Offsets(new_u, new_t, new_a)

    # -- helpers built on splice -------------------------------------------------
    def set_vector(
        self, table: int, field_id: int, payload: bytes, count: int, *, item: int = 0
    ) -> None:
        """Give a table's (present) vector field new contents, in place or resized.

        ``payload`` holds ``count`` elements of ``item`` bytes (by default
        ``len(payload) // count``) and anything after them (a string's NUL).
        """
        at = field_at(self.data, table, field_id)
        if at is None:
            raise ValueError("the vector field is absent")
        start = deref(self.data, at)
        old_len = _u32(self.data, start)
        item = item or (len(payload) // count if count else 1)
        old_bytes = 4 + old_len * item + (len(payload) - count * item)
        new = struct.pack("<I", count) + payload
        if len(new) <= old_bytes and (old_bytes - len(new)) < ALIGN:
            self.data[start : start + len(new)] = new  # fits: the rest stays as padding
            return
        pad = (old_bytes - len(new)) % ALIGN
        self.splice(start, old_bytes, new + b"\0" * pad)

    def append_vector(self, table: int, field_id: int, payload: bytes, count: int) -> None:
        """Point a table's vector field at a new vector, inserted before the old one."""
        at = field_at(self.data, table, field_id)
        if at is None:
            raise ValueError("the vector field is absent")
        start = deref(self.data, at)
        new = struct.pack("<I", count) + payload
        new += b"\0" * (-len(new) % ALIGN)
        self.splice(start, 0, new, keep_start=False)
        struct.pack_into("<I", self.data, at, start - at)
        # ``at`` now points at the new vector (which holds no offsets itself).
