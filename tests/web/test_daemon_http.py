"""The server inside a running daemon: metrics, reload, a busy port, hostile clients.

Each test runs ``edge-daemon run`` as a subprocess with its server on a free
127.0.0.1 port.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.helpers import require_tool, run_cli
from tests.web.conftest import Running
from tests.web.test_hostile import exchange
from tests.web.test_metrics import samples

pytestmark = pytest.mark.slow
TOKEN = "daemon-token-0123456789abcdef"


def test_metrics_of_a_running_daemon(run_daemon: Callable[..., Running]) -> None:
    pytest.importorskip("prometheus_client")
    promtool = require_tool("promtool", "apt install prometheus")
    d = run_daemon()
    first_text = d.request("/metrics").body.decode()
    check = subprocess.run(
        [promtool, "check", "metrics"], input=first_text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    first = samples(first_text)
    d.wait_for(
        "frames_total to grow",
        lambda: (
            samples(d.request("/metrics").body.decode())["edge_daemon_frames_total"]
            > first["edge_daemon_frames_total"]
        ),
    )
    second = samples(d.request("/metrics").body.decode())
    status = d.request("/api/status").json()
    # Both come from the status object; a status may have come between the two reads.
    assert first["edge_daemon_frames_total"] < second["edge_daemon_frames_total"]
    assert second["edge_daemon_frames_total"] <= status["frames"]
    assert second["edge_daemon_inference_seconds_count"] >= second["edge_daemon_frames_total"] - 1
    assert second['edge_daemon_state{edge_daemon_state="running"}'] == 1
    info = [k for k in second if k.startswith("edge_daemon_model_info")]
    assert len(info) == 1
    assert f'delegate="{status["delegate"]}"' in info[0]
    assert f'sha256="{status["model_sha256"]}"' in info[0]
    assert 'model="mobilenet_v1_0.25_128_quant.tflite"' in info[0]
    assert second['edge_daemon_output_state{output="http",state="ok"}'] == 1
    assert status["outputs"]["http"] == {"state": "ok", "last_error": None}


def test_a_busy_port_degrades_the_daemon_which_goes_on_classifying(
    run_daemon: Callable[..., Running],
) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        d = run_daemon(http={"listen": f"127.0.0.1:{port}"}, wait="degraded")
        status = d.status()
        assert "port is in use" in status["reason"] and f"127.0.0.1:{port}" in status["reason"]
        assert status["outputs"]["http"]["state"] == "failing"
        frames = status["frames"]
        d.wait_for("frames to keep coming", lambda: d.status()["frames"] > frames + 5)
        assert run_cli("status", "--config", str(d.config)).returncode == 1  # degraded
    finally:
        blocker.close()
    d.wait_for("running once the port is free", lambda: d.status()["state"] == "running")
    assert d.request("/healthz").status == 200
    text = d.log.read_text()
    errors = [line for line in text.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "port is in use" in errors[0]  # once, not per retry
    assert "Traceback" not in text


def test_post_reload_reloads_and_an_open_listen_without_auth_is_refused(
    run_daemon: Callable[..., Running],
) -> None:
    d = run_daemon(token=TOKEN, overrides={"model": {"top_k": 3}})
    d.wait_for("top 3", lambda: len(d.status()["predictions"]) == 3)
    data = yaml.safe_load(d.config.read_text())
    data["model"]["top_k"] = 5
    d.config.write_text(yaml.safe_dump(data))
    assert d.request("/api/reload", "POST", auth=False).status == 401
    assert d.request("/api/reload", "POST").status == 202
    d.wait_for("the reload", lambda: d.status()["reloads"] == 1)
    d.wait_for("top 5", lambda: len(d.status()["predictions"]) == 5)

    # Beyond loopback without auth: the reload is refused, the server stays as it was.
    open_port = data["http"]["listen"].rsplit(":", 1)[1]
    del data["http"]["auth"], data["http"]["token_file"]
    data["http"]["listen"] = f"0.0.0.0:{open_port}"
    d.config.write_text(yaml.safe_dump(data))
    assert d.request("/api/reload", "POST").status == 202
    d.wait_for("the refusal", lambda: "reload failed" in (d.status()["last_error"] or ""))
    status = d.status()
    assert "http.listen" in status["last_error"] and "http.auth: token" in status["last_error"]
    assert status["reloads"] == 1 and status["state"] == "running"
    assert d.request("/api/status", auth=False).status == 401  # still guarded
    assert d.request("/api/status").status == 200

    # The same config at start: refused before anything listens.
    proc = run_cli("run", "--config", str(d.config), "--max-frames", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "http.listen" in lines[0] and "Traceback" not in proc.stderr


def test_auth_in_a_running_daemon(run_daemon: Callable[..., Running]) -> None:
    d = run_daemon(token=TOKEN)
    for path in ("/", "/api/status", "/api/frame.jpg", "/metrics", "/api/events"):
        assert d.request(path, auth=False).status == 401, path
        assert d.request(path).status == 200, path
    assert d.request("/healthz", auth=False).status == 200


HOSTILE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
    b"GET /" + b"A" * 100_000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"H: v\r\n" * 500 + b"\r\n",
    b"POST /api/reload HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/reload HTTP/1.1\r\nContent-Length: 999999999999999999999\r\n\r\nx",
    b"GET /api/events/99999999999999999999999/snapshot.jpg HTTP/1.1\r\n\r\n",
    b"GET /api/events?limit=99999999999999999999 HTTP/1.1\r\n\r\n",
    b"GET /?" + b"&".join(b"a=%d" % i for i in range(500)) + b" HTTP/1.1\r\n\r\n",
    b"GET /api/stream.mjpg HTTP/1.1\r\nRange: bytes=0-\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\n\r\n",
    b"GET /%00%ff%fe HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    b"GET / HTTP/1.1\r\nAuthorization: Basic \xff\xff\xff\r\nCookie: \x00=\x01\r\n\r\n",
    b"GET / HTTP/1.1\r\nAuthorization: Bearer " + b"x" * 60_000 + b"\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
]


def test_hostile_clients_never_crash_the_daemon_or_log_a_traceback(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path]
) -> None:
    d = run_daemon(source=frames_dir("cat.bmp", "parrot.jpg"), token=TOKEN)
    for data in HOSTILE:
        reply = exchange(d.port, data, timeout=30)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 "), (data[:60], reply[:100])
    frames = d.status()["frames"]
    d.wait_for("frames to keep coming", lambda: d.status()["frames"] > frames + 5)
    assert d.request("/healthz").status == 200
    assert d.proc.poll() is None
    text = d.log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "WARNING" not in text and "ERROR" not in text, text[-3000:]


def test_two_daemons_on_one_port_the_second_reports_it(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path], tmp_path: Path
) -> None:
    first = run_daemon()
    second_status = tmp_path / "second-status.json"
    second = run_daemon(
        http={"listen": f"127.0.0.1:{first.port}"},
        overrides={
            "outputs": {
                "status_file": str(second_status),
                "prediction_log": str(tmp_path / "second.jsonl"),
            }
        },
        wait="",
        name="second.yaml",
    )
    second.status_file = second_status
    second.wait_for("the second degraded", lambda: second.status()["state"] == "degraded")
    assert "port is in use" in second.status()["reason"]
    assert first.status()["state"] == "running"
    frames = second.status()["frames"]
    second.wait_for("the second classifying", lambda: second.status()["frames"] > frames + 5)
    assert first.request("/healthz").status == 200  # the first one's server is untouched


def test_check_says_where_the_page_is(write_config: Callable[..., Path]) -> None:
    import json

    on = write_config(delegates=["cpu"], overrides={"http": {"listen": "127.0.0.1:8099"}})
    proc = run_cli("check", "--json", "--config", str(on))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["http"] == "http://127.0.0.1:8099/ (auth none)"
    off = write_config(delegates=["cpu"], name="off.yaml")
    assert json.loads(run_cli("check", "--json", "--config", str(off)).stdout)["http"] == "off"


def test_fuzzed_requests_leave_the_daemon_classifying_and_its_log_clean(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path]
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.web.test_hostile import HEADER, METHODS, PATHS, VERSIONS

    d = run_daemon(source=frames_dir("cat.bmp", "parrot.jpg"), token=TOKEN)

    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        method=METHODS,
        path=PATHS,
        version=VERSIONS,
        headers=st.lists(HEADER, max_size=10),
        body=st.binary(max_size=2000),
        authorised=st.booleans(),
    )
    def hit(
        method: str,
        path: str,
        version: str,
        headers: list[tuple[str, str]],
        body: bytes,
        authorised: bool,
    ) -> None:
        lines = [f"{method} {path} {version}".rstrip(), *(f"{k}: {v}" for k, v in headers)]
        if authorised:
            lines.append(f"Authorization: Bearer {TOKEN}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
        reply = exchange(d.port, data, timeout=30)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 "), reply[:100]

    hit()
    frames = d.status()["frames"]
    d.wait_for("frames to keep coming", lambda: d.status()["frames"] > frames + 5)
    assert d.status()["state"] == "running"
    text = d.log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "WARNING" not in text and "ERROR" not in text, text[-3000:]


def test_a_reload_that_changes_http_moves_the_server_without_an_error(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path]
) -> None:
    import signal

    from tests.web.conftest import free_port

    d = run_daemon(source=frames_dir("cat.bmp"), http={"stream_fps": 5})
    data = yaml.safe_load(d.config.read_text())
    data["http"]["stream_fps"] = 2  # same port: the new server binds once the old one let go
    d.config.write_text(yaml.safe_dump(data))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("the reload", lambda: d.status()["reloads"] == 1)
    d.wait_for("served again", lambda: d.request("/healthz").status == 200)
    assert d.status()["outputs"]["http"] == {"state": "ok", "last_error": None}

    moved = free_port()
    data["http"]["listen"] = f"127.0.0.1:{moved}"
    d.config.write_text(yaml.safe_dump(data))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("the second reload", lambda: d.status()["reloads"] == 2)
    old_port, d.port = d.port, moved
    d.wait_for("served on the new port", lambda: d.request("/healthz").status == 200)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old_port), timeout=5).close()

    data["model"]["top_k"] = 3  # a reload that leaves http alone keeps the server
    d.config.write_text(yaml.safe_dump(data))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("the third reload", lambda: d.status()["reloads"] == 3)
    assert d.request("/healthz").status == 200
    text = d.log.read_text()
    assert "ERROR" not in text and "degraded" not in text, text[-3000:]
    assert text.count("web page and API on") == 3  # start, and the two http changes


def test_events_of_a_running_daemon_through_the_api(
    run_daemon: Callable[..., Running], frames_dir: Callable[..., Path]
) -> None:
    import io

    from PIL import Image

    rules = [{"name": "birds", "labels": ["@birds"], "min_score": 0.3, "min_frames": 2}]
    d = run_daemon(
        source=frames_dir("parrot.jpg"),
        overrides={"events": {"rules": rules, "thumbnail": 64}},
    )
    d.wait_for("an event", lambda: len(d.request("/api/events").json()) >= 1)
    event = d.request("/api/events").json()[0]
    assert event["rule"] == "birds" and "macaw" in event["label"]
    assert d.request(f"/api/events/{event['id']}").json()["id"] == event["id"]
    d.wait_for(
        "its snapshot",
        lambda: d.request(f"/api/events/{event['id']}/snapshot.jpg").status == 200,
    )
    snapshot = Image.open(io.BytesIO(d.request(f"/api/events/{event['id']}/snapshot.jpg").body))
    assert snapshot.format == "JPEG"
    d.wait_for(
        "its thumbnail",
        lambda: (
            Image.open(io.BytesIO(d.request(f"/api/events/{event['id']}/thumbnail.jpg").body)).width
            == 64
        ),
    )
    assert d.request("/api/events?rule=cats").json() == []
    metrics = samples(d.request("/metrics").body.decode())
    assert metrics['edge_daemon_events_total{rule="birds"}'] >= 1
