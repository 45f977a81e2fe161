"""The teach API: samples from the live frame and event snapshots, training, Use.

``GET /api/teach`` shows the classes and their samples, the training run and
its last report, and whether the taught model is the one running. The writes
(``POST /api/teach/samples``, ``DELETE /api/teach/samples/ID``,
``POST /api/teach/train``, ``POST /api/teach/apply``) are refused while
``http.auth`` is not set, as ``POST /api/reload`` is, wherever the server
listens. Sample images are served through the sample store (an id names a
sample it knows), never from a path in the URL.

Training runs as a child process with the daemon's config (``training``).
"Use" asks the running daemon to reload (SIGHUP's effect), which keeps the
last good model when the new one fails to load; the status object tells how
it went.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import unquote

import numpy as np

from ..errors import EdgeDaemonError, TeachError
from ..sinks.base import Classified, ModelInfo
from ..sinks.prediction_log import iso_utc
from ..teach.samples import Sample, SampleStore, check_class_name, check_frame
from ..teach.train import read_report
from .app import State, read_inside
from .server import METHODS, WRITES, Response, error, json_response
from .training import Training

log = logging.getLogger(__name__)

ROOT = "/api/teach"
SAMPLES = "/api/teach/samples"
_ID = r"[0-9]{8}T[0-9]{6}-[0-9a-f]{6}"  # as the sample store names them
SAMPLE = re.compile(rf"/api/teach/samples/({_ID})")
SAMPLE_IMAGE = re.compile(rf"/api/teach/samples/({_ID})\.jpg")
SAMPLE_THUMBNAIL = re.compile(rf"/api/teach/samples/({_ID})/thumbnail\.jpg")
CLASS = re.compile(r"/api/teach/classes/([^/]{1,800})")  # 64 characters, percent-encoded
MAX_FRAMES = 60  # "the next N frames": at most a minute of them
FRAME_GAP = 1.0  # seconds between two of those frames
FRAME_WAIT = 10.0  # give up when no new frame comes for this long
THUMBNAIL = 160  # pixels, the longer side
THUMBNAILS_KEPT = 512  # in memory, ~5 KB each
SHOWN_PER_CLASS = 48  # sample ids listed per class by GET /api/teach (newest)
BODY_KEYS = {"class", "frames", "event"}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def thumbnail(jpeg: bytes) -> bytes:
    """A small JPEG of a sample (decoded at a reduced scale: cheap on a Pi)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as picture:
        picture.draft("RGB", (THUMBNAIL, THUMBNAIL))
        small = picture.convert("RGB")
        small.thumbnail((THUMBNAIL, THUMBNAIL))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=75)
        return out.getvalue()


def decode_rgb(data: bytes, what: str) -> tuple[np.ndarray, bool]:
    """An image as an (H, W, 3) uint8 RGB frame, and whether it is a plain (RGB or
    grey) JPEG; TeachError naming ``what`` when it does not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()  # a truncated file fails here
            plain = picture.format == "JPEG" and picture.mode in ("RGB", "L")
            return np.asarray(picture.convert("RGB")), plain
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise TeachError(f"{what} is not a readable image ({text}); choose another") from None


class Capture:
    """The next N frames a second apart, taken from the live slot by a thread."""

    def __init__(self, cls: str, count: int) -> None:
        self.cls = cls
        self.count = count
        self.done = 0
        self.error: Optional[str] = None
        self.finished = False

    def view(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "done": self.done,
            "of": self.count,
            "finished": self.finished,
            "error": self.error,
        }


class TeachApi:
    """The routes under /api/teach, over the http sink's ``State``."""

    def __init__(
        self,
        state: State,
        root: str,
        *,
        config_file: Optional[str],
        model: Callable[[], Optional[ModelInfo]],
        runs_taught: bool = True,
        python: str = sys.executable,
    ) -> None:
        self.state = state
        self.root = root
        self.model = model
        self.runs_taught = runs_taught  # teach.use, or model.path names the taught model
        # Not --json: the child then prints its progress, one line a step.
        command = [python, "-m", "edge_daemon", "teach", "train"]
        if config_file:
            command += ["--config", config_file]
        self.training = Training(command)
        self.capture: Optional[Capture] = None
        self.store = SampleStore(root)
        self._lock = threading.RLock()  # one writer at a time in the sample store
        self._closing = threading.Event()
        self._thumbs: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._thumbs_lock = threading.Lock()
        self._model_sha: tuple[Any, str] = (None, "")
        self._applied: Optional[dict[str, Any]] = None  # the last Use: what it waits for
        # The store's listing, read again only when a class folder's files changed (the page
        # asks every few seconds; reading every sample's sidecar each time costs a Pi).
        self._listing: tuple[Any, dict[str, list[Sample]], dict[str, Sample]] = (None, {}, {})
        self._routes = self._table()

    # -- dispatch --------------------------------------------------------------------
    def __call__(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> Response:
        try:
            return self._route(method, path, body)
        except EdgeDaemonError as exc:
            return error(400, str(exc))

    def _table(self) -> list[tuple[re.Pattern[str], dict[str, Callable[..., Response]]]]:
        """Each path pattern with its methods (HEAD goes where GET goes)."""
        return [
            (re.compile(re.escape(ROOT)), {"GET": lambda body: self._overview()}),
            (re.compile(re.escape(SAMPLES)), {"POST": self._add}),
            (SAMPLE_IMAGE, {"GET": lambda body, i: self._image(i, thumb=False)}),
            (SAMPLE_THUMBNAIL, {"GET": lambda body, i: self._image(i, thumb=True)}),
            (SAMPLE, {"DELETE": lambda body, i: self._remove_sample(i)}),
            (CLASS, {"DELETE": lambda body, name: self._remove_class(unquote(name))}),
            (re.compile(re.escape(ROOT + "/train")), {"POST": lambda body: self._train()}),
            (re.compile(re.escape(ROOT + "/apply")), {"POST": lambda body: self._apply()}),
        ]

    def _route(self, method: str, path: str, body: bytes) -> Response:
        for pattern, methods in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get("GET" if method == "HEAD" else method)
            if handler is None:
                allowed = [*methods, "HEAD"] if "GET" in methods else list(methods)
                allow = ", ".join(m for m in METHODS if m in allowed)
                return error(
                    405,
                    f"{method[:20]} is not allowed on {path[:100]}",
                    headers=(("Allow", allow),),
                )
            if method in WRITES:
                refused = self._refuse_writes(method, path)
                if refused is not None:
                    return refused
            return handler(body, *match.groups())
        return error(404, "not found")

    def _refuse_writes(self, method: str, path: str) -> Optional[Response]:
        if not self.state.auth.required:
            return error(
                403,
                f"{method} {path[:60]} needs http.auth (token or basic) in the config, as"
                " POST /api/reload does; until then use edge-daemon teach on the Pi",
            )
        return None

    # -- the store's listing ---------------------------------------------------------
    def _listing_key(self) -> Optional[tuple[tuple[str, tuple[str, ...]], ...]]:
        """The file names in each class folder: a sample added or removed, here or by
        `edge-daemon teach`, changes them (modification times can miss two changes within
        one clock tick). None when the folder cannot be read."""
        folder = self.store.dir
        found = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        found.append((entry.name, tuple(sorted(os.listdir(entry.path)))))
        except FileNotFoundError:
            return ()
        except OSError:
            return None
        return tuple(sorted(found))

    def _read_listing(self) -> tuple[dict[str, list[Sample]], dict[str, Sample]]:
        key = self._listing_key()
        with self._lock:
            if key is None or key != self._listing[0]:
                classes = self.store.classes()
                by_id = {s.id: s for samples in classes.values() for s in samples}
                self._listing = (key, classes, by_id)
            return self._listing[1], self._listing[2]

    def _classes(self) -> dict[str, list[Sample]]:
        return self._read_listing()[0]

    def _sample(self, sample_id: str) -> Optional[Sample]:
        return self._read_listing()[1].get(sample_id)

    # -- reads ------------------------------------------------------------------------
    def _overview(self) -> Response:
        classes = self._classes()
        shown = []
        for name in sorted(classes):
            samples = sorted(classes[name], key=lambda s: s.added, reverse=True)
            shown.append(
                {
                    "name": name,
                    "count": len(samples),
                    "last_added": iso_utc(samples[0].added) if samples else None,
                    "samples": [_sample_json(s) for s in samples[:SHOWN_PER_CLASS]],
                }
            )
        capture = self.capture
        latest = self.state.frames.latest
        report = read_report(self.root)
        model = self._model_view(report)
        return json_response(
            200,
            {
                "classes": shown,
                "can_write": self.state.auth.required,
                "frame": latest.number if latest is not None else None,
                "capture": capture.view() if capture is not None else None,
                "training": self.training.view(),
                "report": report,
                "model": model,
                "apply": self._apply_view(model),
                "limits": {"frames": MAX_FRAMES},
            },
        )

    def _model_view(self, report: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The taught model: whether there is one and whether the daemon runs it now."""
        path = os.path.join(self.root, "model.tflite")
        info = self.model()
        view: dict[str, Any] = {
            "path": path,
            "exists": False,
            "sha256": None,
            "in_use": False,
            "running": info.name if info is not None else None,
            "runs_taught": self.runs_taught,
        }
        try:
            st = os.stat(path)  # a link into the newest generation folder
        except OSError:
            return view
        sha = ((report or {}).get("model") or {}).get("sha256")
        if not isinstance(sha, str):  # a model without its report: hash it (once per file)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._model_sha[0] != key:
                try:
                    self._model_sha = (key, _sha256(path))
                except OSError:
                    self._model_sha = (None, "")
            sha = self._model_sha[1]
        view.update(exists=True, sha256=sha or None)
        view["in_use"] = bool(info is not None and sha and info.sha256 == sha)
        return view

    def _apply_view(self, model: dict[str, Any]) -> Optional[dict[str, Any]]:
        """How the last Use went, from the status object: pending, done or failed."""
        applied = self._applied
        if applied is None:
            return None
        status = self.state.status or {}
        if model["in_use"] and model["sha256"] == applied["sha256"]:
            return {"state": "done", "error": None}
        error_text = str(status.get("last_error") or "")
        if status.get("last_error_at") != applied["error_at"] and error_text.startswith(
            "reload failed"
        ):
            return {"state": "failed", "error": error_text}
        if int(status.get("reloads") or 0) > applied["reloads"]:
            return {
                "state": "failed",
                "error": f"the daemon reloaded but runs {model['running']}, not the taught"
                " model; set teach.use: true in the config (the default) and press Use again",
            }
        return {"state": "pending", "error": None}

    def _image(self, sample_id: str, *, thumb: bool) -> Response:
        sample = self._sample(sample_id)
        if sample is None:
            return error(404, f"no sample {sample_id}")
        small: Optional[bytes] = None
        if thumb:
            with self._thumbs_lock:
                small = self._thumbs.get(sample_id)
        if small is not None:
            return Response(200, small, "image/jpeg", cache="private, max-age=3600")
        data = read_inside(Path(sample.path), Path(self.root))
        if data is None:
            return error(404, f"no sample {sample_id}")
        if thumb:
            try:
                data = thumbnail(data)
            except (OSError, ValueError):
                return error(404, f"sample {sample_id} is not a readable image")
            with self._thumbs_lock:
                self._thumbs[sample_id] = data
                while len(self._thumbs) > THUMBNAILS_KEPT:
                    self._thumbs.popitem(last=False)
        return Response(200, data, "image/jpeg", cache="private, max-age=3600")

    # -- writes -----------------------------------------------------------------------
    def _add(self, body: bytes) -> Response:
        request = _json_object(body)
        if isinstance(request, Response):
            return request
        unknown = sorted(set(request) - BODY_KEYS)
        if unknown:
            return error(
                400, f"unknown key {unknown[0]!r}; send class and frames, or class and event"
            )
        cls = request.get("class")
        if not isinstance(cls, str):
            return error(400, 'send {"class": NAME} with the class to add to, e.g. "open"')
        check_class_name(cls)
        if "event" in request:
            if "frames" in request:
                return error(400, "send frames or event, not both")
            event = request["event"]
            if isinstance(event, bool) or not isinstance(event, int) or event < 0:
                return error(400, "event must be an event id (a whole number)")
            return self._add_event(cls, event)
        frames = request.get("frames", 1)
        if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
            return error(400, f"frames must be a whole number from 1 to {MAX_FRAMES}")
        item = self.state.frames.latest
        if item is None:
            return error(409, "no frame classified yet; wait for the camera's first frame")
        if frames == 1:
            sample = self._add_frame(cls, item)
            return json_response(201, {"added": [_sample_json(sample)]})
        with self._lock:
            if self.capture is not None and not self.capture.finished:
                busy = self.capture
                return error(
                    409,
                    f"still adding frames to {busy.cls!r} ({busy.done} of {busy.count});"
                    " wait for it to finish",
                )
            self.capture = Capture(cls, frames)
            capture = self.capture
        threading.Thread(
            target=self._take_frames, args=(capture,), name="teach-frames", daemon=True
        ).start()
        return json_response(202, {"adding": capture.view()})

    def _add_frame(self, cls: str, item: Classified) -> Any:
        """Keep a live frame, with its embedding from the same invoke when the base
        network made it (a taught model's is not cached: training embeds with the base)."""
        info = self.model()
        embedding, sha = item.embedding, ""
        if embedding is not None and info is not None and not self._is_taught(info.path):
            sha = info.sha256
        with self._lock:
            return self.store.add_image(
                cls,
                item.image,
                source="live",
                embedding=embedding if sha else None,
                model_sha256=sha,
            )

    def _is_taught(self, path: str) -> bool:
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        return real.startswith(root + os.sep)

    def _next_frame(self, after: int, not_before: float) -> Optional[Classified]:
        """The newest frame other than number ``after`` once ``not_before`` (monotonic)
        has passed; None when none comes within FRAME_WAIT or the server stops."""
        deadline = max(time.monotonic(), not_before) + FRAME_WAIT
        while not self._closing.wait(0.05):
            item = self.state.frames.latest
            now = time.monotonic()
            if item is not None and item.number != after and now >= not_before:
                return item
            if now > deadline:
                return None
        return None

    def _take_frames(self, capture: Capture) -> None:
        number, taken = -1, -FRAME_GAP
        try:
            while capture.done < capture.count:
                item = self._next_frame(number, taken + FRAME_GAP)
                if item is None:
                    if not self._closing.is_set():
                        capture.error = (
                            f"no new frame for {FRAME_WAIT:.0f} s; added {capture.done}"
                            f" of {capture.count}"
                        )
                    return
                taken = time.monotonic()
                self._add_frame(capture.cls, item)
                number = item.number
                capture.done += 1
        except EdgeDaemonError as exc:
            capture.error = str(exc)
        except Exception as exc:  # a bug must end this capture, not the server
            log.warning("teach: adding frames failed: %s: %s", type(exc).__name__, exc)
            capture.error = "adding frames failed; see the daemon's log"
        finally:
            capture.finished = True

    def _add_event(self, cls: str, event_id: int) -> Response:
        events = self.state.events
        path, folder = events.snapshot(event_id), events.folder()
        if path is None or folder is None:
            return error(404, f"no snapshot for event {event_id}")
        data = read_inside(path, folder)
        if data is None:
            return error(404, f"no snapshot for event {event_id}")
        what = f"the snapshot of event {event_id}"
        image, is_jpeg = decode_rgb(data, what)
        check_frame(image, what)
        with self._lock:
            if is_jpeg:  # the camera's JPEG as the events store wrote it: kept as it is
                sample = self.store.add_jpeg(cls, data, source="event", extra={"event": event_id})
            else:
                sample = self.store.add_image(cls, image, source="event")
        return json_response(201, {"added": [_sample_json(sample)]})

    def _remove_sample(self, sample_id: str) -> Response:
        with self._lock:
            sample = self._sample(sample_id)
            if sample is None:
                return error(404, f"no sample {sample_id}")
            removed = self.store.remove(sample.cls, [sample_id])
        with self._thumbs_lock:
            self._thumbs.pop(sample_id, None)
        return json_response(200, {"removed": removed})

    def _remove_class(self, name: str) -> Response:
        check_class_name(name)
        with self._lock:
            name = self.store.canonical_class(name)
            if name not in self._classes():
                return error(404, f"no class {name!r}")
            removed = self.store.remove(name)
        return json_response(200, {"removed": removed})

    def _train(self) -> Response:
        if not self.training.start():
            return error(409, "training runs already; wait for it to finish")
        return json_response(202, {"training": self.training.view()})

    def _apply(self) -> Response:
        if self.training.running:
            return error(409, "training runs; use the model once it is done")
        model = self._model_view(read_report(self.root))
        if not model["exists"]:
            return error(409, "nothing taught yet: add samples and train first")
        if not self.runs_taught:
            return error(
                409,
                "the config runs model.path, not the taught model (teach.use: false); set"
                " teach.use: true there once, then press Use",
            )
        if model["in_use"]:
            return json_response(200, {"apply": "in use already", "model": model["path"]})
        status = self.state.status or {}
        self._applied = {
            "sha256": model["sha256"],
            "reloads": int(status.get("reloads") or 0),
            "error_at": status.get("last_error_at"),
        }
        self.state.request_reload()
        return json_response(202, {"apply": "requested", "model": model["path"]})

    def close(self) -> None:
        self._closing.set()
        self.training.close()


def _sample_json(sample: Any) -> dict[str, Any]:
    return {
        "id": sample.id,
        "class": sample.cls,
        "added": iso_utc(sample.added),
        "source": sample.source,
        "image": f"{SAMPLES}/{sample.id}.jpg",
        "thumbnail": f"{SAMPLES}/{sample.id}/thumbnail.jpg",
    }


def _json_object(body: bytes) -> dict[str, Any] | Response:
    if not body:
        return error(400, 'send a JSON body, e.g. {"class": "open"}')
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error(400, 'the body is not JSON; send e.g. {"class": "open", "frames": 5}')
    if not isinstance(data, dict):
        return error(400, 'the body must be a JSON object, e.g. {"class": "open"}')
    return data
