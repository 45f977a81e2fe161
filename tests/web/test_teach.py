"""/api/teach: samples from the live frame and event snapshots, auth, origins, bodies.

The sink runs on a free loopback port with a real sample store under the
test's folder; frames are handed to it as the inference loop would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
from PIL import Image

from edge_daemon.config import HttpConfig
from edge_daemon.postprocess import Prediction
from edge_daemon.sinks.base import Classified, ModelInfo, SinkContext
from edge_daemon.teach.samples import SampleStore
from edge_daemon.web.events import StoreEvents
from edge_daemon.web.sink import HttpSink
from tests.web.conftest import Reply, Running, Web, status_object
from tests.web.test_events import History, as_json

TOKEN = "teach-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRITES = [
    ("POST", "/api/teach/samples"),
    ("POST", "/api/teach/train"),
    ("POST", "/api/teach/apply"),
    ("DELETE", "/api/teach/samples/20261202T101500-a3f9c1"),
    ("DELETE", "/api/teach/classes/open"),
]


def picture(number: int, width: int = 96, height: int = 72) -> np.ndarray:
    """A frame that tells its number apart: a gradient shifted by it."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([x + 0 * y, y + 0 * x, np.full((height, width, 1), 0.0)], axis=2)
    rgb[..., 2] = (number * 37) % 256
    return rgb.astype(np.uint8)


def classified(number: int, image: Optional[np.ndarray] = None) -> Classified:
    preds = [Prediction("tabby, tabby cat", 282, 0.8)]
    img = picture(number) if image is None else image
    return Classified(number, f"f{number}.jpg", time.time(), img, preds, preds, 10.0)


def model_info(sha256: str = "a" * 64, path: str = "/models/base.tflite") -> ModelInfo:
    return ModelInfo(
        name=Path(path).name,
        path=path,
        sha256=sha256,
        runtime="ai_edge_litert",
        delegate="cpu",
        labels=["a", "b"],
        label=str,
        width=224,
        height=224,
    )


class TeachWeb(Web):
    """A sink with teaching on, its teach folder and the reloads it asked for."""

    root: Path

    def send(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        headers: Optional[dict[str, str]] = None,
        body: Optional[bytes] = None,
    ) -> Reply:
        all_headers = {**BEARER, **(headers or {})}
        if data is not None:
            body = json.dumps(data).encode()
            all_headers.setdefault("Content-Type", "application/json")
        return self.request(path, method, headers=all_headers, body=body)

    def overview(self) -> dict[str, Any]:
        reply = self.send("GET", "/api/teach")
        assert reply.status == 200, reply.body
        data: dict[str, Any] = reply.json()
        return data


@pytest.fixture
def teach_web(
    tmp_path: Path, write_config: Callable[..., Path]
) -> Iterator[Callable[..., TeachWeb]]:
    """``teach_web(auth="token")``: an http sink with teaching under tmp_path/teach;
    training runs with a config whose teach.dir is that folder."""
    made: list[HttpSink] = []

    def make(auth: str = "token", events: Any = None, runs_taught: bool = True) -> TeachWeb:
        settings: dict[str, Any] = {"listen": "127.0.0.1:0"}
        if auth == "token":
            token_file = tmp_path / "http-token"
            token_file.write_text(TOKEN + "\n")
            settings.update(auth="token", token_file=str(token_file))
        reloads: list[float] = []
        ctx = SinkContext(request_reload=lambda: reloads.append(time.time()))
        root = tmp_path / "teach"
        config = write_config(
            model="mobilenet_v1_0.25_128_quant.tflite", overrides={"teach": {"dir": str(root)}}
        )
        sink = HttpSink(
            HttpConfig(**settings),
            ctx,
            events=events,
            teach_root=str(root),
            config_file=str(config),
            runs_taught=runs_taught,
        )
        made.append(sink)
        sink.start()
        sink.model(model_info())
        sink.status(status_object())
        w = TeachWeb(sink, reloads)
        w.root = root
        return w

    yield make
    for sink in made:
        sink.close()


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


# -- who may write ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_writes_are_refused_without_auth_as_reload_is(
    teach_web: Callable[..., TeachWeb], method: str, path: str
) -> None:
    w = teach_web(auth="none")
    w.sink.classified(classified(1))
    reply = w.send(method, path, {"class": "open"} if path.endswith("samples") else None)
    assert reply.status == 403, reply.body
    assert "http.auth" in reply.json()["error"] and "teach" in reply.json()["error"]
    assert w.request("/api/reload", "POST").status == 403  # the same rule, the same answer
    assert files_under(w.root) == set() and w.reloads == []
    # Reading is allowed as the rest of the page is, and says writing is off.
    assert w.overview()["can_write"] is False


@pytest.mark.parametrize(("method", "path"), [*WRITES, ("GET", "/api/teach")])
def test_every_teach_route_needs_the_token(
    teach_web: Callable[..., TeachWeb], method: str, path: str
) -> None:
    w = teach_web()
    w.sink.classified(classified(1))
    body = json.dumps({"class": "open"}).encode() if path.endswith("samples") else None
    reply = w.request(path, method, body=body)
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Bearer")
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert w.request(path, method, headers=wrong, body=body).status == 401
    assert files_under(w.root) == set() and w.reloads == []
    assert w.send(method, path, body=body).status not in (401, 403)


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"]
)
@pytest.mark.parametrize(("method", "path"), WRITES)
def test_cross_origin_writes_are_refused(
    teach_web: Callable[..., TeachWeb], origin: str, method: str, path: str
) -> None:
    w = teach_web()
    w.sink.classified(classified(1))
    w.root.mkdir()
    (w.root / "model.tflite").write_bytes(b"taught")
    before = files_under(w.root)
    data = {"class": "open"} if path.endswith("samples") else None
    reply = w.send(method, path, data, headers={"Origin": origin})
    assert reply.status == 403 and "cross-origin" in reply.json()["error"]
    assert files_under(w.root) == before and w.reloads == []
    assert w.overview()["training"]["state"] == "idle"


def test_a_foreign_host_name_cannot_write_either(teach_web: Callable[..., TeachWeb]) -> None:
    w = teach_web()  # a page on evil.example whose name now points at this server
    w.sink.classified(classified(1))
    evil = {"Host": f"evil.example:{w.port}", "Origin": f"http://evil.example:{w.port}"}
    reply = w.send("POST", "/api/teach/samples", {"class": "open"}, headers=evil)
    assert reply.status == 403 and files_under(w.root) == set()


def test_the_pages_own_origin_may_write(teach_web: Callable[..., TeachWeb]) -> None:
    w = teach_web()
    w.sink.classified(classified(1))
    own = {"Origin": f"http://127.0.0.1:{w.port}", "Host": f"127.0.0.1:{w.port}"}
    reply = w.send("POST", "/api/teach/samples", {"class": "open"}, headers=own)
    assert reply.status == 201, reply.body


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "JSON body"),
        (b"class=open", 400, "not JSON"),
        (b"\xff\xfe{", 400, "not JSON"),
        (b'["open"]', 400, "JSON object"),
        (b'{"klass": "open"}', 400, "unknown key 'klass'"),
        (b'{"class": 5}', 400, '{"class": NAME}'),
        (b'{"class": "open", "frames": 0}', 400, "from 1 to 60"),
        (b'{"class": "open", "frames": 61}', 400, "from 1 to 60"),
        (b'{"class": "open", "frames": "5"}', 400, "from 1 to 60"),
        (b'{"class": "open", "frames": true}', 400, "from 1 to 60"),
        (b'{"class": "open", "frames": 2.5}', 400, "from 1 to 60"),
        (b'{"class": "open", "event": "7"}', 400, "event id"),
        (b'{"class": "open", "event": 1, "frames": 2}', 400, "not both"),
        (b'{"class": "open", "event": 99}', 404, "no snapshot for event 99"),
        (json.dumps({"class": "open", "pad": "x" * 5000}).encode(), 413, "at most 4096"),
    ],
)
def test_bad_bodies_are_one_clear_error_and_add_nothing(
    teach_web: Callable[..., TeachWeb], body: bytes, status: int, says: str
) -> None:
    w = teach_web()
    w.sink.classified(classified(1))
    reply = w.send("POST", "/api/teach/samples", body=body)
    assert reply.status == status, reply.body
    assert says in reply.json()["error"]
    assert files_under(w.root) == set()
    assert w.overview()["classes"] == []


def test_a_chunked_body_is_refused(teach_web: Callable[..., TeachWeb]) -> None:
    from tests.web.test_hostile import exchange

    w = teach_web()
    w.sink.classified(classified(1))
    reply = exchange(
        w.port,
        b"POST /api/teach/samples HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b'\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"class": "op"}\r\n0\r\n\r\n',
    )
    assert reply.startswith(b"HTTP/1.1 411")
    assert files_under(w.root) == set()


def test_before_the_first_frame_adding_says_to_wait(teach_web: Callable[..., TeachWeb]) -> None:
    w = teach_web()
    reply = w.send("POST", "/api/teach/samples", {"class": "open"})
    assert reply.status == 409 and "no frame" in reply.json()["error"]


# -- samples -----------------------------------------------------------------------------


def test_the_current_frame_becomes_a_sample_shown_and_removable(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web()
    features = np.linspace(0, 6, 256, dtype=np.float32)
    frame = dataclasses.replace(classified(7, picture(7, 640, 480)), embedding=features)
    w.sink.classified(frame)
    reply = w.send("POST", "/api/teach/samples", {"class": "open"})
    assert reply.status == 201, reply.body
    (added,) = reply.json()["added"]
    assert added["class"] == "open" and added["source"] == "live"
    # The embedding of the same invoke is kept for the model that made it: no second pass.
    store = SampleStore(str(w.root))
    cached = store.embedding(store.get(added["id"]), model_info().sha256)
    assert cached is not None and np.array_equal(cached, features)

    view = w.overview()
    assert view["can_write"] is True
    (cls,) = view["classes"]
    assert cls["name"] == "open" and cls["count"] == 1
    assert [s["id"] for s in cls["samples"]] == [added["id"]]
    # The sample is the frame the camera delivered (a JPEG of it), at its size.
    image = w.send("GET", added["image"])
    assert image.status == 200 and image.headers["content-type"] == "image/jpeg"
    stored = decoded(image.body)
    assert stored.shape == frame.image.shape
    assert np.abs(stored.astype(int) - frame.image.astype(int)).mean() < 4
    # Its thumbnail is small, for a page of many.
    thumb = w.send("GET", added["thumbnail"])
    assert thumb.status == 200 and max(decoded(thumb.body).shape[:2]) <= 160
    assert len(thumb.body) < len(image.body)

    gone = w.send("DELETE", f"/api/teach/samples/{added['id']}")
    assert (gone.status, gone.json()) == (200, {"removed": 1})
    assert w.send("GET", added["image"]).status == 404
    assert w.send("DELETE", f"/api/teach/samples/{added['id']}").status == 404
    assert all(c["count"] == 0 for c in w.overview()["classes"])


def test_samples_added_or_removed_on_the_command_line_show_on_the_page(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web()
    assert w.overview()["classes"] == []
    store = SampleStore(str(w.root))  # what `edge-daemon teach add` writes with
    first = store.add_image("closed", picture(1), source="file")
    assert [(c["name"], c["count"]) for c in w.overview()["classes"]] == [("closed", 1)]
    second = store.add_image("closed", picture(2), source="file")
    store.add_image("open", picture(3), source="file")
    view = w.overview()
    assert [(c["name"], c["count"]) for c in view["classes"]] == [("closed", 2), ("open", 1)]
    assert w.send("GET", f"/api/teach/samples/{second.id}.jpg").status == 200
    store.remove("closed", [first.id])
    assert [c["count"] for c in w.overview()["classes"]] == [1, 1]
    assert w.send("GET", f"/api/teach/samples/{first.id}/thumbnail.jpg").status == 404


def test_the_next_frames_are_taken_one_per_new_frame_in_the_background(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web()
    w.sink.classified(classified(1))
    stop = threading.Event()

    def camera() -> None:  # a new frame every 0.1 s, as the inference loop hands them over
        number = 1
        while not stop.wait(0.1):
            number += 1
            w.sink.classified(classified(number))

    feeder = threading.Thread(target=camera, daemon=True)
    feeder.start()
    try:
        reply = w.send("POST", "/api/teach/samples", {"class": "closed", "frames": 3})
        assert reply.status == 202, reply.body
        assert reply.json()["adding"]["of"] == 3
        again = w.send("POST", "/api/teach/samples", {"class": "open", "frames": 2})
        assert again.status == 409 and "still adding" in again.json()["error"]
        deadline = time.monotonic() + 30
        while not w.overview()["capture"]["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop.set()
        feeder.join()
    view = w.overview()
    assert view["capture"] == {
        "class": "closed",
        "done": 3,
        "of": 3,
        "finished": True,
        "error": None,
    }
    (cls,) = view["classes"]
    assert cls["count"] == 3
    # Three different frames (the blue channel carries each frame's number).
    blues = {int(decoded(w.send("GET", s["image"]).body)[..., 2].mean()) for s in cls["samples"]}
    assert len(blues) == 3


def test_without_new_frames_the_capture_stops_and_says_why(
    teach_web: Callable[..., TeachWeb], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_daemon.web import teach as teach_module

    monkeypatch.setattr(teach_module, "FRAME_WAIT", 0.5)
    w = teach_web()
    w.sink.classified(classified(1))  # the camera then stalls
    assert w.send("POST", "/api/teach/samples", {"class": "open", "frames": 4}).status == 202
    deadline = time.monotonic() + 30
    while not w.overview()["capture"]["finished"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    capture = w.overview()["capture"]
    assert capture["done"] == 1 and "no new frame" in capture["error"]
    assert "added 1 of 4" in capture["error"]


def test_an_events_snapshot_becomes_a_sample(
    teach_web: Callable[..., TeachWeb], tmp_path: Path
) -> None:
    events_dir = tmp_path / "events"
    (events_dir / "snapshots").mkdir(parents=True)
    snap = picture(3, 320, 240)
    Image.fromarray(snap).save(events_dir / "snapshots" / "3.jpg", quality=92)
    (events_dir / "snapshots" / "bad.jpg").write_bytes(b"not a jpeg")
    outside = tmp_path / "outside.jpg"
    Image.fromarray(picture(9)).save(outside)
    (events_dir / "snapshots" / "link.jpg").symlink_to(outside)
    rows = [
        {"id": 3, "rule": "door", "label": "x", "start": 1.0, "snapshot": "snapshots/3.jpg"},
        {"id": 4, "rule": "door", "label": "x", "start": 2.0, "snapshot": "snapshots/bad.jpg"},
        {"id": 5, "rule": "door", "label": "x", "start": 3.0, "snapshot": "snapshots/link.jpg"},
        {"id": 6, "rule": "door", "label": "x", "start": 4.0, "snapshot": None},
    ]
    events = StoreEvents(History(events_dir, rows), as_json, str(events_dir))
    w = teach_web(events=events)
    reply = w.send("POST", "/api/teach/samples", {"class": "open", "event": 3})
    assert reply.status == 201, reply.body
    (added,) = reply.json()["added"]
    assert added["source"] == "event"
    stored = decoded(w.send("GET", added["image"]).body)
    assert stored.shape == snap.shape and np.abs(stored.astype(int) - snap).mean() < 4

    bad = w.send("POST", "/api/teach/samples", {"class": "open", "event": 4})
    assert bad.status == 400 and "event 4" in bad.json()["error"]
    # A snapshot that leads out of events.dir is not read, as /api/events does not serve it.
    assert w.send("POST", "/api/teach/samples", {"class": "open", "event": 5}).status == 404
    assert w.send("POST", "/api/teach/samples", {"class": "open", "event": 6}).status == 404
    assert w.overview()["classes"][0]["count"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/teach/samples/..%2F..%2Fhttp-token.jpg",
        "/api/teach/samples/../../http-token.jpg",
        "/api/teach/samples/%2Fetc%2Fpasswd.jpg",
        "/api/teach/samples/nothing-like-this.jpg",
        "/api/teach/samples/x/thumbnail.jpg",
        "/api/teach/samples/" + "a" * 300 + ".jpg",
    ],
)
def test_sample_urls_name_samples_not_files(teach_web: Callable[..., TeachWeb], path: str) -> None:
    w = teach_web()
    reply = w.send("GET", path)
    assert reply.status == 404
    assert TOKEN.encode() not in reply.body and b"root:" not in reply.body


# -- train and apply --------------------------------------------------------------------------


def wait_training(w: TeachWeb, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (training := w.overview()["training"])["state"] == "running":
        assert time.monotonic() < deadline, training
        time.sleep(0.2)
    return training


def test_a_training_that_cannot_run_says_why_in_one_line(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web()
    w.sink.classified(classified(1))
    assert w.send("POST", "/api/teach/samples", {"class": "open"}).status == 201
    reply = w.send("POST", "/api/teach/train")
    assert reply.status == 202 and reply.json()["training"]["state"] == "running"
    training = wait_training(w)
    # One class of one sample: the child refuses, and its reason is what the page shows.
    assert training["state"] == "failed"
    assert "class" in training["error"] and "\n" not in training["error"]
    assert "Traceback" not in training["error"] and not training["error"].startswith("edge-daemon")
    assert not (w.root / "model.tflite").exists()
    assert w.send("POST", "/api/teach/apply").status == 409


def test_a_killed_training_leaves_no_model_and_the_server_serving(
    teach_web: Callable[..., TeachWeb],
) -> None:
    import os
    import signal

    w = teach_web()
    assert w.send("POST", "/api/teach/train").status == 202
    again = w.send("POST", "/api/teach/train")
    assert again.status == 409 and "runs already" in again.json()["error"]
    assert w.sink.teach is not None and w.sink.teach.training.pid is not None
    os.kill(w.sink.teach.training.pid, signal.SIGKILL)  # a power cut, as the child sees it
    training = wait_training(w)
    assert training["state"] == "failed" and "signal 9" in training["error"]
    assert not (w.root / "model.tflite").exists()
    assert w.request("/healthz").status == 200


def test_use_needs_a_taught_model_and_then_asks_the_daemon_to_reload(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web()
    reply = w.send("POST", "/api/teach/apply")
    assert reply.status == 409 and "train first" in reply.json()["error"]
    assert w.reloads == [] and w.overview()["apply"] is None
    w.root.mkdir()
    model = w.root / "model.tflite"
    model.write_bytes(b"a taught model")
    assert w.overview()["model"]["exists"] is True
    assert w.overview()["model"]["in_use"] is False
    reply = w.send("POST", "/api/teach/apply")
    assert reply.status == 202 and len(w.reloads) == 1
    assert w.overview()["apply"]["state"] == "pending"
    # Once the daemon runs it, the view says so.
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    w.sink.model(model_info(sha, str(model)))
    w.sink.status(status_object(reloads=1))
    view = w.overview()
    assert view["model"]["in_use"] is True and view["apply"]["state"] == "done"
    again = w.send("POST", "/api/teach/apply")
    assert again.status == 200 and len(w.reloads) == 1  # nothing to reload


def test_a_use_the_daemon_refuses_is_reported_with_its_reason(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web()
    w.root.mkdir()
    (w.root / "model.tflite").write_bytes(b"a taught model")
    assert w.send("POST", "/api/teach/apply").status == 202
    failed = "reload failed, still running base.tflite: labels.txt: 3 labels for 2 outputs"
    w.sink.status(status_object(last_error=failed, last_error_at="2026-12-02T10:00:00.000Z"))
    view = w.overview()
    assert view["apply"] == {"state": "failed", "error": failed}
    assert view["model"]["in_use"] is False and view["model"]["running"] == "base.tflite"


def test_use_with_a_config_that_runs_model_path_says_what_to_set(
    teach_web: Callable[..., TeachWeb],
) -> None:
    w = teach_web(runs_taught=False)
    w.root.mkdir()
    (w.root / "model.tflite").write_bytes(b"a taught model")
    reply = w.send("POST", "/api/teach/apply")
    assert reply.status == 409 and "teach.use: true" in reply.json()["error"]
    assert w.reloads == []


def test_methods_and_unknown_paths(teach_web: Callable[..., TeachWeb]) -> None:
    w = teach_web()
    assert w.send("POST", "/api/teach").status == 405
    assert w.send("GET", "/api/teach/train").status == 405
    assert w.send("GET", "/api/teach/samples").status == 405
    reply = w.send("PUT", "/api/teach/samples")
    assert reply.status == 405
    assert w.send("GET", "/api/teach/nothing").status == 404
    assert w.send("DELETE", "/api/status").status == 405
    assert w.send("HEAD", "/api/teach").status == 200


# -- against a running daemon ---------------------------------------------------------


HOSTILE_NAMES = [
    "../escape",
    "../../../victim",
    "/tmp/absolute",
    "a\x00b",
    "x" * 65,
    "y" * 3000,
    "",
    ".",
    "..",
    "a/b",
    "..\\..\\victim",
    "new\nline",
    " leading",
    "trailing.",
]


def test_class_names_cannot_leave_teach_dir_in_a_running_daemon(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path], tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    rules = [{"name": "birds", "labels": ["@birds"], "min_score": 0.3, "min_frames": 2}]
    d = run_daemon(
        source=frames_dir("parrot.jpg"),
        token=TOKEN,
        overrides={"events": {"rules": rules}},
    )
    root = tmp_path / "state" / "teach"

    def post(data: Any, **kw: Any) -> Reply:
        return d.request(
            "/api/teach/samples",
            "POST",
            headers={"Content-Type": "application/json", **kw.pop("headers", {})},
            body=json.dumps(data).encode(),
            **kw,
        )

    daemon_writes = (root, tmp_path / "out", tmp_path / "state" / "events")

    def outside() -> set[Path]:
        """Every file but those the daemon itself writes meanwhile (its outputs, events)."""
        return {p for p in files_under(tmp_path) if not any(w in p.parents for w in daemon_writes)}

    before = outside()
    for name in HOSTILE_NAMES:
        reply = post({"class": name})
        assert reply.status == 400, (name, reply.body)
        assert "class name" in reply.json()["error"], name
        quoted = "".join(f"%{b:02X}" for b in name.encode())
        gone = d.request(f"/api/teach/classes/{quoted}", "DELETE")
        assert gone.status in (400, 404, 414), (name, gone.body)  # 414: a URL too long
    assert outside() == before and (victim / "keep.txt").read_text() == "still here"
    assert files_under(root) == set()
    assert "Traceback" not in d.log.read_text()

    # Writes need the token and the page's own origin, in the daemon as in the sink.
    assert post({"class": "parrot"}, auth=False).status == 401
    assert post({"class": "parrot"}, headers={"Origin": "http://evil.example"}).status == 403
    assert files_under(root) == set()

    # A good name works, from the live frame and from the event the parrot made.
    live = post({"class": "parrot"})
    assert live.status == 201, live.body
    d.wait_for("an event", lambda: len(d.request("/api/events").json()) > 0)
    event = d.request("/api/events").json()[0]
    d.wait_for("its snapshot", lambda: d.request(f"/api/events/{event['id']}").json()["snapshot"])
    snap = post({"class": "Parrot", "event": event["id"]})  # the same class, whatever the case
    assert snap.status == 201, snap.body
    view = d.request("/api/teach").json()
    assert [(c["name"], c["count"]) for c in view["classes"]] == [("parrot", 2)]
    assert {s["source"] for s in view["classes"][0]["samples"]} == {"live", "event"}
    stored = {p.relative_to(root).parts[:2] for p in files_under(root)}
    assert stored == {("samples", "parrot")}
    served = d.request(view["classes"][0]["samples"][0]["thumbnail"])
    assert served.status == 200 and served.headers["content-type"] == "image/jpeg"
