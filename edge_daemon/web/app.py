"""The routes: what each URL answers, from the state the ``http`` sink keeps.

Every path is matched against this fixed table; the page's files are read
from the package once, at start, and served from memory; a snapshot is
served only when the events store names a regular file inside events.dir.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional

from .auth import Auth
from .events import EventsQuery, NoEvents
from .live import LiveFrames
from .server import PAGE_POLICY, PING_EVERY, Response, Stream, error, json_response

EVENT = re.compile(r"/api/events/([0-9]{1,18})")
SNAPSHOT = re.compile(r"/api/events/([0-9]{1,18})/(snapshot|thumbnail)\.jpg")
MAX_LIMIT = 500
MAX_SNAPSHOT = 8 * 1024 * 1024
NO_METRICS = "/metrics needs prometheus_client: pip install 'edge-daemon[web]'"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """The page's files, by URL path: / for index.html, /assets/NAME for the rest."""
    out: dict[str, tuple[bytes, str]] = {}
    folder = resources.files("edge_daemon.web").joinpath("assets")
    for entry in folder.iterdir():
        suffix = os.path.splitext(entry.name)[1]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        url = "/" if entry.name == "index.html" else f"/assets/{entry.name}"
        out[url] = (entry.read_bytes(), _TYPES[suffix])
    return out


@dataclass
class State:
    """What the routes read: filled by the sink, read by server threads."""

    frames: LiveFrames
    auth: Auth = field(default_factory=Auth)
    events: EventsQuery = field(default_factory=NoEvents)
    status: Optional[dict[str, Any]] = None
    request_reload: Callable[[], None] = lambda: None
    verdict: Callable[[dict[str, Any], float], tuple[int, str]] = lambda s, now: (0, "running")
    metrics: Optional[Callable[[], tuple[bytes, str]]] = None  # None: no prometheus_client


class _Predictions:
    """GET /api/predictions: one Server-Sent Event per new prediction, rate-capped."""

    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, frames: LiveFrames) -> None:
        self.frames = frames

    def parts(self, closing: threading.Event, gone: Callable[[], bool]) -> Iterator[bytes]:
        yield b"retry: 2000\n\n"
        last, pinged = -1, time.monotonic()
        while not closing.wait(self.frames.min_interval) and not gone():
            message = self.frames.message()
            if message is not None and message[0] != last:
                last = message[0]
                pinged = time.monotonic()
                yield message[1]
            elif time.monotonic() - pinged > PING_EVERY:
                pinged = time.monotonic()
                yield b": ping\n\n"


class _LiveView:
    """GET /api/stream.mjpg: the latest frame as JPEG parts, at most stream_fps."""

    content_type = "multipart/x-mixed-replace; boundary=frame"

    def __init__(self, frames: LiveFrames) -> None:
        self.frames = frames

    def parts(self, closing: threading.Event, gone: Callable[[], bool]) -> Iterator[bytes]:
        last: Optional[int] = None
        while not gone():
            view = self.frames.view()  # frames the change gate skipped too: the view stays live
            if view is not None and view[0] != last:
                last, number, jpeg = view
                head = (
                    f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                    f"\r\nX-Frame: {number}\r\n\r\n"
                )
                yield head.encode() + jpeg + b"\r\n"
            if closing.wait(self.frames.min_interval):
                return


class WebApp:
    """The API and the page, over a ``State``."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.assets = load_assets()
        self._routes: dict[str, Callable[[dict[str, list[str]]], Response | Stream]] = {
            "/api/status": self._status,
            "/api/predictions": lambda q: _Predictions(self.state.frames),
            "/api/frame.jpg": self._frame,
            "/api/stream.mjpg": lambda q: _LiveView(self.state.frames),
            "/api/events": self._events,
            "/metrics": self._metrics,
        }

    @property
    def auth(self) -> Auth:
        return self.state.auth

    def healthz(self) -> Response:
        status = self.state.status
        if status is None:
            return json_response(503, {"health": "starting"})
        code, word = self.state.verdict(status, time.time())
        return json_response(200 if code == 0 else 503, {"health": word})

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> Response | Stream:
        if method == "POST":
            if path != "/api/reload":
                return error(
                    405, "only POST /api/reload is allowed", headers=(("Allow", "GET, HEAD"),)
                )
            return self._reload()
        if path == "/api/reload":
            return error(405, "use POST /api/reload", headers=(("Allow", "POST"),))
        asset = self.assets.get(path)
        if asset is not None:
            body, ctype = asset
            headers = (("Content-Security-Policy", PAGE_POLICY),) if path == "/" else ()
            return Response(200, body, ctype, cache="no-cache", headers=headers)
        handler = self._routes.get(path)
        if handler is not None:
            return handler(query)
        match = SNAPSHOT.fullmatch(path)
        if match:
            return self._snapshot(int(match.group(1)), thumbnail=match.group(2) == "thumbnail")
        match = EVENT.fullmatch(path)
        if match:
            event = self.state.events.get(int(match.group(1)))
            if event is None:
                return error(404, f"no event {match.group(1)}")
            return json_response(200, event)
        return error(404, "not found")

    # -- routes --------------------------------------------------------------------
    def _status(self, query: dict[str, list[str]]) -> Response:
        status = self.state.status
        if status is None:
            return error(503, "no status yet; the daemon is starting")
        return json_response(200, status)

    def _frame(self, query: dict[str, list[str]]) -> Response:
        jpeg = self.state.frames.jpeg()
        if jpeg is None:
            return error(404, "no frame classified yet")
        return Response(200, jpeg[1], "image/jpeg", headers=(("X-Frame", str(jpeg[0])),))

    def _events(self, query: dict[str, list[str]]) -> Response:
        try:
            limit = int(query.get("limit", ["50"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            return error(400, "limit and offset must be whole numbers")
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            return error(400, f"limit must be between 1 and {MAX_LIMIT}, offset 0 or more")
        rule = query.get("rule", [None])[0]
        label = query.get("label", [None])[0]
        found = self.state.events.list(limit=limit, offset=offset, rule=rule, label=label)
        return json_response(200, found)

    def _snapshot(self, event_id: int, *, thumbnail: bool = False) -> Response:
        events = self.state.events
        path, folder = events.snapshot(event_id, thumbnail=thumbnail), events.folder()
        if path is None or folder is None:
            return error(404, f"no snapshot for event {event_id}")
        data = read_inside(path, folder)
        if data is None:
            return error(404, f"no snapshot for event {event_id}")
        return Response(200, data, "image/jpeg", cache="private, max-age=3600")

    def _metrics(self, query: dict[str, list[str]]) -> Response:
        if self.state.metrics is None:
            return error(503, NO_METRICS)
        body, ctype = self.state.metrics()
        return Response(200, body, ctype)

    def _reload(self) -> Response:
        if not self.state.auth.required:
            return error(
                403,
                "POST /api/reload needs http.auth (token or basic) in the config;"
                " until then use systemctl reload edge-daemon",
            )
        self.state.request_reload()
        return json_response(202, {"reload": "requested"})


def read_inside(path: Path, folder: Path) -> Optional[bytes]:
    """The bytes of ``path`` if it is a regular file inside ``folder`` (links resolved)."""
    try:
        real = Path(os.path.realpath(path))
        root = Path(os.path.realpath(folder))
        if real == root or root not in real.parents:
            return None
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SNAPSHOT:
            return None
        return f.read(MAX_SNAPSHOT)
