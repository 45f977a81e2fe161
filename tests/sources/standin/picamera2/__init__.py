"""A ``picamera2`` package for subprocess tests: the in-repo fake camera, importable by name.

With this folder first on PYTHONPATH, ``edge-daemon`` run as a user would
meets a USB webcam (or whatever EDGE_DAEMON_FAKE_CAMERA names) instead of
real hardware: ``yuyv`` (default), ``mjpeg``, ``nv12``, ``bayer`` (a format
edge-daemon cannot read), ``busy`` (held by another process) or ``pi5``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tests.sources.fake_picamera2 import FakeRig, Platform

_scene = np.zeros((480, 640, 3), dtype=np.uint8)
_scene[:, :320] = (230, 40, 10)
_scene[:, 320:] = (10, 90, 220)

_WEBCAM: dict[str, Any] = {
    "rpi_camera": False,
    "pipeline_handler": "uvcvideo",
    "metadata_keys": ("SensorTimestamp",),
    "cameras": [{"Model": "HD Webcam C270", "Num": 0, "Id": "/usb@1/cam"}],
    "controls": {"ExposureTime": (1, 100000, 20000)},
    "sizes": [(640, 480), (320, 240)],
}
_KINDS: dict[str, dict[str, Any]] = {
    "yuyv": {**_WEBCAM, "offers": ("YUYV",), "full_range": False},
    "mjpeg": {**_WEBCAM, "offers": ("MJPEG",)},
    "nv12": {**_WEBCAM, "offers": ("NV12",)},
    "bayer": {**_WEBCAM, "offers": ("YUYV",), "adjust_format": {"main": "SRGGB10"}},
    "pi5": {"platform": Platform.PISP},
    "busy": {**_WEBCAM, "offers": ("YUYV",), "busy": True},
}

rig = FakeRig(image=_scene, **_KINDS[os.environ.get("EDGE_DAEMON_FAKE_CAMERA", "yuyv")])
Picamera2 = rig.picamera2_class()
