"""Placeholder: the picamera2 source is being written (see sources/base.py for the seam)."""

from __future__ import annotations

from typing import Optional

from ..config import SourceConfig
from ..errors import SourceError
from .base import Frame


class Picamera2Source:
    """Frames from a libcamera camera through picamera2."""

    def __init__(self, cfg: SourceConfig, input_size: tuple[int, int]) -> None:
        self.cfg = cfg
        self.input_size = input_size

    @classmethod
    def from_config(cls, cfg: SourceConfig, input_size: tuple[int, int]) -> Picamera2Source:
        return cls(cfg, input_size)

    def open(self) -> None:
        raise SourceError("picamera2 source not written yet")

    def read(self) -> Optional[Frame]:
        raise SourceError("picamera2 source not written yet")

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"picamera2 camera {self.cfg.camera}"
