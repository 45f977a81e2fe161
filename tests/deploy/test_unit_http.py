"""The unit lets the web server listen: IP sockets, loopback allowed, exposure in budget."""

from __future__ import annotations

from tests.deploy.test_unit import UNIT, directives


def test_the_unit_lets_the_web_server_listen_on_loopback() -> None:
    service = directives(UNIT.read_text())["Service"]
    families = service["RestrictAddressFamilies"][-1].split()
    assert "AF_INET" in families and "AF_INET6" in families
    assert "localhost" in " ".join(service.get("IPAddressAllow", [])).split()
    # No capability to bind ports below 1024: the default port is 8080.
    assert service["CapabilityBoundingSet"][-1] == ""
