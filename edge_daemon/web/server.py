"""The HTTP server: the standard library's threading server, hardened.

One thread per connection, at most ``max_clients`` of them (one more is
answered 503 and closed at once). Every connection has a socket timeout
(``idle_timeout``): a client that stops sending or stops reading is dropped.
A request head is limited in size and must arrive within ``idle_timeout``;
bodies are only read for POST /api/reload, and only a small one. Paths are
matched against a fixed table: no part of a URL ever becomes a file name.

The routes and what they serve live in ``Api`` (what the page and clients
see); ``Handler`` is the HTTP plumbing around it.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import logging
import os
import select
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Optional, Protocol, cast
from urllib.parse import parse_qs, urlsplit

from .auth import COOKIE, Auth
from .hosts import host_allowed, host_name, known_names

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 4096
MAX_HEAD = 16 * 1024  # request line and headers together
MAX_BODY = 4096
PING_EVERY = 15.0  # seconds between keep-alive comments on an idle event stream
BOUNDARY = "frame"

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class TooLarge(http.client.HTTPException):
    """The request head broke a limit (the handler answers 431)."""


@dataclass
class Response:
    """A whole response, sent with Content-Length."""

    code: int
    body: bytes
    content_type: str = "application/json"
    cache: str = "no-store"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(code: int, data: Any, **kw: Any) -> Response:
    text = json.dumps(data, separators=(",", ":"), default=str)
    return Response(code, text.encode() + b"\n", **kw)


def error(code: int, message: str, **kw: Any) -> Response:
    return json_response(code, {"error": message}, **kw)


class Stream(Protocol):
    """A response that goes on (event stream, live view) until the client leaves."""

    content_type: str

    def parts(self, closing: threading.Event, gone: Callable[[], bool]) -> Iterator[bytes]:
        """The stream's chunks; stop when ``closing`` is set or ``gone()`` (client left)."""
        ...


class Api(Protocol):
    """What the server asks of the application behind it."""

    @property
    def auth(self) -> Auth: ...

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> Response | Stream:
        """The answer to an authorised request (GET, HEAD or POST)."""
        ...

    def healthz(self) -> Response: ...


class _HeadReader:
    """The connection's input, with a byte and time budget for each request head."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.budget = MAX_HEAD
        self.deadline = float("inf")

    def start(self, seconds: float) -> None:
        self.budget = MAX_HEAD
        self.deadline = time.monotonic() + seconds

    def readline(self, limit: int = -1) -> bytes:
        if time.monotonic() > self.deadline:
            raise TooLarge("request head too slow")
        cap = self.budget + 1 if limit < 0 else min(limit, self.budget + 1)
        line = self.raw.readline(cap)
        self.budget -= len(line)
        if self.budget < 0:
            raise TooLarge("request head too large")
        return line

    def read(self, n: int) -> bytes:
        return self.raw.read(n)

    def close(self) -> None:
        self.raw.close()


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection: requests in turn (keep-alive), or one stream until it ends."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart
    server_version = "edge-daemon"
    sys_version = ""
    server: Server

    def setup(self) -> None:
        self.connection = self.request
        self.connection.settimeout(self.server.idle_timeout)
        super().setup()
        self.rfile = cast(Any, _HeadReader(cast(BinaryIO, self.rfile)))

    def version_string(self) -> str:
        return "edge-daemon"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.client_address[0], *args)

    # -- the request cycle ---------------------------------------------------------
    def handle_one_request(self) -> None:
        reader = cast(_HeadReader, self.rfile)
        reader.start(self.server.idle_timeout)
        self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""
        try:
            self.raw_requestline = reader.readline(MAX_REQUEST_LINE + 1)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.send_error(414, "request line too long")
                return
            if not self.parse_request():
                return  # parse_request answered (400, 431, 505 ...)
            if self.request_version == "HTTP/0.9":
                self.send_error(400, "HTTP/0.9 is not supported")
                return
            self._answer()
        except TooLarge as exc:
            self.send_error(431, str(exc))
        except (OSError, ValueError):
            # Timed out, reset, or a write to a closed socket: nothing to answer.
            self.close_connection = True

    def _answer(self) -> None:
        method = self.command
        host = self.headers.get("Host")
        if not host_allowed(host, self.server.known_names):
            self._send(
                error(
                    403,
                    f"this server does not answer for the host {host_name(host or '')[:100]!r};"
                    " add it to http.allowed_hosts",
                )
            )
            return
        if method not in ("GET", "HEAD", "POST"):
            self._send(error(405, f"method {method[:20]} not allowed"), allow=True)
            return
        has_body = self.headers.get("Content-Length") not in (None, "0") or (
            "Transfer-Encoding" in self.headers
        )
        if has_body:
            self.close_connection = True  # bodies are not read: never parse one as a request
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/healthz":
            self._send(self.server.api.healthz())
            return
        try:
            query = parse_qs(parts.query, max_num_fields=8)
        except ValueError:
            self._send(error(400, "too many query parameters"))
            return
        api = self.server.api
        if api.auth.required and not api.auth.check(
            self.headers.get("Authorization"), self.headers.get("Cookie")
        ):
            token = query.get("token", [""])[0]
            if method == "GET" and path == "/" and token and api.auth.token_ok(token):
                self._send(_login(token))
            else:
                self._send(_unauthorised(api.auth))
            return
        if method == "POST":
            refused = self._post_checks(has_body)
            if refused is not None:
                self._send(refused)
                return
        try:
            answer = api.route(method, path, query)
        except Exception as exc:  # a bug must cost one request, not the server
            log.warning("http: %s %s failed: %s: %s", method, path[:100], type(exc).__name__, exc)
            answer = error(500, "internal error; see the daemon's log")
        if isinstance(answer, Response):
            self._send(answer)
        else:
            self._stream(answer)

    def _post_checks(self, has_body: bool) -> Optional[Response]:
        origin = self.headers.get("Origin")
        host = self.headers.get("Host")
        if origin is not None and (host is None or urlsplit(origin).netloc != host):
            return error(403, "cross-origin requests are refused")
        length = self.headers.get("Content-Length")
        if "Transfer-Encoding" in self.headers:
            return error(411, "send a Content-Length, not a chunked body")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY:
                return error(413, f"the body must be at most {MAX_BODY} bytes")
            self.rfile.read(int(length))
            if has_body:
                self.close_connection = False  # read whole: the connection stays usable
        return None

    # -- sending -------------------------------------------------------------------
    def _headers(self, cache: str) -> None:
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)

    def _send(self, response: Response, *, allow: bool = False) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self._headers(response.cache)
        if allow:
            self.send_header("Allow", "GET, HEAD, POST")
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _stream(self, stream: Stream) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", stream.content_type)
        self._headers("no-store")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        if self.command == "HEAD":
            return
        for part in stream.parts(self.server.closing, self._gone):
            self.wfile.write(part)

    def _gone(self) -> bool:
        """Whether the client of a stream hung up (it sends nothing more, so EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Any = None) -> None:
        """Every error as a short JSON body with the usual headers (parse errors too)."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # an unparsable line: still answer with headers
        text = message or http.HTTPStatus(code).phrase
        with contextlib.suppress(OSError):
            self._send(error(code, text[:200]))


def _unauthorised(auth: Auth) -> Response:
    challenge = auth.challenge()
    headers = (("WWW-Authenticate", challenge),) if challenge else ()
    hint = (
        "send Authorization: Bearer TOKEN (a browser: open /?token=TOKEN once)"
        if auth.mode == "token"
        else "log in with a user from http.users_file"
    )
    return error(401, f"authentication required: {hint}", headers=headers)


def _login(token: str) -> Response:
    """A valid ?token= on the page: keep it in a cookie and drop it from the address bar."""
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"
    return Response(
        303,
        b"",
        content_type="text/plain",
        headers=(("Location", "/"), ("Set-Cookie", cookie)),
    )


_BUSY_BODY = b'{"error":"too many clients; try again later or raise http.max_clients"}\n'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"
    b"Retry-After: 5\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threading HTTP server that caps its connections and can be closed at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(
        self,
        host: str,
        port: int,
        api: Api,
        *,
        max_clients: int,
        idle_timeout: float,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.known_names = known_names(allowed_hosts)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.api = api
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.refused = 0
        # serve_forever sleeps in select() on the listening socket and this pipe;
        # close() writes to the pipe, so stopping takes no polling interval.
        self._wake_r, self._wake_w = os.pipe()
        self._served = threading.Event()
        self._served.set()
        super().__init__((host, port), Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Not HTTPServer's: it looks the address up in DNS (socket.getfqdn), which
        # can hold the start for seconds where DNS is slow or not allowed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def clients(self) -> int:
        return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._open) >= self.max_clients or self.closing.is_set()
            if not full:
                self._open.add(request)
        if full:
            self.refused += 1
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        log.warning("http: a request from %s failed: %r", client_address[0], exc)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until ``close()``; woken at once by it (no poll)."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self.closing.is_set():
                    ready = selector.select()
                    if self.closing.is_set():
                        break
                    if any(key.fileobj is self for key, _ in ready):
                        cast(Any, self)._handle_request_noblock()  # accept and dispatch one
                    self.service_actions()
        finally:
            self._served.set()

    def close(self) -> None:
        """Stop accepting, end every stream and connection, free the port."""
        self.closing.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._served.wait()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.server_close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def serve(server: Server) -> threading.Thread:
    """Run ``server`` on a daemon thread."""
    server._served.clear()  # close() now waits for serve_forever to return
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
