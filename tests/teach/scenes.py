"""Frames a fixed camera sees, built from the fixture photos (../shared/images).

Two tasks, as in docs/teach.md:

- ``garage``: a state task. One scene (ground and wall from the dragonfly
  photo's bark and leaves); a door region in the middle is ``closed`` (a
  grooved panel), ``half`` (the panel over its top half) or ``open`` (a dim
  interior: the cat photo's room, darkened).
- ``feeder``: an object task. One background (the palm leaves above the
  parrot); ``chickadee``, ``cat`` or ``dragonfly`` (a crop of its photo) is
  somewhere in the frame at 20-45 % of its width, mirrored at random, or
  ``nothing`` is.

Every frame gets its own lighting (gain, contrast, colour cast), sensor
noise, a small shift of the whole view (up to 4 % of the frame) and JPEG
quality (40-95): ``frame(task, cls, seed)`` returns JPEG bytes of 640x480.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

W, H = 640, 480
TASKS: dict[str, tuple[str, ...]] = {
    "garage": ("closed", "half", "open"),
    "feeder": ("nothing", "chickadee", "cat", "dragonfly"),
}
# Where each subject is in its photo (x0, y0, x1, y1 as fractions).
SUBJECTS = {
    "chickadee": ("bird.bmp", (0.02, 0.12, 0.98, 0.95)),
    "cat": ("cat.bmp", (0.18, 0.05, 0.88, 1.0)),
    "dragonfly": ("dragonfly.bmp", (0.15, 0.0, 1.0, 0.85)),
}
MARGIN = 0.04  # the view shifts by up to this fraction of the frame


def _load(images: Path, name: str) -> Image.Image:
    with Image.open(images / name) as img:
        return img.convert("RGB")


def _crop(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    return img.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


@lru_cache(maxsize=8)
def _canvas(images: str, task: str, cls: str) -> np.ndarray:
    """The scene without per-frame variation, a little larger than the frame (for shifts)."""
    root = Path(images)
    cw, ch = round(W * (1 + 2 * MARGIN)), round(H * (1 + 2 * MARGIN))
    if task == "garage":
        ground = _crop(_load(root, "dragonfly.bmp"), (0.0, 0.62, 0.45, 1.0)).resize((cw, ch))
        scene = np.asarray(ground, dtype=np.float32).copy()
        x0, x1, y0, y1 = int(0.32 * cw), int(0.68 * cw), int(0.18 * ch), int(0.86 * ch)
        dw, dh = x1 - x0, y1 - y0
        room = _crop(_load(root, "cat_720p.jpg"), (0.1, 0.1, 0.9, 0.9)).resize((dw, dh))
        inside = np.asarray(room.filter(ImageFilter.GaussianBlur(3)), np.float32) * 0.3
        panel = np.full((dh, dw, 3), (196.0, 192.0, 182.0), np.float32)
        rng = np.random.default_rng(7)
        panel += rng.normal(0, 3, (dh, dw, 1))
        for k in range(1, 6):  # horizontal grooves between the door's sections
            y = k * dh // 6
            panel[y - 2 : y + 2] *= 0.6
        door = {"closed": panel, "open": inside, "half": inside.copy()}[cls]
        if cls == "half":
            door[: dh // 2] = panel[dh - dh // 2 :]
        scene[y0:y1, x0:x1] = door
        scene[y0 - 6 : y0, x0 - 6 : x1 + 6] = (90, 80, 70)  # the door frame
        scene[y0:y1, x0 - 6 : x0] = (90, 80, 70)
        scene[y0:y1, x1 : x1 + 6] = (90, 80, 70)
        return scene
    leaves = _crop(_load(root, "parrot.jpg"), (0.0, 0.0, 1.0, 0.16)).resize((cw, ch))
    return np.asarray(leaves, dtype=np.float32).copy()


def frame(images: Path, task: str, cls: str, seed: int) -> bytes:
    """One 640x480 JPEG of ``cls`` in ``task``, varied by ``seed``."""
    if cls not in TASKS[task]:
        raise ValueError(f"{task} has no class {cls}")
    rng = np.random.default_rng(seed)
    scene = _canvas(str(images), task, cls if task == "garage" else "nothing").copy()
    ch, cw = scene.shape[:2]
    if task == "feeder" and cls != "nothing":
        name, box = SUBJECTS[cls]
        subject = _crop(_load(images, name), box)
        width = round(W * rng.uniform(0.20, 0.45))
        height = round(width * subject.height / subject.width)
        height = min(height, int(ch * 0.9))
        piece = subject.resize((width, height))
        if rng.random() < 0.5:
            piece = piece.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = int(rng.integers(0, cw - width))
        y = int(rng.integers(0, ch - height))
        scene[y : y + height, x : x + width] = np.asarray(piece, np.float32)
    dx = int(rng.integers(0, cw - W + 1))
    dy = int(rng.integers(0, ch - H + 1))
    view = scene[dy : dy + H, dx : dx + W]
    gain = rng.uniform(0.6, 1.3)
    contrast = rng.uniform(0.8, 1.15)
    cast = rng.uniform(0.9, 1.1, 3)
    mean = view.mean()
    lit = ((view - mean) * contrast + mean) * gain * cast
    lit += rng.normal(0, rng.uniform(1.0, 6.0), lit.shape)
    pixels = np.clip(lit, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=int(rng.integers(40, 96)))
    return out.getvalue()


def write_frames(
    images: Path, task: str, dest: Path, per_class: int, seed: int
) -> dict[str, list[Path]]:
    """``per_class`` frames of every class of ``task`` under dest/<class>/, by class."""
    out: dict[str, list[Path]] = {}
    for ci, cls in enumerate(TASKS[task]):
        folder = dest / cls
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(per_class):
            p = folder / f"{cls}-{seed}-{i}.jpg"
            p.write_bytes(frame(images, task, cls, seed * 1_000_003 + ci * 10_007 + i))
            paths.append(p)
        out[cls] = paths
    return out
