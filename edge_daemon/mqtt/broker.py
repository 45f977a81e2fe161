"""Talking to an MQTT broker: a paho client from the ``mqtt`` config, and one-line reasons.

Shared by the MQTT sink, ``edge-daemon fleet`` and ``edge-daemon mqtt forget``.
paho-mqtt is imported here only, inside functions, so the package imports on a
machine without the ``mqtt`` extra.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import MqttConfig
from ..errors import ConfigError, EdgeDaemonError
from ..status import pid_alive

MQTT_EXTRA = "pip install 'edge-daemon[mqtt]'"


def import_paho() -> Any:
    """The paho-mqtt 2.x client module, or an error naming the extra."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgeDaemonError(
            f"MQTT needs paho-mqtt 2.x, which is not installed; run {MQTT_EXTRA}"
        ) from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise EdgeDaemonError(
            "MQTT needs paho-mqtt 2.x, but an older one is installed (Debian's python3-paho-mqtt"
            f" is 1.6); run {MQTT_EXTRA} in the service's venv"
        )
    return mqtt


def topic_safe(name: str) -> str:
    """``name`` with every character outside [A-Za-z0-9_-] replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "edge-daemon"


def device_name(cfg: MqttConfig) -> str:
    """This Pi's name in topics: ``mqtt.device``, else the host name made topic-safe."""
    return cfg.device or topic_safe(socket.gethostname().split(".")[0])


def base_topic(cfg: MqttConfig) -> str:
    return f"{cfg.topic_prefix}/{device_name(cfg)}"


def read_password(cfg: MqttConfig) -> Optional[str]:
    """The password from ``mqtt.password_file`` (first line), or None."""
    path = cfg.password_file
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: mqtt.password_file not found; create it with the broker password on one line"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"{path}: cannot read mqtt.password_file ({reason}); make it readable by the"
            " service user only (chmod 600, owned by edge-daemon)"
        ) from None
    lines = text.splitlines()
    return lines[0] if lines else ""


class _InvalidName(socket.gaierror):
    pass


def check_resolvable(host: str) -> None:
    """Refuse names that must never resolve (RFC 6761: ``.invalid``) without asking DNS."""
    name = host.rstrip(".").lower()
    if name == "invalid" or name.endswith(".invalid"):
        raise _InvalidName(socket.EAI_NONAME, "Name or service not known")


class DeviceInUse(ConnectionError):
    """Another daemon is connected under this Pi's ``mqtt.device`` (its message says who)."""


def make_client(
    cfg: MqttConfig,
    client_id: str,
    *,
    before_connect: Optional[Callable[[], None]] = None,
    **callbacks: Any,
) -> Any:
    """A paho client (callback API 2) with credentials and TLS from ``cfg``.

    Its ``reconnect()`` remembers the exception of a failed attempt in
    ``last_connect_error`` (paho's own retry loop swallows it), so the reason
    can be told once, in words. ``before_connect`` runs before every attempt;
    an OSError it raises fails that attempt (paho retries with back-off).
    """
    mqtt = import_paho()
    host: str = cfg.host or ""

    class Client(mqtt.Client):  # type: ignore[misc,name-defined]
        last_connect_error: Optional[BaseException] = None

        def reconnect(self) -> Any:
            try:
                check_resolvable(host)
                if before_connect is not None:
                    before_connect()
                result = super().reconnect()
            except Exception as exc:
                self.last_connect_error = exc
                raise
            self.last_connect_error = None
            return result

    client = Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, read_password(cfg))
    if cfg.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(cfg.tls, key)
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigError(
                    f"{path}: mqtt.tls.{key} is missing or unreadable; fix the path or"
                    " the file's permissions"
                )
        try:
            client.tls_set(
                ca_certs=cfg.tls.ca_file,
                certfile=cfg.tls.cert_file,
                keyfile=cfg.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"mqtt.tls: cannot use the certificate files ({exc}); check that ca_file,"
                " cert_file and key_file are PEM files that belong together"
            ) from None
        client.tls_insecure_set(cfg.tls.insecure)
    client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(cfg.reconnect_max)))
    for name, fn in callbacks.items():
        setattr(client, name, fn)
    return client


# probe_retained: how long to wait for the retained messages after the broker
# confirmed the subscription (they follow at once), and for everything (s).
_PROBE_SETTLE = 0.3
_PROBE_LIMIT = 5.0


def probe_retained(cfg: MqttConfig, topics: list[str]) -> Optional[dict[str, bytes]]:
    """What the broker retains on ``topics``, read by a short-lived client with an id
    of its own (so no connection is taken over); None when it cannot be read (the
    broker is away or refuses: the real connection then says why)."""
    got: dict[str, bytes] = {}
    acked: list[float] = []
    refused: list[bool] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(True)
        else:
            client.subscribe([(t, 0) for t in topics])

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.retain:
            got[msg.topic] = bytes(msg.payload)

    client = make_client(
        cfg,
        "",
        on_connect=on_connect,
        on_subscribe=lambda *a: acked.append(time.monotonic()),
        on_message=on_message,
    )
    try:
        client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive)
        deadline = time.monotonic() + _PROBE_LIMIT
        while not refused and len(got) < len(topics) and time.monotonic() < deadline:
            if acked and time.monotonic() - acked[0] >= _PROBE_SETTLE:
                break
            if client.loop(0.05) != 0:
                return None
        return got if acked else None
    except (OSError, ValueError):
        return None
    finally:
        try:
            client.disconnect()
            client.loop(0.01)
        except (OSError, ValueError):
            pass
        sock = client.socket()
        if sock is not None:
            sock.close()


def other_daemon(
    found: dict[str, bytes], availability: str, status: str, *, host: str, pid: int
) -> Optional[str]:
    """Who else is online under this Pi's topics, from what the broker retains: e.g.
    ``"host porch-pi (pid 812)"``; None when nobody else is (or it cannot be told).

    Another daemon is online when the retained availability says ``online`` and
    the retained status names another host, or another live process on this one.
    """
    if found.get(availability) != b"online" or status not in found:
        return None
    try:
        st = json.loads(found[status])
    except ValueError:
        return None
    if not isinstance(st, dict) or st.get("state") in ("stopped", "failed"):
        return None
    other_host, other_pid = st.get("host"), st.get("pid")
    if not isinstance(other_host, str) or not other_host:
        return None  # a daemon of a version that did not say: cannot tell
    if other_host == host and (other_pid == pid or not pid_alive(other_pid)):
        return None  # this process, or an earlier run of it that is gone
    return f"host {other_host}" + (f" (pid {other_pid})" if isinstance(other_pid, int) else "")


def where(cfg: MqttConfig) -> str:
    return f"MQTT broker {cfg.host}:{cfg.port}"


def connect_error(cfg: MqttConfig, exc: Optional[BaseException]) -> str:
    """One line: why connecting to the broker failed, and what to do."""
    at = where(cfg)
    if exc is None:
        return f"{at}: cannot connect; check mqtt.host and mqtt.port"
    if isinstance(exc, DeviceInUse):
        return str(exc)
    if isinstance(exc, socket.gaierror):
        return f"{at}: cannot resolve {cfg.host} ({exc.strerror or exc}); check mqtt.host"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (
            getattr(exc, "verify_message", None)
            or getattr(exc, "reason", None)
            or "verification failed"
        )
        return (
            f"{at}: the broker's TLS certificate is not trusted ({detail}); set mqtt.tls.ca_file"
            " to the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or exc
        return f"{at}: TLS handshake failed ({reason}); check mqtt.tls and mqtt.port"
    if isinstance(exc, ConnectionRefusedError):
        return f"{at}: connection refused; is the broker running and listening on that port?"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"{at}: no answer (timed out); check mqtt.host, mqtt.port and the network"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"{at}: unreachable ({exc.strerror}); check the network and mqtt.host"
        if exc.errno in (errno.EPERM, errno.EACCES):
            return (
                f"{at}: the connection was not allowed ({exc.strerror}); under systemd, the"
                " unit's IPAddressAllow= must include the broker's address"
            )
        return f"{at}: cannot connect ({exc.strerror or exc})"
    return f"{at}: cannot connect ({type(exc).__name__}: {exc})"


def refused_error(cfg: MqttConfig, reason: Any) -> str:
    """One line for a CONNACK that refused the connection."""
    at = where(cfg)
    text = str(reason)
    low = text.lower()
    if "not authorized" in low or "bad user name" in low or "password" in low:
        who = f"user {cfg.username!r}" if cfg.username else "an anonymous client"
        return (
            f"{at} refused the login of {who} ({text}); check mqtt.username and the password"
            " in mqtt.password_file"
        )
    return f"{at} refused the connection ({text})"


@dataclass(frozen=True)
class BrokerUrl:
    """What ``--broker mqtt[s]://[user@]host[:port]`` names."""

    host: str
    port: Optional[int]
    username: Optional[str]
    tls: bool


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``--broker``; a password in the URL is refused (it would show in ``ps``)."""
    if "://" not in url:
        url = "mqtt://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise EdgeDaemonError(
            f"--broker: {url!r}: use mqtt://[user@]host[:port] or mqtts://[user@]host[:port]"
        )
    if parts.password is not None:
        raise EdgeDaemonError(
            "--broker: do not put the password in the URL (other users see it in ps); use"
            " --password-file or the config's mqtt.password_file"
        )
    try:
        port = parts.port
    except ValueError:
        raise EdgeDaemonError(f"--broker: {url!r}: the port must be a number 1-65535") from None
    if not parts.hostname:
        raise EdgeDaemonError(f"--broker: {url!r}: no host; use mqtt://host:port")
    return BrokerUrl(
        host=parts.hostname,
        port=port,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        tls=parts.scheme == "mqtts",
    )


def apply_broker_url(
    cfg: MqttConfig, url: Optional[str], password_file: Optional[str] = None
) -> MqttConfig:
    """``cfg`` with what ``--broker`` and ``--password-file`` name put over it."""
    if url is not None:
        b = parse_broker_url(url)
        tls = cfg.tls
        if b.tls and tls is None:
            from ..config import MqttTlsConfig

            tls = MqttTlsConfig()
        elif not b.tls:
            tls = None
        cfg = replace(
            cfg,
            host=b.host,
            port=b.port or (8883 if b.tls else 1883),
            username=b.username if b.username is not None else cfg.username,
            password_file=cfg.password_file if b.username in (None, cfg.username) else None,
            tls=tls,
        )
    if password_file is not None:
        cfg = replace(cfg, password_file=str(Path(password_file).absolute()))
    if cfg.host is None:
        raise EdgeDaemonError(
            "no broker: set mqtt.host in the config (--config) or pass --broker mqtt://host:port"
        )
    return cfg
