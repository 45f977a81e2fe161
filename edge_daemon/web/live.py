"""The latest classified frame, as JPEG and as a prediction message, made once each.

The inference thread only drops each ``Classified`` (and each frame the
change gate skipped, for the live view) into a slot (one assignment).
Server threads turn the slot into JPEG bytes or a Server-Sent-Events
message on demand; each is built once per frame however
many clients ask, and JPEG encoding is capped at ``stream_fps`` overall.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any, Optional

from ..sinks.base import Classified, Skipped
from ..sinks.prediction_log import iso_utc

JPEG_QUALITY = 80
MAX_WIDTH = 800


def encode_jpeg(image: Any) -> bytes:
    """An (H, W, 3) uint8 RGB array as JPEG bytes, shrunk by a whole factor to at
    most ``MAX_WIDTH`` wide (a 1080p frame costs a Pi Zero four times as much)."""
    from PIL import Image

    picture = Image.fromarray(image)
    if picture.width > MAX_WIDTH:
        picture = picture.reduce(-(-picture.width // MAX_WIDTH))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def prediction_message(item: Classified) -> dict[str, Any]:
    """What /api/predictions sends for one frame."""
    message: dict[str, Any] = {
        "frame": item.number,
        "name": item.name,
        "captured_at": iso_utc(item.captured_at),
        "inference_ms": round(item.inference_ms, 3),
        "predictions": [p.as_dict() for p in item.predictions],
    }
    if item.smoothed is not item.predictions:
        message["smoothed"] = [p.as_dict() for p in item.smoothed]
    if item.events:
        message["events"] = [
            {"type": n.type, "best": n.best, "event": n.event} for n in item.events
        ]
    return message


class LiveFrames:
    """The latest frame and what is derived from it, shared by every client."""

    def __init__(self, stream_fps: float) -> None:
        self.latest: Optional[Classified] = None  # set by the inference thread only
        # The newest frame the gate skipped and the classified frame it came after.
        self.skipped: Optional[tuple[int, Skipped, Optional[Classified]]] = None
        self._skips = 0
        self.min_interval = 1.0 / stream_fps
        self.encodes = 0  # JPEG encodings so far (read by /metrics)
        self._lock = threading.Lock()
        self._jpeg: Optional[tuple[int, bytes]] = None
        self._encoded_at = -1e9
        self._message: Optional[tuple[int, bytes]] = None
        self._skipped_jpeg: Optional[tuple[int, int, bytes]] = None

    def offer(self, item: Classified) -> None:
        """A newly classified frame (inference thread: one assignment)."""
        self.latest = item

    def offer_skipped(self, item: Skipped) -> None:
        """A frame the gate skipped: the live view shows it (inference thread)."""
        self._skips += 1
        self.skipped = (self._skips, item, self.latest)

    def view(self) -> Optional[tuple[int, int, bytes]]:
        """(key, frame number, JPEG) of the newest frame, skipped by the gate or not.

        The key (an int) changes with every frame shown: a classified frame's
        number, or minus the count of skipped frames; the number is that of
        the latest classified frame (0 before the first).
        """
        skipped, item = self.skipped, self.latest
        if skipped is None or skipped[2] is not item:  # classified since: that is newest
            jpeg = self.jpeg()
            return (jpeg[0], jpeg[0], jpeg[1]) if jpeg is not None else None
        count, frame, after = skipped
        with self._lock:
            cached = self._skipped_jpeg
            now = time.monotonic()
            if cached is not None and (
                cached[0] == -count or now - self._encoded_at < self.min_interval
            ):
                return cached
            data = encode_jpeg(frame.image)
            self._encoded_at = now
            self.encodes += 1
            self._skipped_jpeg = (-count, after.number if after is not None else 0, data)
            return self._skipped_jpeg

    def jpeg(self) -> Optional[tuple[int, bytes]]:
        """(frame number, JPEG) of the latest frame, or None before the first.

        A frame is encoded once, by whichever client asks first; and at most
        ``stream_fps`` frames a second are encoded, so between two encodings
        clients get the previous picture.
        """
        item = self.latest
        if item is None:
            return None
        with self._lock:
            cached = self._jpeg
            now = time.monotonic()
            if cached is not None and (
                cached[0] == item.number or now - self._encoded_at < self.min_interval
            ):
                return cached
            data = encode_jpeg(item.image)
            self._jpeg = (item.number, data)
            self._encoded_at = now
            self.encodes += 1
            return self._jpeg

    def message(self) -> Optional[tuple[int, bytes]]:
        """(frame number, one Server-Sent Event) for the latest frame, or None."""
        item = self.latest
        if item is None:
            return None
        with self._lock:
            cached = self._message
            if cached is not None and cached[0] == item.number:
                return cached
            payload = json.dumps(prediction_message(item), separators=(",", ":"), default=str)
            self._message = (item.number, f"id: {item.number}\ndata: {payload}\n\n".encode())
            return self._message
