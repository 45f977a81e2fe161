"""Frame sources, chosen by ``source.kind`` from an explicit registry."""

from __future__ import annotations

from typing import Callable

from ..config import SourceConfig
from .base import Frame, FrameSource
from .files import FileSource
from .picamera2 import Picamera2Source

# kind -> factory(source config, model input size (width, height)).
SOURCES: dict[str, Callable[[SourceConfig, tuple[int, int]], FrameSource]] = {
    "files": FileSource.from_config,
    "picamera2": Picamera2Source.from_config,
}


def make_source(cfg: SourceConfig, input_size: tuple[int, int]) -> FrameSource:
    """Build the source ``cfg.kind`` names, told the model's input size (width, height)."""
    return SOURCES[cfg.kind](cfg, input_size)


__all__ = ["SOURCES", "FileSource", "Frame", "FrameSource", "Picamera2Source", "make_source"]
