"""The file source: images in name order, bad files skipped with one warning, looping, decoding."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_daemon.errors import SourceError
from edge_daemon.sources.files import FileSource, decode_image
from tests.helpers import IMAGES, shared_file


def png(pixels: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG")
    return buf.getvalue()


def solid(rgb: tuple[int, int, int], size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), rgb, dtype=np.uint8)


def names(source: FileSource) -> list[str]:
    out = []
    while (frame := source.read()) is not None:
        out.append(frame.name)
    return out


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two good images (b.png red, d.png blue) among bad files."""
    (tmp_path / "b.png").write_bytes(png(solid((255, 0, 0))))
    (tmp_path / "d.png").write_bytes(png(solid((0, 0, 255))))
    (tmp_path / "a.txt").write_text("notes, not an image\n")
    (tmp_path / "c.jpg").write_bytes(shared_file(IMAGES / "parrot.jpg").read_bytes()[:3000])
    (tmp_path / "e.bmp").write_bytes(b"")
    (tmp_path / ".f.png").write_bytes(png(solid((0, 255, 0))))  # hidden: not read
    (tmp_path / "sub").mkdir()  # folders are not frames
    return tmp_path


def test_reads_images_in_name_order_skipping_bad_files_with_one_warning_each(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    source = FileSource(str(folder))
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    assert [f.name for f in frames] == ["b.png", "d.png"]
    assert [f.seq for f in frames] == [1, 2]
    assert tuple(frames[0].image[0, 0]) == (255, 0, 0)
    assert tuple(frames[1].image[0, 0]) == (0, 0, 255)
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (8, 8, 3)
    said = warnings(caplog)
    assert len(said) == 3
    for bad in ("a.txt", "c.jpg", "e.bmp"):
        assert [w for w in said if w.startswith(f"skipping {folder / bad}: not a readable image (")]
    assert not [w for w in said if "BytesIO" in w or "0x" in w]


def test_a_looping_source_warns_about_a_bad_file_once(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    source = FileSource(str(folder), loop=True)
    source.open()
    got = []
    for _ in range(6):
        frame = source.read()
        assert frame is not None
        got.append(frame.name)
    assert got == ["b.png", "d.png"] * 3
    assert len(warnings(caplog)) == 3


def test_a_file_that_vanishes_is_skipped(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    source = FileSource(str(folder))
    source.open()
    (folder / "b.png").unlink()  # removed after the folder was listed
    assert names(source) == ["d.png"]
    assert any(
        w.startswith(f"skipping {folder / 'b.png'}: not a readable image") for w in warnings(caplog)
    )


def test_looping_over_only_bad_files_is_an_error_not_a_busy_loop(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 not really")
    source = FileSource(str(tmp_path), loop=True)
    source.open()
    with pytest.raises(SourceError, match="none of the files is a readable image"):
        source.read()


def test_missing_folder(tmp_path: Path) -> None:
    source = FileSource(str(tmp_path / "absent"))
    with pytest.raises(SourceError) as info:
        source.open()
    assert str(info.value).startswith(
        f"{tmp_path / 'absent'}: no such folder or file; set source.path"
    )


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no files to read; put images there"):
        FileSource(str(tmp_path)).open()


def test_reading_before_open_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not open"):
        FileSource(str(tmp_path)).read()


def test_glob_and_single_file(folder: Path) -> None:
    source = FileSource(str(folder / "*.png"))
    source.open()
    assert names(source) == ["b.png", "d.png"]
    single = FileSource(str(folder / "d.png"))
    single.open()
    assert names(single) == ["d.png"]


def test_files_added_later_are_seen_on_the_next_open(folder: Path) -> None:
    source = FileSource(str(folder))
    source.open()
    assert names(source) == ["b.png", "d.png"]
    shutil.copyfile(folder / "b.png", folder / "z.png")
    source.open()
    assert names(source) == ["b.png", "d.png", "z.png"]


def test_describe(tmp_path: Path) -> None:
    assert (
        FileSource(str(tmp_path), loop=True, fps=20).describe()
        == f"files {tmp_path}, looping, 20 fps"
    )


# -- decoding ----------------------------------------------------------------------------


def test_decode_keeps_rgb_order() -> None:
    img = np.zeros((4, 6, 3), dtype=np.uint8)
    img[:, :2] = (255, 0, 0)
    img[:, 2:4] = (0, 255, 0)
    img[:, 4:] = (0, 0, 255)
    out = decode_image(png(img), (1, 1))
    np.testing.assert_array_equal(out, img)


def test_decode_bmp_rows_top_first() -> None:
    # BMP stores rows bottom-up; the frame must still have row 0 at the top.
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[0] = (255, 255, 255)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, "BMP")
    out = decode_image(buf.getvalue(), (1, 1))
    assert (out[0] == 255).all() and (out[1:] == 0).all()


@pytest.mark.parametrize(
    ("mode", "pixel", "rgb"),
    [
        ("L", 77, (77, 77, 77)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),  # alpha dropped, colour kept
        ("LA", (90, 255), (90, 90, 90)),
    ],
)
def test_decode_converts_any_mode_to_rgb(
    mode: str, pixel: object, rgb: tuple[int, int, int]
) -> None:
    buf = io.BytesIO()
    Image.new(mode, (3, 2), pixel).save(buf, "PNG")  # type: ignore[arg-type]
    out = decode_image(buf.getvalue(), (1, 1))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == rgb


def test_decode_palette_image() -> None:
    img = Image.new("P", (2, 2))
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 1), 1)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = decode_image(buf.getvalue(), (1, 1))
    assert tuple(out[1, 1]) == (200, 100, 50) and tuple(out[0, 0]) == (0, 0, 0)


def test_decode_16_bit_grey_keeps_the_top_bits() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.array([[0, 0x8000, 0xFFFF]], dtype=np.uint16)).save(buf, "PNG")
    out = decode_image(buf.getvalue(), (1, 1))
    assert out.shape == (1, 3, 3)
    assert [int(v) for v in out[0, :, 0]] == [0, 0x80, 0xFF]


def test_large_jpeg_is_decoded_smaller_but_not_below_the_model_size() -> None:
    data = shared_file(IMAGES / "cat_720p.jpg").read_bytes()
    full = Image.open(io.BytesIO(data)).size
    out = decode_image(data, (224, 224))
    h, w = out.shape[:2]
    assert h >= 224 and w >= 224
    assert w < full[0] and h < full[1]
    assert w * full[1] == h * full[0]  # same aspect


def test_decode_path_and_bytes_agree() -> None:
    path = shared_file(IMAGES / "bird.bmp")
    np.testing.assert_array_equal(
        decode_image(path, (224, 224)), decode_image(path.read_bytes(), (224, 224))
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a known image format"),
        (b"hello", "not a known image format"),
    ],
)
def test_decode_refuses_non_images_with_a_short_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        decode_image(data, (224, 224))
    assert str(info.value) == reason


def test_decode_refuses_a_truncated_image() -> None:
    data = shared_file(IMAGES / "parrot.jpg").read_bytes()
    with pytest.raises(ValueError) as info:
        decode_image(data[: len(data) // 2], (224, 224))
    assert "\n" not in str(info.value) and str(info.value)


def test_decode_refuses_an_image_too_large_to_hold() -> None:
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, "PNG")  # 64 Mpx, a few kB on disk
    with pytest.raises(ValueError, match=r"8000x8000 is too large"):
        decode_image(buf.getvalue(), (224, 224))
