"""The systemd unit: hardened within budget, valid, and consistent with the config.

Needs systemd-analyze (apt: systemd). Without it these tests skip locally and
fail under CI=true. The exposure budget is judged by systemd 252 (Debian 12 /
Raspberry Pi OS Bookworm), the version the unit is written for.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge_daemon.config import load_config
from tests.helpers import REPO, require_tool

UNIT = REPO / "deploy" / "edge-daemon.service"
CONFIG = REPO / "deploy" / "config.yaml"
EXPOSURE_BUDGET = 1.5


def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "apt install systemd")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run(
        [systemd_analyze(), *args], capture_output=True, text=True, timeout=60, env=env
    )


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given (keys such as DeviceAllow= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as 30s, 2min or 500ms, in seconds."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return directives(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"{key}= missing from [{section}]"
    return values[-1]


def test_exposure_is_within_budget() -> None:
    result = analyze("security", "--offline=true", str(UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"Overall exposure level for edge-daemon\.service: (\d+(?:\.\d+)?)", result.stdout
    )
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= EXPOSURE_BUDGET, result.stdout


def test_unit_verifies(tmp_path: Path) -> None:
    # verify insists that ExecStart= names an existing executable, and the
    # venv only exists on an installed system: check a copy whose ExecStart=
    # points at a stand-in, everything else untouched.
    standin = tmp_path / "edge-daemon"
    standin.write_text("#!/bin/sh\nexit 0\n")
    standin.chmod(standin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    text = UNIT.read_text()
    exec_start = "ExecStart=/opt/edge-daemon/venv/bin/edge-daemon "
    assert text.count(exec_start) == 1
    copy = tmp_path / "edge-daemon.service"
    copy.write_text(text.replace(exec_start, f"ExecStart={standin} "))

    result = analyze("verify", str(copy))

    # verify exits 0 even for unknown keys and bad values, which it only
    # prints: any line about this unit is a defect.
    about_unit = [
        line for line in (result.stdout + result.stderr).splitlines() if "edge-daemon" in line
    ]
    assert result.returncode == 0, result.stderr
    assert about_unit == []


def test_lifecycle(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "ExecStart").startswith("/opt/edge-daemon/venv/bin/edge-daemon run ")
    assert "--config /etc/edge-daemon/config.yaml" in one(unit, "ExecStart")
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert seconds(one(unit, "WatchdogSec")) > 0
    assert one(unit, "Restart") == "on-failure"
    assert seconds(one(unit, "RestartSec")) > 0
    assert seconds(one(unit, "TimeoutStopSec")) > 0
    # A start limit, so a broken config does not restart forever.
    assert int(one(unit, "StartLimitBurst", "Unit")) > 0
    assert seconds(one(unit, "StartLimitIntervalSec", "Unit")) > 0
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_runs_as_unprivileged_user_in_group_video(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "User") == "edge-daemon"
    groups = " ".join([*unit["Service"].get("SupplementaryGroups", []), one(unit, "Group")])
    assert "video" in groups.split()
    assert one(unit, "NoNewPrivileges") == "yes"
    assert one(unit, "CapabilityBoundingSet") == ""


def test_directories(unit: dict[str, dict[str, list[str]]]) -> None:
    for key in ("RuntimeDirectory", "StateDirectory", "LogsDirectory", "ConfigurationDirectory"):
        assert one(unit, key) == "edge-daemon"
    assert one(unit, "ProtectSystem") == "strict"


def test_devices_for_camera_and_coral(unit: dict[str, dict[str, list[str]]]) -> None:
    # PrivateDevices=yes would hide the camera; the device cgroup must be an
    # allow list that still lets these through.
    assert unit["Service"].get("PrivateDevices", ["no"])[-1] in ("no", "false")
    assert one(unit, "DevicePolicy") in ("closed", "strict")
    allowed = {}
    for entry in unit["Service"]["DeviceAllow"]:
        node, _, access = entry.partition(" ")
        allowed[node] = access
    for node in (
        "char-video4linux",  # /dev/video*, /dev/v4l-subdev*
        "char-media",  # /dev/media*
        "char-dma_heap",  # /dev/dma_heap/*
        "/dev/vchiq",
        "char-apex",  # /dev/apex_0, Coral PCIe
        "char-usb_device",  # Coral USB
    ):
        assert "r" in allowed.get(node, "") and "w" in allowed[node], node


def test_keeps_what_libcamera_and_xnnpack_need(unit: dict[str, dict[str, list[str]]]) -> None:
    # udev's device events arrive over netlink in the host network namespace;
    # libcamera waits for them for cameras that appear after start-up.
    assert unit["Service"].get("PrivateNetwork", ["no"])[-1] in ("no", "false")
    assert "AF_NETLINK" in one(unit, "RestrictAddressFamilies").split()
    # XNNPACK's CPU detection reads /proc/cpuinfo.
    assert unit["Service"].get("ProcSubset", ["all"])[-1] == "all"


def test_config_fits_the_unit(unit: dict[str, dict[str, list[str]]]) -> None:
    cfg = load_config(CONFIG)
    assert cfg.source.kind == "picamera2"
    assert cfg.outputs.prediction_log_mode == "change"
    assert cfg.outputs.status_file == "/run/edge-daemon/status.json"
    assert cfg.outputs.prediction_log == "/var/log/edge-daemon/predictions.jsonl"
    assert cfg.daemon.state_dir == "/var/lib/edge-daemon/state"
    assert cfg.model.path.startswith("/var/lib/edge-daemon/models/")
    assert cfg.model.labels is not None
    assert cfg.model.labels.startswith("/var/lib/edge-daemon/models/")
    # The daemon stops feeding the watchdog after stall_timeout; systemd must
    # not give up on it sooner than that.
    assert cfg.source.stall_timeout < seconds(one(unit, "WatchdogSec"))


def _allowed(unit: dict[str, dict[str, list[str]]], address: str) -> bool:
    """Whether the unit's IPAddressDeny=/IPAddressAllow= let the service reach ``address``."""
    import ipaddress

    special = {
        "localhost": ["127.0.0.0/8", "::1/128"],
        "link-local": ["169.254.0.0/16", "fe80::/64"],
        "any": ["0.0.0.0/0", "::/0"],
    }

    def nets(key: str) -> list[Any]:
        out = []
        for value in unit["Service"].get(key, []):
            for word in value.split():
                out += [ipaddress.ip_network(n) for n in special.get(word, [word])]
        return out

    ip = ipaddress.ip_address(address)
    if any(ip in n for n in nets("IPAddressAllow") if n.version == ip.version):
        return True  # systemd: an allowed address wins over a denied one
    return not any(ip in n for n in nets("IPAddressDeny") if n.version == ip.version)


def test_outputs_reach_a_broker_on_the_pi_or_the_lan_and_nothing_else(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    # MQTT and the loopback web page need IP sockets; nothing needs raw or packet ones.
    families = one(unit, "RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"} == set(families)
    # A broker on this Pi or on the home LAN (Home Assistant's add-on, a NAS) is reachable...
    for address in ("127.0.0.1", "::1", "192.168.1.20", "10.0.0.5", "172.20.1.2", "fd00::5"):
        assert _allowed(unit, address), address
    # ...the internet is not (a broker there needs a drop-in, see the unit's comment).
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700::1111", "100.64.1.1"):
        assert not _allowed(unit, address), address
