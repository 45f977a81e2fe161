"""Frame -> model input. Pure functions: no I/O, no interpreter.

Order of work per frame: the region of interest (``preprocess.region``) ->
(optional) centre crop -> bilinear resize to the model's input size -> map
pixel values to the input tensor's dtype through a 256-entry lookup table
(normalisation or quantization, precomputed once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from PIL import Image

from .config import MIN_REGION_PIXELS, RegionConfig, region_box

ResizeMode = Literal["stretch", "crop"]

# Above this downscale factor, PIL first reduces by an integer factor (a box
# filter over whole pixel blocks, cheap) and then resizes bilinearly from an
# image at most twice the target: the same result within a grey level at a
# fraction of the cost for 1080p frames.
_REDUCING_GAP = 2.0


def crop_region(image: np.ndarray, region: Optional[RegionConfig]) -> np.ndarray:
    """The part of ``image`` that ``preprocess.region`` names (a view; no copy).

    None is the whole frame. The daemon refuses a region that leaves fewer
    than 16x16 pixels of the first frame; should a later frame be smaller
    (files of mixed sizes), the box is widened about its centre to 16x16
    pixels (or the whole frame), so the model always gets an input.
    """
    if region is None:
        return image
    h, w = image.shape[:2]
    x0, y0, x1, y1 = region_box(region, w, h)
    x0, x1 = _widen(x0, x1, w)
    y0, y1 = _widen(y0, y1, h)
    return image[y0:y1, x0:x1]


def _widen(start: int, end: int, size: int) -> tuple[int, int]:
    """[start, end) widened about its centre to MIN_REGION_PIXELS, within [0, size)."""
    want = min(MIN_REGION_PIXELS, size)
    if end - start >= want:
        return start, end
    start = max(0, min(size - want, (start + end - want) // 2))
    return start, start + want


def crop_center(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The largest centred region of ``image`` with the aspect ratio width:height (a view)."""
    h, w = image.shape[:2]
    if w * height > h * width:  # frame wider than the model: trim left and right
        new_w = max(1, round(h * width / height))
        x = (w - new_w) // 2
        return image[:, x : x + new_w]
    new_h = max(1, round(w * height / width))
    y = (h - new_h) // 2
    return image[y : y + new_h, :]


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 array to (height, width, 3) with bilinear filtering."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    pil = Image.fromarray(np.ascontiguousarray(image), "RGB")
    out = pil.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=_REDUCING_GAP)
    return np.asarray(out)


def fit_frame(image: np.ndarray, width: int, height: int, mode: ResizeMode) -> np.ndarray:
    """Crop (if asked) and resize a frame to the model's input size."""
    if mode == "crop":
        image = crop_center(image, width, height)
    return resize_bilinear(image, width, height)


@dataclass(frozen=True)
class InputSpec:
    """What the model's input tensor wants."""

    width: int
    height: int
    dtype: np.dtype
    scale: float  # 0.0 when the tensor is not quantized
    zero_point: int


def pixel_lut(spec: InputSpec, mean: Optional[float], std: Optional[float]) -> np.ndarray:
    """A table mapping each pixel value 0..255 to the input tensor's value.

    Float tensors: (pixel - mean) / std, with mean/std defaulting to 127.5
    (MobileNet's [-1, 1] range).

    Quantized tensors: with no mean/std given, raw pixels are the input (the
    quantized MobileNets choose their input scale and zero point so that the
    uint8 pixel *is* the quantized value); an int8 tensor holds the same
    value shifted by -128. With mean/std given, the real value
    (pixel - mean) / std is quantized: q = round(real / scale) + zero_point,
    clipped to the dtype's range.
    """
    pixels = np.arange(256, dtype=np.float64)
    if spec.dtype == np.float32:
        m = 127.5 if mean is None else mean
        s = 127.5 if std is None else std
        return ((pixels - m) / s).astype(np.float32)
    info = np.iinfo(spec.dtype)
    if mean is None and std is None:
        q = pixels + (info.min if info.min < 0 else 0)  # int8: 0..255 -> -128..127
    else:
        m = 127.5 if mean is None else mean
        s = 127.5 if std is None else std
        scale = spec.scale or 1.0
        q = np.round((pixels - m) / s / scale) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def is_identity(lut: np.ndarray) -> bool:
    """True when the table maps every pixel to itself (uint8 raw input: skip the lookup)."""
    return bool(lut.dtype == np.uint8 and np.array_equal(lut, np.arange(256, dtype=np.uint8)))


def apply_lut(image: np.ndarray, lut: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Map a resized (H, W, 3) uint8 frame through ``lut`` into ``out`` (allocated if None)."""
    if out is None:
        out = np.empty(image.shape, dtype=lut.dtype)
    np.take(lut, image, out=out)
    return out
