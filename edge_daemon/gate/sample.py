"""The gate's input: a small greyscale plane of the region, taken without colour conversion.

A camera's lores Y plane (``Frame.luma``) is used as it is, thinned to at
most ``sample_width`` columns by taking every n-th pixel. Without one the
green channel of the RGB region is sampled at a stride: green carries most
of the luma (0.59 of Y), and a strided view costs a copy of a few thousand
bytes where a full RGB->Y conversion of a 640x480 frame costs about a
millisecond.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np

from ..config import RegionConfig
from ..preprocess import crop_region

PlaneSource = Literal["luma", "software"]


def stride(width: int, sample_width: int) -> int:
    """The step that leaves at most ``sample_width`` of ``width`` columns."""
    return max(1, -(-width // max(1, sample_width)))


def gate_plane(
    image: np.ndarray,
    *,
    roi: Optional[np.ndarray],
    luma: Optional[np.ndarray],
    region: Optional[RegionConfig],
    sample_width: int,
) -> np.ndarray:
    """A (h, w) uint8 view of the region for the change detector (strided, not copied).

    ``luma`` (the camera's Y plane of the region) wins; then ``roi`` (the
    region, cropped by the camera); else ``region`` of ``image``.
    """
    if luma is not None:
        step = stride(luma.shape[1], sample_width)
        return luma[::step, ::step]
    rgb = roi if roi is not None else crop_region(image, region)
    step = stride(rgb.shape[1], sample_width)
    return rgb[::step, ::step, 1]


def plane_source(luma: Optional[np.ndarray]) -> PlaneSource:
    """How the gate gets its plane: from the camera (``luma``) or in software."""
    return "luma" if luma is not None else "software"
