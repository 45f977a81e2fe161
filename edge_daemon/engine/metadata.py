"""Reading a .tflite file without a runtime: ops, TFLite metadata, packed labels.

A .tflite file is a FlatBuffer (schema.fbs). Models "with metadata" carry a
second FlatBuffer (metadata_schema.fbs, file identifier "M001") in one of the
model's buffers, named "TFLITE_METADATA" in Model.metadata, and a zip archive
appended after the FlatBuffer that holds associated files such as labels.txt.

Only the few fields edge-daemon needs are read, by their schema field ids
(a table's vtable slot for field id N is at byte 4 + 2 * N).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Optional, Union

from flatbuffers import number_types as N
from flatbuffers.table import Table

from .graphcheck import check_graph

METADATA_NAME = "TFLITE_METADATA"
EDGETPU_OP = "edgetpu-custom-op"
# Model.description of a model written by edge_daemon.teach.export.
TAUGHT_DESCRIPTION = "edge-daemon taught model"

# AssociatedFileType.TENSOR_AXIS_LABELS in metadata_schema.fbs.
_AXIS_LABELS = 2
# ProcessUnitOptions union: NormalizationOptions is member 1.
_NORMALIZATION = 1


def _slot(field_id: int) -> int:
    return 4 + 2 * field_id


def _root(buf: bytes, pos: int = 0) -> Table:
    return Table(buf, N.UOffsetTFlags.py_type(int.from_bytes(buf[pos : pos + 4], "little")) + pos)


def _table(t: Table, field_id: int) -> Optional[Table]:
    off = t.Offset(_slot(field_id))
    return Table(t.Bytes, t.Indirect(off + t.Pos)) if off else None


def _string(t: Table, field_id: int) -> Optional[str]:
    off = t.Offset(_slot(field_id))
    return t.String(off + t.Pos).decode("utf-8", "replace") if off else None


def _scalar(t: Table, field_id: int, flags: type, default: int) -> int:
    off = t.Offset(_slot(field_id))
    return int(t.Get(flags, off + t.Pos)) if off else default


def _tables(t: Table, field_id: int) -> list[Table]:
    off = t.Offset(_slot(field_id))
    if not off:
        return []
    start = t.Vector(off)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(off))]


def _floats(t: Table, field_id: int) -> list[float]:
    off = t.Offset(_slot(field_id))
    if not off:
        return []
    start = t.Vector(off)
    return [float(t.Get(N.Float32Flags, start + 4 * i)) for i in range(t.VectorLen(off))]


def _bytes(t: Table, field_id: int) -> bytes:
    off = t.Offset(_slot(field_id))
    if not off:
        return b""
    start = t.Vector(off)
    return bytes(t.Bytes[start : start + t.VectorLen(off)])


@dataclass
class ModelFileInfo:
    """What the file itself says, before any runtime touches it."""

    custom_ops: list[str] = field(default_factory=list)
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    label_file: Optional[str] = None  # name inside the appended zip
    labels_text: Optional[str] = None
    description: str = ""  # Model.description

    @property
    def is_edgetpu(self) -> bool:
        return EDGETPU_OP in self.custom_ops

    @property
    def is_taught(self) -> bool:
        """Written by ``edge-daemon teach train``: its outputs are the taught classes."""
        return self.description.startswith(TAUGHT_DESCRIPTION)


def _is_flatbuffer_model(data: bytes) -> bool:
    # schema.fbs declares file_identifier "TFL3", stored at bytes 4..8.
    return len(data) >= 8 and data[4:8] == b"TFL3"


# -- structure check ---------------------------------------------------------
# tflite-runtime 2.14 builds its interpreter from the bytes without running
# the FlatBuffer verifier: a damaged file (a flipped bit in an offset) makes
# it read outside the file and the process dies of SIGSEGV, where LiteRT says
# "not a valid Flatbuffer buffer". So every table, vtable, vector and string
# reachable from the root is bounds-checked here first, as flatbuffers' C++
# Verifier does for schema.fbs, before a runtime sees the file.
#
# Each table's fields in field-id order: n a scalar of n bytes, "str" a
# string, "vN" a vector of N-byte scalars, "T:Name" a table, "V:Name" a
# vector of tables, "U:Name" a union value (its type is the previous field),
# "-" not checked. An unchecked field (and every field of a table not listed,
# e.g. most builtin options) must lie inside its table; option tables are
# listed only when they hold vectors or strings.
_SCHEMA = {
    "Model": "4 V:OperatorCode V:SubGraph str V:Buffer v4 V:Metadata V:SignatureDef"
    " V:ExternalBufferGroup V:ExternalBuffer",
    "OperatorCode": "1 str 4 4",
    "SubGraph": "V:Tensor v4 v4 V:Operator str 4",
    "Tensor": "v4 1 4 str T:QuantizationParameters 1 T:SparsityParameters v4 1 V:VariantSubType 4",
    "QuantizationParameters": "v4 v4 v4 v8 1 U:QuantizationDetails 4",
    "CustomQuantization": "v1",
    "BlockwiseQuantization": "4 4 4 v4",
    "MultiAxisQuantization": "4 4 4 v4",
    "SparsityParameters": "v4 v4 V:DimensionMetadata",
    "DimensionMetadata": "1 4 1 U:SparseIndexVector 1 U:SparseIndexVector",
    "Int32Vector": "v4",
    "Uint16Vector": "v2",
    "Uint8Vector": "v1",
    "VariantSubType": "v4 1 1",
    "Operator": "4 v4 v4 1 U:BuiltinOptions v1 1 v1 v4 8 8 1 U:BuiltinOptions2 4",
    "Buffer": "v1 8 8",
    "Metadata": "str 4",
    "SignatureDef": "V:TensorMap V:TensorMap str - 4",
    "TensorMap": "str 4",
    "ExternalBufferGroup": "str",
    "ExternalBuffer": "4 4 8 8 str",
    "ConcatEmbeddingsOptions": "4 v4 v4",
    "FullyConnectedOptions": "- - - - - v1",
    "ReshapeOptions": "v4",
    "SqueezeOptions": "v4",
    "VarHandleOptions": "str str",
    "BucketizeOptions": "v4",
}
_TABLES: dict[str, dict[int, Union[int, str]]] = {
    name: {i: int(k) if k.isdigit() else k for i, k in enumerate(kinds.split()) if k != "-"}
    for name, kinds in _SCHEMA.items()
}
# Union type -> table. BuiltinOptions2 (StableHLO) is left to LiteRT, which
# knows it and verifies; tflite-runtime 2.14 never reads it.
_UNIONS: dict[str, dict[int, str]] = {
    "QuantizationDetails": {
        1: "CustomQuantization",
        2: "BlockwiseQuantization",
        3: "MultiAxisQuantization",
    },
    "SparseIndexVector": {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"},
    "BuiltinOptions": {
        3: "ConcatEmbeddingsOptions",
        8: "FullyConnectedOptions",
        17: "ReshapeOptions",
        30: "SqueezeOptions",
        111: "VarHandleOptions",
        115: "BucketizeOptions",
    },
    "BuiltinOptions2": {},
}
_MAX_DEPTH, _MAX_TABLES = 64, 1_000_000  # flatbuffers' Verifier defaults


class _Verifier:
    def __init__(self, data: bytes) -> None:
        self.buf = data
        self.size = len(data)
        self.tables = 0

    def _int(self, at: int, n: int, signed: bool = False) -> int:
        return int.from_bytes(self.buf[at : at + n], "little", signed=signed)

    def _check(self, at: int, n: int, align: int, what: str) -> None:
        if at < 0 or at + n > self.size or at % align:
            raise ValueError(f"damaged FlatBuffer: {what} at byte {at} is out of bounds")

    def _follow(self, at: int, what: str) -> int:
        self._check(at, 4, 4, what)
        target = at + self._int(at, 4)
        if target == at or target - at >= 2**31:
            raise ValueError(f"damaged FlatBuffer: bad offset to {what} at byte {at}")
        self._check(target, 1, 1, what)
        return target

    def _vector(self, at: int, item: int, what: str) -> tuple[int, int]:
        start = self._follow(at, what)
        self._check(start, 4, 4, what)
        count = self._int(start, 4)
        self._check(start + 4, count * item, 1, what)
        return start + 4, count

    def table(self, at: int, name: str, depth: int = 0) -> None:
        self.tables += 1
        if depth > _MAX_DEPTH or self.tables > _MAX_TABLES:
            raise ValueError("damaged FlatBuffer: nested too deep or too many tables")
        self._check(at, 4, 4, name)
        vtable = at - self._int(at, 4, signed=True)
        self._check(vtable, 4, 2, f"{name} vtable")
        vsize, tsize = self._int(vtable, 2), self._int(vtable + 2, 2)
        if vsize < 4 or vsize % 2:
            raise ValueError(f"damaged FlatBuffer: {name} vtable at byte {vtable} is malformed")
        self._check(vtable, vsize, 1, f"{name} vtable")
        self._check(at, tsize, 1, name)
        spec = _TABLES.get(name, {})
        for slot in range((vsize - 4) // 2):
            off = self._int(vtable + 4 + 2 * slot, 2)
            if not off:
                continue
            field_at, kind = at + off, spec.get(slot)
            what = f"{name} field {slot}"
            if kind is None:
                if off >= tsize:
                    raise ValueError(f"damaged FlatBuffer: {what} lies outside its table")
            elif isinstance(kind, int):
                self._check(field_at, kind, kind, what)
            elif kind == "str":
                start, count = self._vector(field_at, 1, what)
                self._check(start, count + 1, 1, what)
                if self.buf[start + count] != 0:
                    raise ValueError(f"damaged FlatBuffer: {what} is not a terminated string")
            elif kind.startswith("v"):
                self._vector(field_at, int(kind[1:]), what)
            elif kind.startswith("T:"):
                self.table(self._follow(field_at, what), kind[2:], depth + 1)
            elif kind.startswith("V:"):
                start, count = self._vector(field_at, 4, what)
                for i in range(count):
                    self.table(self._follow(start + 4 * i, what), kind[2:], depth + 1)
            else:  # "U:": a union; its type byte is the field before
                type_off = self._int(vtable + 2 + 2 * slot, 2) if slot else 0
                member = self.buf[at + type_off] if type_off else 0
                if member:
                    target = self._follow(field_at, what)
                    union = kind[2:]
                    self.table(target, _UNIONS[union].get(member, f"{union} {member}"), depth + 1)
        if name == "Buffer":
            self._buffer_range(at, vtable, vsize)

    def _buffer_range(self, at: int, vtable: int, vsize: int) -> None:
        # Buffer.offset/size place a tensor's data after the FlatBuffer (models > 2 GB).
        def u64(slot: int) -> int:
            off = self._int(vtable + 4 + 2 * slot, 2) if 4 + 2 * slot < vsize else 0
            return self._int(at + off, 8) if off else 0

        offset, size = u64(1), u64(2)
        if offset > 1 and offset + size > self.size:
            raise ValueError(f"damaged FlatBuffer: a buffer at byte {at} points past the file end")


def verify_model(data: bytes) -> None:
    """Bounds-check the whole TFLite FlatBuffer, then its graph (graphcheck).

    Raises ValueError naming what is damaged.
    """
    if not _is_flatbuffer_model(data):
        raise ValueError("not a TFLite model (no TFL3 identifier)")
    verifier = _Verifier(data)
    verifier.table(verifier._follow(0, "the root table"), "Model")
    check_graph(data)


def read_model_file(data: bytes) -> ModelFileInfo:
    """Parse ops and metadata from model bytes. Raises ValueError if it is not a TFLite model."""
    verify_model(data)
    info = ModelFileInfo()
    try:
        model = _root(data)
        info.description = _string(model, 3) or ""  # Model.description
        for code in _tables(model, 1):  # Model.operator_codes
            name = _string(code, 1)  # OperatorCode.custom_code
            if name:
                info.custom_ops.append(name)
        buffers = _tables(model, 4)  # Model.buffers
        for meta in _tables(model, 6):  # Model.metadata
            if _string(meta, 0) == METADATA_NAME:
                index = _scalar(meta, 1, N.Uint32Flags, -1)
                if 0 <= index < len(buffers):
                    _read_metadata(_bytes(buffers[index], 0), info)
    except (IndexError, ValueError, UnicodeError) as exc:
        raise ValueError(f"damaged FlatBuffer ({exc})") from None
    except Exception as exc:  # the flatbuffers reader raises struct.error on truncation
        raise ValueError(f"damaged FlatBuffer ({type(exc).__name__}: {exc})") from None
    if info.label_file is not None or info.mean is not None:
        _read_packed_labels(data, info)
    return info


def _read_metadata(buf: bytes, info: ModelFileInfo) -> None:
    if len(buf) < 8 or buf[4:8] != b"M001":
        return
    root = _root(buf)
    subgraphs = _tables(root, 3)  # ModelMetadata.subgraph_metadata
    if not subgraphs:
        return
    sub = subgraphs[0]
    inputs = _tables(sub, 2)  # SubGraphMetadata.input_tensor_metadata
    if inputs:
        for unit in _tables(inputs[0], 4):  # TensorMetadata.process_units
            if _scalar(unit, 0, N.Uint8Flags, 0) == _NORMALIZATION:
                opts = _table(unit, 1)
                if opts is not None:
                    info.mean = _floats(opts, 0) or None
                    info.std = _floats(opts, 1) or None
    outputs = _tables(sub, 3)  # SubGraphMetadata.output_tensor_metadata
    for tensor in outputs[:1]:
        for assoc in _tables(tensor, 6):  # TensorMetadata.associated_files
            if _scalar(assoc, 2, N.Int8Flags, 0) == _AXIS_LABELS:  # AssociatedFile.type
                info.label_file = _string(assoc, 0)
                break


def _read_packed_labels(data: bytes, info: ModelFileInfo) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            name = info.label_file if info.label_file in names else None
            if name is None:
                texts = [n for n in names if n.endswith(".txt")]
                name = texts[0] if len(texts) == 1 else None
            if name is not None:
                info.label_file = name
                info.labels_text = archive.read(name).decode("utf-8")
    except Exception:  # zipfile raises many types on a damaged archive (NotImplementedError...)
        info.labels_text = None
