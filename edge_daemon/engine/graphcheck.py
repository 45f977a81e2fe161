"""The TFLite graph check: tensor indices and data flow a runtime trusts unchecked.

The structure check (metadata.verify_model) proves every offset stays in the
file; this one reads the bounds-checked FlatBuffer as a graph. A damaged byte
in an operator's outputs can make a convolution write into the model's input
or into constant weights, or leave a tensor that a later operator reads with
no producer: both runtimes build and allocate such a graph and then die of
SIGSEGV in invoke(). The rules are the ones TFLite's own model verifier
(tflite::Verify) applies, which neither runtime runs when given the bytes:

- every tensor index is in range (-1, "no tensor", only for operator inputs);
- an operator reads only constants, variables, the subgraph's inputs and
  tensors an earlier operator wrote;
- an operator writes no constant, no subgraph input and no tensor written
  before;
- a subgraph's outputs are all produced (or are inputs or constants);
- an input's shape has no dimension below 1 (an input with 0 channels is a
  division by zero, SIGFPE, in tflite-runtime 2.14's convolution);
- there is a subgraph at all (a lost Model.subgraphs field is a NULL
  dereference in the InterpreterBuilder of both runtimes).
"""

from __future__ import annotations

from flatbuffers import number_types as N
from flatbuffers.table import Table

_OPTIONAL = -1  # kTfLiteOptionalTensor


def _field(t: Table, field_id: int) -> int:
    return int(t.Offset(4 + 2 * field_id))


def _tables(t: Table, field_id: int) -> list[Table]:
    off = _field(t, field_id)
    if not off:
        return []
    start = t.Vector(off)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(off))]


def _ints(t: Table, field_id: int) -> list[int]:
    off = _field(t, field_id)
    if not off:
        return []
    start = t.Vector(off)
    return [int(t.Get(N.Int32Flags, start + 4 * i)) for i in range(t.VectorLen(off))]


def _scalar(t: Table, field_id: int, flags: type) -> int:
    off = _field(t, field_id)
    return int(t.Get(flags, off + t.Pos)) if off else 0


def _has_data(buffer: Table) -> bool:
    off = _field(buffer, 0)  # Buffer.data
    if off and buffer.VectorLen(off) > 0:
        return True
    # Buffer.offset/size: data stored after the FlatBuffer (models > 2 GB).
    return _scalar(buffer, 1, N.Uint64Flags) > 1 and _scalar(buffer, 2, N.Uint64Flags) > 0


def check_graph(data: bytes) -> None:
    """Raise ValueError("damaged model: ...") on a graph no runtime may be given.

    ``data`` must have passed the structure check first.
    """
    root = Table(data, int.from_bytes(data[0:4], "little"))
    opcodes = len(_tables(root, 1))  # Model.operator_codes
    buffers = _tables(root, 4)  # Model.buffers
    subgraphs = _tables(root, 2)  # Model.subgraphs
    if not subgraphs:  # both runtimes read the first subgraph unchecked
        raise ValueError("damaged model: it has no subgraph (no graph to run)")
    for s, subgraph in enumerate(subgraphs):
        _check_subgraph(s, subgraph, opcodes, buffers)


def _check_subgraph(s: int, subgraph: Table, opcodes: int, buffers: list[Table]) -> None:
    tensors = _tables(subgraph, 0)  # SubGraph.tensors
    where = f"subgraph {s}"
    constants: set[int] = set()
    variables: set[int] = set()
    for i, tensor in enumerate(tensors):
        buffer = _scalar(tensor, 2, N.Uint32Flags)  # Tensor.buffer
        # Buffer 0 is the schema's "no data" sentinel; a model may omit the buffers.
        if buffer and buffer >= len(buffers):
            raise ValueError(
                f"damaged model: tensor {i} of {where} names buffer {buffer},"
                f" the model has {len(buffers)}"
            )
        if buffer and _has_data(buffers[buffer]):
            constants.add(i)
        elif _scalar(tensor, 5, N.BoolFlags):  # Tensor.is_variable
            variables.add(i)

    def in_range(indices: list[int], what: str, optional: bool = False) -> None:
        for index in indices:
            if not (0 <= index < len(tensors) or (optional and index == _OPTIONAL)):
                raise ValueError(
                    f"damaged model: {what} of {where} names tensor {index},"
                    f" {where} has {len(tensors)}"
                )

    inputs, outputs = _ints(subgraph, 1), _ints(subgraph, 2)  # SubGraph.inputs/outputs
    in_range(inputs, "an input")
    in_range(outputs, "an output")
    for index in inputs:
        if index in constants:
            raise ValueError(f"damaged model: input tensor {index} of {where} is a constant")
        shape = _ints(tensors[index], 0)  # Tensor.shape
        if any(d < 1 for d in shape):  # tflite-runtime 2.14 divides by a 0 channel count
            raise ValueError(f"damaged model: input tensor {index} of {where} has shape {shape}")
    written: set[int] = set()
    readable = constants | variables | set(inputs)
    for k, op in enumerate(_tables(subgraph, 3)):  # SubGraph.operators
        what = f"operator {k}"
        opcode = _scalar(op, 0, N.Uint32Flags)  # Operator.opcode_index
        if opcode >= opcodes:
            raise ValueError(
                f"damaged model: {what} of {where} has operator code {opcode},"
                f" the model has {opcodes}"
            )
        op_inputs, op_outputs = _ints(op, 1), _ints(op, 2)  # Operator.inputs/outputs
        in_range(op_inputs, f"{what}'s input", optional=True)
        in_range(op_outputs, f"{what}'s output")
        in_range(_ints(op, 8), f"{what}'s intermediate")  # Operator.intermediates
        for index in op_inputs:
            if index != _OPTIONAL and index not in readable and index not in written:
                raise ValueError(
                    f"damaged model: {what} of {where} reads tensor {index},"
                    " which nothing before it writes"
                )
        for index in op_outputs:
            if index in constants or index in inputs or index in written:
                kind = (
                    "a constant"
                    if index in constants
                    else "an input of the subgraph"
                    if index in inputs
                    else "written by an earlier operator"
                )
                raise ValueError(f"damaged model: {what} of {where} writes tensor {index}, {kind}")
            written.add(index)
    for index in outputs:
        if index not in readable and index not in written:
            raise ValueError(
                f"damaged model: output tensor {index} of {where} is written by no operator"
            )
