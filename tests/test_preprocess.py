"""Frame -> model input: crop, resize, pixel mapping; and that the model sees RGB, H x W."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, Optional

import numpy as np
import pytest
import yaml

from edge_daemon.config import parse_config
from edge_daemon.engine.model import LoadedModel, load_model
from edge_daemon.pipeline import Classifier
from edge_daemon.preprocess import (
    InputSpec,
    apply_lut,
    crop_center,
    fit_frame,
    is_identity,
    pixel_lut,
    resize_bilinear,
)
from edge_daemon.sources.files import decode_image
from tests.helpers import IMAGES, LABELS, MODELS, first_name, shared_file

# -- crop and resize -----------------------------------------------------------


def bands(width: int, height: int) -> np.ndarray:
    """A frame: left quarter red, middle half green, right quarter blue."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    q = width // 4
    img[:, :q] = (255, 0, 0)
    img[:, q : width - q] = (0, 255, 0)
    img[:, width - q :] = (0, 0, 255)
    return img


def test_crop_center_of_a_wide_frame_trims_left_and_right() -> None:
    img = bands(200, 100)
    out = crop_center(img, 224, 224)
    assert out.shape == (100, 100, 3)
    assert (out == (0, 255, 0)).all()  # only the middle half is left


def test_crop_center_of_a_tall_frame_trims_top_and_bottom() -> None:
    img = np.zeros((300, 100, 3), dtype=np.uint8)
    img[100:200] = 200
    out = crop_center(img, 50, 50)
    assert out.shape == (100, 100, 3)
    assert (out == 200).all()


def test_crop_center_keeps_a_frame_of_the_right_aspect() -> None:
    img = bands(128, 96)
    assert crop_center(img, 640, 480).shape == img.shape


def test_crop_center_to_a_non_square_input() -> None:
    out = crop_center(np.zeros((480, 640, 3), dtype=np.uint8), 160, 90)
    assert out.shape == (360, 640, 3)


def test_stretch_keeps_the_whole_frame_and_crop_drops_the_sides() -> None:
    img = bands(400, 200)
    stretched = fit_frame(img, 32, 32, "stretch")
    cropped = fit_frame(img, 32, 32, "crop")
    assert stretched.shape == cropped.shape == (32, 32, 3)
    assert tuple(stretched[16, 0]) == (255, 0, 0)
    assert tuple(stretched[16, 31]) == (0, 0, 255)
    assert (cropped == (0, 255, 0)).all()


def test_resize_gives_height_by_width() -> None:
    out = resize_bilinear(np.zeros((480, 640, 3), dtype=np.uint8), 160, 90)
    assert out.shape == (90, 160, 3)
    assert out.dtype == np.uint8


def test_resize_keeps_a_flat_colour() -> None:
    img = np.full((1080, 1920, 3), (10, 120, 250), dtype=np.uint8)
    out = resize_bilinear(img, 224, 224)
    assert (out == (10, 120, 250)).all()


def test_resize_keeps_the_channel_order() -> None:
    out = resize_bilinear(bands(64, 64), 16, 16)
    assert tuple(out[8, 0]) == (255, 0, 0)
    assert tuple(out[8, 8]) == (0, 255, 0)
    assert tuple(out[8, 15]) == (0, 0, 255)


def test_frame_already_the_right_size_is_passed_through() -> None:
    img = bands(224, 224)
    assert resize_bilinear(img, 224, 224) is img


# -- pixel mapping -----------------------------------------------------------------


def spec(dtype: Any, scale: float = 0.0, zero_point: int = 0) -> InputSpec:
    return InputSpec(224, 224, np.dtype(dtype), scale, zero_point)


def test_float_input_defaults_to_minus_one_to_one() -> None:
    lut = pixel_lut(spec(np.float32), None, None)
    assert lut.dtype == np.float32
    assert lut[0] == -1.0 and lut[255] == 1.0
    assert lut[128] == pytest.approx(0.5 / 127.5)


def test_float_input_with_mean_and_std() -> None:
    lut = pixel_lut(spec(np.float32), 0.0, 255.0)
    np.testing.assert_allclose(lut, np.arange(256) / 255.0, rtol=1e-6)


def test_uint8_input_is_the_raw_pixel() -> None:
    lut = pixel_lut(spec(np.uint8, 1 / 128, 128), None, None)
    np.testing.assert_array_equal(lut, np.arange(256))
    assert is_identity(lut)


def test_int8_input_is_the_pixel_shifted_by_128() -> None:
    lut = pixel_lut(spec(np.int8, 1 / 128, 0), None, None)
    assert lut.dtype == np.int8
    assert lut[0] == -128 and lut[128] == 0 and lut[255] == 127
    assert not is_identity(lut)


def test_quantized_input_with_explicit_normalisation_is_quantized() -> None:
    # (pixel - 127.5) / 127.5 quantized at scale 1/128, zero point 128.
    lut = pixel_lut(spec(np.uint8, 1 / 128, 128), 127.5, 127.5)
    assert lut[0] == 0
    assert lut[255] == 255
    assert abs(int(lut[128]) - 128) <= 1
    # A mean that pushes values out of range is clipped, not wrapped around.
    lut = pixel_lut(spec(np.uint8, 1 / 128, 128), 0.0, 127.5)
    assert lut[255] == 255 and lut[0] == 128


def test_apply_lut_maps_every_pixel() -> None:
    lut = pixel_lut(spec(np.float32), None, None)
    img = np.array([[[0, 255, 128]]], dtype=np.uint8)
    out = apply_lut(img, lut)
    np.testing.assert_allclose(out, [[[-1.0, 1.0, 0.5 / 127.5]]], rtol=1e-6)
    buf = np.empty(img.shape, dtype=np.float32)
    assert apply_lut(img, lut, buf) is buf


# -- through a real model: crop vs stretch, RGB order, H x W order -----------------


@pytest.fixture(scope="module")
def load() -> Iterator[Callable[[str, str], LoadedModel]]:
    """Load a fixture model in this process once per (model, runtime)."""
    cache: dict[tuple[str, str], LoadedModel] = {}

    def get(model: str, runtime: str) -> LoadedModel:
        if (model, runtime) not in cache:
            labels: Optional[str] = None if "_metadata" in model else str(shared_file(LABELS))
            data = {
                "model": {"path": str(shared_file(MODELS / model)), "labels": labels},
                "engine": {"runtime": runtime, "delegates": ["xnnpack"]},
            }
            cache[(model, runtime)] = load_model(parse_config(yaml.safe_dump(data)))
        return cache[(model, runtime)]

    yield get
    for m in cache.values():
        m.close()


def image(name: str) -> np.ndarray:
    return decode_image(shared_file(IMAGES / name).read_bytes(), (224, 224))


def top(model: LoadedModel, pixels: np.ndarray, resize: str, k: int = 1) -> list[str]:
    clf = Classifier(model, top_k=k, min_score=0.0, resize=resize)  # type: ignore[arg-type]
    return [first_name(p.label) for p in clf.classify(pixels).predictions]


@pytest.mark.parametrize("resize", ["stretch", "crop"])
@pytest.mark.parametrize("name", ["grace_hopper.bmp", "bird.bmp"])
def test_goldens_hold_stretched_and_cropped(
    load: Callable[[str, str], LoadedModel],
    expected: dict[str, Any],
    name: str,
    resize: str,
) -> None:
    # Cropping happens before the runtime sees the frame, so one runtime is
    # enough here; test_golden runs every model by both.
    want = expected["images"][name]["top1"]
    got = {m: top(load(m, "auto"), image(name), resize)[0] for m in expected["models_224"]}
    assert got == dict.fromkeys(expected["models_224"], want)


@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_swapping_red_and_blue_changes_grace_hopper(
    load: Callable[[str, str], LoadedModel],
    expected: dict[str, Any],
    runtime_name: str,
    resize: str,
) -> None:
    # This is what proves the frame reaches the model in RGB order: the right
    # answer with RGB, a different one with BGR.
    model = load("mobilenet_v1_1.0_224_quant.tflite", runtime_name)
    pixels = image("grace_hopper.bmp")
    want = expected["images"]["grace_hopper.bmp"]["top1"]
    assert top(model, pixels, resize)[0] == want
    swapped = top(model, np.ascontiguousarray(pixels[..., ::-1]), resize)[0]
    assert swapped != want
    if resize == "stretch":
        # expected.yaml: BGR with this model (stretch, bilinear) gives "bow tie".
        assert swapped == "bow tie"


def test_swapping_width_and_height_changes_grace_hopper(
    load: Callable[[str, str], LoadedModel], expected: dict[str, Any], runtime_name: str
) -> None:
    model = load("mobilenet_v1_1.0_224_quant.tflite", runtime_name)
    pixels = image("grace_hopper.bmp")
    transposed = top(model, np.ascontiguousarray(pixels.transpose(1, 0, 2)), "stretch")[0]
    assert transposed != expected["images"]["grace_hopper.bmp"]["top1"]
    # expected.yaml: transposed (H and W swapped) gives "parallel bars".
    assert transposed == "parallel bars"


def test_bird_with_red_and_blue_swapped(
    load: Callable[[str, str], LoadedModel], expected: dict[str, Any], runtime_name: str
) -> None:
    model = load("mobilenet_v1_1.0_224_quant.tflite", runtime_name)
    pixels = image("bird.bmp")
    assert top(model, pixels, "stretch")[0] == expected["images"]["bird.bmp"]["top1"]
    # expected.yaml: BGR with this model (stretch, bilinear) gives "water ouzel".
    assert top(model, np.ascontiguousarray(pixels[..., ::-1]), "stretch")[0] == "water ouzel"
