"""The API and the page, against the ``http`` sink fed by hand (no daemon)."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from PIL import Image

from edge_daemon.web.app import read_inside
from tests.web.conftest import Web, frame, status_object

ENDPOINTS = [
    "/",
    "/assets/app.js",
    "/assets/style.css",
    "/api/status",
    "/api/frame.jpg",
    "/api/events",
    "/api/events/1",
    "/api/events/1/snapshot.jpg",
    "/metrics",
    "/healthz",
    "/nope",
]


def fed(web: Web) -> Web:
    web.sink.classified(frame(1))
    web.sink.status(status_object())
    return web


class FolderEvents:
    """An events store stand-in: events in a dict, snapshots in a folder."""

    def __init__(self, folder: Path, events: dict[int, dict[str, Any]], files: dict[int, Path]):
        self.root, self.events, self.files = folder, events, files

    def list(
        self,
        *,
        limit: int,
        offset: int = 0,
        rule: Optional[str] = None,
        label: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        found = [self.events[i] for i in sorted(self.events, reverse=True)]
        found = [e for e in found if rule is None or e["rule"] == rule]
        return found[offset : offset + limit]

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        return self.events.get(event_id)

    def snapshot(self, event_id: int, *, thumbnail: bool = False) -> Optional[Path]:
        return self.files.get(event_id)

    def folder(self) -> Optional[Path]:
        return self.root


def test_healthz_follows_the_status_rule(web: Callable[..., Web]) -> None:
    w = web()
    assert w.request("/healthz").status == 503  # no status yet
    w.sink.status(status_object("running"))
    reply = w.request("/healthz")
    assert (reply.status, reply.json()) == (200, {"health": "running"})
    w.sink.status(status_object("degraded", reason="no frame for 12 s from camera 0"))
    assert w.request("/healthz").status == 503
    w.sink.status(status_object("running", age=3600))  # the loop stopped publishing
    reply = w.request("/healthz")
    assert (reply.status, reply.json()) == (503, {"health": "stale"})


def test_status_is_the_daemons_status_object(web: Callable[..., Web]) -> None:
    w = web()
    assert w.request("/api/status").status == 503
    status = status_object(frames=1234)
    w.sink.status(status)
    reply = w.request("/api/status")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == status


def test_every_response_sets_cache_control_and_nosniff_and_no_cors(
    web: Callable[..., Web],
) -> None:
    w = fed(web())
    for path in ENDPOINTS:
        for method in ("GET", "HEAD", "DELETE"):
            reply = w.request(path, method, headers={"Origin": "http://evil.example"})
            assert reply.headers.get("cache-control"), (method, path)
            assert reply.headers.get("x-content-type-options") == "nosniff", (method, path)
            assert not any(k.startswith("access-control-") for k in reply.headers), (method, path)
            assert reply.headers.get("server") == "edge-daemon"


def test_frame_jpg_is_the_latest_frame_encoded_once_for_many_clients(
    web: Callable[..., Web],
) -> None:
    w = web(stream_fps=30)
    assert w.request("/api/frame.jpg").status == 404  # nothing classified yet
    w.sink.classified(frame(1, shade=40))
    replies: list[Any] = []
    threads = [
        threading.Thread(target=lambda: replies.append(w.request("/api/frame.jpg")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in replies] == [200] * 8
    assert len({r.body for r in replies}) == 1
    assert w.sink.frames.encodes == 1
    image = Image.open(io.BytesIO(replies[0].body))
    assert (image.format, image.size) == ("JPEG", (64, 48))
    assert abs(image.convert("L").getpixel((10, 10)) - 40) < 8

    time.sleep(1 / 30 + 0.01)  # past the encoding cap
    w.sink.classified(frame(2, shade=220))
    reply = w.request("/api/frame.jpg")
    assert reply.headers["x-frame"] == "2"
    assert abs(Image.open(io.BytesIO(reply.body)).convert("L").getpixel((10, 10)) - 220) < 8


def read_part(f: Any) -> tuple[dict[str, str], bytes]:
    """One part of a multipart/x-mixed-replace stream."""
    assert f.readline() == b"--frame\r\n"
    headers = {}
    while (line := f.readline()) != b"\r\n":
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    body = f.read(int(headers["content-length"]))
    assert f.readline() == b"\r\n"
    return headers, body


def test_live_view_streams_new_frames_and_encodes_only_while_watched(
    web: Callable[..., Web],
) -> None:
    w = web(stream_fps=20)
    for n in range(1, 6):
        w.sink.classified(frame(n))
    assert w.sink.frames.encodes == 0  # nobody watches: nothing encoded

    sock = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    sock.sendall(b"GET /api/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    head = {}
    while (line := f.readline()) != b"\r\n":
        key, _, value = line.decode().partition(":")
        head[key.lower()] = value.strip()
    assert head["content-type"] == "multipart/x-mixed-replace; boundary=frame"
    headers, body = read_part(f)
    assert headers["content-type"] == "image/jpeg" and headers["x-frame"] == "5"
    assert Image.open(io.BytesIO(body)).size == (64, 48)
    w.sink.classified(frame(6, shade=10))
    headers, body = read_part(f)
    assert headers["x-frame"] == "6"
    f.close()
    sock.close()

    deadline = time.monotonic() + 10
    while w.sink.server is not None and w.sink.server.clients:
        assert time.monotonic() < deadline, "the stream's thread did not notice the client left"
        time.sleep(0.05)
    encoded = w.sink.frames.encodes
    for n in range(7, 20):
        w.sink.classified(frame(n))
    time.sleep(0.3)
    assert w.sink.frames.encodes == encoded  # the watcher left: encoding stopped


def test_predictions_stream_one_event_per_new_prediction(web: Callable[..., Web]) -> None:
    import json

    w = web(stream_fps=20)
    sock = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    sock.sendall(b"GET /api/predictions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    while (line := f.readline()) != b"\r\n":
        if line.lower().startswith(b"content-type:"):
            assert b"text/event-stream" in line
    assert f.readline() == b"retry: 2000\n" and f.readline() == b"\n"

    def event() -> dict[str, Any]:
        lines = []
        while (line := f.readline()) != b"\n":
            lines.append(line.decode())
        data = "".join(x[6:] for x in lines if x.startswith("data: "))
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    w.sink.classified(frame(1, label="tabby, tabby cat"))
    first = event()
    assert first["frame"] == 1 and first["predictions"][0]["label"] == "tabby, tabby cat"
    w.sink.classified(frame(2, label="macaw"))
    second = event()
    assert second["frame"] == 2 and second["predictions"][0]["label"] == "macaw"
    f.close()
    f.close()
    sock.close()


def test_events_are_empty_until_a_store_is_plugged_in(web: Callable[..., Web]) -> None:
    w = fed(web())
    assert (w.request("/api/events").status, w.request("/api/events").json()) == (200, [])
    assert w.request("/api/events/7").status == 404
    assert w.request("/api/events/7/snapshot.jpg").status == 404
    assert w.request("/api/events/7/thumbnail.jpg").status == 404
    assert w.request("/api/events?limit=0").status == 400
    assert w.request("/api/events?offset=-1").status == 400
    assert w.request("/api/events?limit=x").status == 400


def test_events_and_snapshots_from_the_store(web: Callable[..., Web], tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(jpeg, "JPEG")
    (folder / "1.jpg").write_bytes(jpeg.getvalue())
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (folder / "2.jpg").symlink_to(secret)
    events = {
        i: {
            "id": i,
            "rule": "cats" if i != 3 else "birds",
            "label": "tabby, tabby cat",
            "score": 0.9,
            "snapshot": f"{i}.jpg",
        }
        for i in (1, 2, 3, 4)
    }
    files = {1: folder / "1.jpg", 2: folder / "2.jpg", 3: folder / ".." / "secret.txt", 4: folder}
    w = web(events=FolderEvents(folder, events, files))
    assert [e["id"] for e in w.request("/api/events").json()] == [4, 3, 2, 1]
    assert [e["id"] for e in w.request("/api/events?limit=2&offset=1").json()] == [3, 2]
    assert [e["id"] for e in w.request("/api/events?rule=birds").json()] == [3]
    assert w.request("/api/events/3").json() == events[3]
    reply = w.request("/api/events/1/snapshot.jpg")
    assert (reply.status, reply.headers["content-type"], reply.body) == (
        200,
        "image/jpeg",
        jpeg.getvalue(),
    )
    for bad in (2, 3, 4):  # a link out, a path out, the folder itself
        reply = w.request(f"/api/events/{bad}/snapshot.jpg")
        assert reply.status == 404 and b"do not serve" not in reply.body


TRAVERSALS = [
    "/../../../../etc/passwd",
    "/assets/../../../../etc/passwd",
    "/assets/..%2f..%2f..%2fetc%2fpasswd",
    "/assets/%2e%2e/%2e%2e/etc/passwd",
    "/api/events/1/../../../../etc/passwd",
    "/api/events/1/snapshot.jpg/../../../../../etc/passwd",
    "/api/events/..%2f..%2fetc%2fpasswd/snapshot.jpg",
    "//etc/passwd",
    "/assets//etc/passwd",
    "/assets/app.js%00.png",
    "/assets/__init__.py",
    "/assets/../sink.py",
    "/assets/../../config.py",
    "/static/../../../etc/passwd",
    "/..\\..\\..\\etc\\passwd",
    "http://127.0.0.1/../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_escapes_the_assets_or_the_events_folder(
    path: str, web: Callable[..., Web], tmp_path: Path
) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    w = web(events=FolderEvents(folder, {}, {}))
    sock = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert data.startswith((b"HTTP/1.1 404", b"HTTP/1.1 400")), data[:100]
    assert b"root:" not in data and b"import" not in data


def test_read_inside_refuses_what_is_not_a_file_in_the_folder(tmp_path: Path) -> None:
    inside = tmp_path / "events"
    inside.mkdir()
    (inside / "a.jpg").write_bytes(b"jpeg")
    (inside / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(inside / "fifo")
    (inside / "out").symlink_to("/etc/hostname")
    assert read_inside(inside / "a.jpg", inside) == b"jpeg"
    assert read_inside(inside / "fifo", inside) is None  # never blocks on a pipe
    assert read_inside(inside / "out", inside) is None
    assert read_inside(inside / ".." / "events" / "a.jpg", inside) == b"jpeg"
    assert read_inside(inside / "missing.jpg", inside) is None
    assert read_inside(Path("/etc/hostname"), inside) is None


def test_the_page_and_its_assets_come_from_the_package(web: Callable[..., Web]) -> None:
    w = web()
    page = w.request("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    text = page.body.decode()
    assert "/assets/app.js" in text and "/api/stream.mjpg" in text
    assert "http://" not in text and "https://" not in text  # nothing from a CDN
    for asset in ("/assets/app.js", "/assets/style.css"):
        assert w.request(asset).status == 200
        assert b"https://" not in w.request(asset).body


def test_unknown_methods_and_paths(web: Callable[..., Web]) -> None:
    w = fed(web())
    assert w.request("/api/status", "DELETE").status == 405
    assert w.request("/api/status", "PUT", body=b"x").status == 405
    assert w.request("/api/status", "POST").status == 405
    assert w.request("/api/reload").status == 405
    assert w.request("/nope").status == 404
    assert w.request("/api/status", "HEAD").body == b""


def test_reload_needs_auth_whatever_listen_is(web: Callable[..., Web]) -> None:
    w = fed(web())
    reply = w.request("/api/reload", "POST")
    assert reply.status == 403 and "http.auth" in reply.json()["error"]
    assert w.reloads == []


def test_a_busy_port_is_one_clear_failing_health_and_is_retried(
    web: Callable[..., Web], monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_daemon.web.sink as sink_module

    monkeypatch.setattr(sink_module, "RETRY_INITIAL", 0.05)
    first = web()
    second = web(listen=f"127.0.0.1:{first.port}")
    health = second.sink.health()
    assert health.state == "failing"
    assert health.error is not None and "port is in use" in health.error
    assert f"127.0.0.1:{first.port}" in health.error and "\n" not in health.error
    first.sink.close()
    deadline = time.monotonic() + 20
    while second.sink.health().state != "ok":
        assert time.monotonic() < deadline, second.sink.health()
        time.sleep(0.05)
    second.sink.status(status_object())
    assert second.request("/api/status").status == 200


def test_close_ends_streams_and_frees_the_port(web: Callable[..., Web]) -> None:
    w = web()
    port = w.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /api/predictions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    w.sink.close()
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):  # ends (EOF) instead of hanging
        data += chunk
    sock.close()
    again = web(listen=f"127.0.0.1:{port}")
    assert again.sink.health().state == "ok"


def test_without_prometheus_client_the_page_works_and_metrics_says_what_to_install(
    web: Callable[..., Web], monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_daemon.web.sink as sink_module

    monkeypatch.setattr(sink_module, "_have_prometheus", lambda: False)
    w = fed(web())
    reply = w.request("/metrics")
    assert reply.status == 503 and "edge-daemon[web]" in reply.json()["error"]
    assert w.request("/api/status").status == 200
    assert w.sink.health().state == "ok"


def test_a_large_frame_is_shrunk_for_the_page(web: Callable[..., Web]) -> None:
    import numpy as np

    from edge_daemon.sinks.base import Classified

    w = web()
    image = np.zeros((1080, 1920, 3), np.uint8)
    image[:, 960:] = 255
    w.sink.classified(Classified(1, "big", time.time(), image, [], [], 1.0))
    picture = Image.open(io.BytesIO(w.request("/api/frame.jpg").body))
    assert picture.size == (640, 360)  # a whole factor (3), aspect kept
    assert picture.convert("L").getpixel((600, 100)) > 240
    assert picture.convert("L").getpixel((40, 100)) < 15
