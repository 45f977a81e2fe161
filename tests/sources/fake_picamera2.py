"""An in-memory stand-in for ``picamera2.Picamera2``: same method names, arguments and arrays.

A ``FakeRig`` is the hardware: the scene the camera sees (an RGB image), the
platform (PiSP on a Pi 5, VC4 on a Pi 4), the cameras attached and the faults
to inject. ``rig.picamera2_class()`` returns a class to pass where
``picamera2.Picamera2`` would go; every object it makes records its calls on
the rig, so a test can check what the code under test asked of the camera.

Arrays follow libcamera's little-endian format names, as picamera2 returns
them: "BGR888" -> (h, w, 3) bytes R, G, B; "RGB888" -> B, G, R; "XBGR8888" ->
(h, w, 4) R, G, B, X; "XRGB8888" -> B, G, R, X; "YUV420" -> (h * 3 // 2, w).
``make_buffer`` gives any stream's whole buffer as bytes, planes one after
the other with ``stride`` bytes a row; NV12, YUYV and MJPEG (a JPEG file) are
only readable that way, as in picamera2 0.3.38, whose make_array raises
"Format NV12 not supported".

A camera that is not behind a Pi ISP (``rpi_camera=False``: a USB webcam,
libcamera's virtual camera) offers only ``offers`` formats and ``sizes``: any
other format or size asked for is adjusted by "libcamera" when configuring,
as its UVC and virtual pipelines do.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import enum
import io
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

RGB_FORMATS = ("BGR888", "RGB888", "XBGR8888", "XRGB8888")
YUV_FORMATS = ("YUV420", "YVU420", "NV12", "NV21", "YUYV", "YVYU", "UYVY", "VYUY")
# What picamera2's make_array can shape (the rest: make_buffer only).
ARRAY_FORMATS = (*RGB_FORMATS, "YUV420", "YVU420")
PISP_METADATA = ("SensorTimestamp", "ExposureTime")


@dataclass(frozen=True)
class FakeColourSpace:
    """The two fields of libcamera.ColorSpace the adapter reads, spelt as pybind prints them."""

    ycbcrEncoding: str = "YcbcrEncoding.Rec601"
    range: str = "Range.Full"


class Platform(enum.Enum):
    """Mirrors picamera2.platform.Platform."""

    VC4 = 0  # Pi 4 and older: lores must be YUV
    PISP = 1  # Pi 5: lores may be RGB


def _default_cameras() -> list[dict[str, Any]]:
    return [
        {
            "Model": "imx708",
            "Location": 2,
            "Rotation": 180,
            "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
            "Num": 0,
        }
    ]


def _default_controls() -> dict[str, tuple[Any, Any, Any]]:
    # name -> (min, max, default), as Picamera2.camera_controls reports them.
    return {
        "FrameDurationLimits": (33333, 120000, 33333),
        "ExposureTime": (26, 112015443, 20000),
        "NoiseReductionMode": (0, 4, 0),
        # Pi 5: per-stream crops, [main, lores] (picamera2 reads [0] as main's
        # aspect-preserving crop); the whole sensor here.
        "ScalerCrop": ((0, 0, 64, 64), (0, 0, 4608, 2592), (0, 0, 4608, 2592)),
        "ScalerCrops": ((0, 0, 4608, 2592), (0, 0, 4608, 2592), (0, 0, 4608, 2592)),
    }


@dataclass
class FakeRig:
    """The camera hardware the fake Picamera2 objects share, its faults and the call record."""

    image: Image  # the scene, (H, W, 3) uint8 R, G, B
    # None: a picamera2 too old to have Picamera2.platform (it rejects RGB lores everywhere).
    platform: Optional[Platform] = Platform.PISP
    cameras: list[dict[str, Any]] = field(default_factory=_default_cameras)
    controls: dict[str, tuple[Any, Any, Any]] = field(default_factory=_default_controls)
    sensor_resolution: tuple[int, int] = (4608, 2592)
    # False: a USB webcam or virtual camera (no ColorFilterArrangement property).
    rpi_camera: bool = True
    pipeline_handler: str = "rpi/pisp"
    # Such a camera's only formats (the first is what it adjusts others to) and sizes.
    offers: Optional[tuple[str, ...]] = None
    sizes: Optional[list[tuple[int, int]]] = None
    full_range: bool = True  # how its Y'CbCr is encoded (and reported)
    stride_pad: int = 0  # bytes of padding at the end of every row
    # The metadata every request carries (UVC and virtual cameras: SensorTimestamp only).
    metadata_keys: tuple[str, ...] = PISP_METADATA

    # -- faults --
    busy: bool = False  # Picamera2() fails as when another process holds the camera
    stall_after: Optional[int] = None  # frames delivered before the camera stops delivering
    make_array_error: Optional[Exception] = None  # request.make_array raises this
    bad_arrays: bool = False  # make_array returns a flat (h, w) array instead of an image
    start_error: Optional[Exception] = None
    stop_error: Optional[Exception] = None
    close_error: Optional[Exception] = None
    # stream -> format libcamera substitutes when it validates the configuration
    adjust_format: dict[str, str] = field(default_factory=dict)

    # -- record --
    instances: list[FakePicamera2] = field(default_factory=list)
    requests: list[FakeRequest] = field(default_factory=list)
    leaked: list[FakeRequest] = field(default_factory=list)  # taken by jobs nobody waits for
    stalled: bool = False

    def picamera2_class(self) -> type[FakePicamera2]:
        """A Picamera2-like class bound to this rig."""
        rig = self

        class BoundPicamera2(FakePicamera2):
            _rig = rig

        if self.platform is not None:  # the class attribute picamera2 >= 0.3.13 has
            setattr(BoundPicamera2, "platform", self.platform)  # noqa: B010
        return BoundPicamera2

    @property
    def unreleased(self) -> list[FakeRequest]:
        """Requests handed out and not released: each one holds a camera buffer."""
        return [r for r in self.requests + self.leaked if not r.released]

    def recover(self) -> None:
        """The camera delivers frames again; capture jobs still queued each take a request."""
        self.stalled = False
        self.stall_after = None
        for cam in self.instances:
            for _job in cam.pending_jobs:
                self.leaked.append(FakeRequest(cam, cam.camera_config or {}))
            cam.pending_jobs.clear()


class FakeRequest:
    """A completed request: its buffers stay the camera's until release()."""

    def __init__(self, camera: FakePicamera2, config: dict[str, Any]) -> None:
        self.camera = camera
        self.config = copy.deepcopy(config)
        self.released = False
        self.release_count = 0
        self.timestamp = time.monotonic_ns()

    def _stream(self, name: str) -> dict[str, Any]:
        rig = self.camera._rig
        if self.released:
            raise RuntimeError("make_array on a released request")
        if rig.make_array_error is not None:
            raise rig.make_array_error
        stream: Optional[dict[str, Any]] = self.config.get(name)
        if stream is None:
            raise KeyError(f"stream {name!r} is not configured")
        return stream

    def make_array(self, name: str) -> Image:
        """A copy of stream ``name`` as picamera2 shapes it for the stream's format."""
        rig = self.camera._rig
        stream = self._stream(name)
        w, h = stream["size"]
        if rig.bad_arrays:
            return np.zeros((h, w), dtype=np.uint8)
        if stream["format"] not in ARRAY_FORMATS:
            raise RuntimeError("Format " + stream["format"] + " not supported")
        return render(self._view(name), w, h, stream["format"], rig.full_range)

    def _view(self, name: str) -> Image:
        """What stream ``name`` sees: the scene, or the part the ISP crops into lores."""
        rig = self.camera._rig
        crop = self.camera.lores_crop
        if name != "lores" or crop is None:
            return rig.image
        sw, sh = rig.sensor_resolution
        ih, iw = rig.image.shape[:2]
        x, y, w, h = crop
        view: Image = rig.image[
            y * ih // sh : (y + h) * ih // sh, x * iw // sw : (x + w) * iw // sw
        ]
        return view

    def make_buffer(self, name: str) -> Image:
        """The stream's whole buffer, flat: planes one after the other, rows ``stride`` long."""
        rig = self.camera._rig
        stream = self._stream(name)
        w, h = stream["size"]
        if rig.bad_arrays:
            return np.zeros(16, dtype=np.uint8)
        return render_buffer(
            self._view(name), w, h, stream["format"], stream["stride"], rig.full_range
        )

    def get_metadata(self) -> dict[str, Any]:
        values = {"SensorTimestamp": self.timestamp, "ExposureTime": 20000}
        return {k: values[k] for k in self.camera._rig.metadata_keys}

    def release(self) -> None:
        self.release_count += 1
        if self.released:
            raise RuntimeError("request released twice")
        self.released = True


class FakePicamera2:
    """In-memory Picamera2. Use ``FakeRig.picamera2_class()`` to get one bound to a rig."""

    _rig: FakeRig  # set on the bound subclass

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return [dict(c) for c in cls._rig.cameras]

    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: Any = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        rig = self._rig
        self.calls: list[str] = []
        self.camera_num = camera_num
        self.is_open = False
        self.started = False
        self.camera_config: Optional[dict[str, Any]] = None
        self.create_calls: list[dict[str, Any]] = []  # kwargs given to create_*_configuration
        self.configure_calls: list[dict[str, Any]] = []  # configs given to configure()
        self.capture_calls: list[tuple[Any, Any]] = []  # (wait, flush)
        self.pending_jobs: list[tuple[Any, Any]] = []  # captures queued past their wait
        self.cancel_count = 0
        self.controls_set: list[dict[str, Any]] = []  # set_controls() calls
        self.lores_crop: Optional[tuple[int, int, int, int]] = None  # sensor pixels
        rig.instances.append(self)
        # Like the real one: the camera index is looked up first (IndexError),
        # and a failed acquire surfaces as a generic RuntimeError whose context
        # carries libcamera's reason.
        info = self.global_camera_info()[camera_num]
        if rig.busy:
            try:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            except RuntimeError:
                raise RuntimeError("Camera __init__ sequence did not complete.")  # noqa: B904
        self.is_open = True
        self.camera_properties: dict[str, Any] = {
            "Model": info.get("Model"),
            "PixelArraySize": rig.sensor_resolution,
            "PipelineHandler": rig.pipeline_handler,
        }
        if rig.rpi_camera:
            self.camera_properties["ColorFilterArrangement"] = 0
        self.sensor_resolution = rig.sensor_resolution

    # -- configuration --------------------------------------------------------

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return dict(self._rig.controls)

    def _check_open(self) -> None:
        if not self.is_open:
            raise RuntimeError("Camera not opened")

    @staticmethod
    def _stream(defaults: dict[str, Any], updates: Optional[dict[str, Any]]) -> Any:
        if updates is None:
            return None
        for key in updates:
            if key not in ("format", "size", "stride", "preserve_ar"):
                raise ValueError(f"Bad key {key!r}")
        return {**defaults, **updates}

    def _create(
        self,
        use_case: str,
        main_default: tuple[int, int],
        frame_limits: tuple[int, int],
        main: dict[str, Any],
        lores: Optional[dict[str, Any]],
        raw: Optional[dict[str, Any]],
        buffer_count: int,
        controls: dict[str, Any],
        **rest: Any,
    ) -> dict[str, Any]:
        self._check_open()
        self.create_calls.append(
            {
                "use_case": use_case,
                "main": main,
                "lores": lores,
                "raw": raw,
                "buffer_count": buffer_count,
                "controls": dict(controls),
                **rest,
            }
        )
        main_cfg = self._stream(
            {"format": "XBGR8888", "size": main_default, "preserve_ar": True}, main
        )
        lores_cfg = self._stream(
            {"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}, lores
        )
        raw_cfg = self._stream({"format": "SBGGR10_CSI2P", "size": main_cfg["size"]}, raw)
        for stream in (main_cfg, lores_cfg):
            if stream is not None:  # align_stream(optimal=False): even sizes only
                w, h = stream["size"]
                stream["size"] = (w - w % 2, h - h % 2)
        defaults: dict[str, Any] = {}
        # Like picamera2: its default controls only where the camera has both.
        if {"NoiseReductionMode", "FrameDurationLimits"} <= set(self._rig.controls):
            defaults = {"NoiseReductionMode": 1, "FrameDurationLimits": frame_limits}
        return {
            "use_case": use_case,
            "transform": None,
            "colour_space": None,
            "buffer_count": buffer_count,
            "queue": rest.get("queue", True),
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": raw_cfg,
            "controls": {**defaults, **controls},
            "sensor": {},
            "display": rest.get("display", "main"),
            "encode": rest.get("encode", "main"),
        }

    def create_preview_configuration(
        self,
        main: Optional[dict[str, Any]] = None,
        lores: Optional[dict[str, Any]] = None,
        raw: Optional[dict[str, Any]] = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 4,
        controls: Optional[dict[str, Any]] = None,
        display: Optional[str] = "main",
        encode: Optional[str] = "main",
        queue: bool = True,
        sensor: Any = None,
        use_case: str = "preview",
    ) -> dict[str, Any]:
        return self._create(
            use_case,
            (640, 480),
            (100, 83333),
            main or {},
            lores,
            raw,
            buffer_count,
            controls or {},
            display=display,
            encode=encode,
            queue=queue,
        )

    def create_video_configuration(
        self,
        main: Optional[dict[str, Any]] = None,
        lores: Optional[dict[str, Any]] = None,
        raw: Optional[dict[str, Any]] = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: Optional[dict[str, Any]] = None,
        display: Optional[str] = "main",
        encode: Optional[str] = "main",
        queue: bool = True,
        sensor: Any = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        return self._create(
            use_case,
            (1280, 720),
            (33333, 33333),
            main or {},
            lores,
            raw,
            buffer_count,
            controls or {},
            display=display,
            encode=encode,
            queue=queue,
        )

    def configure(self, camera_config: Optional[dict[str, Any]] = None) -> None:
        """Validate like picamera2's check_camera_config, then 'allocate' the streams."""
        self.calls.append("configure")
        self._check_open()
        if camera_config is None:
            camera_config = self.create_preview_configuration()
        self.configure_calls.append(copy.deepcopy(camera_config))
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = None
        for name in ("main", "lores"):
            stream = camera_config.get(name)
            if stream is None:
                continue
            fmt = stream["format"]
            if fmt not in RGB_FORMATS + YUV_FORMATS + ("MJPEG",):
                raise RuntimeError(f"Bad format {fmt} in stream {name}")
            w, h = stream["size"]
            if w % 2 or h % 2:
                raise RuntimeError("width and height should be even")
        lores = camera_config.get("lores")
        if lores is not None:
            main_w, main_h = camera_config["main"]["size"]
            lores_w, lores_h = lores["size"]
            if lores_w > main_w or lores_h > main_h:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self._rig.platform is not Platform.PISP and lores["format"] not in YUV_FORMATS:
                raise RuntimeError("lores stream must be YUV")
        for key in camera_config.get("controls", {}):
            if key not in self._rig.controls:
                raise RuntimeError(f"Control {key} is not advertised by libcamera")
        final = copy.deepcopy(camera_config)
        rig = self._rig
        if not rig.rpi_camera:
            final["raw"] = None  # picamera2 drops it for a non-Pi camera
        for name in ("main", "lores"):
            stream = final.get(name)
            if stream is None:
                continue
            if rig.offers is not None and stream["format"] not in rig.offers:
                stream["format"] = rig.offers[0]
            if rig.sizes is not None and tuple(stream["size"]) not in rig.sizes:
                # The smallest mode covering the request, else the largest.
                w, h = stream["size"]
                covering = [s for s in rig.sizes if s[0] >= w and s[1] >= h]
                area = lambda s: s[0] * s[1]  # noqa: E731
                stream["size"] = min(covering, key=area) if covering else max(rig.sizes, key=area)
        for name, fmt in rig.adjust_format.items():
            if final.get(name) is not None:
                final[name]["format"] = fmt
        for name in ("main", "lores"):
            if final.get(name) is not None:
                fmt = final[name]["format"]
                width = final[name]["size"][0]
                stride = 0 if fmt == "MJPEG" else width * _bytes_per_pixel(fmt) + rig.stride_pad
                final[name]["stride"] = stride
        final["colour_space"] = FakeColourSpace(
            range="Range.Full" if rig.full_range else "Range.Limited"
        )
        self.camera_config = final

    def camera_configuration(self) -> Optional[dict[str, Any]]:
        return self.camera_config

    def set_controls(self, controls: dict[str, Any]) -> None:
        for key in controls:
            if key not in self._rig.controls:
                raise RuntimeError(f"Control {key} is not advertised by libcamera")
        self.controls_set.append(dict(controls))
        if "ScalerCrops" in controls:
            self.lores_crop = tuple(controls["ScalerCrops"][1])

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        stream: dict[str, Any] = self.camera_config[name]
        return stream

    # -- running --------------------------------------------------------------

    def start(self, config: Optional[dict[str, Any]] = None, show_preview: bool = False) -> None:
        self.calls.append("start")
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self._rig.start_error is not None:
            raise self._rig.start_error
        self.started = True

    def stop(self) -> None:
        self.calls.append("stop")
        if self._rig.stop_error is not None:
            raise self._rig.stop_error
        self.started = False

    def close(self) -> None:
        self.calls.append("close")
        if self._rig.close_error is not None:
            raise self._rig.close_error
        self.started = False
        self.is_open = False

    def cancel_all_and_flush(self) -> None:
        self.calls.append("cancel_all_and_flush")
        self.cancel_count += 1
        self.pending_jobs.clear()

    # -- capture --------------------------------------------------------------

    def capture_request(self, wait: Any = None, flush: Any = None) -> FakeRequest:
        """A request holding one frame; TimeoutError when none arrives within ``wait`` s."""
        self.calls.append("capture_request")
        self.capture_calls.append((wait, flush))
        rig = self._rig
        if rig.stall_after is not None and len(rig.requests) >= rig.stall_after:
            rig.stalled = True
        if not self.started or rig.stalled:
            if wait is None or wait is True:
                raise AssertionError("capture without a timeout: this would wait forever")
            # picamera2 leaves the job queued when the caller's wait expires.
            self.pending_jobs.append((wait, flush))
            raise concurrent.futures.TimeoutError()
        assert self.camera_config is not None
        request = FakeRequest(self, self.camera_config)
        if flush and "ExposureTime" not in rig.metadata_keys:
            # picamera2's flush computes SensorTimestamp - 1000 * ExposureTime.
            request.release()
            raise KeyError("ExposureTime")
        rig.requests.append(request)
        return request

    @contextlib.contextmanager
    def captured_request(self, wait: Any = None, flush: Any = None) -> Iterator[FakeRequest]:
        """Like picamera2's: the request is released whatever the body does."""
        request = self.capture_request(wait=wait, flush=flush)
        try:
            yield request
        finally:
            request.release()

    def capture_array(self, name: str = "main", wait: Any = None) -> Image:
        with self.captured_request(wait=wait) as request:
            return request.make_array(name)


def _bytes_per_pixel(fmt: str) -> int:
    if fmt in RGB_FORMATS:
        return 4 if fmt.startswith("X") else 3
    return 2 if fmt in ("YUYV", "YVYU", "UYVY", "VYUY") else 1


def scale_nearest(image: Image, width: int, height: int) -> Image:
    """``image`` scaled to (height, width) by nearest neighbour."""
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    scaled: Image = image[rows][:, cols]
    return scaled


def ycbcr(rgb: Image, full_range: bool = True) -> tuple[Any, Any, Any]:
    """BT.601 Y', Cb, Cr (float) of an R, G, B image: JPEG's (full range) or video's (limited)."""
    f = rgb.astype(np.float64)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    cb = (f[..., 2] - y) / 1.772
    cr = (f[..., 0] - y) / 1.402
    if full_range:
        return y, cb + 128, cr + 128
    return 16 + y * 219 / 255, 128 + cb * 224 / 255, 128 + cr * 224 / 255


def _u8(values: Any) -> Image:
    out: Image = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return out


def _rows(plane: Image, stride: int) -> Image:
    """``plane`` with each row padded to ``stride`` bytes."""
    padded = np.zeros((plane.shape[0], stride), dtype=np.uint8)
    padded[:, : plane.shape[1]] = plane
    return padded


def render_buffer(
    scene: Image, width: int, height: int, fmt: str, stride: int, full_range: bool = True
) -> Image:
    """The flat buffer written for ``scene`` in a ``fmt`` stream."""
    rgb = scale_nearest(scene, width, height).astype(np.uint8)
    if fmt == "MJPEG":
        from PIL import Image as PILImage

        out = io.BytesIO()
        PILImage.fromarray(rgb).save(out, format="JPEG", quality=92)
        data = np.frombuffer(out.getvalue(), dtype=np.uint8)
        return np.concatenate([data, np.zeros(64, dtype=np.uint8)])  # a buffer outlasts its JPEG
    if fmt in RGB_FORMATS:
        packed = render(scene, width, height, fmt).reshape(height, -1)
        return _rows(packed, stride).ravel()
    y, cb, cr = ycbcr(rgb, full_range)
    if fmt in ("YUYV", "YVYU", "UYVY", "VYUY"):
        u = (cb[:, 0::2] + cb[:, 1::2]) / 2
        v = (cr[:, 0::2] + cr[:, 1::2]) / 2
        packed = np.empty((height, width * 2), dtype=np.uint8)
        order = {"YUYV": "yuyv", "YVYU": "yvyu", "UYVY": "uyvy", "VYUY": "vyuy"}[fmt]
        y_at = [i for i, c in enumerate(order) if c == "y"]
        packed[:, y_at[0] :: 4] = _u8(y[:, 0::2])
        packed[:, y_at[1] :: 4] = _u8(y[:, 1::2])
        packed[:, order.index("u") :: 4] = _u8(u)
        packed[:, order.index("v") :: 4] = _u8(v)
        return _rows(packed, stride).ravel()
    # 4:2:0: the mean of each 2x2 block of chroma.
    u = (cb[0::2, 0::2] + cb[1::2, 0::2] + cb[0::2, 1::2] + cb[1::2, 1::2]) / 4
    v = (cr[0::2, 0::2] + cr[1::2, 0::2] + cr[0::2, 1::2] + cr[1::2, 1::2]) / 4
    luma = _rows(_u8(y), stride).ravel()
    if fmt in ("NV12", "NV21"):
        first, second = (u, v) if fmt == "NV12" else (v, u)
        uv = np.empty((height // 2, width), dtype=np.uint8)
        uv[:, 0::2], uv[:, 1::2] = _u8(first), _u8(second)
        return np.concatenate([luma, _rows(uv, stride).ravel()])
    if fmt in ("YUV420", "YVU420"):
        first, second = (u, v) if fmt == "YUV420" else (v, u)
        return np.concatenate(
            [luma, _rows(_u8(first), stride // 2).ravel(), _rows(_u8(second), stride // 2).ravel()]
        )
    raise RuntimeError(f"Format {fmt} not supported")


def render(scene: Image, width: int, height: int, fmt: str, full_range: bool = True) -> Image:
    """The array picamera2's make_array gives for ``scene`` (R, G, B) in a ``fmt`` stream."""
    rgb = scale_nearest(scene, width, height).astype(np.uint8)
    pad = np.full((height, width, 1), 255, dtype=np.uint8)
    if fmt == "BGR888":
        return np.ascontiguousarray(rgb)
    if fmt == "RGB888":
        return np.ascontiguousarray(rgb[..., ::-1])
    if fmt == "XBGR8888":
        return np.concatenate([rgb, pad], axis=2)
    if fmt == "XRGB8888":
        return np.concatenate([rgb[..., ::-1], pad], axis=2)
    if fmt in ("YUV420", "YVU420"):
        flat = render_buffer(scene, width, height, fmt, width, full_range)
        return flat.reshape(height * 3 // 2, width)
    raise RuntimeError(f"Format {fmt} not supported")
