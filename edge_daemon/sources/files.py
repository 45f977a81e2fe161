"""The file-backed frame source: a folder or glob of images, in name order.

It is the demo's and the tests' camera. Unreadable or non-image files are
skipped with one warning each; it never stops the daemon.
"""

from __future__ import annotations

import glob
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..config import SourceConfig
from ..errors import SourceError
from .base import Frame
from .uncompressed import check_size, decode_uncompressed

log = logging.getLogger(__name__)

# Refuse images that would decode to more than this many pixels (PIL's own
# guard against decompression bombs warns at 89 Mpx and fails at twice that;
# a Pi has far less memory than that implies, so fail earlier and cleanly).
MAX_PIXELS = 50_000_000


def decode_image(data: bytes | str | os.PathLike[str], min_size: tuple[int, int]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array.

    Uncompressed BMP and PPM bytes are decoded with NumPy (see
    ``uncompressed``). JPEGs are decoded at a reduced scale (libjpeg's DCT
    scaling, PIL's ``draft``) when the result is still at least ``min_size``:
    a 640x480 frame for a 224x224 model decodes at 320x240, about 3x faster.
    Any mode (L, LA, RGBA, P, CMYK, I;16 ...) is converted to RGB; alpha is
    dropped. Raises ValueError with a short reason for anything unreadable.
    """
    import io

    if isinstance(data, bytes):
        pixels = decode_uncompressed(data, MAX_PIXELS)
        if pixels is not None:
            return pixels
    fp = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                check_size(*img.size, MAX_PIXELS)
                if img.format == "JPEG" and img.mode in ("RGB", "L", "YCbCr"):
                    img.draft("RGB", min_size)
                if img.mode == "I;16" or img.mode.startswith("I"):
                    # 16-bit greyscale: keep the top 8 bits, not a clipped 0..255.
                    arr16 = np.asarray(img, dtype=np.uint32)
                    grey = (
                        (arr16 >> 8).astype(np.uint8)
                        if arr16.max() > 255
                        else arr16.astype(np.uint8)
                    )
                    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
                rgb = img.convert("RGB") if img.mode != "RGB" else img
                rgb.load()
                return np.asarray(rgb)
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        MemoryError,
    ) as exc:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):
            # PIL's own text names the in-memory buffer ("<_io.BytesIO object at 0x...>").
            text = "not a known image format"
        raise ValueError(text.splitlines()[0]) from None


# Accept truncated files as errors, not as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def list_files(path: str) -> list[str]:
    """The files ``source.path`` names, in name order: a folder (not its hidden
    files), a glob, or one file. Raises SourceError when nothing is there."""
    p = Path(path)
    if p.is_dir():
        names = [str(c) for c in p.iterdir() if c.is_file() and not c.name.startswith(".")]
    elif glob.has_magic(path):
        names = [n for n in glob.glob(path) if os.path.isfile(n)]
    elif p.is_file():
        names = [str(p)]
    else:
        raise SourceError(
            f"{path}: no such folder or file; set source.path to a folder or glob of"
            " images (or run 'edge-daemon models fetch' for the samples)"
        )
    return sorted(names)


class FileSource:
    """Frames from image files: ``source.path`` is a folder or a glob."""

    gives_luma = False  # RGB only: the change gate samples the region itself

    def __init__(
        self,
        path: str,
        *,
        loop: bool = False,
        fps: Optional[float] = None,
        min_size: tuple[int, int] = (224, 224),
    ) -> None:
        self.path = path
        self.loop = loop
        self.fps = fps
        self.min_size = min_size
        self._files: list[str] = []
        self._pos = 0
        self._seq = 0
        self._next_due = 0.0
        self._open = False
        self._warned: set[str] = set()

    @classmethod
    def from_config(cls, cfg: SourceConfig, input_size: tuple[int, int]) -> FileSource:
        """Build from ``source.*`` keys and the model's (width, height)."""
        return cls(cfg.path, loop=cfg.loop, fps=cfg.fps, min_size=input_size)

    def open(self) -> None:
        """List the files now; a folder that gains files later is seen on the next open."""
        self._files = list_files(self.path)
        if not self._files:
            raise SourceError(f"{self.path}: no files to read; put images there")
        self._pos = 0
        self._open = True
        self._next_due = time.monotonic()

    def _pace(self) -> None:
        if not self.fps:
            return
        now = time.monotonic()
        if self._next_due > now:
            time.sleep(self._next_due - now)
        self._next_due = max(self._next_due, now) + 1.0 / self.fps

    def read(self) -> Optional[Frame]:
        """The next readable image, or None after the last one (unless looping)."""
        if not self._open:
            raise SourceError(f"{self.path}: source is not open")
        skipped_in_a_row = 0
        while True:
            if self._pos >= len(self._files):
                if not self.loop or skipped_in_a_row >= len(self._files):
                    if self.loop:
                        raise SourceError(f"{self.path}: none of the files is a readable image")
                    return None
                self._pos = 0
            name = self._files[self._pos]
            self._pos += 1
            self._pace()
            start = time.perf_counter()
            try:
                with open(name, "rb") as f:
                    data = f.read()
                image = decode_image(data, self.min_size)
            except (OSError, ValueError) as exc:
                skipped_in_a_row += 1
                if name not in self._warned:
                    self._warned.add(name)
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    log.warning("skipping %s: not a readable image (%s)", name, reason)
                continue
            self._seq += 1
            return Frame(
                image=image,
                name=os.path.basename(name),
                seq=self._seq,
                captured_at=time.time(),
                capture_ms=(time.perf_counter() - start) * 1000.0,
            )

    def close(self) -> None:
        self._open = False

    def describe(self) -> str:
        mode = ", looping" if self.loop else ""
        rate = f", {self.fps:g} fps" if self.fps else ""
        return f"files {self.path}{mode}{rate}"
