"""The frame-source seam: everything that produces camera frames implements FrameSource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured image.

    ``image`` is always an (H, W, 3) uint8 array in R, G, B order; a source
    that gets another byte order from its hardware converts before returning.
    It is the whole frame: snapshots and the live view show it.

    A source that gets more for free from its hardware may also fill:

    * ``roi``: (h, w, 3) uint8 R, G, B of ``preprocess.region`` only, already
      cropped (and possibly scaled) by the camera's ISP; the model's input is
      then made from it instead of cropping ``image`` in software.
    * ``luma``: a small (h, w) uint8 greyscale plane of the region (a lores
      stream's Y plane), for the change gate; without it the gate samples
      ``image`` (or ``roi``) itself.
    """

    image: np.ndarray
    name: str  # file name, or "camera0" for a camera
    seq: int  # 1, 2, 3 ... per source instance
    captured_at: float  # time.time() at capture
    capture_ms: float  # time spent producing this frame
    roi: Optional[np.ndarray] = None
    luma: Optional[np.ndarray] = None


@runtime_checkable
class FrameSource(Protocol):
    """A narrow seam over a camera or a folder of images.

    Lifecycle: ``open()``, any number of ``read()``, ``close()`` (always, in a
    ``finally``). ``close()`` must be safe to call twice and after a failed
    ``open()``.

    A source may say, before it opens, whether its frames carry ``luma``
    with a ``gives_luma`` attribute (True/False; absent or None: only the
    opened device can tell); ``edge-daemon check`` reports how the change
    gate will sample.
    """

    def open(self) -> None:
        """Acquire the device or list the files. Raises SourceError with a reason."""

    def read(self) -> Optional[Frame]:
        """The next frame; None when a finite source is exhausted.

        Raises SourceTimeout when no frame arrives within the configured
        timeout, SourceError for any other failure. Either is recoverable by
        ``close()`` then ``open()``.
        """

    def close(self) -> None:
        """Release the device. Never raises."""

    def describe(self) -> str:
        """One line for logs and status: what this source reads."""
