"""Fixtures for the web tests: an ``http`` sink on a free loopback port, fed by hand."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest

from edge_daemon.config import HttpConfig
from edge_daemon.postprocess import Prediction
from edge_daemon.sinks.base import Classified, EventNotice, SinkContext
from edge_daemon.sinks.prediction_log import iso_utc
from edge_daemon.web.sink import HttpSink
from tests.helpers import IMAGES, MODELS, REPO, shared_file


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_object(
    state: str = "running",
    *,
    frames: int = 10,
    label: str = "tabby, tabby cat",
    score: float = 0.8,
    age: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    """A status object as the daemon writes it."""
    now = time.time()
    return {
        "state": state,
        "reason": extra.pop("reason", None),
        "pid": os.getpid(),
        "started": iso_utc(now - 60),
        "updated": iso_utc(now - age),
        "config": None,
        "model": "/models/mobilenet_v1_1.0_224_quant.tflite",
        "model_sha256": "0" * 64,
        "labels": "/models/labels.txt",
        "input": {"width": 224, "height": 224, "dtype": "uint8"},
        "runtime": "ai_edge_litert 2.3.0",
        "delegate": "xnnpack",
        "source": "files /frames",
        "frames": frames,
        "fps": 9.5,
        "latency_ms": {
            "capture": 1.0,
            "preprocess": 2.0,
            "inference": 11.0,
            "postprocess": 0.5,
            "total": 14.5,
        },
        "predictions": [{"label": label, "index": 282, "score": score}],
        "reloads": 0,
        "status_interval": 1.0,
        "last_error": None,
        "last_error_at": None,
        **extra,
    }


def frame(
    number: int,
    *,
    label: str = "tabby, tabby cat",
    shade: int = 128,
    inference_ms: float = 12.0,
    events: tuple[EventNotice, ...] = (),
) -> Classified:
    """A classified 64x48 frame of one grey ``shade``."""
    image = np.full((48, 64, 3), shade, np.uint8)
    preds = [Prediction(label, 282, 0.8), Prediction("tiger cat", 283, 0.1)]
    return Classified(
        number, f"f{number}.png", time.time(), image, preds, preds, inference_ms, events
    )


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Web:
    """A running sink and a small client for it."""

    sink: HttpSink
    reloads: list[float] = field(default_factory=list)

    @property
    def port(self) -> int:
        address = self.sink.address
        assert address is not None
        return address[1]

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: Optional[dict[str, str]] = None,
        body: Optional[bytes] = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()


@pytest.fixture
def web() -> Iterator[Callable[..., Web]]:
    """``web(**http_config)``: an HttpSink on a free loopback port, closed at the end."""
    made: list[HttpSink] = []

    def make(events: Any = None, **cfg: Any) -> Web:
        reloads: list[float] = []
        ctx = SinkContext(request_reload=lambda: reloads.append(time.time()))
        settings = {"listen": "127.0.0.1:0", **cfg}
        sink = HttpSink(HttpConfig(**settings), ctx, events=events)
        made.append(sink)
        sink.start()
        return Web(sink, reloads)

    yield make
    for sink in made:
        sink.close()


# -- a real daemon with its server on a free loopback port ---------------------------------------


@dataclass
class Running:
    """A daemon subprocess with its server on ``port``; its stderr goes to ``log``."""

    proc: subprocess.Popen[bytes]
    config: Path
    port: int
    log: Path
    status_file: Path
    token: Optional[str] = None

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: Optional[dict[str, str]] = None,
        body: Optional[bytes] = None,
        *,
        auth: bool = True,
    ) -> Reply:
        all_headers = dict(headers or {})
        if auth and self.token:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.status_file.read_text())
        return data

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                pass
            assert self.proc.poll() is None, f"the daemon exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{what}: {self.log.read_text()[-2000:]}"
            time.sleep(0.1)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def daemon_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(key, None)
    return env


@pytest.fixture
def frames_dir(tmp_path: Path) -> Callable[..., Path]:
    """``frames_dir("cat.bmp", name="a")``: a folder holding copies of shared images."""

    def make(*images: str, name: str = "frames") -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        for image in images:
            shutil.copyfile(shared_file(IMAGES / image), folder / image)
        return folder

    return make


@pytest.fixture
def run_daemon(
    write_config: Callable[..., Path], tmp_path: Path
) -> Iterator[Callable[..., Running]]:
    """``run_daemon(source=..., http={...}, token=...)``: a daemon serving on a free port."""
    started: list[Running] = []

    def start(
        source: Optional[Path] = None,
        http: Optional[dict[str, Any]] = None,
        token: Optional[str] = None,
        overrides: Optional[dict[str, Any]] = None,
        wait: str = "running",
        name: str = "config.yaml",
    ) -> Running:
        port = free_port()
        settings: dict[str, Any] = {"listen": f"127.0.0.1:{port}"}
        if token is not None:
            token_file = tmp_path / "http-token"
            token_file.write_text(token + "\n")
            settings.update(auth="token", token_file=str(token_file))
        settings.update(http or {})
        extra = {
            "source": {"loop": True, "fps": 20},
            "outputs": {"status_interval": 0.2},
            "http": settings,
        }
        for key, value in (overrides or {}).items():
            extra[key] = {**extra.get(key, {}), **value}
        config = write_config(
            model=str(shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite")),
            source=str(source) if source else None,
            delegates=["cpu"],
            overrides=extra,
            name=name,
        )
        log = tmp_path / f"{name}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
                env=daemon_env(),
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        port = int(str(settings["listen"]).rsplit(":", 1)[1])
        run = Running(proc, config, port, log, tmp_path / "out" / "status.json", token)
        started.append(run)
        if wait:
            # "running" is written before the first frame is classified: wait for one.
            run.wait_for(
                f"daemon {wait}",
                lambda: run.status()["state"] == wait and run.status()["frames"] > 0,
            )
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(30)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
