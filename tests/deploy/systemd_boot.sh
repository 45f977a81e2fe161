#!/usr/bin/env bash
# Boot real systemd (PID 1 of its own PID namespace) in a throwaway copy of
# this machine, install edge-daemon into it with deploy/install.sh, and start
# the service from the installed unit. Used by tests/deploy/test_systemd_mqtt.py.
#
# Run it as root inside a private mount namespace (the test does:
# `unshare --mount --propagation private bash systemd_boot.sh`), so every
# mount it makes dies with it. The copy is an overlay over / whose changes go
# to $EDGE_WORK: the host's files, users and units are never touched, and of
# the host's units none is started (the copy boots into edge-check.target,
# which pulls in sysinit.target and nothing else). The network is the host's:
# the service reaches the test's broker on 127.0.0.1.
#
# Environment:
#   EDGE_WORK     empty folder for the overlay and logs
#   EDGE_REPO     the checkout (mounted read-only at /opt/edge-daemon/src)
#   EDGE_SITE     site-packages with the project's dependencies, for the
#                 system's python3 (the same minor version)
#   EDGE_MODELS   folder with the default model and labels (install.sh --model-dir)
#   EDGE_CONFIG   the config to install as /etc/edge-daemon/config.yaml
#   EDGE_SECRET   the MQTT password file, installed as /etc/edge-daemon/mqtt-password
#   EDGE_SAMPLES  folder of images, installed as /var/lib/edge-daemon/samples
#
# Then it reads commands on stdin, one per line, and answers on stdout:
#   start | stop | reload    systemctl that on edge-daemon.service
#   show                     "show ActiveState=... MainPID=... User=..." of the service
#   exit                     stop systemd and leave (also on end of input)
set -euo pipefail

: "${EDGE_WORK:?}" "${EDGE_REPO:?}" "${EDGE_SITE:?}" "${EDGE_MODELS:?}" "${EDGE_CONFIG:?}"
: "${EDGE_SECRET:?}" "${EDGE_SAMPLES:?}"

R=$EDGE_WORK/root
say() { printf '%s\n' "$*"; }
# A command in the copy, in systemd's PID and mount namespaces (systemd drops
# a client whose PID it cannot see).
in_root() {
    nsenter --target "$PID1" --pid --mount --root --wd \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_COLORS=0 "$@"
}

mkdir -p "$R" "$EDGE_WORK"/{upper,ovl}
mount -t overlay overlay -o "lowerdir=/,upperdir=$EDGE_WORK/upper,workdir=$EDGE_WORK/ovl" "$R"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"

# The project and the environment it runs in, as install.sh would leave them:
# a venv of the system's Python whose packages are the test environment's
# (read-only) and whose edge-daemon command runs this checkout.
mkdir -p "$R/opt/edge-daemon/src" "$R/opt/edge-daemon/deps" "$R/srv/models"
mount --bind "$EDGE_REPO" "$R/opt/edge-daemon/src"
mount -o remount,bind,ro "$R/opt/edge-daemon/src"
mount --bind "$EDGE_SITE" "$R/opt/edge-daemon/deps"
mount -o remount,bind,ro "$R/opt/edge-daemon/deps"
chroot "$R" /usr/bin/python3 -m venv --without-pip /opt/edge-daemon/venv
site=$(chroot "$R" /opt/edge-daemon/venv/bin/python -c \
    'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '/opt/edge-daemon/src\n/opt/edge-daemon/deps\n' >"$R$site/edge-daemon-check.pth"
printf '%s\n' '#!/opt/edge-daemon/venv/bin/python' 'import sys' \
    'from edge_daemon.cli import main' 'sys.exit(main())' >"$R/opt/edge-daemon/venv/bin/edge-daemon"
chmod 0755 "$R/opt/edge-daemon/venv/bin/edge-daemon"
mount --bind "$EDGE_MODELS" "$R/srv/models"

# No unit of the host's: only what this check and the installer put there.
rm -rf "${R:?}/etc/systemd/system/"*
# Of the basic system only the journal: units that would act on the kernel or
# on the host's devices (binfmt_misc, sysctl, modules, udev, /dev nodes, fsck,
# swap from fstab) are masked, since the kernel and /dev are shared.
: >"$R/etc/fstab"
for unit in dev-hugepages.mount dev-mqueue.mount kmod-static-nodes.service \
    proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
    sys-fs-fuse-connections.mount sys-kernel-config.mount sys-kernel-debug.mount \
    sys-kernel-tracing.mount systemd-ask-password-console.path systemd-binfmt.service \
    systemd-firstboot.service systemd-machine-id-commit.service \
    systemd-modules-load.service systemd-pcrphase-sysinit.service systemd-pcrphase.service \
    systemd-random-seed.service systemd-repart.service systemd-sysctl.service \
    systemd-tmpfiles-setup-dev.service systemd-tmpfiles-setup.service \
    systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
    systemd-remount-fs.service systemd-fsck-root.service systemd-hwdb-update.service \
    ldconfig.service swap.target cryptsetup.target integritysetup.target veritysetup.target; do
    ln -s /dev/null "$R/etc/systemd/system/$unit"
done
cat >"$R/etc/systemd/system/edge-check.target" <<'EOF'
[Unit]
Description=edge-daemon check: the basic system, nothing else
Requires=sysinit.target
After=sysinit.target
AllowIsolate=yes
EOF

# The user's edits, made before the installer runs (it keeps an edited config).
install -D -m 0644 "$EDGE_CONFIG" "$R/etc/edge-daemon/config.yaml"
install -d -m 0755 "$R/var/lib/edge-daemon/samples"
cp -- "$EDGE_SAMPLES"/* "$R/var/lib/edge-daemon/samples/"

# systemd as PID 1 of a new PID namespace, rooted in the copy.
unshare --pid --fork --kill-child --mount-proc="$R/proc" \
    chroot "$R" env -i container=edge-check \
    /lib/systemd/systemd --system --unit=edge-check.target --log-level=info \
    >"$EDGE_WORK/systemd.log" 2>&1 &
UNSHARE=$!
PID1=""
cleanup() {
    # PID 1 of the namespace: when it dies, the kernel kills everything in it.
    [[ -n $PID1 ]] && kill -KILL "$PID1" 2>/dev/null
    kill -KILL "$UNSHARE" 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 300); do
    PID1=$(pgrep -P "$UNSHARE" || true)
    [[ -n $PID1 && -S $R/run/systemd/private ]] &&
        [[ $(in_root systemctl show -p ActiveState --value edge-check.target 2>/dev/null) == active ]] &&
        break
    sleep 0.1
done
[[ -n $PID1 && -S $R/run/systemd/private ]] || { say "error systemd did not start"; exit 1; }
say "booted $(in_root systemctl --version | head -1)"

# Install as a user would, with the model from a folder and this environment
# standing in for the venv; enabled, not started yet (the password file's
# group is the service's, which the installer creates).
in_root /opt/edge-daemon/src/deploy/install.sh --model-dir /srv/models --no-venv --no-apt \
    --no-start >"$EDGE_WORK/install.log" 2>&1 || {
    say "error install.sh failed: $(tail -5 "$EDGE_WORK/install.log" | tr '\n' ' ')"
    exit 1
}
install -m 0640 "$EDGE_SECRET" "$R/etc/edge-daemon/mqtt-password"
in_root chgrp edge-daemon /etc/edge-daemon/mqtt-password
say "installed $(in_root systemctl is-enabled edge-daemon.service)"

while IFS= read -r cmd; do
    case $cmd in
    start | stop | reload)
        if in_root systemctl "$cmd" edge-daemon.service 2>"$EDGE_WORK/systemctl.err"; then
            say "done $cmd"
        else
            say "error $cmd: $(tr '\n' ' ' <"$EDGE_WORK/systemctl.err")"
        fi
        ;;
    show)
        say "show $(in_root systemctl show -p ActiveState -p SubState -p MainPID -p User \
            -p Result edge-daemon.service | tr '\n' ' ')"
        ;;
    journal)
        in_root journalctl -u edge-daemon.service --no-pager -o cat 2>&1 | sed 's/^/journal /'
        say "done journal"
        ;;
    exit) break ;;
    *) say "error unknown command $cmd" ;;
    esac
done
say "bye"
