"""Sample images for the teach tests: good photos and the bad kinds a user may add."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> np.ndarray:
    """A small (H, W, 3) uint8 picture, different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (1, 1, 3))
    ramp = np.linspace(0, 1, w)[None, :, None] * rng.integers(-80, 80, (1, 1, 3))
    img = base + ramp + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def png16_rgb(w: int = 64, h: int = 48) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x12\x34" * 3 * w for _ in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def bad_files(folder: Path) -> dict[str, Path]:
    """One file of each kind a sample must refuse, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["not an image"] = folder / "notes.jpg"
    out["not an image"].write_text("shopping list: milk, bread\n")
    out["1x1"] = folder / "dot.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(out["1x1"])
    out["CMYK"] = folder / "print.jpg"
    Image.new("CMYK", (64, 48), (0, 50, 100, 0)).save(out["CMYK"], "JPEG")
    out["16-bit PNG"] = folder / "deep.png"
    out["16-bit PNG"].write_bytes(png16_rgb())
    out["16-bit grey PNG"] = folder / "deep-grey.png"
    Image.fromarray(np.full((48, 64), 40000, dtype=np.uint16)).save(out["16-bit grey PNG"])
    data = jpeg(photo(99, (320, 240)))
    out["truncated JPEG"] = folder / "cut.jpg"
    out["truncated JPEG"].write_bytes(data[: len(data) // 2])
    return out


def good_files(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"good{seed}-{i}.jpg"
        p.write_bytes(jpeg(photo(seed * 1000 + i)))
        paths.append(p)
    png = folder / f"good{seed}.png"
    Image.fromarray(photo(seed * 1000 + 999)).save(png)
    paths.append(png)
    return paths
