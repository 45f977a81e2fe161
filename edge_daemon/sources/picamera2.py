"""Frames from any camera libcamera lists (Pi camera modules, USB webcams) through picamera2.

Where the camera's ISP writes RGB (a Raspberry Pi) it also does the scaling:
the camera is asked for a stream at the model's input size, so no
full-resolution frame is ever copied or resized on the CPU.

* Pi 5 (PiSP ISP): ``main`` at source.width x source.height in YUV420 (never
  converted; its Y plane is what the change gate samples) plus a ``lores``
  stream at the model size in an RGB format.
* Pi 4 and older (VC4 ISP): ``lores`` can only be YUV420, so ``main`` itself is
  configured at the model size in an RGB format and there is no ``lores``.
* Any other camera (a USB webcam, libcamera's virtual camera): ``main`` is
  asked for at the model size; libcamera settles on a size the camera has and
  a format it delivers (NV12, YUV420, YUYV, MJPEG ...). The frame is then
  sampled to the model size and only those samples are converted to RGB, in
  software (``sources/yuv.py``). ``edge-daemon check`` says which way it went.

Byte order: libcamera names formats after the packed little-endian word, so
picamera2's "BGR888" arrays hold R, G, B bytes (what an RGB model wants) and
"RGB888" arrays hold B, G, R. Every frame is converted to R, G, B by the table
``_TO_RGB`` from the format the camera actually configured.

No metadata is assumed: streams are configured with ``queue=False`` so every
capture is a frame completed after the call (picamera2's ``flush=True``
needs an ``ExposureTime`` that USB and virtual cameras never report), and the
capture time comes from ``SensorTimestamp`` when the camera reports one.

``picamera2`` is imported only in ``open()``, so this module imports on any
machine; tests inject a stand-in class instead.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import numpy.typing as npt

from ..config import Config, SourceConfig
from ..errors import PermanentSourceError, SourceBusy, SourceError, SourceTimeout
from . import yuv
from .base import Frame

log = logging.getLogger(__name__)

# What a picamera2 array of each format holds along its last axis, as the
# index of R, G and B. "BGR888" is the one to ask for: it is already R, G, B.
_TO_RGB: dict[str, tuple[int, int, int]] = {
    "BGR888": (0, 1, 2),  # bytes R, G, B
    "RGB888": (2, 1, 0),  # bytes B, G, R
    "XBGR8888": (0, 1, 2),  # bytes R, G, B, X (the padding byte is dropped)
    "XRGB8888": (2, 1, 0),  # bytes B, G, R, X
}
_RGB_FORMAT = "BGR888"
# Every format a frame can be read from: RGB as it is, the rest converted.
READABLE = tuple(_TO_RGB) + yuv.FORMATS
# main is never converted when lores carries the frames: the smallest format
# the ISP writes keeps the contiguous (CMA) memory the buffers take small, and
# its Y plane is the change gate's luma for free.
_UNREAD_MAIN_FORMAT = "YUV420"
# Enough to keep the ISP busy while one request is held for a copy; each extra
# buffer costs CMA memory.
_BUFFER_COUNT = 4
# The change gate's luma plane: at most this many pixels on its long side.
_LUMA_LONGEST = 160
# A SensorTimestamp older than this (or in the future) is on another clock.
_TIMESTAMP_AGE_MAX = 5.0

_INSTALL_HINT = (
    "install it with `sudo apt install python3-picamera2` and create the venv with"
    " `python3 -m venv --system-site-packages` (a pip-installed picamera2 fails with"
    " \"No module named 'libcamera'\")"
)

# Timeouts raised by picamera2 (a concurrent.futures Future); before Python
# 3.11 that class is not the built-in TimeoutError.
_TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError)


@dataclass(frozen=True)
class _Stream:
    """One configured stream as libcamera settled it."""

    name: str  # "main" or "lores"
    fmt: str
    size: tuple[int, int]
    stride: int
    colour: yuv.Colour

    @property
    def rgb(self) -> bool:
        """The camera delivers RGB on it: no conversion."""
        return self.fmt in _TO_RGB

    @property
    def has_luma(self) -> bool:
        """A Y'CbCr stream: its Y' plane is a greyscale image without any colour work."""
        return self.fmt in yuv.YUV_FORMATS

    def text(self) -> str:
        return f"{self.name} {self.size[0]}x{self.size[1]} {self.fmt}"


class Picamera2Source:
    """Frames from a libcamera camera through picamera2, at the model size, always R, G, B."""

    def __init__(
        self,
        cfg: SourceConfig,
        input_size: tuple[int, int],
        *,
        camera_class: Optional[Callable[..., Any]] = None,
        luma: bool = False,
        region: Optional[tuple[float, float, float, float]] = None,
    ) -> None:
        """Prepare (not open) camera ``cfg.camera``; ``input_size`` is the model's (width, height).

        ``luma``: also deliver the Y' plane (of ``region``, when set) as
        ``Frame.luma`` where the camera gives a Y'CbCr stream (the change gate
        wants it). ``region`` is preprocess.region as fractions (x, y, w, h).
        ``camera_class`` replaces ``picamera2.Picamera2`` (tests pass a stand-in).
        """
        self.cfg = cfg
        self.input_size = input_size
        self._camera_class = camera_class
        self._want_luma = luma
        self._region = region
        # The ISP only writes even sizes; round down so a lores stream that
        # fits the model also fits main.
        self._model_size = (_even(input_size[0]), _even(input_size[1]))
        self._camera: Any = None
        self._frames: Optional[_Stream] = None  # the stream frames are read from
        self._luma: Optional[_Stream] = None  # the stream Frame.luma comes from
        self._luma_crop: Optional[tuple[int, int, int, int]] = None
        self._luma_size = (0, 0)
        # preprocess.region cropped by the ISP into lores (Pi 5): frames then
        # come from main (the whole view, converted in software) and Frame.roi
        # is lores.
        self._whole: Optional[_Stream] = None
        self._origin = ""
        self._model_name = ""
        self._seq = 0
        self._wait = cfg.timeout + (1.0 / cfg.fps if cfg.fps else 0.0)

    @classmethod
    def from_config(cls, cfg: Config, input_size: tuple[int, int]) -> Picamera2Source:
        """The source for ``cfg.source`` feeding a model whose input is ``input_size`` (w, h)."""
        region = cfg.preprocess.region
        return cls(
            cfg.source,
            input_size,
            luma=cfg.gate.mode == "motion",
            region=(
                (region.x, region.y, region.width, region.height) if region is not None else None
            ),
        )

    @property
    def name(self) -> str:
        """The frame name: ``camera<N>``."""
        return f"camera{self.cfg.camera}"

    # -- lifecycle ------------------------------------------------------------

    def open(self) -> None:
        """Acquire the camera, configure its streams and start it.

        Raises PermanentSourceError when no retry can help (picamera2 missing,
        no such camera, a format edge-daemon cannot read), SourceBusy when
        another process holds the camera, SourceError otherwise.
        """
        if self._camera is not None:
            self.close()  # a second open must not leave the first camera held
        camera_class = self._camera_class or _import_picamera2()
        self._check_camera_exists(camera_class)
        try:
            camera = camera_class(self.cfg.camera)
        except Exception as exc:
            raise _open_failure(self.cfg.camera, exc) from exc
        # One Picamera2 per open(), reused by every read(): creating them in a
        # loop leaks CMA memory until allocations fail.
        self._camera = camera
        try:
            self._configure(camera)
            camera.start()
        except SourceError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise SourceError(f"{self.name}: cannot start the camera: {_reason(exc)}") from exc
        log.info("opened %s", self.describe())

    def read(self) -> Optional[Frame]:
        """The next frame, (H, W, 3) uint8 R, G, B. Raises SourceTimeout or SourceError."""
        camera = self._camera
        frames = self._frames
        if camera is None or frames is None:
            raise SourceError(f"{self.name}: the camera is not open; call open() first")
        luma_stream = self._luma
        whole = self._whole
        started = time.perf_counter()
        luma_raw: Any = None
        whole_raw: Any = None
        try:
            # The configuration has queue=False: this waits for a frame that
            # completes after the call, never one that sat in the queue while
            # inference ran. The context manager releases the request (returns
            # its buffer to the camera) whatever happens: an unreleased request
            # stalls the camera once buffers run out. Only copies leave it.
            with camera.captured_request(wait=self._wait) as request:
                if frames.rgb:
                    raw = request.make_array(frames.name)
                else:
                    raw = request.make_buffer(frames.name)
                if whole is not None:
                    whole_raw = request.make_buffer(whole.name)
                if luma_stream is None:
                    pass
                elif whole is not None and luma_stream.name == whole.name:
                    luma_raw = whole_raw
                elif luma_stream.name == frames.name:
                    luma_raw = raw
                else:
                    luma_raw = request.make_buffer(luma_stream.name)
                metadata = _metadata(request)
        except _TIMEOUTS:
            # The capture job stays queued in picamera2 after its wait expires;
            # if the camera recovers it would take a request nobody releases.
            _cancel_pending(camera)
            raise SourceTimeout(
                f"{self.name}: no frame within {self._wait:g} s; the camera stalled"
                " (check the ribbon cable or USB connection and power); the source will be"
                " reopened"
            ) from None
        except Exception as exc:
            raise SourceError(f"{self.name}: capture failed: {_reason(exc)}") from exc
        captured_at = _captured_at(metadata)
        image = self._to_rgb(raw, frames)
        roi = None
        if whole is not None:
            roi, image = image, self._to_rgb(whole_raw, whole)
        luma = self._to_luma(luma_raw, luma_stream) if luma_stream is not None else None
        self._seq += 1
        return Frame(
            image=image,
            name=self.name,
            seq=self._seq,
            captured_at=captured_at,
            capture_ms=(time.perf_counter() - started) * 1000.0,
            roi=roi,
            luma=luma,
        )

    def close(self) -> None:
        """Stop and close the camera. Never raises; safe to call twice or after a failed open."""
        camera, self._camera = self._camera, None
        self._frames = None
        self._luma = None
        self._whole = None
        if camera is None:
            return
        for step in ("stop", "close"):
            try:
                getattr(camera, step)()
            except Exception as exc:
                log.warning("%s: camera %s() failed: %s", self.name, step, _reason(exc))

    def describe(self) -> str:
        """One line: which camera, which stream and who converts to RGB at the model size."""
        model = f" ({self._model_name})" if self._model_name else ""
        fps = f", {self.cfg.fps:g} fps" if self.cfg.fps else ""
        frames = self._frames
        if self._camera is None or frames is None:
            w, h = self._model_size
            return f"picamera2 {self.name}{model}: {w}x{h} frames{fps} (not open)"
        return (
            f"picamera2 {self.name}{model}: {frames.text()}{self._origin}, {self.conversion()}{fps}"
        )

    def conversion(self) -> str:
        """Who turns the camera's frames into RGB at the model size, or how the source does it."""
        frames = self._frames
        if frames is None:
            return "not open"
        if frames.rgb:
            return "RGB from the camera (no conversion)"
        w, h = self._model_size
        parts = [] if frames.size == (w, h) else [f"sampled to {w}x{h}"]
        parts.append("decoded" if frames.fmt in yuv.JPEG_FORMATS else frames.colour.describe())
        return f"{frames.fmt} to RGB in software ({', '.join(parts)})"

    def details(self) -> dict[str, str]:
        """What ``edge-daemon check`` prints about an open camera."""
        frames = self._frames
        luma = self._luma
        region = "the whole frame"
        if self._region is not None and self._whole is not None:
            region = (
                "cropped by the ISP (lores ScalerCrops); the whole frame for snapshots from"
                f" {self._whole.text()}, converted in software"
            )
        elif self._region is not None:
            region = "cropped in software by the pipeline (no ISP crop for this stream)"
        return {
            "camera": f"{self.name}" + (f" ({self._model_name})" if self._model_name else ""),
            "camera stream": (frames.text() + self._origin) if frames else "not open",
            "conversion": self.conversion(),
            "gate luma": (
                f"{luma.name} stream's Y plane, {self._luma_size[0]}x{self._luma_size[1]}"
                if luma is not None
                else ("off" if not self._want_luma else "none (the gate samples the RGB frame)")
            ),
            "region": region,
        }

    # -- helpers --------------------------------------------------------------

    def _check_camera_exists(self, camera_class: Any) -> None:
        """Name a missing camera plainly (Picamera2() itself fails with an IndexError)."""
        try:
            cameras = list(camera_class.global_camera_info())
        except Exception:  # not fatal: the constructor reports the real problem
            return
        if self.cfg.camera < len(cameras):
            self._model_name = str(cameras[self.cfg.camera].get("Model", ""))
            return
        if not cameras:
            # Transient as far as anyone can tell: at boot a USB camera may not
            # be enumerated yet, and a ribbon cable may be reseated.
            raise SourceError(
                f"{self.name}: no camera found; check the ribbon cable or USB connection"
                " and that `rpicam-hello --list-cameras` lists it"
            )
        found = ", ".join(f"{i}: {cam.get('Model', '?')}" for i, cam in enumerate(cameras))
        raise PermanentSourceError(
            f"{self.name}: no such camera; {len(cameras)} found ({found});"
            " set source.camera to one of them"
        )

    def _configure(self, camera: Any) -> None:
        """Configure the streams: RGB from the ISP where it can, else what the camera gives."""
        width, height = self._model_size
        main_size = (self.cfg.width, self.cfg.height)
        controls = self._controls(camera)
        fits = width <= main_size[0] and height <= main_size[1]
        platform = getattr(getattr(camera, "platform", None), "name", None)
        # VC4 (Pi 4 and older) rejects an RGB lores stream; an unknown platform
        # (older picamera2) is tried and falls back when it refuses. Cameras
        # picamera2 does not drive through a Pi ISP (USB, virtual) get one
        # stream: libcamera's UVC pipeline handles no second one.
        if fits and platform != "VC4" and _is_rpi_camera(camera):
            lores = camera.create_preview_configuration(
                main={"size": main_size, "format": _UNREAD_MAIN_FORMAT},
                lores={"size": (width, height), "format": _RGB_FORMAT},
                raw=None,
                buffer_count=_BUFFER_COUNT,
                controls=controls,
                queue=False,
            )
            try:
                camera.configure(lores)
                chosen = _stream(camera, "lores")
            except Exception as exc:
                log.info(
                    "%s: no RGB lores stream (%s); scaling main to %dx%d instead",
                    self.name,
                    _reason(exc),
                    width,
                    height,
                )
            else:
                if chosen.fmt in READABLE:
                    main = _stream(camera, "main")
                    self._use(chosen, main, f" from main {main.size[0]}x{main.size[1]}")
                    if self._region is not None and main.fmt in yuv.FORMATS:
                        self._crop_lores(camera, main)
                    return
                log.info("%s: the lores stream came back as %s; trying main", self.name, chosen.fmt)
        # main itself at the model size (not aligned: alignment would move 224
        # to 256 and the frame would need a CPU resize again). A camera without
        # RGB output settles on its own format and nearest size here.
        main_config = camera.create_preview_configuration(
            main={"size": (width, height), "format": _RGB_FORMAT},
            lores=None,
            raw=None,
            buffer_count=_BUFFER_COUNT,
            controls=controls,
            queue=False,
        )
        try:
            camera.configure(main_config)
            chosen = _stream(camera, "main")
        except Exception as exc:
            raise SourceError(
                f"{self.name}: cannot configure a {width}x{height} stream: {_reason(exc)}"
            ) from exc
        if chosen.fmt not in READABLE:
            raise PermanentSourceError(
                f"{self.name}: the camera delivers {chosen.fmt}, a format edge-daemon cannot"
                f" read (it reads {', '.join(READABLE)}); use a camera or USB webcam that"
                " offers one of them, or set source.camera to another camera"
            )
        self._use(chosen, None, "")

    def _use(self, frames: _Stream, other: Optional[_Stream], origin: str) -> None:
        """Read frames from ``frames`` from now on; the gate's luma from a Y'CbCr stream."""
        if frames.size != self._model_size:
            log.info(
                "%s: the camera settled on %s (asked %dx%d); frames are sampled in software",
                self.name,
                frames.text(),
                *self._model_size,
            )
        self._frames = frames
        self._origin = origin
        self._whole = None
        self._luma = None
        if self._want_luma:
            # The larger Y'CbCr stream sees the most detail; both are the same frame.
            candidates = [s for s in (other, frames) if s is not None and s.has_luma]
            if candidates:
                luma = candidates[0]
                self._luma = luma
                self._luma_crop = yuv.region_pixels(luma.size, self._region)
                self._luma_size = yuv.luma_size(self._luma_crop[2:], _LUMA_LONGEST)

    def _crop_lores(self, camera: Any, main: _Stream) -> None:
        """Have the ISP crop preprocess.region into lores (Pi 5's per-stream ScalerCrops).

        main keeps its own crop (what picamera2 set: the aspect-preserving
        one), so snapshots still show the whole view. Without the control
        (Pi 4, older libcamera) the pipeline crops in software instead.
        """
        controls = getattr(camera, "camera_controls", None) or {}
        if self._region is None or "ScalerCrops" not in controls:
            return
        try:
            main_crop = tuple(int(v) for v in controls["ScalerCrops"][0])
            mx, my, mw, mh = main_crop
            fx, fy, fw, fh = self._region
            crop = (
                mx + round(fx * mw),
                my + round(fy * mh),
                max(2, round(fw * mw)),
                max(2, round(fh * mh)),
            )
            camera.set_controls({"ScalerCrops": [main_crop, crop]})
        except Exception as exc:
            log.info("%s: no ISP crop for the region (%s); cropping in software", self.name, exc)
            return
        self._whole = main
        if self._luma is not None:  # the gate looks at the region of main's Y plane
            self._luma = main
            self._luma_crop = yuv.region_pixels(main.size, self._region)
            self._luma_size = yuv.luma_size(self._luma_crop[2:], _LUMA_LONGEST)

    def _controls(self, camera: Any) -> dict[str, Any]:
        """FrameDurationLimits for cfg.fps (min = max pins the rate), when the camera has it."""
        if not self.cfg.fps:
            return {}
        available = getattr(camera, "camera_controls", None) or {}
        if "FrameDurationLimits" not in available:
            log.warning(
                "%s: the camera has no FrameDurationLimits control; source.fps is not applied",
                self.name,
            )
            return {}
        frame_us = max(1, round(1_000_000 / self.cfg.fps))
        return {"FrameDurationLimits": (frame_us, frame_us)}

    def _to_rgb(self, raw: Any, stream: _Stream) -> npt.NDArray[np.uint8]:
        """An (H, W, 3) C-contiguous uint8 R, G, B frame at the model size from a stream copy."""
        array = np.asarray(raw)
        if stream.rgb:
            if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
                raise SourceError(
                    f"{self.name}: unexpected frame array {array.dtype}{list(array.shape)}"
                    f" from the {stream.name} stream; expected (H, W, 3 or 4) uint8"
                )
            # Slicing drops the X byte of XBGR8888; the index list reorders B, G, R.
            channels = list(_TO_RGB[stream.fmt])
            rgb = array[..., :3] if channels == [0, 1, 2] else array[..., channels]
            return np.ascontiguousarray(rgb, dtype=np.uint8)
        try:
            if stream.fmt in yuv.JPEG_FORMATS:
                return yuv.jpeg_to_rgb(array, self._model_size)
            return yuv.yuv_to_rgb(
                array.reshape(-1),
                stream.fmt,
                stream.size,
                stream.stride,
                self._model_size,
                stream.colour,
            )
        except ValueError as exc:
            raise SourceError(
                f"{self.name}: unexpected frame buffer from the {stream.name} stream: {exc}"
            ) from exc

    def _to_luma(self, raw: Any, stream: _Stream) -> Optional[npt.NDArray[np.uint8]]:
        """The gate's small Y' plane of the region, or None when the buffer does not fit."""
        try:
            return yuv.yuv_luma(
                np.asarray(raw).reshape(-1),
                stream.fmt,
                stream.size,
                stream.stride,
                self._luma_size,
                self._luma_crop,
            )
        except ValueError as exc:
            log.debug("%s: no luma plane: %s", self.name, exc)
            return None


def _is_rpi_camera(camera: Any) -> bool:
    """A camera behind a Raspberry Pi ISP (picamera2's own test: the sensor's Bayer order)."""
    properties = getattr(camera, "camera_properties", None) or {}
    return "ColorFilterArrangement" in properties


def _stream(camera: Any, name: str) -> _Stream:
    """Stream ``name`` as libcamera settled it after configure()."""
    actual = camera.stream_configuration(name)
    size = tuple(actual.get("size") or (0, 0))
    stride = actual.get("stride") or 0
    config = getattr(camera, "camera_configuration", None)
    colour_space = (config() or {}).get("colour_space") if callable(config) else None
    colour = yuv.colour_of(colour_space)
    properties = getattr(camera, "camera_properties", None) or {}
    if properties.get("PipelineHandler") == "virtual":
        # libcamera's virtual camera plays JPEG files: its NV12 is the JPEG's
        # own full-range BT.601 Y'CbCr, whatever colour space it reports.
        colour = yuv.JPEG_COLOUR
    return _Stream(
        name=name,
        fmt=str(actual.get("format")),
        size=(int(size[0]), int(size[1])),
        stride=int(stride),
        colour=colour,
    )


def _metadata(request: Any) -> dict[str, Any]:
    """The request's metadata, or {} when it cannot be read: nothing depends on it."""
    try:
        metadata = request.get_metadata()
    except Exception as exc:
        log.debug("no metadata: %s", _reason(exc))
        return {}
    return metadata if isinstance(metadata, dict) else {}


def _captured_at(metadata: dict[str, Any]) -> float:
    """Wall-clock capture time: from SensorTimestamp (monotonic ns) when reported, else now."""
    now = time.time()
    stamp = metadata.get("SensorTimestamp")
    if isinstance(stamp, int) and stamp > 0:
        age = (time.monotonic_ns() - stamp) / 1e9
        if 0.0 <= age <= _TIMESTAMP_AGE_MAX:
            return now - age
    return now


def _even(n: int) -> int:
    return max(2, n - n % 2)


def _import_picamera2() -> Any:
    """picamera2.Picamera2, or PermanentSourceError with how to install it."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        missing = f"No module named {exc.name!r}" if exc.name else str(exc)
        raise PermanentSourceError(
            f"picamera2 is not importable ({missing}); {_INSTALL_HINT}"
        ) from exc
    except Exception as exc:  # e.g. a NumPy ABI mismatch inside its dependencies
        raise PermanentSourceError(
            f"picamera2 failed to import ({_reason(exc)}); {_INSTALL_HINT}"
        ) from exc
    return Picamera2


def _cancel_pending(camera: Any) -> None:
    try:
        camera.cancel_all_and_flush()
    except Exception as exc:
        log.debug("cancel_all_and_flush failed: %s", _reason(exc))


def _reason(exc: BaseException) -> str:
    """The messages along an exception chain, outermost first, on one line."""
    parts: list[str] = []
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split()).rstrip(".") or type(current).__name__
        if text not in parts:
            parts.append(text)
        if current.__cause__ is not None:
            current = current.__cause__
        else:  # `raise ... from None` hides the context on purpose
            current = None if current.__suppress_context__ else current.__context__
    line = ": ".join(parts)
    return line if len(line) <= 300 else line[:297] + "..."


_BUSY = re.compile(
    r"busy|in use by another process|failed to acquire|unexpected code: -16\b", re.IGNORECASE
)


def _open_failure(camera: int, exc: BaseException) -> SourceError:
    """The error explaining why Picamera2(camera) failed, in one line with what to do."""
    reason = _reason(exc)
    if _BUSY.search(reason):
        return SourceBusy(
            f"camera{camera} is busy: another process holds it (another edge-daemon,"
            f" rpicam-*/libcamera-* or a second Picamera2); stop it and retry ({reason})"
        )
    if isinstance(exc, IndexError) or "not found" in reason.lower():
        return PermanentSourceError(
            f"camera{camera}: no such camera ({reason}); set source.camera to one that"
            " `rpicam-hello --list-cameras` lists, or check the cable"
        )
    return SourceError(
        f"camera{camera}: cannot open the camera ({reason}); check the cable, that no other"
        " process uses it, and `rpicam-hello --list-cameras`"
    )
