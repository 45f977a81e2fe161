"""Snapshot files: an event's best frame as a JPEG (and a thumbnail), written whole.

A file is written under a temporary name, flushed to disk and renamed, so a
kill or power cut leaves the old file or the new one, never half of one;
``sweep`` removes temporary files a kill left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
from datetime import datetime
from typing import Optional

import numpy as np

from ..fileio import replace_file
from .store import SNAPSHOTS

_TMP = ".tmp"


def relative_name(event_id: int, start: float, thumbnail: bool = False) -> str:
    """Where an event's snapshot lives under events.dir: snapshots/DAY/ID.jpg (local day)."""
    day = datetime.fromtimestamp(start).strftime("%Y-%m-%d")
    suffix = "-thumb" if thumbnail else ""
    return f"{SNAPSHOTS}/{day}/{event_id}{suffix}.jpg"


def encode_jpeg(image: np.ndarray, quality: int, width: Optional[int] = None) -> bytes:
    """``image`` ((H, W, 3) uint8 RGB) as JPEG bytes, scaled to ``width`` if given."""
    from PIL import Image

    pic = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
    if width and pic.width > width:
        height = max(1, round(pic.height * width / pic.width))
        pic = pic.resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    pic.save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_whole(events_dir: str, name: str, data: bytes) -> int:
    """Write ``data`` to ``events_dir/name`` atomically (temp file, fsync, rename); its size.

    Raises OSError (ENOSPC on a full disk) with nothing left behind.
    """
    path = os.path.join(events_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    replace_file(path, data, 0o644, tmp=path + _TMP)
    return len(data)


def sweep(events_dir: str) -> int:
    """Remove temporary snapshot files a kill left behind; how many."""
    removed = 0
    root = os.path.join(events_dir, SNAPSHOTS)
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(_TMP):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed
