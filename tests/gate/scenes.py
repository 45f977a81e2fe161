"""Scenes for the gate's tests: real photos as a still background with sensor noise,
and a subject from another photo that enters, stays and leaves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import IMAGES, shared_file

WIDTH, HEIGHT = 320, 240


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A shared photo as an (h, w, 3) uint8 array of ``size`` (width, height)."""
    with Image.open(shared_file(IMAGES / name)) as img:
        return np.asarray(img.convert("RGB").resize(size, Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class Visit:
    """A subject photo entering from the right edge, staying, leaving again."""

    subject: str
    enter: int = 5  # frames to slide in
    stay: int = 8  # frames in place (with a small jitter, as a bird moves)
    leave: int = 5


def scene(
    background: str,
    visits: list[Visit],
    *,
    quiet: int = 12,
    exposure_jump_at: int | None = None,
    seed: int = 1,
) -> list[np.ndarray]:
    """Frames: ``quiet`` still frames, then each visit followed by ``quiet`` more.

    Every frame has fresh noise (sigma 3 grey levels) and a slow lighting
    drift; ``exposure_jump_at`` brightens every frame from that one on by 30%.
    """
    rng = np.random.default_rng(seed)
    still = photo(background, (WIDTH, HEIGHT)).astype(np.float32)
    sw, sh = WIDTH // 3, HEIGHT * 4 // 5
    y = (HEIGHT - sh) // 2
    placements: list[tuple[np.ndarray, int] | None] = [None] * quiet
    for visit in visits:
        subject = photo(visit.subject, (sw, sh)).astype(np.float32)
        rest = WIDTH - sw - 16
        for i in range(1, visit.enter + 1):
            placements.append((subject, WIDTH - (WIDTH - rest) * i // visit.enter))
        placements += [(subject, rest + (2 if i % 2 else -2)) for i in range(visit.stay)]
        for i in range(1, visit.leave + 1):
            placements.append((subject, rest + (WIDTH - rest) * i // visit.leave))
        placements += [None] * quiet
    frames = []
    for n, place in enumerate(placements):
        frame = still.copy()
        if place is not None:
            subject, x = place
            visible = min(sw, WIDTH - x)
            if visible > 0:
                frame[y : y + sh, x : x + visible] = subject[:, :visible]
        frame *= 1.0 + 0.0005 * n  # a slow drift
        if exposure_jump_at is not None and n >= exposure_jump_at:
            frame *= 1.3
        frame += rng.normal(0.0, 3.0, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_frames(frames: list[np.ndarray], folder: Path) -> Path:
    """The frames as numbered BMP files (played in name order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{n:04d}.bmp")
    return folder
