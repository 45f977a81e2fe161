"""Frame sources, chosen by ``source.kind`` from an explicit registry."""

from __future__ import annotations

from typing import Callable

from ..config import Config
from .base import Frame, FrameSource
from .files import FileSource
from .picamera2 import Picamera2Source


def _files(cfg: Config, input_size: tuple[int, int]) -> FrameSource:
    return FileSource.from_config(cfg.source, input_size)


# kind -> factory(the whole config, model input size (width, height)). A
# camera also reads preprocess.region and gate.mode (what it can do for them).
SOURCES: dict[str, Callable[[Config, tuple[int, int]], FrameSource]] = {
    "files": _files,
    "picamera2": Picamera2Source.from_config,
}


def make_source(cfg: Config, input_size: tuple[int, int]) -> FrameSource:
    """Build the source ``cfg.source.kind`` names, told the model's input size (width, height)."""
    return SOURCES[cfg.source.kind](cfg, input_size)


__all__ = ["SOURCES", "FileSource", "Frame", "FrameSource", "Picamera2Source", "make_source"]
