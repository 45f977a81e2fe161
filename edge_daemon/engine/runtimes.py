"""Finding a TFLite runtime: ai_edge_litert, tflite_runtime or tensorflow.lite.

The three expose the same ``Interpreter`` / ``load_delegate`` /
``OpResolverType`` API. They are tried in the order of their upkeep:
LiteRT first (maintained, NumPy 2), tflite-runtime (frozen at 2.14, NumPy 1
only), then full TensorFlow (huge; deprecated for the interpreter).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import DelegateError, RuntimeNotFoundError, first_line

# name used in config/status -> (module to import, distribution for its version)
RUNTIMES: dict[str, tuple[str, str]] = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite", "tensorflow"),
}

INSTALL_HINT = (
    "install one with: pip install 'edge-daemon[litert]' (ai-edge-litert, recommended)"
    " or 'edge-daemon[tflite]' (tflite-runtime, NumPy 1 only; the one for 32-bit Pi OS)"
)


@dataclass(frozen=True)
class Runtime:
    """An imported runtime: its name, version and interpreter module."""

    name: str
    version: str
    module: ModuleType

    @property
    def Interpreter(self) -> Any:
        mod = self.module
        return mod.Interpreter

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def load_delegate(self, library: str, options: dict[str, Any] | None = None) -> Any:
        """Load an external delegate library (Edge TPU, GPU) with this runtime."""
        # Load the library ourselves first: when it is missing, the runtimes'
        # Delegate object fails half-built and prints a stray traceback from
        # its __del__. A clean OSError here becomes the one-line reason.
        try:
            ctypes.CDLL(library)
        except OSError as exc:
            raise DelegateError(str(exc).strip() or f"{library}: cannot be loaded") from None
        fn = getattr(self.module, "load_delegate", None)
        if fn is None:  # tensorflow.lite keeps it under experimental
            fn = self.module.experimental.load_delegate
        return fn(library, options)

    def resolver(self, with_default_delegates: bool) -> Any:
        """The op resolver type: AUTO applies the runtime's built-in XNNPACK, the other not."""
        types = getattr(self.module, "OpResolverType", None)
        if types is None:
            types = self.module.experimental.OpResolverType
        return types.AUTO if with_default_delegates else types.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def _import(name: str) -> Runtime:
    module_name, dist = RUNTIMES[name]
    module = importlib.import_module(module_name)
    if name == "tensorflow":
        module = importlib.import_module("tensorflow").lite
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = str(getattr(module, "__version__", "unknown"))
    return Runtime(name=name, version=version, module=module)


def available_runtimes() -> list[str]:
    """Names of the runtimes that import on this machine, in preference order."""
    found = []
    for name in RUNTIMES:
        try:
            _import(name)
        except Exception:
            continue
        found.append(name)
    return found


def load_runtime(choice: str = "auto") -> Runtime:
    """Import the runtime ``choice`` names, or with "auto" the first that imports."""
    names = list(RUNTIMES) if choice == "auto" else [choice]
    reasons = []
    for name in names:
        try:
            return _import(name)
        except Exception as exc:
            reasons.append(f"{name}: {first_line(exc)}")
    if choice == "auto":
        raise RuntimeNotFoundError(f"no TFLite runtime could be imported; {INSTALL_HINT}")
    raise RuntimeNotFoundError(
        f"engine.runtime: {choice} could not be imported ({reasons[0]}); {INSTALL_HINT},"
        " or set engine.runtime: auto"
    )
