"""Loading a model for classification: file checks, labels, normalisation, engine."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Config
from ..errors import ModelError
from ..labels import LabelMap, align_labels, parse_labels
from ..preprocess import InputSpec, pixel_lut
from .autoselect import choose_delegates
from .embedding import EmbeddingSpec
from .interpreter import (
    DelegateSettings,
    TFLiteEngine,
    cpu_count,
    damaged_model,
    open_engine,
    read_model_bytes,
)
from .metadata import ModelFileInfo, read_model_file
from .runtimes import Runtime, load_runtime

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to classify: engine, labels and input mapping."""

    path: str
    sha256: str
    engine: TFLiteEngine
    labels: LabelMap
    input: InputSpec
    lut: np.ndarray
    info: ModelFileInfo
    # The pooled features read after each invoke (see embedding.py); None, with
    # the reason, when the model offers none.
    embedding: Optional[EmbeddingSpec] = None
    embedding_reason: str = ""

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def close(self) -> None:
        self.engine.close()


def inspect_model(path: str, data: bytes) -> ModelFileInfo:
    """Check the bytes are a TFLite model and read its metadata (no runtime needed)."""
    try:
        return read_model_file(data)
    except ValueError as exc:
        raise damaged_model(path, exc) from None


def load_labels(path: Optional[str], info: ModelFileInfo, model_path: str) -> tuple[list[str], str]:
    """Labels from ``path``, else those packed in the model; with where they came from."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"{path}: labels file not found; fix model.labels") from None
        except UnicodeDecodeError:
            raise ModelError(f"{path}: labels file is not UTF-8 text; fix model.labels") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the labels ({exc.strerror})") from None
        return parse_labels(text, path), path
    if info.labels_text is not None:
        where = f"{model_path}!{info.label_file}"
        return parse_labels(info.labels_text, where), where
    if info.label_file is not None:  # named by the metadata, but the archive is cut or damaged
        raise ModelError(
            f"{model_path}: the labels packed in the model ({info.label_file}) cannot be read;"
            " the file is damaged, fetch it again"
        )
    raise ModelError(
        f"{model_path}: has no labels packed in its metadata; set model.labels (classify:"
        " --labels) to a labels file"
    )


def load_model(cfg: Config, runtime: Optional[Runtime] = None) -> LoadedModel:
    """Load, check and test-invoke the model ``cfg`` names. Raises ModelError/DelegateError."""
    runtime = runtime or load_runtime(cfg.engine.runtime)
    path = cfg.model.path
    data = read_model_bytes(path)
    info = inspect_model(path, data)
    sha = hashlib.sha256(data).hexdigest()
    cpu_fallback = cfg.model.cpu_fallback
    if cpu_fallback is not None:
        fallback_info = inspect_model(cpu_fallback, read_model_bytes(cpu_fallback))
        if fallback_info.is_edgetpu:
            raise ModelError(
                f"{cpu_fallback}: model.cpu_fallback is itself compiled for the Edge TPU;"
                " name the plain model"
            )
    settings = DelegateSettings(
        threads=cfg.engine.threads or cpu_count(),
        edgetpu_library=cfg.engine.edgetpu_library,
        gpu_library=cfg.engine.gpu_library,
    )
    if cfg.engine.delegates == "auto":
        engine = choose_delegates(
            path,
            sha,
            runtime,
            settings,
            cfg,
            cpu_model_path=cpu_fallback,
            is_edgetpu_model=info.is_edgetpu,
        )
    else:
        engine = open_engine(
            path,
            runtime,
            list(cfg.engine.delegates),
            settings,
            cpu_model_path=cpu_fallback,
            is_edgetpu_model=info.is_edgetpu,
        )
    try:
        # Labels after the engine: a model that cannot run is the first thing to fix.
        labels, labels_source = load_labels(cfg.model.labels, info, path)
        spec = _input_spec(engine, path)
        label_map = align_labels(
            labels,
            int(np.prod(engine.output.shape[1:])),
            labels_source,
            os.path.basename(path),
            background=not info.is_taught,  # a taught model's outputs are its classes
        )
    except ModelError:
        engine.close()
        raise
    mean = cfg.model.mean if cfg.model.mean is not None else _one(info.mean)
    std = cfg.model.std if cfg.model.std is not None else _one(info.std)
    if spec.dtype != np.float32 and cfg.model.mean is None and cfg.model.std is None:
        # Quantized input: raw pixels unless the user asked otherwise (see pixel_lut).
        mean = std = None
    lut = pixel_lut(spec, mean, std)
    return LoadedModel(
        path,
        sha,
        engine,
        label_map,
        spec,
        lut,
        info,
        embedding=engine.embedding,
        embedding_reason=engine.embedding_reason,
    )


def _one(values: Optional[list[float]]) -> Optional[float]:
    """Metadata gives per-channel lists; MobileNets use one value for all three."""
    if not values:
        return None
    if len(set(values)) > 1:
        log.warning(
            "per-channel normalisation %s in metadata: using the mean %.3f",
            values,
            sum(values) / len(values),
        )
    return sum(values) / len(values)


def _input_spec(engine: TFLiteEngine, path: str) -> InputSpec:
    t = engine.input
    if len(t.shape) != 4 or t.shape[0] != 1 or t.shape[3] != 3:
        raise ModelError(
            f"{path}: input shape {list(t.shape)} is not an image batch of one [1, H, W, 3];"
            " edge-daemon runs image classifiers"
        )
    if t.dtype not in (np.uint8, np.int8, np.float32):
        raise ModelError(f"{path}: input type {t.dtype} is not uint8, int8 or float32")
    return InputSpec(
        width=t.shape[2], height=t.shape[1], dtype=t.dtype, scale=t.scale, zero_point=t.zero_point
    )
