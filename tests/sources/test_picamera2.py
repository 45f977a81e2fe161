"""Picamera2Source against an in-memory picamera2: what a user of the camera would notice."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import numpy.typing as npt
import pytest

from edge_daemon.config import SourceConfig
from edge_daemon.errors import PermanentSourceError, SourceBusy, SourceError, SourceTimeout
from edge_daemon.sources.base import FrameSource
from edge_daemon.sources.picamera2 import Picamera2Source

from .fake_picamera2 import FakePicamera2, FakeRig, Platform, render

# Left half and right half of the scene differ strongly in R and B, so a
# swapped byte order or a mirrored frame shows in a single pixel.
LEFT = (230, 40, 10)
RIGHT = (10, 90, 220)
MODEL = (224, 224)


def scene(width: int = 640, height: int = 480) -> npt.NDArray[np.uint8]:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, : width // 2] = LEFT
    image[:, width // 2 :] = RIGHT
    return image


def camera_cfg(**changes: Any) -> SourceConfig:
    return dataclasses.replace(SourceConfig(kind="picamera2"), **changes)


def make_source(
    rig: FakeRig,
    input_size: tuple[int, int] = MODEL,
    *,
    luma: bool = False,
    region: Optional[tuple[float, float, float, float]] = None,
    **cfg: Any,
) -> Picamera2Source:
    return Picamera2Source(
        camera_cfg(**cfg),
        input_size,
        camera_class=rig.picamera2_class(),
        luma=luma,
        region=region,
    )


def only_camera(rig: FakeRig) -> FakePicamera2:
    assert len(rig.instances) == 1
    return rig.instances[0]


def assert_rgb_frame(image: npt.NDArray[np.uint8], width: int, height: int) -> None:
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous
    assert tuple(image[height // 2, 0]) == LEFT
    assert tuple(image[height // 2, width - 1]) == RIGHT


# -- what a frame looks like --------------------------------------------------


def test_pi5_frames_arrive_at_model_size_in_rgb_order_from_an_rgb_lores_stream() -> None:
    rig = FakeRig(image=scene(), platform=Platform.PISP)
    source = make_source(rig, width=640, height=480)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, *MODEL)
    assert frame.name == "camera0"
    assert frame.seq == 1
    assert frame.capture_ms >= 0
    cam = only_camera(rig)
    [config] = cam.configure_calls
    assert config["lores"]["size"] == MODEL
    assert config["lores"]["format"] == "BGR888"
    assert config["main"]["size"] == (640, 480)


def test_pi4_configures_main_at_the_model_size_because_lores_must_be_yuv() -> None:
    rig = FakeRig(image=scene(), platform=Platform.VC4)
    source = make_source(rig)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, *MODEL)
    cam = only_camera(rig)
    # Known VC4: no doomed RGB-lores attempt first.
    [config] = cam.configure_calls
    assert config["lores"] is None
    assert config["main"]["size"] == MODEL
    assert config["main"]["format"] == "BGR888"


def test_unknown_platform_falls_back_to_main_when_rgb_lores_is_refused() -> None:
    # An older picamera2 without Picamera2.platform refuses RGB lores everywhere.
    rig = FakeRig(image=scene(), platform=None)
    source = make_source(rig)
    source.open()
    try:
        frame = source.read()
        description = source.describe()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, *MODEL)
    cam = only_camera(rig)
    assert [c["lores"] is not None for c in cam.configure_calls] == [True, False]
    assert cam.configure_calls[-1]["main"]["size"] == MODEL
    assert "main 224x224" in description


@pytest.mark.parametrize("delivered", ["BGR888", "RGB888", "XBGR8888", "XRGB8888"])
@pytest.mark.parametrize("platform", [Platform.PISP, Platform.VC4])
def test_every_rgb_byte_order_libcamera_may_settle_on_becomes_rgb(
    delivered: str, platform: Platform
) -> None:
    rig = FakeRig(
        image=scene(), platform=platform, adjust_format={"main": delivered, "lores": delivered}
    )
    source = make_source(rig)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, *MODEL)


def test_a_format_edge_daemon_cannot_read_is_a_permanent_error_naming_it() -> None:
    rig = FakeRig(image=scene(), platform=Platform.VC4, adjust_format={"main": "SRGGB10"})
    source = make_source(rig)
    with pytest.raises(PermanentSourceError, match="SRGGB10") as info:
        source.open()
    assert "NV12" in str(info.value)  # what it can read instead
    assert "\n" not in str(info.value)
    assert only_camera(rig).calls[-2:] == ["stop", "close"]


def test_a_model_larger_than_main_gets_main_at_the_model_size_never_a_bigger_lores() -> None:
    rig = FakeRig(image=scene(), platform=Platform.PISP)
    source = make_source(rig, input_size=(512, 512), width=640, height=480)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, 512, 512)
    for config in only_camera(rig).configure_calls:
        lores = config["lores"]
        if lores is not None:
            assert lores["size"][0] <= config["main"]["size"][0]
            assert lores["size"][1] <= config["main"]["size"][1]


@pytest.mark.parametrize("platform", [Platform.PISP, Platform.VC4])
def test_an_odd_model_size_asks_the_camera_for_even_dimensions(platform: Platform) -> None:
    rig = FakeRig(image=scene(), platform=platform)
    source = make_source(rig, input_size=(299, 301))
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, 298, 300)


def test_frames_count_from_one_on_one_camera_object() -> None:
    rig = FakeRig(image=scene())
    source = make_source(rig, camera=0)
    source.open()
    try:
        frames = [source.read() for _ in range(5)]
    finally:
        source.close()
    assert [f.seq for f in frames if f is not None] == [1, 2, 3, 4, 5]
    # Re-creating Picamera2 per frame leaks CMA memory: one object serves every read.
    assert len(rig.instances) == 1
    assert rig.instances[0].calls.count("start") == 1


def test_is_a_frame_source_and_describes_the_camera() -> None:
    rig = FakeRig(image=scene())
    source = make_source(rig)
    assert isinstance(source, FrameSource)
    source.open()
    try:
        text = source.describe()
    finally:
        source.close()
    assert "camera0" in text
    assert "imx708" in text
    assert "224x224" in text


# -- frame rate ---------------------------------------------------------------


@pytest.mark.parametrize("fps", [1.0, 7.5, 30.0])
def test_fps_pins_frame_duration_limits(fps: float) -> None:
    rig = FakeRig(image=scene())
    source = make_source(rig, fps=fps)
    source.open()
    source.close()
    frame_us = round(1_000_000 / fps)
    for config in only_camera(rig).configure_calls:
        assert config["controls"]["FrameDurationLimits"] == (frame_us, frame_us)


def test_no_fps_leaves_the_camera_frame_rate_alone() -> None:
    rig = FakeRig(image=scene())
    source = make_source(rig, fps=None)
    source.open()
    source.close()
    for call in only_camera(rig).create_calls:
        assert "FrameDurationLimits" not in call["controls"]


def test_fps_on_a_camera_without_frame_duration_control_still_opens() -> None:
    rig = FakeRig(image=scene(), controls={"ExposureTime": (1, 100000, 20000)})
    source = make_source(rig, fps=10.0)
    source.open()
    try:
        assert source.read() is not None
    finally:
        source.close()


# -- faults -------------------------------------------------------------------


def test_a_stalled_camera_raises_source_timeout_and_leaves_no_request_behind() -> None:
    rig = FakeRig(image=scene(), stall_after=1)
    source = make_source(rig, timeout=0.5)
    source.open()
    try:
        assert source.read() is not None
        with pytest.raises(SourceTimeout, match="camera0"):
            source.read()
    finally:
        source.close()
    cam = only_camera(rig)
    for wait, _flush in cam.capture_calls:
        # A number of seconds: None or True would wait forever on a hung camera.
        assert isinstance(wait, float)
        assert wait >= 0.5
    # The camera comes back: a capture job left queued would now take a request
    # that nobody ever releases.
    rig.recover()
    assert rig.unreleased == []


def test_after_a_timeout_close_and_open_gives_frames_again() -> None:
    rig = FakeRig(image=scene(), stall_after=0)
    source = make_source(rig)
    source.open()
    with pytest.raises(SourceTimeout):
        source.read()
    source.close()
    rig.recover()
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert_rgb_frame(frame.image, *MODEL)
    assert len(rig.instances) == 2
    assert all(cam.calls[-2:] == ["stop", "close"] for cam in rig.instances)


def test_a_busy_camera_says_another_process_holds_it() -> None:
    rig = FakeRig(image=scene(), busy=True)
    source = make_source(rig)
    with pytest.raises(SourceBusy) as info:
        source.open()
    assert not isinstance(info.value, (SourceTimeout, PermanentSourceError))
    message = str(info.value)
    assert "busy" in message
    assert "another process" in message
    assert "\n" not in message
    source.close()  # after a failed open: fine, and nothing to stop


@pytest.mark.parametrize(("attached", "wanted"), [(0, 0), (1, 1)])
def test_a_missing_camera_is_named(attached: int, wanted: int) -> None:
    cameras = [{"Model": "imx219", "Num": i, "Id": f"/cam{i}"} for i in range(attached)]
    rig = FakeRig(image=scene(), cameras=cameras)
    source = make_source(rig, camera=wanted)
    with pytest.raises(SourceError, match=f"camera{wanted}") as info:
        source.open()
    assert "no camera" in str(info.value) or "no such camera" in str(info.value)
    assert rig.instances == []
    # Other cameras are there: the index is wrong, no retry fixes it. None at
    # all may be a camera still enumerating at boot, or a loose cable.
    assert isinstance(info.value, PermanentSourceError) == (attached > 0)
    if attached:
        assert "set source.camera" in str(info.value)


def test_requests_are_released_when_copying_the_frame_fails() -> None:
    rig = FakeRig(image=scene(), make_array_error=RuntimeError("dma-buf sync failed"))
    source = make_source(rig)
    source.open()
    try:
        with pytest.raises(SourceError, match="dma-buf sync failed"):
            source.read()
    finally:
        source.close()
    assert len(rig.requests) == 1
    assert rig.unreleased == []
    assert rig.requests[0].release_count == 1


def test_requests_are_released_when_the_array_cannot_be_converted() -> None:
    rig = FakeRig(image=scene(), bad_arrays=True)
    source = make_source(rig)
    source.open()
    try:
        with pytest.raises(SourceError, match="unexpected frame array"):
            source.read()
    finally:
        source.close()
    assert len(rig.requests) == 1
    assert rig.unreleased == []


def test_a_start_failure_releases_the_camera() -> None:
    rig = FakeRig(
        image=scene(), start_error=RuntimeError("Failed to start streaming: Connection timed out")
    )
    source = make_source(rig)
    with pytest.raises(SourceError, match="Connection timed out"):
        source.open()
    assert only_camera(rig).calls[-2:] == ["stop", "close"]
    with pytest.raises(SourceError, match="not open"):
        source.read()


# -- close --------------------------------------------------------------------


def test_close_stops_then_closes_the_camera_once_and_is_idempotent() -> None:
    rig = FakeRig(image=scene())
    source = make_source(rig)
    source.close()  # before open: nothing happens
    source.open()
    source.read()
    source.close()
    source.close()
    cam = only_camera(rig)
    assert cam.calls[-2:] == ["stop", "close"]
    assert cam.calls.count("stop") == 1
    assert cam.calls.count("close") == 1
    assert not cam.is_open
    with pytest.raises(SourceError, match="not open"):
        source.read()


def test_close_never_raises_and_still_closes_when_stop_fails() -> None:
    rig = FakeRig(
        image=scene(),
        stop_error=RuntimeError("stop failed"),
        close_error=RuntimeError("Failed to release camera"),
    )
    source = make_source(rig)
    source.open()
    source.close()
    assert only_camera(rig).calls[-2:] == ["stop", "close"]


def test_open_twice_does_not_keep_the_first_camera() -> None:
    rig = FakeRig(image=scene())
    source = make_source(rig)
    source.open()
    source.open()
    source.close()
    assert len(rig.instances) == 2
    assert all(cam.calls.count("close") == 1 for cam in rig.instances)


# -- installation -------------------------------------------------------------


def test_missing_picamera2_module_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    source = Picamera2Source(camera_cfg(), MODEL)
    with pytest.raises(SourceError) as info:
        source.open()
    message = str(info.value)
    assert "apt install python3-picamera2" in message
    assert "--system-site-packages" in message
    assert "\n" not in message
    source.close()


def test_pip_picamera2_without_libcamera_names_libcamera(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What a venv without --system-site-packages has: picamera2 from pip, no libcamera.
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("import libcamera\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.setitem(sys.modules, "libcamera", None)
    source = Picamera2Source(camera_cfg(), MODEL)
    with pytest.raises(SourceError) as info:
        source.open()
    message = str(info.value)
    assert "No module named 'libcamera'" in message
    assert "--system-site-packages" in message


# -- the stand-in itself ------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "shape", "first_pixel"),
    [
        ("BGR888", (4, 6, 3), LEFT),
        ("RGB888", (4, 6, 3), LEFT[::-1]),
        ("XBGR8888", (4, 6, 4), (*LEFT, 255)),
        ("XRGB8888", (4, 6, 4), (*LEFT[::-1], 255)),
        ("YUV420", (6, 6), None),
    ],
)
def test_fake_arrays_follow_libcamera_byte_order(
    fmt: str, shape: tuple[int, ...], first_pixel: Optional[tuple[int, ...]]
) -> None:
    array = render(scene(), 6, 4, fmt)
    assert array.shape == shape
    if first_pixel is not None:
        assert tuple(array[0, 0]) == first_pixel


# -- cameras without RGB output (USB webcams, libcamera's virtual camera) ----


def webcam(offers: tuple[str, ...], **changes: Any) -> FakeRig:
    """A camera libcamera drives without a Pi ISP, reporting only a timestamp."""
    fields: dict[str, Any] = {
        "image": scene(),
        "rpi_camera": False,
        "pipeline_handler": "uvcvideo",
        "offers": offers,
        "metadata_keys": ("SensorTimestamp",),
        "cameras": [{"Model": "HD Webcam C270", "Num": 0, "Id": "/usb@1/cam"}],
        "controls": {"ExposureTime": (1, 100000, 20000)},
    }
    fields.update(changes)
    return FakeRig(**fields)


def assert_close_rgb_frame(image: npt.NDArray[np.uint8], width: int, height: int, tol: int) -> None:
    """Like assert_rgb_frame, within ``tol`` levels: Y'CbCr and JPEG round off colours."""
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous
    for x, want in ((0, LEFT), (width - 1, RIGHT)):
        got = image[height // 2, x].astype(int)
        assert np.abs(got - np.array(want)).max() <= tol, (x, tuple(got), want)


def read_one(source: Picamera2Source) -> tuple[Any, str]:
    source.open()
    try:
        frame = source.read()
        return frame, source.describe()
    finally:
        source.close()


@pytest.mark.parametrize(
    ("fmt", "tol"),
    [("NV12", 3), ("NV21", 3), ("YUV420", 3), ("YUYV", 3), ("UYVY", 3), ("MJPEG", 12)],
)
def test_a_camera_without_rgb_gives_rgb_frames_at_the_model_size(fmt: str, tol: int) -> None:
    rig = webcam((fmt,))
    frame, description = read_one(make_source(rig))
    assert frame is not None
    assert_close_rgb_frame(frame.image, *MODEL, tol)
    [config] = only_camera(rig).configure_calls  # one stream asked for, at the model size
    assert config["lores"] is None
    assert config["main"]["size"] == MODEL
    assert f"{fmt} to RGB in software" in description


def test_a_camera_that_only_has_larger_modes_is_sampled_down_in_software() -> None:
    rig = webcam(("YUYV",), sizes=[(640, 480), (320, 240)])
    frame, description = read_one(make_source(rig))
    assert frame is not None
    assert_close_rgb_frame(frame.image, *MODEL, 3)
    assert "main 320x240 YUYV" in description  # the smallest mode covering 224x224
    assert "sampled to 224x224" in description


def test_padded_rows_are_skipped() -> None:
    rig = webcam(("NV12",), stride_pad=32)
    frame, _ = read_one(make_source(rig))
    assert frame is not None
    assert_close_rgb_frame(frame.image, *MODEL, 3)


def test_limited_range_yuv_is_expanded_to_full_range_rgb() -> None:
    rig = webcam(("YUYV",), full_range=False)
    frame, description = read_one(make_source(rig))
    assert frame is not None
    assert_close_rgb_frame(frame.image, *MODEL, 3)
    assert "limited range" in description


def test_the_rgb_fast_path_is_kept_where_the_isp_gives_rgb() -> None:
    rig = FakeRig(image=scene(), platform=Platform.PISP)
    _, description = read_one(make_source(rig))
    assert "lores 224x224 BGR888" in description
    assert "RGB from the camera (no conversion)" in description


# -- metadata -----------------------------------------------------------------


def test_a_camera_that_reports_only_a_timestamp_captures_and_dates_frames_by_it() -> None:
    rig = webcam(("NV12",))
    source = make_source(rig)
    source.open()
    try:
        before = time.time()
        frames = [source.read() for _ in range(3)]
        after = time.time()
    finally:
        source.close()
    assert all(f is not None for f in frames)
    # picamera2's flush=True would need ExposureTime; the fake raises as it does.
    assert all(not flush for _wait, flush in only_camera(rig).capture_calls)
    for frame, request in zip(frames, rig.requests):
        assert frame is not None
        assert before - 0.1 <= frame.captured_at <= after
        # The sensor's clock, not the time the copy finished.
        stamp = request.timestamp / 1e9
        assert abs((time.time() - frame.captured_at) - (time.monotonic() - stamp)) < 0.05


def test_fresh_frames_come_from_queue_false_not_from_flush() -> None:
    rig = FakeRig(image=scene())
    read_one(make_source(rig))
    for call in only_camera(rig).create_calls:
        assert call["queue"] is False


def test_without_metadata_the_frame_is_dated_now() -> None:
    rig = webcam(("NV12",), metadata_keys=())
    before = time.time()
    frame, _ = read_one(make_source(rig))
    assert frame is not None
    assert before <= frame.captured_at <= time.time()


# -- the change gate's luma plane ---------------------------------------------


def test_luma_comes_from_the_unread_yuv_main_stream_on_a_pi5() -> None:
    rig = FakeRig(image=scene(), platform=Platform.PISP)
    source = make_source(rig, luma=True, width=640, height=480)
    frame, _ = read_one(source)
    assert frame is not None
    assert frame.luma is not None
    assert frame.luma.shape == (120, 160)  # 640x480 sampled to at most 160 wide
    assert frame.luma.dtype == np.uint8
    y_left = 0.299 * LEFT[0] + 0.587 * LEFT[1] + 0.114 * LEFT[2]
    y_right = 0.299 * RIGHT[0] + 0.587 * RIGHT[1] + 0.114 * RIGHT[2]
    assert abs(int(frame.luma[60, 0]) - y_left) <= 1
    assert abs(int(frame.luma[60, 159]) - y_right) <= 1


def test_luma_is_the_region_only() -> None:
    rig = webcam(("NV12",))
    source = make_source(rig, luma=True, region=(0.5, 0.0, 0.5, 1.0))  # the right half
    frame, _ = read_one(source)
    assert frame is not None
    assert frame.luma is not None
    y_right = 0.299 * RIGHT[0] + 0.587 * RIGHT[1] + 0.114 * RIGHT[2]
    assert np.abs(frame.luma.astype(float) - y_right).max() <= 1
    # The whole frame is still there for snapshots.
    assert_close_rgb_frame(frame.image, *MODEL, 3)


def test_no_luma_without_the_gate_or_without_a_yuv_stream() -> None:
    frame, _ = read_one(make_source(webcam(("NV12",))))
    assert frame is not None and frame.luma is None
    frame, _ = read_one(make_source(FakeRig(image=scene(), platform=Platform.VC4), luma=True))
    assert frame is not None and frame.luma is None


def test_check_details_name_the_camera_the_format_and_the_conversion() -> None:
    source = make_source(webcam(("YUYV",)), luma=True)
    source.open()
    try:
        details = source.details()
    finally:
        source.close()
    assert details["camera"] == "camera0 (HD Webcam C270)"
    assert details["camera stream"] == "main 224x224 YUYV"
    assert "YUYV to RGB in software" in details["conversion"]
    assert "Y plane" in details["gate luma"]


# -- what `edge-daemon check` prints ------------------------------------------

STANDIN = Path(__file__).parent / "standin"


@pytest.mark.parametrize(
    ("kind", "stream", "conversion"),
    [
        (
            "yuyv",
            "main 320x240 YUYV",
            "YUYV to RGB in software (sampled to 224x224, BT.601 limited range)",
        ),
        ("mjpeg", "main 320x240 MJPEG", "MJPEG to RGB in software (sampled to 224x224, decoded)"),
        ("pi5", "lores 224x224 BGR888 from main 640x480", "RGB from the camera (no conversion)"),
    ],
)
def test_check_names_the_camera_its_format_and_who_converts(
    kind: str, stream: str, conversion: str, write_config: Any
) -> None:
    from tests.helpers import run_cli

    config = write_config(overrides={"source": {"kind": "picamera2"}})
    done = run_cli(
        "check",
        "--config",
        str(config),
        env={"PYTHONPATH": str(STANDIN), "EDGE_DAEMON_FAKE_CAMERA": kind},
    )
    assert done.returncode == 0, done.stderr
    lines = {
        line.split("  ", 1)[0]: line.split("  ", 1)[1].strip()
        for line in done.stdout.splitlines()
        if "  " in line
    }
    assert lines["camera stream"] == stream
    assert lines["conversion"] == conversion
    assert lines["camera"].startswith("camera0 (")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bayer", "not usable: camera0: the camera delivers SRGGB10, a format edge-daemon cannot"),
        ("busy", "not opened: camera0 is busy: another process holds it"),
    ],
)
def test_check_says_in_its_camera_line_why_the_camera_cannot_be_used(
    kind: str, reason: str, write_config: Any
) -> None:
    # Not a failed check: an image build or a Pi whose camera comes later has
    # none, and the running service holds its camera; the daemon copes.
    from tests.helpers import run_cli

    config = write_config(overrides={"source": {"kind": "picamera2"}})
    done = run_cli(
        "check",
        "--config",
        str(config),
        env={"PYTHONPATH": str(STANDIN), "EDGE_DAEMON_FAKE_CAMERA": kind},
    )
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("camera ")]
    assert line.split("  ", 1)[1].strip().startswith(reason)
    assert "Traceback" not in done.stderr


# -- preprocess.region --------------------------------------------------------


def test_on_a_pi5_the_isp_crops_the_region_and_the_frame_stays_whole() -> None:
    rig = FakeRig(image=scene(), platform=Platform.PISP)
    source = make_source(rig, luma=True, region=(0.5, 0.0, 0.5, 1.0), width=640, height=480)
    source.open()
    try:
        frame = source.read()
        details = source.details()
    finally:
        source.close()
    assert frame is not None
    cam = only_camera(rig)
    [controls] = cam.controls_set
    assert controls["ScalerCrops"] == [(0, 0, 4608, 2592), (2304, 0, 2304, 2592)]
    # roi: the right half, at the model size, RGB from the ISP.
    assert frame.roi is not None
    assert frame.roi.shape == (*MODEL, 3)
    assert np.abs(frame.roi.astype(int) - np.array(RIGHT)).max() == 0
    # image: still the whole view (for snapshots), from main in software.
    assert_close_rgb_frame(frame.image, *MODEL, 3)
    # luma: the region of main's Y plane.
    assert frame.luma is not None
    y_right = 0.299 * RIGHT[0] + 0.587 * RIGHT[1] + 0.114 * RIGHT[2]
    assert np.abs(frame.luma.astype(float) - y_right).max() <= 1
    assert details["region"].startswith("cropped by the ISP")


@pytest.mark.parametrize("platform", [Platform.VC4, None])
def test_without_per_stream_crops_the_region_is_left_to_the_pipeline(
    platform: Optional[Platform],
) -> None:
    rig = FakeRig(image=scene(), platform=platform)
    source = make_source(rig, region=(0.5, 0.0, 0.5, 1.0))
    source.open()
    try:
        frame = source.read()
        details = source.details()
    finally:
        source.close()
    assert frame is not None
    assert frame.roi is None
    assert_rgb_frame(frame.image, *MODEL)  # the whole frame, RGB from the camera
    assert details["region"].startswith("cropped in software")
    assert only_camera(rig).controls_set == []
