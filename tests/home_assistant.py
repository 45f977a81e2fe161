"""A real Home Assistant Core for tests, run from scripts/hass-root.sh's cached root.

``HomeAssistant`` writes a config folder before the first start (what a user
sets up in the UI is written to ``.storage`` the way Home Assistant keeps it):
its MQTT config entry pointing at the test's mosquitto, one admin user with a
long-lived access token, ``configuration.yaml`` with HTTP on 127.0.0.1 only and
the given automations and input_booleans. It then runs ``hass-root.sh run`` and
talks to Home Assistant's own REST and websocket APIs with that token.

``StateLog`` keeps every ``state_changed`` event from a websocket
subscription, so a test can ask "did it turn on, then off" without polling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from tests.broker import PASSWORD, USER, Mosquitto, free_port
from tests.helpers import REPO, missing

ROOT_SCRIPT = REPO / "scripts" / "hass-root.sh"
TEN_YEARS = 10 * 365 * 24 * 3600


def hass_root() -> Path:
    """The cached root (built by ``sudo scripts/hass-root.sh``); skip locally, fail in CI."""
    if os.geteuid() != 0:
        missing("root, to run Home Assistant from its Debian root (scripts/hass-root.sh run)")
    done = subprocess.run(
        ["bash", str(ROOT_SCRIPT), "path"], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no root"
        missing(f"the Home Assistant root ({why})")
    return Path(done.stdout.strip())


def root_version() -> str:
    """The homeassistant release the root is built for."""
    done = subprocess.run(
        ["bash", str(ROOT_SCRIPT), "version"], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(claims: dict[str, Any], key: str) -> str:
    """A JSON Web Token signed with HMAC-SHA256, as Home Assistant issues access tokens."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _storage(key: str, data: dict[str, Any], version: int = 1, minor: int = 1) -> str:
    return json.dumps({"version": version, "minor_version": minor, "key": key, "data": data})


class HomeAssistant:
    """One Home Assistant Core process on 127.0.0.1, its config in ``folder``."""

    def __init__(
        self,
        folder: Path,
        broker: Mosquitto,
        *,
        version: str,
        automations: Sequence[dict[str, Any]] = (),
        input_booleans: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.broker_port = broker.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        folder.mkdir(parents=True, exist_ok=True)
        storage = folder / ".storage"
        storage.mkdir(exist_ok=True)
        now = datetime.now(timezone.utc).isoformat()

        # One owner with a long-lived access token (what Profile > Security >
        # Long-lived access tokens makes): a refresh token whose JWT key signs
        # the access token used here.
        user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
        user = {"id": user_id, "group_ids": ["system-admin"], "is_owner": True,
                "is_active": True, "name": "edge-daemon test", "system_generated": False,
                "local_only": False}  # fmt: skip
        refresh = {"id": token_id, "user_id": user_id, "client_id": None,
                   "client_name": "edge-daemon test", "client_icon": None,
                   "token_type": "long_lived_access_token", "created_at": now,
                   "access_token_expiration": float(TEN_YEARS), "token": secrets.token_hex(64),
                   "jwt_key": jwt_key, "last_used_at": None, "last_used_ip": None,
                   "expire_at": None, "credential_id": None, "version": version}  # fmt: skip
        groups = [{"id": "system-admin", "name": "Administrators"},
                  {"id": "system-users", "name": "Users"},
                  {"id": "system-read-only", "name": "Read Only"}]  # fmt: skip
        (storage / "auth").write_text(
            _storage(
                "auth",
                {"users": [user], "groups": groups, "credentials": [], "refresh_tokens": [refresh]},
            )
        )
        issued = int(time.time())
        self.token = jwt_hs256({"iss": token_id, "iat": issued, "exp": issued + TEN_YEARS}, jwt_key)

        # The MQTT integration's config entry (Settings > Devices & services >
        # Add integration > MQTT): the broker, its port and login; discovery on.
        entry: dict[str, Any] = {"created_at": now, "modified_at": now, "discovery_keys": {},
                 "disabled_by": None, "domain": "mqtt", "entry_id": uuid.uuid4().hex,
                 "minor_version": 1, "version": 2, "options": {},
                 "data": {"broker": broker.host, "port": broker.port, "username": USER,
                          "password": PASSWORD, "protocol": "5"},
                 "pref_disable_new_entities": False, "pref_disable_polling": False,
                 "source": "user", "subentries": [], "title": broker.host,
                 "unique_id": None}  # fmt: skip
        (storage / "core.config_entries").write_text(
            _storage("core.config_entries", {"entries": [entry]}, minor=5)
        )
        # Onboarding done: no "create your user" step waiting.
        (storage / "onboarding").write_text(
            _storage(
                "onboarding",
                {"done": ["user", "core_config", "analytics", "integration"]},
                version=4,
            )
        )

        config: dict[str, Any] = {
            "homeassistant": {
                "name": "edge-daemon test",
                "latitude": 52.37,
                "longitude": 4.89,
                "elevation": 0,
                "unit_system": "metric",
                "time_zone": "UTC",
                "currency": "EUR",
                "country": "NL",
                "language": "en",
                "internal_url": self.url,
            },
            # Loopback only. Home Assistant moves this to its own storage at the
            # first start as a trial config (promoted in start(), else it would
            # go back to the default 0.0.0.0:8123 after five minutes).
            "http": {"server_host": ["127.0.0.1"], "server_port": self.port},
            "api": {},
            "websocket_api": {},
            "config": {},
            "mqtt": {},
            "automation": "!include automations.yaml",
            "input_boolean": {name: {"name": name.replace("_", " ")} for name in input_booleans},
            "logger": {"default": "info"},
        }
        text = yaml.safe_dump(config, sort_keys=False)
        text = text.replace("'!include automations.yaml'", "!include automations.yaml")
        (folder / "configuration.yaml").write_text(text)
        (folder / "automations.yaml").write_text(yaml.safe_dump(list(automations), sort_keys=False))

    # -- the process --------------------------------------------------------------------
    def start(self, timeout: float = 300.0) -> HomeAssistant:
        """Start Home Assistant and wait until it runs with its MQTT entry loaded."""
        self._out = (self.folder / "hass-run.out").open("wb")
        self.proc = subprocess.Popen(
            # Its own network namespace: its HTTP port published on the host's
            # loopback, the broker's port reached from its own.
            [
                "bash",
                str(ROOT_SCRIPT),
                "run",
                str(self.folder),
                "--publish",
                str(self.port),
                "--reach",
                str(self.broker_port),
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Home Assistant exited at start:\n{self.output()[-4000:]}")
            try:
                if self.get("/api/config").get("state") == "RUNNING":
                    break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Home Assistant did not start in {timeout:g} s:\n{self.log()[-4000:]}"
                )
            time.sleep(0.5)
        with self.websocket() as ws:
            entries = ws.call("config_entries/get", domain="mqtt")
            states = [e["state"] for e in entries]
            if states != ["loaded"]:
                raise RuntimeError(f"the MQTT config entry is {states}:\n{self.log()[-4000:]}")
            # Confirm the HTTP settings taken from the YAML, as the UI asks a user to.
            ws.call("http/config/promote", allow_error=True)
        return self

    def stop(self) -> None:
        """Kill it (and its namespace, with everything in it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        if self.proc is not None:
            self._out.close()

    def output(self) -> str:
        path = self.folder / "hass-run.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        path = self.folder / "home-assistant.log"
        return path.read_text(errors="replace") if path.exists() else self.output()

    # -- REST -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        return req

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.request("GET", path), timeout=30) as resp:
            return json.loads(resp.read())

    def get_bytes(self, path: str) -> tuple[str, bytes]:
        with urllib.request.urlopen(self.request("GET", path), timeout=30) as resp:
            return resp.headers.get("Content-Type", ""), resp.read()

    def post(self, path: str, body: Any = None) -> Any:
        with urllib.request.urlopen(self.request("POST", path, body or {}), timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def state(self, entity_id: str) -> Optional[dict[str, Any]]:
        """``GET /api/states/<entity_id>``; None when Home Assistant has no such entity."""
        try:
            found: dict[str, Any] = self.get(f"/api/states/{entity_id}")
            return found
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.get("/api/states")}

    def call_service(self, domain: str, service: str, **data: Any) -> None:
        self.post(f"/api/services/{domain}/{service}", data)

    # -- websocket --------------------------------------------------------------------------
    def websocket(self) -> Websocket:
        return Websocket(f"ws://127.0.0.1:{self.port}/api/websocket", self.token)


class Websocket:
    """An authenticated connection to Home Assistant's websocket API."""

    def __init__(self, url: str, token: str) -> None:
        import websocket  # websocket-client

        self._ws = websocket.create_connection(url, timeout=30)
        self._next = 1
        hello = json.loads(self._ws.recv())
        assert hello["type"] == "auth_required", hello
        self._ws.send(json.dumps({"type": "auth", "access_token": token}))
        answer = json.loads(self._ws.recv())
        if answer["type"] != "auth_ok":
            raise RuntimeError(f"Home Assistant refused the test's token: {answer}")

    def send(self, kind: str, **fields: Any) -> int:
        n = self._next
        self._next += 1
        self._ws.send(json.dumps({"id": n, "type": kind, **fields}))
        return n

    def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self._ws.recv())
        return message

    def call(self, kind: str, *, allow_error: bool = False, **fields: Any) -> Any:
        """Send a command and return its result (other messages in between are dropped)."""
        n = self.send(kind, **fields)
        while True:
            answer = self.receive()
            if answer.get("id") == n and answer.get("type") == "result":
                if not answer["success"] and not allow_error:
                    raise RuntimeError(f"{kind}: {answer['error']}")
                return answer.get("result")

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> Websocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StateLog:
    """Every state change Home Assistant reports, from a websocket subscription."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.changes: list[tuple[str, Optional[dict[str, Any]]]] = []
        self._cond = threading.Condition()
        self._ws = hass.websocket()
        self._ws.call("subscribe_events", event_type="state_changed")
        self._ws._ws.settimeout(None)
        self._thread = threading.Thread(target=self._read, name="hass-states", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                message = self._ws.receive()
            except Exception:
                return
            if message.get("type") != "event":
                continue
            data = message["event"]["data"]
            with self._cond:
                self.changes.append((data["entity_id"], data.get("new_state")))
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.changes)

    def states_of(self, entity_id: str, after: int = 0) -> list[str]:
        """The states ``entity_id`` went through (since ``after``), in order."""
        with self._cond:
            return [
                (new or {}).get("state", "")
                for eid, new in self.changes[after:]
                if eid == entity_id
            ]

    def wait_for(
        self,
        entity_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        after: int = 0,
        what: str = "",
    ) -> dict[str, Any]:
        """The first new state of ``entity_id`` (since ``after``) that matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for eid, new in self.changes[after:]:
                    if eid == entity_id and new is not None and predicate(new):
                        return new
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [
                        (new or {}).get("state") for eid, new in self.changes[after:]
                        if eid == entity_id
                    ]  # fmt: skip
                    raise AssertionError(
                        f"{entity_id}: no {what or 'matching state'} in {timeout:g} s;"
                        f" its states meanwhile: {seen}"
                    )
                self._cond.wait(left)

    def close(self) -> None:
        self._ws.close()
