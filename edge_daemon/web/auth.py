"""Who may ask: bearer tokens, HTTP basic users, or nobody checked.

Secrets are read from their own files when the server is built; every
comparison runs in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Literal, Optional

from ..errors import ConfigError

COOKIE = "edge_daemon_token"
MIN_TOKEN = 16
# Characters that survive a header, a cookie and an address bar unquoted.
TOKEN_TEXT = re.compile(rf"[A-Za-z0-9._~+/=-]{{{MIN_TOKEN},4096}}")

Mode = Literal["none", "token", "basic"]


def _read_secret(path: str, key: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"http.{key}: {path} not found; create it (see docs/web.md)") from None
    except OSError as exc:
        raise ConfigError(
            f"http.{key}: cannot read {path} ({exc.strerror}); let the service's user read it"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"http.{key}: {path} is not UTF-8 text; write it as plain text") from None


@dataclass(frozen=True)
class Auth:
    """The check every request but /healthz passes through."""

    mode: Mode = "none"
    token: bytes = b""
    users: dict[str, bytes] = field(default_factory=dict)

    @property
    def required(self) -> bool:
        return self.mode != "none"

    def challenge(self) -> Optional[str]:
        """The WWW-Authenticate header of a 401."""
        if self.mode == "basic":
            return 'Basic realm="edge-daemon", charset="UTF-8"'
        if self.mode == "token":
            return 'Bearer realm="edge-daemon"'
        return None

    def check(self, authorization: Optional[str], cookie: Optional[str]) -> bool:
        """Whether the request's Authorization header (or token cookie) lets it in."""
        if self.mode == "none":
            return True
        if self.mode == "token":
            offered = _bearer(authorization)
            if offered is None:
                offered = _cookie(cookie)
            return offered is not None and self.token_ok(offered)
        return self._basic_ok(authorization)

    def token_ok(self, offered: str) -> bool:
        if self.mode != "token":
            return False
        return hmac.compare_digest(offered.encode("utf-8", "replace"), self.token)

    def _basic_ok(self, authorization: Optional[str]) -> bool:
        if not authorization or authorization[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        ok = False
        for name, secret in self.users.items():  # every entry compared: no early exit
            same_user = hmac.compare_digest(user, name.encode())
            same_password = hmac.compare_digest(password, secret)
            ok |= same_user and same_password
        return ok


def _bearer(authorization: Optional[str]) -> Optional[str]:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def _cookie(header: Optional[str]) -> Optional[str]:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def load_auth(mode: Optional[str], token_file: Optional[str], users_file: Optional[str]) -> Auth:
    """The Auth the config asks for, its secret read from its file; ConfigError if unusable."""
    if mode is None or mode == "none":
        return Auth()
    if mode == "token":
        assert token_file is not None  # the config's cross-checks ensure it
        token = _read_secret(token_file, "token_file").strip()
        if not TOKEN_TEXT.fullmatch(token):
            raise ConfigError(
                f"http.token_file: {token_file} must hold one line of at least {MIN_TOKEN}"
                " letters, digits or ._~+/=- characters; write a new one, e.g."
                " openssl rand -hex 24 > FILE"
            )
        return Auth("token", token=token.encode())
    assert users_file is not None
    users: dict[str, bytes] = {}
    text = _read_secret(users_file, "users_file")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name or not password:
            raise ConfigError(
                f"http.users_file: {users_file}:{number}: expected user:password;"
                " fix or remove that line"
            )
        users[name] = password.encode()
    if not users:
        raise ConfigError(f"http.users_file: {users_file} has no user:password line; add one")
    return Auth("basic", users=users)
