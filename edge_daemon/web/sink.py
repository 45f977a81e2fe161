"""The ``http`` sink: keeps the latest frame and status, and runs the server.

The inference thread only stores what it is handed (``classified`` and
``status`` are a few assignments and counter increments); the server's own
threads do the rest. When the port cannot be bound (another daemon has it)
the sink reports ``failing`` with one clear reason, which turns the daemon
``degraded`` while classification goes on, and keeps trying in the
background.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any, Optional

from ..config import HttpConfig, is_loopback, parse_listen
from ..sinks.base import Classified, ModelInfo, Sink, SinkContext, SinkHealth, Skipped
from ..status import status_verdict
from .app import NO_METRICS, State, WebApp
from .auth import load_auth
from .events import EventsQuery, NoEvents, events_query
from .live import LiveFrames
from .metrics import DaemonCollector, Tally, make_registry, render
from .server import Server, serve

log = logging.getLogger(__name__)

RETRY_INITIAL, RETRY_MAX = 2.0, 30.0


def _have_prometheus() -> bool:
    import importlib.util

    return importlib.util.find_spec("prometheus_client") is not None


def _bind_error(listen: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"http.listen {listen}: the port is in use (another edge-daemon or program listens"
            " there); choose another port in http.listen or stop the other one"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"http.listen {listen}: no interface has that address; fix http.listen"
    if exc.errno == errno.EACCES:
        return f"http.listen {listen}: not allowed to bind that port; choose one above 1023"
    return f"http.listen {listen}: cannot listen ({exc.strerror or exc}); fix http.listen"


class HttpSink(Sink):
    """The web page, the HTTP API and /metrics, as one output of the daemon.

    The port is bound by ``start()``, which the first ``model()`` or
    ``status()`` call makes: on a reload the daemon builds the new sink
    before it closes the old one, which still holds the port until then.
    """

    name = "http"
    recovered = "http: listening again"

    def __init__(
        self,
        cfg: HttpConfig,
        ctx: Optional[SinkContext] = None,
        *,
        events: Optional[EventsQuery] = None,
    ) -> None:
        assert cfg.listen is not None

        self.cfg = cfg
        self.host, self.port = parse_listen(cfg.listen)
        auth = load_auth(cfg.auth, cfg.token_file, cfg.users_file)
        if cfg.auth == "none" and not is_loopback(self.host):
            log.warning(
                "http.listen %s with auth: none: anyone who can reach this port sees the"
                " camera; set http.auth to token or basic to require a password",
                cfg.listen,
            )
        self.frames = LiveFrames(cfg.stream_fps)
        self.tally = Tally()
        self.model_info: Optional[ModelInfo] = None
        self.state = State(
            frames=self.frames,
            auth=auth,
            events=events or NoEvents(),
            request_reload=(ctx or SinkContext()).request_reload,
            verdict=status_verdict,
        )
        if _have_prometheus():
            self.state.metrics = self._render_metrics
        else:
            log.warning("http: %s; the page and the API work without it", NO_METRICS)
        self._registry: Any = None
        self.app = WebApp(self.state)
        self.server: Optional[Server] = None
        self._error: Optional[str] = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._started = False

    # -- binding -------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve; when the port cannot be had, report failing and keep trying."""
        if self._started or self._closed.is_set():
            return
        self._started = True
        if not self._try_bind():
            threading.Thread(target=self._keep_trying, name="http-bind", daemon=True).start()

    def _try_bind(self) -> bool:
        try:
            server = Server(
                self.host,
                self.port,
                self.app,
                max_clients=self.cfg.max_clients,
                idle_timeout=self.cfg.idle_timeout,
                allowed_hosts=self.cfg.allowed_hosts or (),
            )
        except OSError as exc:
            self._error = _bind_error(str(self.cfg.listen), exc)
            return False
        with self._lock:
            if self._closed.is_set():  # closed while binding: let the port go
                server.server_close()
                return True
            self.server = server
            serve(server)
        self._error = None
        host, port = str(server.server_address[0]), int(server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        log.info("web page and API on http://%s:%d/ (metrics at /metrics)", shown, port)
        return True

    def _keep_trying(self) -> None:
        delay = RETRY_INITIAL
        while not self._closed.wait(delay):
            if self._try_bind():
                return
            delay = min(delay * 2, RETRY_MAX)

    @property
    def address(self) -> Optional[tuple[str, int]]:
        """(host, port) actually listened on (port 0 in the config picks one), or None."""
        if self.server is None:
            return None
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def _render_metrics(self) -> tuple[bytes, str]:
        """The exposition text; prometheus_client is imported at the first scrape only."""
        if self._registry is None:
            collector = DaemonCollector(lambda: self.state.status, self.tally, self._extra)
            self._registry = make_registry(collector)
        return render(self._registry)

    def _extra(self) -> dict[str, float]:
        server = self.server
        return {
            "edge_daemon_http_clients": float(server.clients if server else 0),
            "edge_daemon_http_refused": float(server.refused if server else 0),
            "edge_daemon_jpeg_encodes": float(self.frames.encodes),
        }

    # -- the seam ------------------------------------------------------------------
    def model(self, info: ModelInfo) -> None:
        self.model_info = info
        self.start()

    def classified(self, item: Classified) -> None:
        self.frames.offer(item)
        self.tally.frame(item)

    def skipped(self, item: Skipped) -> None:
        self.frames.offer_skipped(item)

    def status(self, status: dict[str, Any], *, urgent: bool = False) -> None:
        self.tally.status(status)
        self.state.status = status
        self.start()

    def health(self) -> SinkHealth:
        error = self._error
        return SinkHealth("failing", error) if error else SinkHealth("ok")

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            server, self.server = self.server, None
        if server is not None:
            try:
                server.close()
            except Exception as exc:  # close never raises
                log.debug("http: closing the server: %s", exc)


def make_http_sink(cfg: Any, ctx: SinkContext) -> Optional[HttpSink]:
    """The registry's factory: None when http.listen is null.

    The event history comes from the events store's folder in ``cfg``.
    """
    http: HttpConfig = cfg.http
    if http.listen is None:
        return None
    return HttpSink(http, ctx, events=events_query(cfg))
