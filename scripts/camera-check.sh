#!/usr/bin/env bash
# The camera source against the real camera stack: picamera2 0.3.38 from PyPI
# over Debian unstable's libcamera (0.7.x, built with its virtual pipeline
# handler) and python3-libcamera, in a Debian root built with debootstrap
# from the mirror the host's apt uses. In the root it installs edge-daemon
# from this tree, makes libcamera's virtual camera play a fixture photo, and
# runs tests/camera_root/check_camera.py: check names the camera and format,
# frames flow through `edge-daemon run` with the top-1 of `edge-daemon
# classify`, a second daemon gets a one-line busy error, SIGTERM frees the
# camera for the next daemon. It prints the figures (versions, formats,
# frames, times).
#
# Usage: sudo scripts/camera-check.sh
#
# Needs root and debootstrap. Talks only to the apt mirror and the Python
# package index (with the host's pip certificate and proxy settings). The
# root (debootstrap + apt packages + a venv with picamera2) is kept, untouched,
# in $EDGE_DAEMON_CAMERA_CACHE (default /var/cache/edge-daemon-camera) under
# a name keyed by its recipe below, and reused by the next run; each run works
# on a throwaway overlay. Everything runs in a private mount and PID
# namespace, so no mount it makes outlives it, even when it is killed.
set -euo pipefail
shopt -s inherit_errexit

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC
# host_mirror (the Debian mirror the host's apt uses), bind_ro.
# shellcheck source=scripts/debian-root.sh
source "$SRC/scripts/debian-root.sh"
readonly SUITE=sid
readonly INCLUDE=python3,ca-certificates
# libcamera with python3-libcamera, and the parts of picamera2's requirements
# Debian packages (gcc and python3-dev build PiDNG, which has no wheel).
readonly APT_PACKAGES=(
    python3-libcamera libcamera-ipa libcamera-tools python3-venv python3-pip
    python3-setuptools python3-numpy python3-pil python3-yaml python3-prctl python3-av
    python3-piexif python3-libarchive-c python3-jsonschema python3-tqdm gcc libc6-dev python3-dev
)
readonly PIP_PACKAGES=(picamera2==0.3.38 ai-edge-litert==2.3.0 flatbuffers)
readonly RECIPE_VERSION=1
readonly CACHE=${EDGE_DAEMON_CAMERA_CACHE:-/var/cache/edge-daemon-camera}
readonly VENV=/opt/venv
readonly IN_SRC=/src/edge-daemon
readonly IN_SHARED=/srv/edge-daemon-shared

log() { printf '[camera-check] %s\n' "$*"; }
die() {
    printf '[camera-check] error: %s\n' "$*" >&2
    exit 1
}

# The CA bundle the host's pip trusts (a proxy may sign the index's certificate).
host_ca_bundle() {
    local cert
    cert=$(python3 -m pip config list 2>/dev/null | awk -F= '/\.cert=/ { gsub(/\x27/, "", $2); print $2; exit }')
    cert=${cert:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
    [[ -f $cert ]] && printf '%s' "$cert"
}

# Run "$@" in ROOT as root, with /proc, /dev, /sys and the network (a clean environment).
in_root() {
    local root=$1
    shift
    env -i PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_CERT=/run/host-ca.crt \
        ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
        ${no_proxy:+no_proxy=$no_proxy} \
        chroot "$root" "$@"
}

mount_system() {
    local root=$1 ca
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    ca=$(host_ca_bundle) || true
    if [[ -n ${ca:-} ]]; then cp -L -- "$ca" "$root/run/host-ca.crt"; else : >"$root/run/host-ca.crt"; fi
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
}

# The cached root for this recipe (built when absent), in BASE; BUILT says which.
BASE=""
BUILT=cached
base_root() {
    local mirror=$1 recipe key base t0
    recipe="v$RECIPE_VERSION $SUITE $mirror minbase include=$INCLUDE apt=${APT_PACKAGES[*]} pip=${PIP_PACKAGES[*]}"
    key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
    base=$CACHE/root-$key
    BASE=$base
    if [[ -f $base/.camera-check-stamp && $(<"$base/.camera-check-stamp") == "$recipe" ]]; then
        log "reusing the Debian $SUITE root in $base"
        return
    fi
    BUILT=built
    t0=$SECONDS
    log "building the Debian $SUITE root (recipe $key) from $mirror"
    rm -rf --one-file-system -- "$base.new"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$base.new" "$mirror" >&2
    # This machine's clock may be past the Valid-Until of the mirror's
    # unstable Release file; debootstrap does not check it, apt does.
    printf 'Acquire::Check-Valid-Until "false";\n' >"$base.new/etc/apt/apt.conf.d/90camera-check"
    apt-config dump 'Acquire::http::Proxy' 'Acquire::https::Proxy' 2>/dev/null |
        grep -i 'proxy "' >"$base.new/etc/apt/apt.conf.d/91host-proxy" || true
    (
        mount_system "$base.new"
        in_root "$base.new" apt-get update -qq
        in_root "$base.new" apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
        in_root "$base.new" python3 -m venv --system-site-packages "$VENV"
        in_root "$base.new" "$VENV/bin/pip" install -q "${PIP_PACKAGES[@]}"
        for m in run dev sys proc; do umount -l "$base.new/$m"; done
    ) >&2
    rm -f -- "$base.new"/var/cache/apt/archives/*.deb "$base.new/etc/resolv.conf"
    rm -rf -- "$base.new/root/.cache"
    printf '%s' "$recipe" >"$base.new/.camera-check-stamp"
    # Roots of other recipes are stale now.
    find "$CACHE" -maxdepth 1 -name 'root-*' ! -name "root-$key*" -exec rm -rf --one-file-system -- {} +
    mv -- "$base.new" "$base"
    log "root built in $((SECONDS - t0)) s"
}

cleanup() {
    local work=$1 m
    [[ -n $work && -d $work ]] || return 0
    findmnt -rn -o TARGET | awk -v w="$work/" 'index($0, w) == 1' | sort -r |
        while IFS= read -r m; do umount -l -- "$m" 2>/dev/null || true; done
    rm -rf --one-file-system -- "$work"
}

WORK=""
host_main() {
    local mirror base work root t0 t_root site
    t0=$SECONDS
    mkdir -p "$CACHE"
    exec 9>"$CACHE/lock"
    flock 9 # one check at a time per machine (they share the cached root)
    mirror=${EDGE_DAEMON_CAMERA_MIRROR:-$(host_mirror)}
    rm -rf --one-file-system -- "$CACHE"/run.* "$CACHE"/root-*.new
    base_root "$mirror"
    base=$BASE
    t_root=$((SECONDS - t0))
    work=$(mktemp -d "$CACHE/run.XXXXXX")
    WORK=$work
    trap 'cleanup "$WORK"' EXIT
    trap 'exit 130' INT TERM
    root=$work/root
    mkdir -p "$work/upper" "$work/work" "$root"
    mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/work" "$root"
    mount_system "$root"
    bind_ro "$SRC" "$root$IN_SRC"
    bind_ro "$SHARED" "$root$IN_SHARED"

    log "installing edge-daemon from the source tree into the root's venv"
    # A copy: building writes into the tree, which the root sees read-only.
    in_root "$root" bash -c "mkdir -p /tmp/edge-daemon && tar -C $IN_SRC -c --exclude='./.venv*' \
        --exclude=./.git --exclude='*.egg-info' --exclude=./build . | tar -C /tmp/edge-daemon -x &&
        $VENV/bin/pip install -q --no-deps --no-build-isolation --no-index /tmp/edge-daemon"
    # The test-only stand-ins (tests/camera_root/*.py explain each one).
    site=$(in_root "$root" "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp -- "$SRC"/tests/camera_root/{pykms.py,root_shims.py,edge_daemon_test_shims.pth} "$root$site/"

    log "running tests/camera_root/check_camera.py in the root"
    local status=0
    in_root "$root" "$VENV/bin/python" "$IN_SRC/tests/camera_root/check_camera.py" \
        --shared "$IN_SHARED" || status=$?
    printf 'figure: root: %s s (%s)\n' "$t_root" "$BUILT"
    printf 'figure: total: %s s\n' "$((SECONDS - t0))"
    ((status == 0)) || die "the camera check failed (above)"
    log "passed"
}

main() {
    case ${1:-} in
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return ;;
    "") ;;
    *) die "unknown option: $1 (see --help)" ;;
    esac
    SHARED=$(cd "${EDGE_DAEMON_SHARED:-$SRC/../shared}" 2>/dev/null && pwd) ||
        die "no fixtures: ../shared (or \$EDGE_DAEMON_SHARED) must hold models/ and images/"
    if [[ -z ${CAMERA_CHECK_NAMESPACE:-} ]]; then
        ((EUID == 0)) || die "run as root (it builds a root, mounts and chroots): sudo $0"
        local tool
        for tool in debootstrap unshare chroot findmnt flock; do
            command -v "$tool" >/dev/null || die "$tool is missing (apt install debootstrap)"
        done
        exec unshare --mount --propagation private --pid --fork --kill-child -- \
            env CAMERA_CHECK_NAMESPACE=1 EDGE_DAEMON_SHARED="$SHARED" bash "${BASH_SOURCE[0]}" "$@"
    fi
    host_main
}

main "$@"
