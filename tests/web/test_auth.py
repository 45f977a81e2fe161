"""Who gets in: bearer tokens, basic users, the token cookie, and the config's guard."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Callable

import pytest

from edge_daemon.config import parse_config
from edge_daemon.errors import ConfigError
from edge_daemon.web.auth import load_auth
from tests.web.conftest import Web, frame, status_object

TOKEN = "s3cret-token-0123456789abcdef"
PROTECTED = [
    ("GET", "/"),
    ("GET", "/assets/app.js"),
    ("GET", "/api/status"),
    ("GET", "/api/frame.jpg"),
    ("GET", "/api/events"),
    ("GET", "/api/events/1"),
    ("GET", "/api/events/1/snapshot.jpg"),
    ("GET", "/metrics"),
    ("POST", "/api/reload"),
    ("GET", "/nope"),
]


@pytest.fixture
def token_web(web: Callable[..., Web], tmp_path: Path) -> Web:
    token_file = tmp_path / "http-token"
    token_file.write_text(TOKEN + "\n")
    w = web(auth="token", token_file=str(token_file))
    w.sink.classified(frame(1))
    w.sink.status(status_object())
    return w


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_token_auth_guards_everything_but_healthz(token_web: Web, method: str, path: str) -> None:
    w = token_web
    reply = w.request(path, method)
    assert reply.status == 401, (method, path)
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert b"Authorization: Bearer" in reply.body  # says what to do
    wrong = w.request(path, method, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert wrong.status == 401
    right = w.request(path, method, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status != 401
    if path not in ("/nope", "/api/events/1", "/api/events/1/snapshot.jpg", "/api/reload"):
        assert right.status == 200, (method, path)


def test_healthz_needs_no_token(token_web: Web) -> None:
    assert token_web.request("/healthz").status == 200


def test_reload_with_a_token_asks_the_daemon_to_reload(token_web: Web) -> None:
    w = token_web
    reply = w.request("/api/reload", "POST", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (reply.status, reply.json()) == (202, {"reload": "requested"})
    assert len(w.reloads) == 1
    # A page on another site cannot make a logged-in browser reload the daemon.
    evil = w.request(
        "/api/reload",
        "POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"},
    )
    assert evil.status == 403 and len(w.reloads) == 1
    big = w.request(
        "/api/reload", "POST", headers={"Authorization": f"Bearer {TOKEN}"}, body=b"x" * 10_000
    )
    assert big.status == 413 and len(w.reloads) == 1


def test_a_browser_logs_in_once_with_token_in_the_address(token_web: Web) -> None:
    w = token_web
    assert w.request("/?token=wrong-token-0123456789").status == 401
    login = w.request(f"/?token={TOKEN}")
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";")[0]
    assert w.request("/api/status", headers={"Cookie": jar}).status == 200
    assert w.request("/api/status", headers={"Cookie": jar[:-1]}).status == 401
    # The token in a query string opens nothing but the login redirect.
    assert w.request(f"/api/status?token={TOKEN}").status == 401


def test_basic_auth(web: Callable[..., Web], tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# viewers\nalice:wonder land\nbob:builder\n")
    w = web(auth="basic", users_file=str(users))
    w.sink.status(status_object())

    def basic(user: str, password: str) -> dict[str, str]:
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    reply = w.request("/api/status")
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Basic")
    assert w.request("/api/status", headers=basic("alice", "wonder land")).status == 200
    assert w.request("/api/status", headers=basic("bob", "builder")).status == 200
    assert w.request("/api/status", headers=basic("alice", "builder")).status == 401
    assert w.request("/api/status", headers=basic("carol", "")).status == 401
    assert w.request("/api/status", headers={"Authorization": "Basic !!!"}).status == 401
    assert w.request("/healthz").status == 200


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "not found; create it"),
        ("short\n", "at least 16"),
        ("two\nlines-of-token-text\n", "one line"),
        ("a token with; spaces in it\n", "letters, digits"),
    ],
)
def test_unusable_token_files_are_one_line_errors(
    content: str | None, says: str, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_auth("token", str(path), None)
    message = str(err.value)
    assert says in message and str(path) in message and "\n" not in message


def test_a_bad_users_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:pw\nbob\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: expected user:password"):
        load_auth("basic", None, str(path))


def config(http: str) -> str:
    return f"http:\n{http}"


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8080", "'[::]:8080'", "192.0.2.7:8080", "'[2001:db8::1]:80'"]
)
def test_listening_beyond_loopback_without_auth_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(f"  listen: {listen}\n"), name="edge-daemon.yaml")
    message = str(err.value)
    assert message.startswith("edge-daemon.yaml:2: http.listen:")
    assert "http.auth: token" in message and "http.token_file" in message
    assert "auth: none" in message and "\n" not in message


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8080", "localhost:9000", "'[::1]:8080'", "127.0.0.2:1"]
)
def test_loopback_needs_no_auth(listen: str) -> None:
    cfg = parse_config(config(f"  listen: {listen}\n"))
    assert cfg.http.auth is None


def test_auth_none_on_purpose_is_allowed_with_one_warning(
    web: Callable[..., Web], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(config("  listen: 0.0.0.0:8080\n  auth: none\n"))
    assert cfg.http.auth == "none"
    from edge_daemon.web import sink as sink_module

    caplog.set_level(logging.WARNING)
    # Tests stay on loopback: bind 127.0.0.1 but judge it as if it were 0.0.0.0.
    monkeypatch.setattr(sink_module, "is_loopback", lambda host: False)
    web(auth="none")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "auth: none" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("http", "says"),
    [
        ("  listen: localhost\n", "must be HOST:PORT"),
        ("  listen: 8080\n", "must be a non-empty string"),
        ("  listen: example.com:80\n", "must be an IP address"),
        ("  listen: '127.0.0.1:99999'\n", "from 0 to 65535"),
        ("  listen: '::1:8080'\n", "in brackets"),
        ("  auth: token\n", "needs http.token_file"),
        ("  auth: basic\n", "needs http.users_file"),
        ("  auth: password\n", "one of none, token, basic"),
        ("  stream_fps: 0\n", "between 0.1 and 30"),
        ("  tokenfile: x\n", "did you mean http.token_file"),
    ],
)
def test_bad_http_settings_are_one_line_errors(http: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(http), name="c.yaml")
    assert says in str(err.value) and str(err.value).startswith("c.yaml:2: http.")


def test_listen_null_turns_the_server_off() -> None:
    from edge_daemon.sinks.base import SinkContext
    from edge_daemon.web.sink import make_http_sink

    cfg = parse_config(config("  listen: null\n"))
    assert make_http_sink(cfg, SinkContext()) is None
