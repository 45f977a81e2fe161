"""One frame through the model: preprocess -> engine -> postprocess."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .config import Config, RegionConfig
from .engine.model import LoadedModel
from .errors import TeachError
from .events.smoothing import Smoother
from .postprocess import Prediction, top_k_quantized
from .preprocess import ResizeMode, apply_lut, crop_region, fit_frame, is_identity


@dataclass(frozen=True, slots=True)
class Result:
    """Predictions for one frame and what each stage cost (ms)."""

    predictions: list[Prediction]
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    # After model.smoothing; the very list ``predictions`` when smoothing is off.
    smoothed: list[Prediction] | None = None
    # The base network's pooled features from the same invoke, float32 (dims,),
    # dequantized; None when the model offers none (see engine/embedding.py).
    embedding: np.ndarray | None = None

    @property
    def top1(self) -> Prediction | None:
        return self.predictions[0] if self.predictions else None


class Classifier:
    """Classifies frames with a loaded model; reuses its input buffer across frames."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        top_k: int,
        min_score: float,
        resize: ResizeMode,
        smoothing: int = 0,
        region: Optional[RegionConfig] = None,
    ) -> None:
        self.model = model
        self.region = region
        self.k = top_k
        self.min_score = min_score
        self.resize: ResizeMode = resize
        spec = model.input
        self._identity = is_identity(model.lut)
        self._buf = np.empty((spec.height, spec.width, 3), dtype=model.lut.dtype)
        out = model.engine.output
        self._scale, self._zero = out.scale, out.zero_point
        self.smoother = Smoother(smoothing, out.scale, out.zero_point) if smoothing > 1 else None

    @classmethod
    def from_config(cls, model: LoadedModel, cfg: Config) -> Classifier:
        """A classifier with the config's top-k, minimum score and resize mode."""
        return cls(
            model,
            top_k=cfg.model.top_k,
            min_score=cfg.model.min_score,
            resize=cfg.preprocess.resize,
            smoothing=cfg.model.smoothing,
            region=cfg.preprocess.region,
        )

    def classify(self, image: np.ndarray, roi: Optional[np.ndarray] = None) -> Result:
        """Top-k predictions for one (H, W, 3) uint8 RGB image.

        The model sees ``preprocess.region`` of it, or ``roi`` when the source
        already cropped the region (a camera's ISP).
        """
        t0 = time.perf_counter()
        spec = self.model.input
        seen = roi if roi is not None else crop_region(image, self.region)
        fitted = fit_frame(seen, spec.width, spec.height, self.resize)
        tensor = fitted if self._identity else apply_lut(fitted, self.model.lut, self._buf)
        t1 = time.perf_counter()
        raw = self.model.engine.infer(tensor)
        t2 = time.perf_counter()
        embedding = self._embedding()
        label = self.model.labels.label
        best = top_k_quantized(raw, self._scale, self._zero, self.k, self.min_score)
        preds = [Prediction(label(i), i, s) for i, s in best]
        smoothed = preds
        if self.smoother is not None:
            ranked = self.smoother.top_k(raw, self.k, self.min_score)
            smoothed = [Prediction(label(i), i, s) for i, s in ranked]
        t3 = time.perf_counter()
        return Result(preds, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, smoothed, embedding)

    def _embedding(self) -> np.ndarray | None:
        spec = self.model.embedding
        raw = getattr(self.model.engine, "last_embedding", None)
        if spec is None or raw is None:
            return None
        return spec.dequantize(raw)

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The float32 (dims,) embedding of one (H, W, 3) uint8 RGB image.

        Exactly the daemon's preprocessing and the same invoke as classify();
        call it from the thread that classifies (the interpreter is not
        shared between threads). Raises TeachError when the model has none.
        """
        if self.model.embedding is None:
            raise TeachError(
                f"{self.model.path}: offers no embedding to teach from:"
                f" {self.model.embedding_reason or 'unknown reason'}"
            )
        spec = self.model.input
        fitted = fit_frame(image, spec.width, spec.height, self.resize)
        tensor = fitted if self._identity else apply_lut(fitted, self.model.lut, self._buf)
        self.model.engine.infer(tensor)
        embedding = self._embedding()
        if embedding is None:
            raise TeachError(f"{self.model.path}: the engine gave no embedding; reload the model")
        return embedding
