"""deploy/install.sh and deploy/uninstall.sh, run into a staging root (--root).

Nothing here needs root or the network: --no-venv skips the venv and
--model-dir copies stand-in model files. Owners cannot be set by an
unprivileged staging install, so they are checked in the manifest the
installer writes. Needs bash; shellcheck (apt: shellcheck) for the lint test,
which skips locally without it and fails under CI=true.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO, missing, require_tool

INSTALL = REPO / "deploy" / "install.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"
MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS = "labels_mobilenet_quant_v1_224.txt"

# Everything an installation consists of: path -> (kind, mode).
EXPECTED = {
    "etc/systemd/system/edge-daemon.service": ("f", 0o644),
    "etc/systemd/system/multi-user.target.wants/edge-daemon.service": ("l", None),
    "usr/lib/sysusers.d/edge-daemon.conf": ("f", 0o644),
    "etc/edge-daemon": ("d", 0o755),
    "etc/edge-daemon/config.yaml": ("f", 0o644),
    "opt/edge-daemon": ("d", 0o755),
    "opt/edge-daemon/manifest": ("f", 0o644),
    "opt/edge-daemon/config.yaml.default": ("f", 0o644),
    "var/lib/edge-daemon": ("d", 0o750),
    "var/lib/edge-daemon/models": ("d", 0o755),
    f"var/lib/edge-daemon/models/{MODEL}": ("f", 0o644),
    f"var/lib/edge-daemon/models/{LABELS}": ("f", 0o644),
    "var/lib/edge-daemon/state": ("d", 0o750),
    "var/log/edge-daemon": ("d", 0o750),
}
# Parents that exist on any system; created in an empty staging root.
PARENTS = {
    "etc", "etc/systemd", "etc/systemd/system", "etc/systemd/system/multi-user.target.wants",
    "usr", "usr/lib", "usr/lib/sysusers.d", "opt", "var", "var/lib", "var/log",
}  # fmt: skip


def bash() -> str:
    return require_tool("bash")


def sh(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bash(), str(script), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models-src"
    folder.mkdir()
    (folder / MODEL).write_bytes(b"TFL3 stand-in model")
    (folder / LABELS).write_text("background\ncat\n")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "staging"


def install(root: Path, models: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = sh(INSTALL, "--root", str(root), "--no-venv", "--model-dir", str(models), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root with its kind, mode, mtime and content."""
    out: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("l", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_mtime_ns, digest)
    return out


def manifest(root: Path) -> dict[str, tuple[str, str, str, str]]:
    """path -> (kind, mode, owner, group) from the installer's manifest."""
    entries = {}
    for line in (root / "opt/edge-daemon/manifest").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, mode, owner, group, path = line.split()
            entries[path] = (kind, mode, owner, group)
    return entries


def actions(output: str) -> list[str]:
    """The commands the installer ran (or, in a dry run, would run)."""
    return [line for line in output.splitlines() if line.startswith("+ ")]


def test_staging_install_is_complete(root: Path, models: Path) -> None:
    install(root, models)

    found = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert found == set(EXPECTED) | PARENTS
    for rel, (kind, mode) in EXPECTED.items():
        st = (root / rel).lstat()
        if kind == "l":
            assert stat.S_ISLNK(st.st_mode), rel
            continue
        assert stat.S_ISDIR(st.st_mode) if kind == "d" else stat.S_ISREG(st.st_mode), rel
        assert stat.S_IMODE(st.st_mode) == mode, f"{rel}: {oct(stat.S_IMODE(st.st_mode))}"

    assert (root / "etc/systemd/system/edge-daemon.service").read_text() == (
        REPO / "deploy/edge-daemon.service"
    ).read_text()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/edge-daemon.service") == (
        "/etc/systemd/system/edge-daemon.service"
    )
    assert (root / "etc/edge-daemon/config.yaml").read_text() == (
        REPO / "deploy/config.yaml"
    ).read_text()
    for name in (MODEL, LABELS):
        assert (root / "var/lib/edge-daemon/models" / name).read_bytes() == (
            models / name
        ).read_bytes()
    sysusers = (root / "usr/lib/sysusers.d/edge-daemon.conf").read_text().splitlines()
    assert any(line.startswith("u edge-daemon ") for line in sysusers)
    assert "m edge-daemon video" in sysusers


def test_manifest_lists_every_path_with_its_owner(root: Path, models: Path) -> None:
    install(root, models)
    entries = manifest(root)

    listed = {path.lstrip("/") for path in entries}
    assert listed == set(EXPECTED) - {"opt/edge-daemon/manifest"}
    for path, (kind, mode, _owner, _group) in entries.items():
        if kind != "l":
            st = (root / path.lstrip("/")).stat()
            assert stat.S_IMODE(st.st_mode) == int(mode, 8), path
    # The service writes state and logs; everything else is root's.
    writable = {"/var/lib/edge-daemon", "/var/lib/edge-daemon/state", "/var/log/edge-daemon"}
    for path, (_kind, _mode, owner, group) in entries.items():
        expected = ("edge-daemon", "edge-daemon") if path in writable else ("root", "root")
        assert (owner, group) == expected, path


def test_second_run_changes_nothing(root: Path, models: Path) -> None:
    install(root, models)
    before = snapshot(root)

    again = install(root, models)

    assert snapshot(root) == before
    assert actions(again.stdout) == []


def test_edited_config_is_kept_and_the_new_default_goes_beside_it(root: Path, models: Path) -> None:
    install(root, models)
    config = root / "etc/edge-daemon/config.yaml"
    edited = config.read_text().replace("fps: 5\n", "fps: 2\n")
    assert edited != config.read_text()
    config.write_text(edited)

    result = install(root, models)

    assert config.read_text() == edited
    assert "config.yaml.new" in result.stdout
    new = root / "etc/edge-daemon/config.yaml.new"
    assert new.read_text() == (REPO / "deploy/config.yaml").read_text()
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    before = snapshot(root)
    install(root, models)
    assert snapshot(root) == before


def test_untouched_old_default_is_replaced_by_the_new_one(root: Path, models: Path) -> None:
    install(root, models)
    # As left by an older version whose default the user never edited.
    old = "model:\n  top_k: 3\n"
    (root / "etc/edge-daemon/config.yaml").write_text(old)
    (root / "opt/edge-daemon/config.yaml.default").write_text(old)

    install(root, models)

    assert (root / "etc/edge-daemon/config.yaml").read_text() == (
        REPO / "deploy/config.yaml"
    ).read_text()
    assert not (root / "etc/edge-daemon/config.yaml.new").exists()


def test_dry_run_changes_nothing(root: Path, models: Path) -> None:
    result = install(root, models, "--dry-run")

    assert snapshot(root) == {}
    planned = "\n".join(actions(result.stdout))
    for path in ("/etc/systemd/system/edge-daemon.service", "/etc/edge-daemon/config.yaml",
                 f"/var/lib/edge-daemon/models/{MODEL}", "/var/log/edge-daemon"):  # fmt: skip
        assert f"{root}{path}" in planned, path

    install(root, models)
    (root / "etc/edge-daemon/config.yaml").write_text("daemon:\n  log_level: DEBUG\n")
    before = snapshot(root)
    install(root, models, "--dry-run")
    assert snapshot(root) == before


def test_live_dry_run_prints_the_plan() -> None:
    # This one targets the live system's paths, so it must be harmless even if
    # --dry-run were broken: run as an unprivileged user (dropping root if the
    # tests run as root), from a world-readable copy of what the script reads.
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        (src / "deploy").mkdir()
        for name in ("pyproject.toml", "deploy/install.sh", "deploy/common.sh",
                     "deploy/edge-daemon.service",
                     "deploy/config.yaml"):  # fmt: skip
            shutil.copy(REPO / name, src / name)
        for path in (src, src / "deploy"):
            path.chmod(0o755)
        command = [bash(), str(src / "deploy/install.sh"), "--dry-run", "--no-apt", "--no-venv"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                missing("setpriv (util-linux)")
            assert setpriv is not None
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]

        # The plan for a running systemd, also on a build machine without one.
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={**os.environ, "SYSTEMD_OFFLINE": "0"},
        )

    assert result.returncode == 0, result.stderr
    planned = actions(result.stdout)
    assert "+ systemctl daemon-reload" in planned
    assert "+ systemctl enable edge-daemon.service" in planned


def test_model_dir_without_the_model_fails_before_changing_anything(
    root: Path, models: Path
) -> None:
    (models / MODEL).unlink()

    result = sh(INSTALL, "--root", str(root), "--no-venv", "--model-dir", str(models))

    assert result.returncode != 0
    assert MODEL in result.stderr
    assert snapshot(root) == {}


@pytest.mark.parametrize("args", [["--frobnicate"], ["--root", "/"], ["--extra", "cuda"]])
def test_bad_arguments_are_refused(root: Path, args: list[str]) -> None:
    result = sh(INSTALL, *args)
    assert result.returncode != 0
    assert result.stderr.strip()


def installed(root: Path) -> set[str]:
    return {rel for rel in EXPECTED if (root / rel).exists() or (root / rel).is_symlink()}


def test_uninstall_keeps_config_logs_and_models(root: Path, models: Path) -> None:
    install(root, models)
    log = root / "var/log/edge-daemon/predictions.jsonl"
    log.write_text('{"frame": 1}\n')

    result = sh(UNINSTALL, "--root", str(root))

    assert result.returncode == 0, result.stderr
    kept = {
        "etc/edge-daemon", "etc/edge-daemon/config.yaml", "var/log/edge-daemon",
        "var/lib/edge-daemon", "var/lib/edge-daemon/models", "var/lib/edge-daemon/state",
        f"var/lib/edge-daemon/models/{MODEL}", f"var/lib/edge-daemon/models/{LABELS}",
        "usr/lib/sysusers.d/edge-daemon.conf",
    }  # fmt: skip
    assert installed(root) == kept
    assert log.read_text() == '{"frame": 1}\n'

    # And a re-install picks the kept config up unchanged.
    (root / "etc/edge-daemon/config.yaml").write_text("daemon:\n  log_level: DEBUG\n")
    install(root, models)
    assert (root / "etc/edge-daemon/config.yaml").read_text() == "daemon:\n  log_level: DEBUG\n"


def test_purge_removes_everything(root: Path, models: Path) -> None:
    install(root, models)
    (root / "var/log/edge-daemon/predictions.jsonl").write_text("{}\n")
    (root / "etc/edge-daemon/config.yaml.new").write_text("x: 1\n")

    result = sh(UNINSTALL, "--root", str(root), "--purge")

    assert result.returncode == 0, result.stderr
    assert installed(root) == set()
    assert not (root / "etc/edge-daemon").exists()
    assert not (root / "var/log/edge-daemon").exists()


def test_uninstall_dry_run_changes_nothing(root: Path, models: Path) -> None:
    install(root, models)
    before = snapshot(root)

    for extra in ([], ["--purge"]):
        result = sh(UNINSTALL, "--root", str(root), "--dry-run", *extra)
        assert result.returncode == 0, result.stderr
        assert actions(result.stdout)
        assert snapshot(root) == before


def test_scripts_pass_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "apt install shellcheck")
    # -x follows the sourced deploy/common.sh (paths relative to the repository).
    result = subprocess.run(
        [shellcheck, "-x", "deploy/install.sh", "deploy/uninstall.sh", "deploy/common.sh"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout


def test_dry_run_without_systemd_plans_an_image_build(root: Path, models: Path) -> None:
    """SYSTEMD_OFFLINE=1 (or no systemd running): enable for the next boot, start nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        (src / "deploy").mkdir()
        for name in (
            "pyproject.toml",
            "deploy/install.sh",
            "deploy/common.sh",
            "deploy/edge-daemon.service",
            "deploy/config.yaml",
        ):
            shutil.copy(REPO / name, src / name)
        for path in (src, src / "deploy"):
            path.chmod(0o755)
        command = [bash(), str(src / "deploy/install.sh"), "--dry-run", "--no-apt", "--no-venv"]
        if os.geteuid() == 0:
            setpriv = require_tool("setpriv", "util-linux")
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={**os.environ, "SYSTEMD_OFFLINE": "1"},
        )

    assert result.returncode == 0, result.stderr
    assert "image-build mode" in result.stdout
    planned = actions(result.stdout)
    assert "+ env SYSTEMD_OFFLINE=1 systemctl enable edge-daemon.service" in planned
    for line in planned:
        for verb in ("daemon-reload", "start", "restart", "reset-failed"):
            assert f"systemctl {verb}" not in line, line
    assert "not started" in result.stdout


# Run inside the chroot by test_image_build_in_a_chroot_without_systemd.
CHROOT_SCRIPT = r"""
set -eu
t=$1 repo=$2 models=$3
mount -t tmpfs tmpfs "$t"
mkdir "$t/upper" "$t/work" "$t/root"
# The build machine's own system, copy-on-write: nothing reaches the real one.
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
mount -t proc proc "$t/root/proc"
mount --bind /dev "$t/root/dev"
mount -t tmpfs tmpfs "$t/root/run"  # no /run/systemd/system: systemd is not running
mount -t tmpfs tmpfs "$t/root/tmp"
mkdir -p "$t/root/tmp/src" "$t/root/tmp/models"
mount --bind "$repo" "$t/root/tmp/src"
mount --bind "$models" "$t/root/tmp/models"
status=0
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot "$t/root" \
    bash /tmp/src/deploy/install.sh --no-apt --no-venv --model-dir /tmp/models || status=$?
echo "install-exit=$status"
chroot "$t/root" getent passwd edge-daemon || true
chroot "$t/root" id -nG edge-daemon || true
chroot "$t/root" stat -c 'owner %n %U:%G' /var/lib/edge-daemon /var/log/edge-daemon \
    /var/lib/edge-daemon/models || true
chroot "$t/root" readlink /etc/systemd/system/multi-user.target.wants/edge-daemon.service || true
"""


def test_image_build_in_a_chroot_without_systemd(tmp_path: Path, models: Path) -> None:
    """As pi-gen and rpi-image-gen run it: a chroot, as root, systemd not running."""
    if os.geteuid() != 0:
        missing("root (the image-build test installs into a chroot)")
    unshare = require_tool("unshare", "util-linux")
    require_tool("systemctl", "apt install systemd")
    require_tool("systemd-sysusers", "apt install systemd")
    (tmp_path / "t").mkdir()
    before = Path("/etc/passwd").read_text()

    # A private mount namespace: every mount disappears with it.
    result = subprocess.run(
        [
            unshare,
            "--mount",
            "--propagation",
            "private",
            bash(),
            "-c",
            CHROOT_SCRIPT,
            "chroot",
            str(tmp_path / "t"),
            str(REPO),
            str(models),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    if "mount: " in result.stderr and "install-exit=" not in out:
        missing(f"overlay and bind mounts ({result.stderr.strip()})")
    assert "install-exit=0" in out, out + result.stderr

    assert "image-build mode" in out
    assert "not started" in out
    planned = actions(out)
    assert not [line for line in planned if "daemon-reload" in line or " start" in line]
    # The account exists in the image, with the camera's and the Coral's groups ...
    assert re.search(r"^edge-daemon:x:\d+:\d+:", out, re.M), out
    assert re.search(
        r"^edge-daemon .*\bvideo\b.*\bplugdev\b|^edge-daemon .*\bplugdev\b.*\bvideo\b", out, re.M
    ), out
    # ... owning its state and logs, while the models stay root's ...
    assert "owner /var/lib/edge-daemon edge-daemon:edge-daemon" in out
    assert "owner /var/log/edge-daemon edge-daemon:edge-daemon" in out
    assert "owner /var/lib/edge-daemon/models root:root" in out
    # ... and the unit is enabled for the first boot.
    assert "/etc/systemd/system/edge-daemon.service" in out.splitlines()[-1]
    # The build machine itself is untouched.
    assert Path("/etc/passwd").read_text() == before
    assert not Path("/etc/systemd/system/edge-daemon.service").exists()
