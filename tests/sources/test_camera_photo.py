"""A photo seen through cameras without RGB output classifies as the photo itself does.

The fake camera "sees" a fixture photo and hands it over the way a USB webcam
or libcamera's virtual camera would: NV12 only (the virtual camera), YUYV
only (a webcam, limited range), MJPEG only (a webcam at larger sizes). The
frames go through the real model; the top-1 must be the golden one. Photos
whose answer changes with swapped colour channels (grace_hopper, bird) catch
a wrong byte order or chroma plane.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pytest

from edge_daemon.config import Config, SourceConfig, load_config
from edge_daemon.engine.model import LoadedModel
from edge_daemon.pipeline import Classifier
from edge_daemon.sources.files import decode_image
from edge_daemon.sources.picamera2 import Picamera2Source
from tests.helpers import IMAGES, first_name, shared_file

from .fake_picamera2 import FakeRig

CAMERAS: dict[str, dict[str, Any]] = {
    # libcamera's virtual camera: NV12, full-range BT.601 (it plays JPEGs), a timestamp only.
    "virtual NV12": {"offers": ("NV12",), "pipeline_handler": "virtual"},
    "webcam YUYV": {"offers": ("YUYV",), "full_range": False, "sizes": [(640, 480)]},
    "webcam MJPEG": {"offers": ("MJPEG",), "sizes": [(1280, 720), (640, 480)]},
}


@pytest.fixture(scope="module")
def model_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    folder = tmp_path_factory.mktemp("camera-photo")
    path = folder / "config.yaml"
    path.write_text(
        "model:\n"
        f"  path: {shared_file(IMAGES.parent / 'models' / 'mobilenet_v1_1.0_224_quant.tflite')}\n"
        f"  labels: {shared_file(IMAGES.parent / 'models' / 'labels_mobilenet_quant_v1_224.txt')}\n"
        "engine: {delegates: [xnnpack]}\n"
        f"daemon: {{state_dir: {folder / 'state'}}}\n"
        "http: {listen: null}\n"
    )
    return load_config(Path(path))


@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize("photo", ["grace_hopper.bmp", "bird.bmp", "parrot.jpg"])
def test_the_photo_through_the_camera_classifies_right(
    camera: str,
    photo: str,
    model_config: Config,
    expected: dict[str, Any],
    loaded: Callable[[Config], LoadedModel],
) -> None:
    model = loaded(model_config)
    scene = decode_image(shared_file(IMAGES / photo), (1, 1))
    rig = FakeRig(
        image=scene,
        rpi_camera=False,
        metadata_keys=("SensorTimestamp",),
        cameras=[{"Model": camera, "Num": 0, "Id": "/cam0"}],
        controls={},
        **CAMERAS[camera],
    )
    size = (model.input.width, model.input.height)
    cfg = dataclasses.replace(SourceConfig(kind="picamera2"), width=640, height=480)
    source = Picamera2Source(cfg, size, camera_class=rig.picamera2_class())
    source.open()
    try:
        frame = source.read()
        description = source.describe()
    finally:
        source.close()
    assert frame is not None
    assert "in software" in description
    top = Classifier(model, top_k=3, min_score=0.0, resize="stretch").classify(frame.image).top1
    assert top is not None
    assert first_name(top.label) == expected["images"][photo]["top1"], description
