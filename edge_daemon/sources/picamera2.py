"""Frames from a libcamera camera (Raspberry Pi camera modules, UVC webcams) through picamera2.

The ISP does the scaling: the camera is asked for a stream at the model's
input size, so no full-resolution frame is ever copied or resized on the CPU.

* Pi 5 (PiSP ISP): ``main`` at source.width x source.height (never read) plus a
  ``lores`` stream at the model size in an RGB format.
* Pi 4 and older (VC4 ISP): ``lores`` can only be YUV420, so ``main`` itself is
  configured at the model size in an RGB format and there is no ``lores``.

Byte order: libcamera names formats after the packed little-endian word, so
picamera2's "BGR888" arrays hold R, G, B bytes (what an RGB model wants) and
"RGB888" arrays hold B, G, R. Every frame is converted to R, G, B by the table
``_TO_RGB`` from the format the camera actually configured.

``picamera2`` is imported only in ``open()``, so this module imports on any
machine; tests inject a stand-in class instead.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from typing import Any, Callable, Optional

import numpy as np
import numpy.typing as npt

from ..config import SourceConfig
from ..errors import SourceError, SourceTimeout
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
# main is never read when lores carries the frames: the smallest format the ISP
# writes keeps the contiguous (CMA) memory the buffers take small.
_UNREAD_MAIN_FORMAT = "YUV420"
# Enough to keep the ISP busy while one request is held for a copy; each extra
# buffer costs CMA memory.
_BUFFER_COUNT = 4

_INSTALL_HINT = (
    "install it with `sudo apt install python3-picamera2` and create the venv with"
    " `python3 -m venv --system-site-packages` (a pip-installed picamera2 fails with"
    " \"No module named 'libcamera'\")"
)

# Timeouts raised by picamera2 (a concurrent.futures Future); before Python
# 3.11 that class is not the built-in TimeoutError.
_TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError)


class Picamera2Source:
    """Frames from a libcamera camera through picamera2, scaled by the ISP to the model size."""

    def __init__(
        self,
        cfg: SourceConfig,
        input_size: tuple[int, int],
        *,
        camera_class: Optional[Callable[..., Any]] = None,
    ) -> None:
        """Prepare (not open) camera ``cfg.camera``; ``input_size`` is the model's (width, height).

        ``camera_class`` replaces ``picamera2.Picamera2`` (tests pass a stand-in).
        """
        self.cfg = cfg
        self.input_size = input_size
        self._camera_class = camera_class
        # The ISP only writes even sizes; round down so a lores stream that
        # fits the model also fits main.
        self._model_size = (_even(input_size[0]), _even(input_size[1]))
        self._camera: Any = None
        self._stream: Optional[str] = None
        self._channels: tuple[int, int, int] = _TO_RGB[_RGB_FORMAT]
        self._layout = ""
        self._model_name = ""
        self._seq = 0
        self._wait = cfg.timeout + (1.0 / cfg.fps if cfg.fps else 0.0)

    @classmethod
    def from_config(cls, cfg: SourceConfig, input_size: tuple[int, int]) -> Picamera2Source:
        """The source for ``cfg`` feeding a model whose input is ``input_size`` (width, height)."""
        return cls(cfg, input_size)

    @property
    def name(self) -> str:
        """The frame name: ``camera<N>``."""
        return f"camera{self.cfg.camera}"

    # -- lifecycle ------------------------------------------------------------

    def open(self) -> None:
        """Acquire the camera, configure its streams and start it. Raises SourceError."""
        if self._camera is not None:
            self.close()  # a second open must not leave the first camera held
        camera_class = self._camera_class or _import_picamera2()
        self._check_camera_exists(camera_class)
        try:
            camera = camera_class(self.cfg.camera)
        except Exception as exc:
            raise SourceError(_open_failure(self.cfg.camera, exc)) from exc
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
        stream = self._stream
        if camera is None or stream is None:
            raise SourceError(f"{self.name}: the camera is not open; call open() first")
        started = time.perf_counter()
        try:
            # flush=True: a frame exposed after this call, never one that sat
            # in the queue while inference ran. The context manager releases
            # the request (returns its buffer to the camera) whatever happens:
            # an unreleased request stalls the camera once buffers run out.
            with camera.captured_request(wait=self._wait, flush=True) as request:
                raw = request.make_array(stream)
            captured_at = time.time()
        except _TIMEOUTS:
            # The capture job stays queued in picamera2 after its wait expires;
            # if the camera recovers it would take a request nobody releases.
            _cancel_pending(camera)
            raise SourceTimeout(
                f"{self.name}: no frame within {self._wait:g} s; the camera stalled"
                " (check the ribbon cable and power); the source will be reopened"
            ) from None
        except Exception as exc:
            raise SourceError(f"{self.name}: capture failed: {_reason(exc)}") from exc
        image = self._to_rgb(raw)
        self._seq += 1
        return Frame(
            image=image,
            name=self.name,
            seq=self._seq,
            captured_at=captured_at,
            capture_ms=(time.perf_counter() - started) * 1000.0,
        )

    def close(self) -> None:
        """Stop and close the camera. Never raises; safe to call twice or after a failed open."""
        camera, self._camera = self._camera, None
        self._stream = None
        if camera is None:
            return
        for step in ("stop", "close"):
            try:
                getattr(camera, step)()
            except Exception as exc:
                log.warning("%s: camera %s() failed: %s", self.name, step, _reason(exc))

    def describe(self) -> str:
        """One line: which camera, which stream and what the ISP scales to."""
        model = f" ({self._model_name})" if self._model_name else ""
        fps = f", {self.cfg.fps:g} fps" if self.cfg.fps else ""
        if self._camera is None:
            w, h = self._model_size
            return f"picamera2 {self.name}{model}: {w}x{h} frames{fps} (not open)"
        return f"picamera2 {self.name}{model}: {self._layout}{fps}"

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
            raise SourceError(
                f"{self.name}: no camera found; check the ribbon cable or USB connection"
                " and that `rpicam-hello --list-cameras` lists it"
            )
        found = ", ".join(f"{i}: {cam.get('Model', '?')}" for i, cam in enumerate(cameras))
        raise SourceError(
            f"{self.name}: no such camera; {len(cameras)} found ({found});"
            " set source.camera to one of them"
        )

    def _configure(self, camera: Any) -> None:
        """Configure the streams: RGB lores at the model size where the ISP allows it."""
        width, height = self._model_size
        main_size = (self.cfg.width, self.cfg.height)
        controls = self._controls(camera)
        fits = width <= main_size[0] and height <= main_size[1]
        platform = getattr(getattr(camera, "platform", None), "name", None)
        # VC4 (Pi 4 and older) rejects an RGB lores stream; an unknown platform
        # (older picamera2) is tried and falls back when it refuses.
        if fits and platform != "VC4":
            lores = camera.create_preview_configuration(
                main={"size": main_size, "format": _UNREAD_MAIN_FORMAT},
                lores={"size": (width, height), "format": _RGB_FORMAT},
                raw=None,
                buffer_count=_BUFFER_COUNT,
                controls=controls,
            )
            try:
                camera.configure(lores)
            except Exception as exc:
                log.info(
                    "%s: no RGB lores stream (%s); scaling main to %dx%d instead",
                    self.name,
                    _reason(exc),
                    width,
                    height,
                )
            else:
                self._use_stream(camera, "lores", f"from main {main_size[0]}x{main_size[1]}")
                return
        # No RGB lores: main itself at the model size (not aligned: alignment
        # would move 224 to 256 and the frame would need a CPU resize again).
        main = camera.create_preview_configuration(
            main={"size": (width, height), "format": _RGB_FORMAT},
            lores=None,
            raw=None,
            buffer_count=_BUFFER_COUNT,
            controls=controls,
        )
        try:
            camera.configure(main)
        except Exception as exc:
            raise SourceError(
                f"{self.name}: cannot configure a {width}x{height} {_RGB_FORMAT} stream:"
                f" {_reason(exc)}"
            ) from exc
        self._use_stream(camera, "main", "")

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

    def _use_stream(self, camera: Any, stream: str, origin: str) -> None:
        """Read ``stream`` from now on, converting from the format libcamera settled on."""
        actual = camera.stream_configuration(stream)
        fmt = str(actual.get("format"))
        if fmt not in _TO_RGB:
            raise SourceError(
                f"{self.name}: the camera delivers {fmt} on its {stream} stream, not an RGB"
                f" format ({', '.join(_TO_RGB)}); this camera is not supported"
            )
        size = tuple(actual.get("size", self._model_size))
        if size != self._model_size:
            log.warning(
                "%s: the camera adjusted the %s stream to %s (asked %s); frames are resized",
                self.name,
                stream,
                size,
                self._model_size,
            )
        self._stream = stream
        self._channels = _TO_RGB[fmt]
        self._layout = f"{stream} {size[0]}x{size[1]} {fmt} {origin}".rstrip()

    def _to_rgb(self, raw: Any) -> npt.NDArray[np.uint8]:
        """An (H, W, 3) C-contiguous uint8 R, G, B copy of a picamera2 RGB-format array."""
        array = np.asarray(raw)
        if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
            raise SourceError(
                f"{self.name}: unexpected frame array {array.dtype}{list(array.shape)}"
                f" from the {self._stream} stream; expected (H, W, 3 or 4) uint8"
            )
        # Slicing drops the X byte of XBGR8888; the index list reorders B, G, R.
        channels = list(self._channels)
        rgb = array[..., :3] if channels == [0, 1, 2] else array[..., channels]
        return np.ascontiguousarray(rgb, dtype=np.uint8)


def _even(n: int) -> int:
    return max(2, n - n % 2)


def _import_picamera2() -> Any:
    """picamera2.Picamera2, or SourceError with how to install it."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        missing = f"No module named {exc.name!r}" if exc.name else str(exc)
        raise SourceError(f"picamera2 is not importable ({missing}); {_INSTALL_HINT}") from exc
    except Exception as exc:  # e.g. a NumPy ABI mismatch inside its dependencies
        raise SourceError(f"picamera2 failed to import ({_reason(exc)}); {_INSTALL_HINT}") from exc
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
        current = current.__cause__ or current.__context__
    line = ": ".join(parts)
    return line if len(line) <= 300 else line[:297] + "..."


_BUSY = re.compile(
    r"busy|in use by another process|failed to acquire|unexpected code: -16\b", re.IGNORECASE
)


def _open_failure(camera: int, exc: BaseException) -> str:
    """One line explaining why Picamera2(camera) failed, with what to do."""
    reason = _reason(exc)
    if _BUSY.search(reason):
        return (
            f"camera{camera} is busy: another process holds it (another edge-daemon,"
            f" rpicam-*/libcamera-* or a second Picamera2); stop it and retry ({reason})"
        )
    if isinstance(exc, IndexError) or "not found" in reason.lower():
        return (
            f"camera{camera}: no such camera ({reason}); check the cable and"
            " `rpicam-hello --list-cameras`"
        )
    return (
        f"camera{camera}: cannot open the camera ({reason}); check the cable, that no other"
        " process uses it, and `rpicam-hello --list-cameras`"
    )
