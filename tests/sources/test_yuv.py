"""The Y'CbCr and JPEG conversions a camera without RGB output goes through, on exact values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_daemon.sources import yuv

FULL = yuv.Colour("rec601", True)
LIMITED = yuv.Colour("rec601", False)


def px(y: int, cb: int, cr: int, colour: yuv.Colour = FULL) -> tuple[int, ...]:
    one = np.array([[y]], dtype=np.uint8), np.array([[cb]], dtype=np.uint8)
    out = yuv.ycbcr_to_rgb(one[0], one[1], np.array([[cr]], dtype=np.uint8), colour)
    return tuple(int(v) for v in out[0, 0])


def test_grey_black_and_white_stay_themselves_in_full_range() -> None:
    assert px(128, 128, 128) == (128, 128, 128)
    assert px(0, 128, 128) == (0, 0, 0)
    assert px(255, 128, 128) == (255, 255, 255)


def test_limited_range_black_and_white_stretch_to_0_and_255() -> None:
    assert px(16, 128, 128, LIMITED) == (0, 0, 0)
    assert px(235, 128, 128, LIMITED) == (255, 255, 255)
    assert px(0, 128, 128, LIMITED) == (0, 0, 0)  # below black: clipped, never wrapped


def test_jpeg_red_comes_back_red() -> None:
    # JFIF: R, G, B = 255, 0, 0 is Y' 76, Cb 85, Cr 255 (rounded); back:
    # R = 76 + 1.402 * 127 = 254.05, G = 76 + 0.344 * 43 - 0.714 * 127 = 0.10,
    # B = 76 - 1.772 * 43 = -0.20.
    assert px(76, 85, 255) == (254, 0, 0)


def test_limited_range_red_comes_back_red() -> None:
    # BT.601 video red is Y' 81, Cb 90, Cr 240: R = 1.164 * 65 + 1.596 * 112 = 254.4.
    assert px(81, 90, 240, LIMITED) == (254, 0, 0)


def test_rec709_uses_its_own_matrix() -> None:
    # Cr 228 (+100): R = Y + 1.5748 * 100, G = Y - 0.4681 * 100 under BT.709
    # (BT.601 would give + 140.2 and - 71.4).
    assert px(100, 128, 228, yuv.Colour("rec709", True)) == (255, 53, 100)
    assert px(60, 128, 228, yuv.Colour("rec709", True)) == (217, 13, 60)


# A 4x2 frame: luma 10..80, grey chroma on the left 2x2 block, Cr +100 on the right.
Y = np.array([[10, 20, 30, 40], [50, 60, 70, 80]], dtype=np.uint8)
# R = Y + 140.2 and G = Y - 71.4 where Cr is +100 (BT.601 full range).
EXPECTED = np.array(
    [
        [[10, 10, 10], [20, 20, 20], [170, 0, 30], [180, 0, 40]],
        [[50, 50, 50], [60, 60, 60], [210, 0, 70], [220, 9, 80]],
    ],
    dtype=np.uint8,
)


def padded(rows: np.ndarray, stride: int) -> np.ndarray:
    out = np.full((rows.shape[0], stride), 77, dtype=np.uint8)  # padding bytes are never read
    out[:, : rows.shape[1]] = rows
    return out.ravel()


@pytest.mark.parametrize("stride", [4, 8])
def test_nv12_and_nv21_map_each_chroma_pair_to_its_2x2_block(stride: int) -> None:
    nv12 = np.concatenate([padded(Y, stride), padded(np.array([[128, 128, 128, 228]]), stride)])
    nv21 = np.concatenate([padded(Y, stride), padded(np.array([[128, 128, 228, 128]]), stride)])
    for fmt, buffer in (("NV12", nv12), ("NV21", nv21)):
        rgb = yuv.yuv_to_rgb(buffer, fmt, (4, 2), stride, (4, 2), FULL)
        np.testing.assert_array_equal(rgb, EXPECTED, err_msg=fmt)


@pytest.mark.parametrize("stride", [4, 8])
def test_planar_yuv420_and_yvu420(stride: int) -> None:
    half = stride // 2
    grey_then_red = [padded(np.array([[128, 128]]), half), padded(np.array([[128, 228]]), half)]
    yuv420 = np.concatenate([padded(Y, stride), *grey_then_red])
    yvu420 = np.concatenate([padded(Y, stride), *reversed(grey_then_red)])
    np.testing.assert_array_equal(
        yuv.yuv_to_rgb(yuv420, "YUV420", (4, 2), stride, (4, 2)), EXPECTED
    )
    np.testing.assert_array_equal(
        yuv.yuv_to_rgb(yvu420, "YVU420", (4, 2), stride, (4, 2)), EXPECTED
    )


@pytest.mark.parametrize(
    ("fmt", "pair"),
    [
        ("YUYV", lambda y0, y1, u, v: [y0, u, y1, v]),
        ("YVYU", lambda y0, y1, u, v: [y0, v, y1, u]),
        ("UYVY", lambda y0, y1, u, v: [u, y0, v, y1]),
        ("VYUY", lambda y0, y1, u, v: [v, y0, u, y1]),
    ],
)
def test_packed_422_formats_in_every_byte_order(fmt: str, pair: object) -> None:
    make = pair  # type: ignore[assignment]
    rows = []
    for row in Y:
        rows.append(make(row[0], row[1], 128, 128) + make(row[2], row[3], 128, 228))  # type: ignore[operator]
    buffer = padded(np.array(rows, dtype=np.uint8), 12)
    rgb = yuv.yuv_to_rgb(buffer, fmt, (4, 2), 12, (4, 2), FULL)
    np.testing.assert_array_equal(rgb, EXPECTED)


def test_sampling_picks_pixel_centres_before_converting() -> None:
    assert list(yuv.sample_indices(4, 2)) == [1, 3]
    assert list(yuv.sample_indices(6, 3)) == [1, 3, 5]
    assert list(yuv.sample_indices(2, 4)) == [0, 0, 1, 1]  # upsampling repeats
    # An 8x4 NV12 frame, luma = 10 * column + row, grey chroma, to 4x2:
    luma = (np.arange(8)[None, :] * 10 + np.arange(4)[:, None]).astype(np.uint8)
    buffer = np.concatenate([luma.ravel(), np.full(16, 128, dtype=np.uint8)])
    rgb = yuv.yuv_to_rgb(buffer, "NV12", (8, 4), 8, (4, 2))
    np.testing.assert_array_equal(rgb[..., 0], [[11, 31, 51, 71], [13, 33, 53, 73]])


def test_luma_is_the_y_plane_sampled_without_colour_work_and_cropped() -> None:
    luma = (np.arange(8)[None, :] * 10 + np.arange(4)[:, None]).astype(np.uint8)
    buffer = np.concatenate([luma.ravel(), np.zeros(16, dtype=np.uint8)])  # chroma unused
    np.testing.assert_array_equal(yuv.yuv_luma(buffer, "NV12", (8, 4), 8, (4, 2)), luma[1::2, 1::2])
    crop = yuv.region_pixels((8, 4), (0.5, 0.5, 0.5, 0.5))
    assert crop == (4, 2, 4, 2)
    np.testing.assert_array_equal(yuv.yuv_luma(buffer, "NV12", (8, 4), 8, (2, 1), crop), [[53, 73]])


def test_a_short_buffer_is_an_error_naming_the_format_and_size() -> None:
    with pytest.raises(ValueError, match="224x224 NV12 buffer needs 75264 bytes"):
        yuv.yuv_to_rgb(np.zeros(100, dtype=np.uint8), "NV12", (224, 224), 224, (224, 224))
    with pytest.raises(ValueError, match="not a Y'CbCr format"):
        yuv.yuv_to_rgb(np.zeros(100, dtype=np.uint8), "SRGGB10", (4, 2), 4, (4, 2))


def test_jpeg_decodes_at_a_reduced_dct_scale_then_samples_to_size() -> None:
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    frame[:, :320] = (200, 30, 20)
    frame[:, 320:] = (20, 60, 210)
    data = io.BytesIO()
    Image.fromarray(frame).save(data, format="JPEG", quality=95)
    rgb = yuv.jpeg_to_rgb(np.frombuffer(data.getvalue() + b"\0" * 32, dtype=np.uint8), (224, 224))
    assert rgb.shape == (224, 224, 3)
    assert np.abs(rgb[112, 10].astype(int) - (200, 30, 20)).max() <= 6
    assert np.abs(rgb[112, 213].astype(int) - (20, 60, 210)).max() <= 6
    with pytest.raises(ValueError, match="not a decodable JPEG"):
        yuv.jpeg_to_rgb(b"\xff\xd8 not really", (224, 224))


def test_colour_space_names_as_libcamera_reports_them() -> None:
    class Space:
        def __init__(self, encoding: str, range_: str) -> None:
            self.ycbcrEncoding = encoding
            self.range = range_

    assert yuv.colour_of(Space("YcbcrEncoding.Rec709", "Range.Limited")) == yuv.Colour(
        "rec709", False
    )
    assert yuv.colour_of(Space("YcbcrEncoding.Null", "Range.Full")) == yuv.Colour("rec601", True)
    assert yuv.colour_of(None) == yuv.Colour("rec601", False)
    assert yuv.Colour("rec709", False).describe() == "BT.709 limited range"
