"""Fuzzing images: every frame is classified after conversion, or skipped with a warning.

Images in every PIL mode a camera, a phone or an editor produces (L, LA,
RGBA, P, CMYK, I;16, 1, I, F ...) and every common format decode to
(H, W, 3) uint8 and are classified. Broken ones (truncated at any offset,
flipped bits, zero bytes, decompression bombs) raise ValueError with one
line, which the files source turns into one warning and a skip. Nothing
else may escape: anything else would count as a source fault and reopen
the source on every pass over the bad file.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_daemon.config import parse_config
from edge_daemon.engine.model import LoadedModel, load_model
from edge_daemon.pipeline import Classifier
from edge_daemon.sources.files import MAX_PIXELS, FileSource, decode_image
from tests.helpers import IMAGES, LABELS, MODELS, run_cli, shared_file

MIN_SIZE = (128, 128)
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"]
MODES += ["I;16", "I;16B", "I", "F", "HSV", "LAB"]
FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM", "TGA", "ICO"]


@pytest.fixture(scope="module")
def classifier() -> Iterator[Classifier]:
    cfg = parse_config(
        f"model: {{path: '{shared_file(MODELS / 'mobilenet_v1_0.25_128_quant.tflite')}',"
        f" labels: '{shared_file(LABELS)}', top_k: 3}}\nengine: {{delegates: [cpu]}}\n"
    )
    model: LoadedModel = load_model(cfg)
    try:
        yield Classifier(model, top_k=3, min_score=0.0, resize="stretch")
    finally:
        model.close()


def make(mode: str, width: int, height: int, seed: int) -> Image.Image:
    """An image of ``mode`` with random content."""
    rng = np.random.default_rng(seed)
    if mode in ("I;16", "I;16B"):
        values = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        return Image.frombytes(
            mode, (width, height), values.astype(">u2" if "B" in mode else "<u2").tobytes()
        )
    if mode == "I":
        return Image.fromarray(
            rng.integers(-(2**31), 2**31 - 1, (height, width), dtype=np.int32), "I"
        )
    if mode == "F":
        return Image.fromarray(rng.normal(0, 500, (height, width)).astype(np.float32), "F")
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (height, width), dtype=np.uint8) * 255).convert(
            "1"
        )
    if mode in ("P", "PA"):
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).quantize(16)
        return img.convert("PA") if mode == "PA" else img
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = rng.integers(0, 256, (height, width * bands), dtype=np.uint8).tobytes()
    return Image.frombytes(mode, (width, height), pixels)


def encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img.save(out, fmt)
    return out.getvalue()


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[str, str, tuple[int, int], bytes]:
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    img = make(mode, *size, seed=draw(st.integers(0, 2**32 - 1)))
    try:
        data = encode(img, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format
        raise
    return mode, fmt, size, data


def check_decoded(pixels: np.ndarray, size: tuple[int, int]) -> None:
    assert pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    assert (pixels.shape[1], pixels.shape[0]) == size


def check_classified(classifier: Classifier, pixels: np.ndarray) -> None:
    result = classifier.classify(pixels)
    assert len(result.predictions) == 3
    assert all(0.0 <= p.score <= 1.0 for p in result.predictions)


def decode_or_refuse(data: bytes) -> Any:
    """decode_image's array, or its one-line ValueError message; anything else fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about odd TIFF tags and the like
        try:
            return decode_image(data, MIN_SIZE)
        except ValueError as exc:
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            return message


@FUZZ
@given(image=encoded_images())
def test_every_mode_and_format_is_classified_after_conversion(
    image: tuple[str, str, tuple[int, int], bytes], classifier: Classifier
) -> None:
    mode, fmt, size, data = image
    decoded = decode_or_refuse(data)
    if fmt == "ICO" and isinstance(decoded, str):
        return  # ICO refuses images over 256 px, which PIL writes resized
    assert not isinstance(decoded, str), f"{mode} {fmt}: {decoded}"
    if fmt == "ICO":
        size = (decoded.shape[1], decoded.shape[0])
    check_decoded(decoded, size)
    check_classified(classifier, decoded)


@FUZZ
@given(image=encoded_images(), data=st.data())
def test_damaged_images_decode_or_are_refused_in_one_line(
    image: tuple[str, str, tuple[int, int], bytes], data: st.DataObject, classifier: Classifier
) -> None:
    _, _, _, encoded = image
    damaged = bytearray(encoded)
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(encoded) - 1), label="cut")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            offset = data.draw(st.integers(0, len(damaged) - 1), label="offset")
            damaged[offset] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    decoded = decode_or_refuse(bytes(damaged))
    if not isinstance(decoded, str):
        assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3
        check_classified(classifier, decoded)


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    names = ["cat_720p.jpg", "parrot.jpg", "hot_dog.jpg", "cat.bmp", "bird.bmp"]
    return {name: shared_file(IMAGES / name).read_bytes() for name in names}


@FUZZ
@given(
    name=st.sampled_from(["cat_720p.jpg", "parrot.jpg", "hot_dog.jpg", "cat.bmp", "bird.bmp"]),
    data=st.data(),
)
def test_truncated_camera_jpegs_and_bmps_are_refused(
    name: str, data: st.DataObject, samples: dict[str, bytes]
) -> None:
    original = samples[name]
    cut = data.draw(st.integers(0, len(original) - 2), label="cut")
    decoded = decode_or_refuse(original[:cut])
    assert isinstance(decoded, str), f"{name} cut at {cut} of {len(original)} decoded"


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height: a decompression bomb's calling card."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width * 3 + 1))  # one row of the many declared
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def deflate_bomb() -> bytes:
    """A real bomb: 8000 x 8000 black pixels that compress to a few hundred kB."""
    img = Image.new("L", (8000, 8000))
    return encode(img, "PNG")


BROKEN: dict[str, Callable[[], bytes]] = {
    "zero-bytes": lambda: b"",
    "text": lambda: b"not an image at all\n",
    "header-200000x200000": lambda: png_header_only(200_000, 200_000),
    "header-8000x8000": lambda: png_header_only(8000, 8000),
    "deflate-bomb-64Mpx": deflate_bomb,
    "jpeg-header-only": lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_unusable_images_are_refused_in_one_line(case: str) -> None:
    message = decode_or_refuse(BROKEN[case]())
    assert isinstance(message, str)
    if "x8000" in case or "200000" in case or "bomb" in case:
        assert "too large" in message or "decompression bomb" in message, message


def test_the_largest_allowed_image_still_decodes() -> None:
    side = int(MAX_PIXELS**0.5) // 8 * 8  # just under the limit
    decoded = decode_or_refuse(encode(Image.new("L", (side, side), 77), "PNG"))
    assert not isinstance(decoded, str), decoded
    check_decoded(decoded, (side, side))
    assert int(decoded[0, 0, 0]) == 77


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_the_modes_the_issue_names_keep_their_colours(mode: str, classifier: Classifier) -> None:
    # A mid-grey in each mode comes out as (about) mid-grey RGB, alpha dropped.
    grey = Image.new("RGB", (40, 30), (128, 128, 128))
    if mode == "I;16":
        img = Image.new("I;16", (40, 30), 128 * 257)
    elif mode == "P":
        img = grey.convert("P", palette=Image.Palette.ADAPTIVE)  # no dithering
    else:
        img = grey.convert(mode)
    for fmt in ("PNG", "TIFF"):
        try:
            data = encode(img, fmt)
        except OSError:
            continue
        decoded = decode_or_refuse(data)
        assert not isinstance(decoded, str), f"{mode} {fmt}: {decoded}"
        check_decoded(decoded, (40, 30))
        assert np.abs(decoded.astype(int) - 128).max() <= 2, (mode, fmt, decoded[0, 0])
        check_classified(classifier, decoded)


def test_files_source_skips_broken_files_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    good = {
        "a-L.png": encode(make("L", 50, 40, 1), "PNG"),
        "b-CMYK.jpg": encode(make("CMYK", 50, 40, 2), "JPEG"),
        "c-I16.png": encode(make("I;16", 50, 40, 3), "PNG"),
        "d-RGBA.webp": encode(make("RGBA", 50, 40, 4), "WEBP"),
        "e-P.gif": encode(make("P", 50, 40, 5), "GIF"),
    }
    cat = shared_file(IMAGES / "cat_720p.jpg").read_bytes()
    broken = {
        "f-empty.jpg": b"",
        "g-truncated.jpg": cat[: len(cat) // 2],
        "h-bomb.png": png_header_only(200_000, 200_000),
        "i-notes.txt": b"hello\n",
    }
    for name, data in {**good, **broken}.items():
        (tmp_path / name).write_bytes(data)
    source = FileSource(str(tmp_path), loop=True, min_size=MIN_SIZE)
    source.open()
    try:
        names = [frame.name for frame in (source.read() for _ in range(3 * len(good))) if frame]
    finally:
        source.close()
    assert names == sorted(good) * 3  # every good file, in order, every pass
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == len(broken)  # one warning per broken file, not one per pass
    for name in broken:
        assert any(
            m.startswith(f"skipping {tmp_path / name}: not a readable image (") for m in warned
        )
    assert all("\n" not in m for m in warned)


def test_classify_command_classifies_the_good_and_names_the_bad(tmp_path: Path) -> None:
    files = {
        "grey16.png": encode(make("I;16", 64, 48, 7), "PNG"),
        "cmyk.jpg": encode(make("CMYK", 64, 48, 8), "JPEG"),
        "empty.jpg": b"",
        "bomb.png": png_header_only(200_000, 200_000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    model = shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite")
    result = run_cli(
        "classify",
        "--model",
        str(model),
        "--labels",
        str(shared_file(LABELS)),
        "--json",
        *[str(tmp_path / n) for n in files],
    )
    assert result.returncode == 1, result.stderr  # some images failed
    assert "Traceback" not in result.stderr
    classified = [json.loads(line)["image"] for line in result.stdout.splitlines()]
    assert classified == [str(tmp_path / "grey16.png"), str(tmp_path / "cmyk.jpg")]
    # (The runtime itself may print an INFO line about XNNPACK on stderr.)
    errors = [line for line in result.stderr.splitlines() if line.startswith("edge-daemon:")]
    assert [e.split(": ")[1] for e in errors] == [
        str(tmp_path / "empty.jpg"),
        str(tmp_path / "bomb.png"),
    ]
    assert all("not a readable image" in e for e in errors)
