"""The inference-engine seam: a TFLite interpreter behind ``InferenceEngine``.

``open_engine`` walks an ordered list of delegates. Each attempt covers all
the places a delegate is known to fail: loading its library, building the
interpreter, ``allocate_tensors()`` (Edge TPU runtime-version errors surface
only here) and one ``invoke()``. A failed attempt logs one WARNING and the
next delegate is tried; ``cpu`` always comes last.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from ..errors import DelegateError, ModelError, first_line
from .embedding import EmbeddingSpec, find_embedding, with_embedding_output
from .metadata import verify_model
from .runtimes import Runtime
from .xnnpack import create_quantized_xnnpack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's place, shape, dtype and quantization."""

    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @classmethod
    def from_details(cls, d: dict[str, Any]) -> TensorSpec:
        scale, zero_point = d.get("quantization", (0.0, 0))
        return cls(
            index=int(d["index"]),
            shape=tuple(int(x) for x in d["shape"]),
            dtype=np.dtype(d["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )


class InferenceEngine(Protocol):
    """Runs one model: put an input, get the raw output."""

    input: TensorSpec
    output: TensorSpec
    delegate: str
    runtime: str
    model_path: str

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on one input (shape without the batch axis); the raw output row."""

    def close(self) -> None:
        """Free the interpreter and its delegate."""


def cpu_count() -> int:
    """Cores this process may use (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class DelegateSettings:
    """What building a delegate needs beyond its name."""

    threads: int
    edgetpu_library: str = "libedgetpu.so.1"
    gpu_library: str = "libtensorflowlite_gpu_delegate.so"


class TFLiteEngine:
    """A tflite Interpreter with one delegate (or none), ready to invoke."""

    def __init__(
        self,
        interpreter: Any,
        runtime: Runtime,
        delegate: str,
        model_path: str,
        keep_alive: list[Any],
        embedding: Optional[EmbeddingSpec] = None,
        embedding_reason: str = "",
    ) -> None:
        self._interpreter = interpreter
        self._keep_alive = keep_alive  # delegate objects must outlive the interpreter
        self.runtime = runtime.label
        self.delegate = delegate
        self.model_path = model_path
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(
                f"{model_path}: has {len(inputs)} inputs and {len(outputs)} outputs;"
                " an image classifier has one image input and one score output"
            )
        self.input = TensorSpec.from_details(inputs[0])
        self.output = TensorSpec.from_details(outputs[0])
        # The pooled features, a second output of the same invoke (see embedding.py).
        self.embedding = embedding if embedding is not None and len(outputs) > 1 else None
        self.embedding_reason = embedding_reason
        self._embedding_index = int(outputs[1]["index"]) if self.embedding is not None else -1
        # The embedding tensor's raw contents after the last infer(), None without one.
        self.last_embedding: Optional[np.ndarray] = None
        self._set = interpreter.set_tensor
        self._invoke = interpreter.invoke
        self._get = interpreter.get_tensor

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        # set_tensor copies into the interpreter's buffer, so the caller may
        # reuse ``tensor``. (Holding a view from Interpreter.tensor() across
        # invoke() would raise "There is at least 1 reference to internal data".)
        self._set(self.input.index, tensor[np.newaxis] if tensor.ndim == 3 else tensor)
        self._invoke()
        # get_tensor returns a copy, safe to keep after the next invoke().
        out: np.ndarray = self._get(self.output.index)
        if self._embedding_index >= 0:
            self.last_embedding = self._get(self._embedding_index)  # 1-5 KB copy
        return out[0] if out.ndim > 1 else out

    def delegated_nodes(self) -> int:
        """How many nodes of the execution graph a delegate took over."""
        try:
            ops = self._interpreter._get_ops_details()
        except Exception:
            return -1
        return sum(1 for op in ops if op.get("op_name") == "DELEGATE")

    def close(self) -> None:
        # Interpreter first, then the delegates it points into.
        self._interpreter = None
        self._set = self._invoke = self._get = _closed
        for obj in self._keep_alive:
            close = getattr(obj, "close", None)
            if close is not None:
                close()
        self._keep_alive = []


def _closed(*_: Any) -> Any:
    raise RuntimeError("engine is closed")


def read_model_bytes(path: str) -> bytes:
    """The model file's bytes, with a one-line error naming the file when unusable."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"{path}: model file not found; run 'edge-daemon models fetch' or fix model.path"
        ) from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a folder; model.path must name a .tflite file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model ({exc.strerror})") from None
    if not data:
        raise ModelError(f"{path}: the model file is empty; fetch it again")
    return data


def damaged_model(path: str, exc: Exception) -> ModelError:
    """The one error for a file that is not a (whole) TFLite model."""
    return ModelError(f"{path}: {exc}; the file is damaged or not a .tflite model, fetch it again")


def build_engine(
    model_path: str,
    runtime: Runtime,
    delegate: str,
    settings: DelegateSettings,
    *,
    embedding: bool = True,
) -> TFLiteEngine:
    """One attempt: load ``delegate``, build, allocate and invoke once. Raises DelegateError.

    With ``embedding`` the model's pooled features become a second output
    (engine/embedding.py) when it has them; without, the model runs as is.
    """
    keep: list[Any] = []
    # The runtime gets the bytes, checked, not the path: given a path it mmaps the
    # file, and a model replaced in place (cp, a download) under a running
    # interpreter kills the process with SIGBUS; a damaged file can SIGSEGV it.
    #
    # Each attempt reads the file itself. Reading it once in load_model and
    # sharing those bytes between attempts was tried: the soak test then saw
    # RSS grow 2.4-2.6 MB over reloads in three runs, failing the 60 s soak
    # test's 2 MB limit, which it passes with a read per attempt.
    data = read_model_bytes(model_path)
    try:
        verify_model(data)
    except ValueError as exc:
        raise damaged_model(model_path, exc) from None
    spec, why = find_embedding(data) if embedding else (None, "not asked for")
    if spec is not None:
        try:
            data = with_embedding_output(data, spec)
        except ValueError as exc:
            spec, why = None, f"its graph cannot be edited ({exc})"
    kwargs: dict[str, Any] = {"model_content": data, "num_threads": settings.threads}
    try:
        if delegate == "edgetpu":
            keep.append(runtime.load_delegate(settings.edgetpu_library))
        elif delegate == "gpu":
            keep.append(runtime.load_delegate(settings.gpu_library))
        elif delegate == "xnnpack" and runtime.name == "tflite_runtime":
            keep.append(create_quantized_xnnpack(runtime.module, runtime.version, settings.threads))
        if keep:
            kwargs["experimental_delegates"] = keep
        # "cpu" means the plain built-in kernels; "xnnpack" on LiteRT and
        # TensorFlow is their own default delegate (AUTO), which covers
        # quantized graphs there.
        default_delegates = delegate == "xnnpack" and runtime.name != "tflite_runtime"
        kwargs["experimental_op_resolver_type"] = runtime.resolver(default_delegates)
        interpreter = runtime.Interpreter(**kwargs)
        interpreter.allocate_tensors()
        engine = TFLiteEngine(interpreter, runtime, delegate, model_path, keep, spec, why)
        engine.infer(np.zeros(engine.input.shape[1:], dtype=engine.input.dtype))
    except ModelError:
        raise
    except Exception as exc:
        for obj in keep:
            if hasattr(obj, "close"):
                obj.close()
        raise DelegateError(first_line(exc)) from exc
    if delegate in ("xnnpack", "edgetpu", "gpu") and engine.delegated_nodes() == 0:
        engine.close()
        raise DelegateError(f"the {delegate} delegate loaded but took no part of the graph")
    return engine


def check_against_cpu(engine: TFLiteEngine, reference: TFLiteEngine, frame: np.ndarray) -> None:
    """Raise DelegateError unless ``engine`` ranks ``frame`` like the plain CPU path.

    The same top-1 passes; so does a near-tie, where the CPU's score for the
    delegate's top-1 is within 2% of the CPU's best (quantized kernels may
    round differently and swap two classes that score alike).
    """
    from ..postprocess import dequantize

    got = dequantize(engine.infer(frame), engine.output.scale, engine.output.zero_point)
    want = dequantize(reference.infer(frame), reference.output.scale, reference.output.zero_point)
    top_got, top_want = int(np.argmax(got)), int(np.argmax(want))
    if top_got != top_want and want[top_want] - want[top_got] > 0.02:
        raise DelegateError(
            f"its top-1 ({top_got}) differs from the CPU's ({top_want}) on the check frame"
        )


def check_frame(spec: TensorSpec) -> np.ndarray:
    """A deterministic, structured input (gradients and bands) for comparing delegates."""
    h, w = spec.shape[1], spec.shape[2]
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [
            (xx * 255 // max(1, w - 1)),
            (yy * 255 // max(1, h - 1)),
            ((xx // 16 + yy // 16) % 2) * 255,
        ],
        axis=-1,
    ).astype(np.uint8)
    out: np.ndarray = img
    if spec.dtype == np.int8:
        out = (img.astype(np.int16) - 128).astype(np.int8)
    elif spec.dtype == np.float32:
        out = ((img.astype(np.float32) - 127.5) / 127.5).astype(np.float32)
    return out


def open_engine(
    model_path: str,
    runtime: Runtime,
    delegates: list[str],
    settings: DelegateSettings,
    *,
    cpu_model_path: Optional[str] = None,
    is_edgetpu_model: bool = False,
    verify: bool = True,
) -> TFLiteEngine:
    """Try ``delegates`` in order (``cpu`` is always last) and return the first that runs.

    An Edge TPU-compiled model runs only with the edgetpu delegate; the other
    attempts use ``cpu_model_path`` when given, else fail with what to do.
    """
    order = [d for d in delegates if d != "cpu"] + ["cpu"]
    failures: list[str] = []
    reference: Optional[TFLiteEngine] = None
    try:
        for delegate in order:
            path = model_path
            if is_edgetpu_model and delegate != "edgetpu":
                if cpu_model_path is None:
                    failures.append(f"{delegate}: the model is compiled for the Edge TPU")
                    continue
                path = cpu_model_path
            try:
                engine = build_engine(path, runtime, delegate, settings)
                if verify and delegate == "xnnpack" and runtime.name == "tflite_runtime":
                    # Our own XNNPACK setup (quantized flags through the C API):
                    # prove it computes what the plain kernels compute.
                    if reference is None:
                        reference = build_engine(path, runtime, "cpu", settings)
                    try:
                        check_against_cpu(engine, reference, check_frame(engine.input))
                    except DelegateError:
                        engine.close()
                        raise
            except DelegateError as exc:
                failures.append(f"{delegate}: {exc}")
                if delegate == order[-1]:
                    break  # nothing left to try: the error below says it all, once
                log.warning(
                    "delegate %s unavailable for %s: %s; trying the next",
                    delegate,
                    os.path.basename(path),
                    exc,
                )
                continue
            return engine
    finally:
        if reference is not None:
            reference.close()
    if is_edgetpu_model and cpu_model_path is None:
        raise ModelError(
            f"{model_path}: compiled for the Edge TPU, and no Edge TPU delegate could run it"
            f" ({failures[0] if failures else 'edgetpu not tried'}); a plain (non-Edge TPU)"
            " model is needed for CPU fallback: set model.cpu_fallback to one"
        )
    raise ModelError(f"{model_path}: no delegate could run this model ({'; '.join(failures)})")
