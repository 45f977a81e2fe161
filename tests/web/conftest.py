"""Fixtures for the web tests: an ``http`` sink on a free loopback port, fed by hand."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pytest

from edge_daemon.config import HttpConfig
from edge_daemon.postprocess import Prediction
from edge_daemon.sinks.base import Classified, EventNotice, SinkContext
from edge_daemon.sinks.prediction_log import iso_utc
from edge_daemon.web.sink import HttpSink


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
