"""Uncompressed BMP and PPM frames: decoded without Pillow, pixel for pixel as Pillow does."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_daemon.sources.files import MAX_PIXELS, decode_image
from edge_daemon.sources.uncompressed import decode_uncompressed
from tests.helpers import IMAGES, shared_file


def encode(pixels: np.ndarray, fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, fmt)
    return buf.getvalue()


def new(mode: str, value: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (3, 2), value).save(buf, fmt)
    return buf.getvalue()


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def random_pixels(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def fast(data: bytes) -> np.ndarray:
    pixels = decode_uncompressed(data, MAX_PIXELS)
    assert pixels is not None, "expected the NumPy path to take this file"
    return pixels


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 40),  # every row padding: widths 1-4 mod 4
    height=st.integers(1, 40),
    fmt=st.sampled_from(["BMP", "PPM"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_rgb_frames_match_pillow(width: int, height: int, fmt: str, seed: int) -> None:
    pixels = random_pixels(width, height, seed=seed)
    out = fast(encode(pixels, fmt))
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)


def test_a_32_bit_bmp_keeps_colour_and_drops_the_fourth_byte() -> None:
    rgba = random_pixels(5, 3, channels=4, seed=1)
    data = encode(rgba, "BMP", "RGBA")
    assert struct.unpack_from("<H", data, 28) == (32,)
    out = fast(data)
    np.testing.assert_array_equal(out, rgba[..., :3])
    np.testing.assert_array_equal(out, pillow(data))


def test_a_top_down_bmp_keeps_its_top_row_first() -> None:
    # A negative height means rows are stored top row first (Pillow writes bottom-up).
    pixels = random_pixels(3, 4, seed=2)
    data = bytearray(encode(pixels, "BMP"))
    (offset,) = struct.unpack_from("<I", data, 10)
    stride = 12  # 3 pixels x 3 bytes, already a multiple of 4
    rows = [data[offset + i * stride : offset + (i + 1) * stride] for i in range(4)]
    data[offset:] = b"".join(reversed(rows))
    struct.pack_into("<i", data, 22, -4)
    np.testing.assert_array_equal(fast(bytes(data)), pixels)
    np.testing.assert_array_equal(fast(bytes(data)), pillow(bytes(data)))


def test_the_sample_bmp_with_a_v5_header_matches_pillow() -> None:
    data = shared_file(IMAGES / "bird.bmp").read_bytes()
    assert struct.unpack_from("<I", data, 14) == (124,)  # BITMAPV5HEADER
    np.testing.assert_array_equal(fast(data), pillow(data))


def test_ppm_headers_with_comments_and_any_whitespace() -> None:
    pixels = random_pixels(2, 2, seed=3)
    header = b"P6 # written by a camera tool\n2\t2\r\n# maxval next\n255\n"
    np.testing.assert_array_equal(fast(header + pixels.tobytes()), pixels)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("8-bit palette BMP", encode(np.full((2, 3), 99, np.uint8), "BMP", "L")),
        ("1-bit BMP", new("1", 1, "BMP")),
        ("P-mode BMP", new("P", 7, "BMP")),
        ("16-bit PPM", b"P6 1 1 65535\n" + struct.pack(">HHH", 0xFFFF, 0x8000, 0x00FF)),
        ("8-bit PGM", b"P5 3 1 255\n" + bytes([0, 128, 255])),
        ("maxval 1000 PPM", b"P6 2 1 1000\n" + bytes(12)),
        ("JPEG", encode(np.zeros((8, 8, 3), np.uint8), "JPEG")),
    ],
)
def test_other_layouts_go_to_pillow_and_still_decode(name: str, data: bytes) -> None:
    assert decode_uncompressed(data, MAX_PIXELS) is None, name
    out = decode_image(data, (64, 64))  # no smaller JPEG draft
    np.testing.assert_array_equal(out, pillow(data))


@pytest.mark.parametrize("fmt", ["BMP", "PPM"])
def test_a_truncated_file_is_refused_in_one_line(fmt: str) -> None:
    data = encode(random_pixels(6, 5), fmt)
    with pytest.raises(ValueError) as info:
        decode_image(data[:-1], (1, 1))
    message = str(info.value)
    assert message.startswith("image file is truncated (6x5 pixels need") and "\n" not in message


@pytest.mark.parametrize("fmt", ["BMP", "PPM"])
def test_a_header_declaring_too_many_pixels_is_refused(fmt: str) -> None:
    if fmt == "BMP":
        data = bytearray(encode(random_pixels(2, 2), "BMP"))
        struct.pack_into("<ii", data, 18, 10_000, 10_000)
    else:
        data = bytearray(b"P6 10000 10000 255\n" + bytes(12))
    with pytest.raises(ValueError, match=r"^10000x10000 is too large \(over 50 Mpx\)$"):
        decode_image(bytes(data), (1, 1))
