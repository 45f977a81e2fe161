"""Real systemd starts the installed unit, and the service publishes to a broker.

The unit's sandbox (RestrictAddressFamilies=, IPAddressDeny=/IPAddressAllow=,
ProtectHome=, a dedicated user...) only applies under systemd, so a test
outside it would pass even if the service could never reach its broker.
tests/deploy/systemd_boot.sh boots systemd 252 as PID 1 of its own PID
namespace in a throwaway overlay copy of this machine, installs edge-daemon
there with deploy/install.sh, and starts ``edge-daemon.service`` from the
installed unit; the test's mosquitto on 127.0.0.1 must then receive the
service's availability, state and status, and ``offline`` when it stops.

Needs root, unshare/nsenter (util-linux), overlayfs and the system's python3 of
the same minor version as the test's. Skips locally without them; fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import IO

import pytest
import yaml

from tests.broker import Mosquitto, Subscriber
from tests.helpers import IMAGES, MODELS, REPO, missing, shared_file

pytestmark = pytest.mark.slow

SCRIPT = REPO / "tests" / "deploy" / "systemd_boot.sh"
DEVICE = "systemd-pi"
BASE = f"edge-daemon/{DEVICE}"


def requirements() -> None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        missing("root on Linux (to boot systemd in a namespace)")
    for tool in ("unshare", "nsenter", "chroot", "pgrep"):
        if shutil.which(tool) is None:
            missing(f"{tool} (apt install util-linux procps coreutils)")
    if not Path("/lib/systemd/systemd").exists():
        missing("/lib/systemd/systemd (apt install systemd)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing("overlayfs")
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.stdout.strip() != str(tuple(sys.version_info[:2])):
        missing(f"/usr/bin/python3 of Python {sys.version_info[0]}.{sys.version_info[1]}")


class Booted:
    """systemd_boot.sh running: commands on its stdin, answers on its stdout."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def answer(self) -> str:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline().strip()
        assert line and not line.startswith("error"), line or "systemd_boot.sh ended"
        return line

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def journal(self) -> str:
        lines = []
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("journal\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("done journal"):
                break
            lines.append(line.removeprefix("journal "))
        return "".join(lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError, OSError):
                self.ask("exit")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def service_config(broker: Mosquitto) -> str:
    """deploy/config.yaml as a user edits it: frames from a folder, results to the broker."""
    cfg = yaml.safe_load((REPO / "deploy" / "config.yaml").read_text())
    cfg["source"] = {"kind": "files", "path": "/var/lib/edge-daemon/samples", "loop": True,
                     "fps": 5}  # fmt: skip
    cfg["mqtt"] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "username": "edge",
        "password_file": "/etc/edge-daemon/mqtt-password",
        "device": DEVICE,
        "keepalive": 5,
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def test_the_installed_unit_publishes_to_the_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    requirements()
    samples = tmp_path / "samples"
    samples.mkdir()
    shutil.copyfile(shared_file(IMAGES / "parrot.jpg"), samples / "parrot.jpg")
    config = tmp_path / "config.yaml"
    config.write_text(service_config(mosquitto))
    env = dict(
        os.environ,
        EDGE_WORK=str(tmp_path / "work"),
        EDGE_REPO=str(REPO),
        EDGE_SITE=sysconfig.get_paths()["purelib"],
        EDGE_MODELS=str(shared_file(MODELS)),
        EDGE_CONFIG=str(config),
        EDGE_SECRET=str(mosquitto.password_file),
        EDGE_SAMPLES=str(samples),
    )
    sub = Subscriber(mosquitto, f"{BASE}/#")
    booted = Booted(env)
    try:
        assert booted.answer().startswith("booted systemd")
        assert booted.answer() == "installed enabled"
        # Type=notify: this returns once the service said READY=1 (its first frame).
        assert booted.ask("start") == "done start", booted.journal()
        show = booted.ask("show")
        assert "ActiveState=active" in show and "User=edge-daemon" in show, show

        sub.wait_for(f"{BASE}/availability", lambda m: m.text == "online", timeout=60)
        state = sub.wait_for(f"{BASE}/state", timeout=60).json()
        assert state["label"].startswith("macaw"), state
        status = sub.wait_for(
            f"{BASE}/status", lambda m: m.json().get("state") == "running", timeout=60
        ).json()
        assert status["outputs"]["mqtt"]["state"] == "ok"
        assert status["config"] == "/etc/edge-daemon/config.yaml"

        # A clean stop says offline.
        mark = sub.mark()
        assert booted.ask("stop") == "done stop"
        sub.wait_for(f"{BASE}/availability", lambda m: m.text == "offline", after=mark)
    finally:
        sub.close()
        booted.close()
