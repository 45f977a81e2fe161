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
from typing import Optional

from flatbuffers import number_types as N
from flatbuffers.table import Table

METADATA_NAME = "TFLITE_METADATA"
EDGETPU_OP = "edgetpu-custom-op"

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

    @property
    def is_edgetpu(self) -> bool:
        return EDGETPU_OP in self.custom_ops


def _is_flatbuffer_model(data: bytes) -> bool:
    # schema.fbs declares file_identifier "TFL3", stored at bytes 4..8.
    return len(data) >= 8 and data[4:8] == b"TFL3"


def read_model_file(data: bytes) -> ModelFileInfo:
    """Parse ops and metadata from model bytes. Raises ValueError if it is not a TFLite model."""
    if not _is_flatbuffer_model(data):
        raise ValueError("not a TFLite model (no TFL3 identifier)")
    info = ModelFileInfo()
    try:
        model = _root(data)
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
    except (zipfile.BadZipFile, UnicodeDecodeError, KeyError, OSError):
        info.labels_text = None
