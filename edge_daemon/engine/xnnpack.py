"""XNNPACK for quantized graphs on tflite-runtime, through its C API.

tflite-runtime 2.14 applies its built-in XNNPACK delegate (OpResolverType.AUTO)
to float graphs only: the QS8/QU8 flags that let XNNPACK run int8/uint8
operators are off in the wheel's defaults, so a uint8 MobileNet stays on the
reference kernels, 5-10x slower. The wheel's extension module exports the
XNNPACK C API, so we create the delegate ourselves with those flags set and
hand its pointer to ``Interpreter(experimental_delegates=[...])``.

Safety: the options struct is laid out as tensorflow/lite/delegates/xnnpack/
xnnpack_delegate.h of 2.14 declares it, the struct is over-allocated so a
runtime that appends fields cannot write past our buffer, the flags are read
back from the created delegate, and the caller checks that the delegate
claimed the graph and that its outputs agree with the plain CPU path.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Optional

from ..errors import DelegateError

# From xnnpack_delegate.h: enable signed / unsigned 8-bit quantized inference.
FLAG_QS8 = 0x1
FLAG_QU8 = 0x2


class _XnnpackOptions(ctypes.Structure):
    """TfLiteXNNPackDelegateOptions as of TF 2.14, padded.

    typedef struct {
      int32_t num_threads;
      uint32_t flags;
      struct TfLiteXNNPackDelegateWeightsCache* weights_cache;
      bool handle_variable_ops;
      ...
    } TfLiteXNNPackDelegateOptions;

    The struct is returned by value from TfLiteXNNPackDelegateOptionsDefault.
    Structs larger than 16 bytes come back through a caller-provided buffer
    on both x86-64 and AArch64 (and any size on 32-bit ARM), so padding ours
    to 256 bytes keeps the call convention and leaves room for later fields.
    Only num_threads and flags are changed; everything else keeps the
    runtime's own defaults.
    """

    _fields_ = (
        ("num_threads", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("weights_cache", ctypes.c_void_p),
        ("handle_variable_ops", ctypes.c_bool),
        ("_reserved", ctypes.c_uint8 * 232),
    )


# Runtime versions whose header matches _XnnpackOptions' leading fields.
SUPPORTED_VERSIONS = ("2.14",)


class XnnpackDelegate:
    """A TfLiteDelegate* created through the C API, owned by this object.

    It quacks like the runtimes' ``Delegate`` (``_get_native_delegate_pointer``)
    so an ``Interpreter`` accepts it in ``experimental_delegates``. Keep it
    alive for as long as the interpreter that uses it.
    """

    def __init__(self, lib: ctypes.CDLL, threads: int) -> None:
        self._lib: Optional[ctypes.CDLL] = lib
        opts = lib.TfLiteXNNPackDelegateOptionsDefault()
        ctypes.memset(ctypes.addressof(opts._reserved), 0, ctypes.sizeof(opts._reserved))
        opts.num_threads = max(1, threads)
        opts.flags |= FLAG_QS8 | FLAG_QU8
        self._ptr: Optional[int] = lib.TfLiteXNNPackDelegateCreate(ctypes.byref(opts))
        if not self._ptr:
            raise DelegateError("xnnpack: TfLiteXNNPackDelegateCreate returned NULL")
        flags = lib.TfLiteXNNPackDelegateGetFlags(self._ptr)
        if flags & (FLAG_QS8 | FLAG_QU8) != FLAG_QS8 | FLAG_QU8:
            self.close()
            raise DelegateError(
                f"xnnpack: the runtime did not take the quantized flags (flags={flags:#x})"
            )

    def _get_native_delegate_pointer(self) -> Optional[int]:
        return self._ptr

    def close(self) -> None:
        """Free the delegate; only after the interpreter using it is gone."""
        if self._ptr and self._lib is not None:
            self._lib.TfLiteXNNPackDelegateDelete(self._ptr)
        self._ptr = None
        self._lib = None

    def __del__(self) -> None:
        self.close()


def _library(module: Any) -> ctypes.CDLL:
    """The runtime's extension module, which carries the XNNPACK C API."""
    folder = os.path.dirname(module.__file__)
    for name in sorted(os.listdir(folder)):
        if name.startswith("_pywrap_tensorflow_interpreter_wrapper") and name.endswith(".so"):
            lib = ctypes.CDLL(os.path.join(folder, name))
            break
    else:
        raise DelegateError(f"xnnpack: no interpreter extension module in {folder}")
    try:
        lib.TfLiteXNNPackDelegateOptionsDefault.restype = _XnnpackOptions
        lib.TfLiteXNNPackDelegateOptionsDefault.argtypes = []
        lib.TfLiteXNNPackDelegateCreate.restype = ctypes.c_void_p
        lib.TfLiteXNNPackDelegateCreate.argtypes = [ctypes.POINTER(_XnnpackOptions)]
        lib.TfLiteXNNPackDelegateGetFlags.restype = ctypes.c_uint32
        lib.TfLiteXNNPackDelegateGetFlags.argtypes = [ctypes.c_void_p]
        lib.TfLiteXNNPackDelegateDelete.restype = None
        lib.TfLiteXNNPackDelegateDelete.argtypes = [ctypes.c_void_p]
    except AttributeError as exc:
        raise DelegateError(f"xnnpack: the runtime does not export the C API ({exc})") from None
    return lib


def create_quantized_xnnpack(module: Any, version: str, threads: int) -> XnnpackDelegate:
    """An XNNPACK delegate with QS8/QU8 enabled, for tflite-runtime ``version``."""
    if not any(version == v or version.startswith(v + ".") for v in SUPPORTED_VERSIONS):
        raise DelegateError(
            f"xnnpack: tflite-runtime {version} has an options layout this build does not know"
        )
    return XnnpackDelegate(_library(module), threads)
