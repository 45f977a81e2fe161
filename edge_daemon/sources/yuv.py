"""Camera frames that are not RGB (NV12, YUV420, YUYV, MJPEG) to R, G, B: sample, then convert.

A camera without an RGB output (a USB webcam, libcamera's virtual camera, a
Pi 4's lores stream) hands over Y'CbCr or JPEG. These pure NumPy functions
turn one buffer into an (h, w, 3) uint8 R, G, B image at the size the model
wants with the least work: the output grid is picked from the buffer by
nearest-neighbour sampling first (each output pixel reads one luma and one
chroma sample through byte offsets computed once per stream layout; no
full-resolution plane is ever built), and only those samples are converted
to RGB, in integer arithmetic. JPEG is decoded by
Pillow at the smallest DCT scale that still covers the output size.

Buffers are what picamera2's ``make_buffer()`` returns: the stream's whole
buffer as a flat uint8 array, planes one after the other, each row ``stride``
bytes long (Y'CbCr 4:2:0 planar formats: the chroma rows are ``stride // 2``).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Optional

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

# Planar and semi-planar 4:2:0 formats (libcamera names).
NV_FORMATS = ("NV12", "NV21")
PLANAR_FORMATS = ("YUV420", "YVU420")
# Packed 4:2:2: byte offsets of Y0, U and V within each 4-byte pair of pixels
# (Y1 is at Y0 + 2).
PACKED_FORMATS: dict[str, tuple[int, int, int]] = {
    "YUYV": (0, 1, 3),
    "YVYU": (0, 3, 1),
    "UYVY": (1, 0, 2),
    "VYUY": (1, 2, 0),
}
JPEG_FORMATS = ("MJPEG",)
YUV_FORMATS = NV_FORMATS + PLANAR_FORMATS + tuple(PACKED_FORMATS)
FORMATS = YUV_FORMATS + JPEG_FORMATS

# Luma coefficients (Kr, Kb) of each Y'CbCr encoding libcamera names.
_ENCODINGS: dict[str, tuple[float, float]] = {
    "rec601": (0.299, 0.114),
    "rec709": (0.2126, 0.0722),
    "rec2020": (0.2627, 0.0593),
}
_SHIFT = 16  # fixed-point fraction bits of the conversion


@dataclass(frozen=True)
class Colour:
    """How a camera encodes colour: the Y'CbCr matrix and whether values span 0-255.

    JPEG (and so MJPEG webcams and libcamera's virtual camera, which decodes
    JPEG files) is full-range BT.601; most video formats are limited range
    (Y' 16-235, Cb/Cr 16-240).
    """

    encoding: str = "rec601"
    full_range: bool = True

    def describe(self) -> str:
        """E.g. ``BT.601 full range``."""
        number = self.encoding.removeprefix("rec")
        return f"BT.{number} {'full' if self.full_range else 'limited'} range"


JPEG_COLOUR = Colour("rec601", True)


def colour_of(colour_space: object) -> Colour:
    """The Colour of a libcamera ``ColorSpace`` as picamera2 reports it.

    libcamera's ``ycbcrEncoding`` names Rec601, Rec709 or Rec2020 (Null for
    an RGB colour space, which a camera that still hands over Y'CbCr left as
    asked: then BT.601); ``range`` is Full or Limited. No colour space at all
    (some USB webcams) means V4L2's default for Y'CbCr: BT.601, limited range.
    """
    if colour_space is None:
        return Colour("rec601", False)
    encoding_name = str(getattr(colour_space, "ycbcrEncoding", "")).lower()
    range_name = str(getattr(colour_space, "range", "")).lower()
    encoding = next((e for e in _ENCODINGS if e in encoding_name), "rec601")
    return Colour(encoding, "limited" not in range_name)


def sample_indices(source: int, target: int) -> npt.NDArray[np.intp]:
    """For each of ``target`` output pixels, the nearest of ``source`` input pixels (centres)."""
    return ((np.arange(target, dtype=np.intp) * 2 + 1) * source) // (2 * target)


def ycbcr_to_rgb(y: Image, cb: Image, cr: Image, colour: Colour = JPEG_COLOUR) -> Image:
    """Same-shape Y', Cb, Cr uint8 planes to one (h, w, 3) uint8 R, G, B image."""
    kr, kb = _ENCODINGS[colour.encoding]
    kg = 1.0 - kr - kb
    if colour.full_range:
        y_offset, y_scale, c_scale = 0, 1.0, 1.0
    else:
        y_offset, y_scale, c_scale = 16, 255.0 / 219.0, 255.0 / 224.0
    one = 1 << _SHIFT

    def fixed(value: float) -> int:
        return round(value * one)

    yy = (y.astype(np.int32) - y_offset) * fixed(y_scale) + (one >> 1)
    u = cb.astype(np.int32) - 128
    v = cr.astype(np.int32) - 128
    out = np.empty((*y.shape, 3), dtype=np.uint8)
    red = yy + fixed(2 * (1 - kr) * c_scale) * v
    green = (
        yy
        - fixed(2 * kb * (1 - kb) / kg * c_scale) * u
        - fixed(2 * kr * (1 - kr) / kg * c_scale) * v
    )
    blue = yy + fixed(2 * (1 - kb) * c_scale) * u
    for channel, value in enumerate((red, green, blue)):
        np.clip(value >> _SHIFT, 0, 255, out=value)
        out[..., channel] = value
    return out


def _check_length(buffer: Image, needed: int, fmt: str, width: int, height: int) -> None:
    if buffer.ndim != 1 or buffer.dtype != np.uint8 or buffer.size < needed:
        raise ValueError(
            f"a {width}x{height} {fmt} buffer needs {needed} bytes;"
            f" got {buffer.dtype}{list(buffer.shape)}"
        )


@functools.lru_cache(maxsize=16)
def _offsets(
    fmt: str,
    size: tuple[int, int],
    stride: int,
    out_size: tuple[int, int],
    crop: Optional[tuple[int, int, int, int]],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], int]:
    """Byte offsets in the buffer of each output pixel's Y', Cb and Cr, and the bytes needed.

    Computed once per stream layout (cached): a frame is then three gathers.
    """
    width, height = size
    x0, y0, cw, ch = crop if crop is not None else (0, 0, width, height)
    rows = (y0 + sample_indices(ch, out_size[1]))[:, None]
    cols = (x0 + sample_indices(cw, out_size[0]))[None, :]
    luma_bytes = stride * height
    if fmt in PACKED_FORMATS:
        y_at, u_at, v_at = PACKED_FORMATS[fmt]
        pair = rows * stride + (cols // 2) * 4
        y, u, v = rows * stride + cols * 2 + y_at, pair + u_at, pair + v_at
        needed = stride * (height - 1) + width * 2
    elif fmt in NV_FORMATS:
        pair = luma_bytes + (rows // 2) * stride + (cols // 2) * 2
        y, u, v = rows * stride + cols, pair, pair + 1
        if fmt == "NV21":
            u, v = v, u
        needed = luma_bytes + stride * ((height + 1) // 2)
    elif fmt in PLANAR_FORMATS:
        cstride = stride // 2
        plane = cstride * ((height + 1) // 2)
        at = (rows // 2) * cstride + cols // 2
        y, u, v = rows * stride + cols, luma_bytes + at, luma_bytes + plane + at
        if fmt == "YVU420":
            u, v = v, u
        needed = luma_bytes + 2 * plane
    else:
        raise ValueError(f"{fmt} is not a Y'CbCr format ({', '.join(YUV_FORMATS)})")
    arrays = tuple(np.ascontiguousarray(a, dtype=np.intp) for a in (y, u, v))
    for a in arrays:
        a.flags.writeable = False
    return arrays[0], arrays[1], arrays[2], needed


def yuv_to_rgb(
    buffer: Image,
    fmt: str,
    size: tuple[int, int],
    stride: int,
    out_size: tuple[int, int],
    colour: Colour = JPEG_COLOUR,
) -> Image:
    """A (height, width, 3) R, G, B image at ``out_size`` (width, height) from a Y'CbCr buffer.

    ``size`` is the buffer's (width, height) and ``stride`` its bytes per
    luma row. Only the output's samples are read and converted.
    """
    y, u, v, needed = _offsets(fmt, tuple(size), stride, tuple(out_size), None)
    _check_length(buffer, needed, fmt, *size)
    return ycbcr_to_rgb(buffer[y], buffer[u], buffer[v], colour)


def yuv_luma(
    buffer: Image,
    fmt: str,
    size: tuple[int, int],
    stride: int,
    out_size: tuple[int, int],
    crop: Optional[tuple[int, int, int, int]] = None,
) -> Image:
    """The Y' plane of a Y'CbCr buffer sampled to ``out_size`` (width, height): no colour work.

    ``crop`` (x, y, width, height in the buffer's pixels) limits it to a region.
    """
    y, _u, _v, needed = _offsets(fmt, tuple(size), stride, tuple(out_size), crop)
    _check_length(buffer, needed, fmt, *size)
    return buffer[y]


def jpeg_to_rgb(data: Image | bytes, out_size: tuple[int, int]) -> Image:
    """A JPEG (an MJPEG frame) decoded at the smallest DCT scale covering ``out_size``, as RGB.

    libjpeg decodes at 1/2, 1/4 or 1/8 scale almost for free (``draft``);
    what is left to reach ``out_size`` is nearest-neighbour sampling.
    Raises ValueError when the bytes are not a JPEG.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    try:
        with PILImage.open(io.BytesIO(raw)) as image:
            image.draft("RGB", out_size)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a decodable JPEG frame ({exc})") from exc
    height, width = rgb.shape[:2]
    if (width, height) == tuple(out_size):
        return np.ascontiguousarray(rgb)
    rows = sample_indices(height, out_size[1])
    cols = sample_indices(width, out_size[0])
    return np.ascontiguousarray(rgb[rows[:, None], cols])


def luma_size(size: tuple[int, int], longest: int = 160) -> tuple[int, int]:
    """A small (width, height) with ``size``'s aspect ratio, at most ``longest`` long."""
    width, height = size
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def region_pixels(
    size: tuple[int, int], region: Optional[tuple[float, float, float, float]]
) -> tuple[int, int, int, int]:
    """(x, y, width, height) in pixels of a fractional (x, y, width, height) region of ``size``."""
    width, height = size
    if region is None:
        return 0, 0, width, height
    fx, fy, fw, fh = region
    x = min(width - 1, round(fx * width))
    y = min(height - 1, round(fy * height))
    return (
        x,
        y,
        max(1, min(width - x, round(fw * width))),
        max(1, min(height - y, round(fh * height))),
    )
