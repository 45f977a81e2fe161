"""Real photos for the teach tests, and the variations a fixed camera sees of them.

The shared fixture photos plus those scikit-image ships in its wheel
(skimage/data: chelsea the cat, coffee, astronaut, rocket, ...; public
domain or CC0 per its docstrings), read as files: nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import IMAGES, missing, shared_file

SHARED_PHOTOS = (
    "bird.bmp",
    "cat.bmp",
    "cat_720p.jpg",
    "dragonfly.bmp",
    "grace_hopper.bmp",
    "hot_dog.jpg",
    "parrot.jpg",
)
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
    "page.png",
)


MAX_SIDE = 640  # a camera frame's size: larger photos are scaled down once


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        if max(rgb.size) > MAX_SIDE:
            rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(rgb)


def skimage_data() -> Path:
    """skimage/data inside the installed scikit-image (a dev dependency)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        missing("scikit-image (pip install -e '.[dev]')")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data"


_PHOTOS: dict[str, np.ndarray] = {}


def photos() -> dict[str, np.ndarray]:
    """Every photo by file name, (H, W, 3) uint8 RGB, at most 640 pixels a side."""
    if _PHOTOS:
        return _PHOTOS
    out = {name: _rgb(shared_file(IMAGES / name)) for name in SHARED_PHOTOS}
    folder = skimage_data()
    for name in SKIMAGE_PHOTOS:
        out[name] = _rgb(shared_file(folder / name))
    _PHOTOS.update(out)
    return out


def variant(image: np.ndarray, rng: np.random.Generator, *, min_crop: float = 0.6) -> np.ndarray:
    """One frame as a camera might see the scene: crop/shift, exposure, noise, JPEG quality."""
    h, w, _ = image.shape
    s = rng.uniform(min_crop, 1.0)
    ch, cw = max(8, int(h * s)), max(8, int(w * s))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    frame = image[y : y + ch, x : x + cw].astype(np.float32)
    frame = frame * rng.uniform(0.6, 1.35) + rng.uniform(-20, 20)
    frame += rng.normal(0.0, rng.uniform(0.0, 8.0), frame.shape)
    if rng.random() < 0.5:
        frame = frame[:, ::-1]
    pixels = np.clip(frame, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=int(rng.integers(30, 95)))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))
