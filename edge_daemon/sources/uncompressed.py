"""Uncompressed BMP and binary PPM frames, decoded with NumPy instead of Pillow.

The files source decodes the next frame on the capture thread while the
interpreter runs. Pillow spends most of a small uncompressed frame's decode in
Python (plugin lookup, header parsing, tile set-up): about 0.1 ms with warm
caches and three times that between two invokes, holding the GIL the whole
time. The formats here need no decompression: after a header parse the pixels
are copied one colour plane at a time, and NumPy makes those copies without
holding the GIL, so they overlap the main thread's work instead of delaying it.

Only the common layouts are handled: BMP with a BITMAPINFOHEADER (or a later
version) holding 24- or 32-bit uncompressed pixels, which is what Pillow,
ffmpeg and most tools write, and PPM (P6) with 8-bit samples. For anything
else ``decode_uncompressed`` returns None and the caller uses Pillow.
"""

from __future__ import annotations

import re
import struct
from typing import Optional

import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]

# BITMAPINFOHEADER and its successors (V2, V3, V4, V5); the 12-byte OS/2
# core header stores sizes as 16-bit fields and goes to Pillow.
_BMP_INFO_SIZES = (40, 52, 56, 108, 124)
_BI_RGB = 0  # uncompressed, no colour masks
# A PNM header token: whitespace or '#' comments (to the end of the line)
# before a decimal number. Ten digits are enough for any size Pillow accepts.
_PNM_TOKEN = re.compile(rb"(?:\s|#[^\r\n]*)+(\d{1,10})")
_PNM_WHITESPACE = b" \t\r\n\x0b\x0c"


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Raise ValueError when a ``width`` x ``height`` image would exceed ``max_pixels``."""
    if width * height > max_pixels:
        raise ValueError(f"{width}x{height} is too large (over {max_pixels // 1_000_000} Mpx)")


def decode_uncompressed(data: bytes, max_pixels: int) -> Optional[Pixels]:
    """An (H, W, 3) uint8 R, G, B array for an uncompressed BMP or PPM, else None.

    Raises ValueError, with a one-line reason, for a file in one of these
    layouts that is truncated or larger than ``max_pixels``.
    """
    magic = data[:2]
    if magic == b"BM":
        return _bmp(data, max_pixels)
    if magic == b"P6":
        return _ppm(data, max_pixels)
    return None


def _bmp(data: bytes, max_pixels: int) -> Optional[Pixels]:
    if len(data) < 14 + 40:
        return None
    (offset,) = struct.unpack_from("<I", data, 10)
    (info_size,) = struct.unpack_from("<I", data, 14)
    width, height, planes, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    if (
        info_size not in _BMP_INFO_SIZES
        or planes != 1
        or bits not in (24, 32)
        or compression != _BI_RGB
        or width <= 0
        or height == 0
        or offset < 14 + info_size
    ):
        return None
    rows = abs(height)
    check_size(width, rows, max_pixels)
    depth = bits // 8
    # Every row is padded to a multiple of 4 bytes.
    stride = (width * depth + 3) & ~3
    packed = _pixel_bytes(data, offset, stride * rows, width, rows).reshape(rows, stride)
    pixels = packed[:, : width * depth].reshape(rows, width, depth)
    if height > 0:
        pixels = pixels[::-1]  # a positive height means the bottom row comes first
    # Bytes are B, G, R (and X for 32 bits). One copy per plane: a single
    # copy of pixels[..., 2::-1] runs NumPy's strided loop three bytes at a
    # time, several times slower.
    rgb = np.empty((rows, width, 3), np.uint8)
    rgb[..., 0] = pixels[..., 2]
    rgb[..., 1] = pixels[..., 1]
    rgb[..., 2] = pixels[..., 0]
    return rgb


def _ppm(data: bytes, max_pixels: int) -> Optional[Pixels]:
    values: list[int] = []
    pos = 2
    for _ in range(3):  # width, height, maxval
        match = _PNM_TOKEN.match(data, pos)
        if match is None:
            return None
        values.append(int(match.group(1)))
        pos = match.end()
    width, height, maxval = values
    # The header ends with exactly one whitespace byte; 16-bit samples
    # (maxval over 255) and other maxvals are scaled by Pillow.
    end = data[pos : pos + 1]
    if maxval != 255 or width == 0 or height == 0 or not end or end not in _PNM_WHITESPACE:
        return None
    check_size(width, height, max_pixels)
    # Already R, G, B, top row first: a read-only view of the file's bytes.
    pixels = _pixel_bytes(data, pos + 1, width * height * 3, width, height)
    return pixels.reshape(height, width, 3)


def _pixel_bytes(data: bytes, offset: int, needed: int, width: int, height: int) -> Pixels:
    """``needed`` bytes of ``data`` from ``offset`` as a flat view; ValueError if cut short."""
    if len(data) < offset + needed:
        raise ValueError(
            f"image file is truncated ({width}x{height} pixels need {needed} bytes"
            f" from byte {offset}; the file has {len(data)})"
        )
    return np.frombuffer(data, np.uint8, needed, offset)
