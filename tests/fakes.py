"""Test doubles shared by the reliability tests.

``ScriptedSource`` implements ``edge_daemon.sources.base.FrameSource`` and
follows a script: deliver frames, raise SourceError or SourceTimeout, hang
until released, end. Tests hand it to a ``Daemon`` by monkeypatching
``edge_daemon.daemon.make_source``; nothing is registered in the
production source registry.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from typing import Iterable, Optional, Union

import numpy as np

from edge_daemon.errors import SourceError
from edge_daemon.sources.base import Frame

FRAME = "frame"
HANG = "hang"
END = "end"
Step = Union[str, BaseException]


def make_image(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 RGB image with some structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], axis=-1)
    noise = rng.integers(0, 32, size=(height, width, 3))
    out: np.ndarray = ((base + noise) % 256).astype(np.uint8)
    return out


class ScriptedSource:
    """A FrameSource that plays ``steps`` and then repeats ``then`` forever.

    A step is ``FRAME`` (deliver a frame), an exception instance (raised by
    ``read()``), ``HANG`` (block in ``read()`` until ``release()``, then
    deliver a frame) or ``END`` (return None: a finite source is exhausted).
    ``open_errors`` are raised by the first ``open()`` calls, one each. Frames come
    at most every ``interval`` seconds, as from a camera.
    Every call is recorded so a test can see what the daemon did.
    """

    def __init__(
        self,
        steps: Iterable[Step] = (),
        *,
        then: Step = FRAME,
        open_errors: Iterable[BaseException] = (),
        image: Optional[np.ndarray] = None,
        name: str = "scripted",
        interval: float = 0.005,
    ) -> None:
        self._steps: deque[Step] = deque(steps)
        self._then = then
        self._open_errors: deque[BaseException] = deque(open_errors)
        self.image = image if image is not None else make_image()
        self.name = name
        self.interval = interval  # seconds per frame, like a camera's frame rate
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.hanging = threading.Event()
        self.is_open = False
        self.opens: list[float] = []  # monotonic time of every open() call
        self.closes = 0
        self.frames = 0
        self.raised = 0

    # -- control from the test -----------------------------------------------
    def add(self, *steps: Step) -> None:
        """Append steps to the script."""
        with self._lock:
            self._steps.extend(steps)

    def set_then(self, step: Step) -> None:
        """What to do once the script has run out."""
        with self._lock:
            self._then = step

    def release(self) -> None:
        """Let a hanging read() return (with a frame)."""
        self._release.set()

    # -- FrameSource -----------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            self.opens.append(time.monotonic())
            error = self._open_errors.popleft() if self._open_errors else None
        if error is not None:
            raise error
        self.is_open = True

    def read(self) -> Optional[Frame]:
        if not self.is_open:
            raise SourceError(f"{self.name}: read() before open()")
        with self._lock:
            step = self._steps.popleft() if self._steps else self._then
        if isinstance(step, BaseException):
            with self._lock:
                self.raised += 1
            raise step
        if step == END:
            return None
        start = time.perf_counter()
        time.sleep(self.interval)
        if step == HANG:
            self.hanging.set()
            self._release.wait()
            self.hanging.clear()
            self._release.clear()
        with self._lock:
            self.frames += 1
            seq = self.frames
        return Frame(
            image=self.image,
            name=f"{self.name}-{seq}",
            seq=seq,
            captured_at=time.time(),
            capture_ms=(time.perf_counter() - start) * 1000.0,
        )

    def close(self) -> None:
        with self._lock:
            self.closes += 1
        self.is_open = False

    def describe(self) -> str:
        return f"scripted source {self.name}"


# -- damaged model files ----------------------------------------------------------------


def flip_bit(data: bytes, position: int, bit: int) -> bytes:
    """``data`` with one bit flipped, as a failing SD card or a bad download does."""
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


def subgraphs_offset_position(data: bytes) -> int:
    """Where a .tflite's Model table keeps its offset to the subgraphs (field id 2)."""
    root = int(struct.unpack_from("<I", data, 0)[0])
    vtable = root - int(struct.unpack_from("<i", data, root)[0])
    return root + int(struct.unpack_from("<H", data, vtable + 4 + 2 * 2)[0])


def flatbuffer_end(data: bytes) -> int:
    """Where the FlatBuffer ends: fixture models may carry a zip of labels after it."""
    zip_start = data.find(b"PK\x03\x04")
    return zip_start if zip_start > 0 else len(data)
