"""The frame size a camera is asked for keeps crop mode meaningful."""

from __future__ import annotations

import numpy as np

from edge_daemon.config import parse_config
from edge_daemon.daemon import source_size
from edge_daemon.preprocess import crop_center


def test_stretch_asks_the_camera_for_the_model_size() -> None:
    cfg = parse_config("source: {kind: picamera2, width: 640, height: 480}")
    assert source_size(cfg, 224, 224) == (224, 224)


def test_crop_keeps_the_sensor_aspect_so_the_centre_crop_cuts_the_sides() -> None:
    cfg = parse_config(
        "source: {kind: picamera2, width: 640, height: 480}\npreprocess: {resize: crop}"
    )
    w, h = source_size(cfg, 224, 224)
    assert h == 224 and w > 224  # 4:3 frame covering 224x224
    frame = np.zeros((h, w, 3), dtype=np.uint8)
    assert crop_center(frame, 224, 224).shape == (224, 224, 3)


def test_files_source_is_decoded_at_full_size_whatever_the_mode() -> None:
    cfg = parse_config("preprocess: {resize: crop}")
    assert source_size(cfg, 224, 224) == (224, 224)


def test_a_region_asks_for_a_frame_whose_region_still_covers_the_model() -> None:
    cfg = parse_config(
        "source: {kind: picamera2, width: 1280, height: 960}\n"
        "preprocess: {region: {x: 0.5, y: 0.5, width: 0.25, height: 0.25}}"
    )
    w, h = source_size(cfg, 224, 224)
    assert (w * 0.25, h * 0.25) >= (224, 224)
    assert (w, h) == (896, 896)


def test_a_region_never_asks_for_more_than_the_configured_camera_size() -> None:
    cfg = parse_config(
        "source: {kind: picamera2, width: 640, height: 480}\n"
        "preprocess: {resize: crop, region: {x: 0, y: 0, width: 0.1, height: 0.1}}"
    )
    assert source_size(cfg, 224, 224) == (640, 480)
