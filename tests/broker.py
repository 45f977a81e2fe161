"""A real mosquitto broker for tests, on free loopback ports, and a paho subscriber.

``Mosquitto`` runs /usr/sbin/mosquitto (apt ``mosquitto``) with its own config
in a temporary folder: a plain listener and a TLS listener on 127.0.0.1, both
with a password file (``allow_anonymous false``). The TLS listener's
certificate is signed by a CA made here with the openssl command line; a
second, unrelated CA plays "the wrong CA". ``stop()``/``start()`` keep the
ports, so a client can reconnect to the same address.

``Subscriber`` is a paho client that records every message per topic.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from tests.helpers import require_tool

USER = "edge"
PASSWORD = "s3cret-for-tests"


def mosquitto_binary() -> str:
    """The broker's path: it lives in /usr/sbin, which a non-root PATH often lacks."""
    if os.path.exists("/usr/sbin/mosquitto") and not shutil.which("mosquitto"):
        return "/usr/sbin/mosquitto"
    return require_tool("mosquitto", "apt install mosquitto mosquitto-clients")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Certs:
    """A CA, a server certificate it signed (for 127.0.0.1 and localhost), and a foreign CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    wrong_ca: Path


def make_certs(folder: Path) -> Certs:
    """Make the test PKI with the openssl command line."""
    openssl = require_tool("openssl", "apt install openssl")
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder, timeout=60)

    for name in ("ca", "wrong-ca"):
        run(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-subj", f"/CN=edge-daemon test {name}",
        )  # fmt: skip
    run(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
    )  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    return Certs(folder / "ca.crt", folder / "server.crt", folder / "server.key",
                 folder / "wrong-ca.crt")  # fmt: skip


class Mosquitto:
    """One mosquitto process with a plain and a TLS listener on 127.0.0.1."""

    def __init__(self, folder: Path, certs: Optional[Certs] = None) -> None:
        self.binary = mosquitto_binary()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port() if certs else None
        self.certs = certs
        self.password_file = folder / "password.txt"  # what a client reads (mqtt.password_file)
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        passwd = folder / "passwd"
        subprocess.run(
            [require_tool("mosquitto_passwd", "apt install mosquitto"), "-b", "-c",
             str(passwd), USER, PASSWORD],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        lines = [
            "per_listener_settings true",
            "persistence false",
            f"log_dest file {folder / 'mosquitto.log'}",
            "log_type all",
            f"listener {self.port} {self.host}",
            "allow_anonymous false",
            f"password_file {passwd}",
        ]
        if certs:
            lines += [
                f"listener {self.tls_port} {self.host}",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"cafile {certs.ca}",
                f"certfile {certs.server_cert}",
                f"keyfile {certs.server_key}",
            ]
        if os.geteuid() == 0:
            # Started as root it drops to user mosquitto, who cannot read these files.
            lines.insert(0, "user root")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> Mosquitto:
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        ports = [p for p in (self.port, self.tls_port) if p]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}")
            if all(self._listening(p) for p in ports):
                return self
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def _listening(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def url(self, user: Optional[str] = USER) -> str:
        return f"mqtt://{user + '@' if user else ''}{self.host}:{self.port}"

    def mqtt_config(self, **overrides: Any) -> dict[str, Any]:
        """The ``mqtt`` config section for a daemon talking to this broker."""
        section: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": USER,
            "password_file": str(self.password_file),
            "reconnect_max": 1.0,
        }
        section.update(overrides)
        return section

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def text(self) -> str:
        return self.payload.decode()


class Subscriber:
    """A real paho client subscribed to ``topics``, recording every message."""

    def __init__(self, broker: Mosquitto, *topics: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="")
        self.client.username_pw_set(USER, PASSWORD)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the test subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.retain, time.time()))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Optional[Message]:
        found = self.on(topic)
        return found[-1] if found else None

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[Message], bool] = lambda m: True,
        timeout: float = 20.0,
        after: int = 0,
    ) -> Message:
        """The first message on ``topic`` (from index ``after`` of all messages) matching."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[after:]:
                    if m.topic == topic and predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise AssertionError(
                        f"no matching message on {topic} in {timeout} s; seen {seen}"
                    )
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def broker_fixture(tmp_path: Path, certs: Optional[Certs]) -> Iterator[Mosquitto]:
    """Start a broker for one test and stop it afterwards (used by conftest's fixture)."""
    b = Mosquitto(tmp_path / "broker", certs).start()
    try:
        yield b
    finally:
        b.kill()
        if os.environ.get("EDGE_DAEMON_KEEP_BROKER_LOG"):
            shutil.copy(b.folder / "mosquitto.log", tmp_path / "kept-mosquitto.log")
