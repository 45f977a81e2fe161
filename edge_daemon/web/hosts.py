"""Which ``Host`` headers the web server answers: the guard against DNS rebinding.

A page on another site can point a name it owns at 127.0.0.1 and make the
browser talk to this server as if it were that site (with ``auth: none`` on
loopback, nothing else stops it). The browser still sends that name as the
``Host``, so the server answers only for names that cannot be rebound or that
it is known by:

- IP addresses (an address is not looked up, so it cannot be rebound);
- ``localhost`` and names under ``.localhost`` (always this machine);
- this machine's host name, alone and with ``.local`` (how a LAN reaches a Pi);
- the names in ``http.allowed_hosts`` (``"*"`` answers any, e.g. behind a proxy
  that checks names itself).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Optional


def host_name(header: str) -> str:
    """The name in a ``Host`` header: without port or IPv6 brackets, lower case."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    name, _, port = text.rpartition(":")
    if name and port.isdigit() and ":" not in name:
        text = name
    return text.rstrip(".")


def known_names(configured: Iterable[str] = (), hostname: Optional[str] = None) -> frozenset[str]:
    """The names answered besides addresses and localhost: ``configured`` and this host's."""
    own = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
    names = {host_name(n) for n in configured if n.strip()}
    if own:
        short = own.split(".")[0]
        names |= {own, short, f"{short}.local"}
    return frozenset(names)


def host_allowed(header: Optional[str], names: frozenset[str]) -> bool:
    """Whether a request with this ``Host`` header is answered.

    No header at all (HTTP/1.0 tools) is answered: a browser always sends one.
    """
    if header is None or "*" in names:
        return True
    name = host_name(header)
    if name == "localhost" or name.endswith(".localhost") or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
