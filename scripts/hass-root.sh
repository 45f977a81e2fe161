#!/usr/bin/env bash
# A cached Debian root with Home Assistant Core, for the real-HA integration
# test (tests/mqtt/test_home_assistant.py). Home Assistant needs a newer Python
# than the host's, so it lives in a Debian testing root (debootstrap, from the
# mirror the host's apt uses) with a venv at /opt/hass holding homeassistant
# and the requirements of every integration the test loads, installed ahead:
# Home Assistant then starts with --skip-pip and never installs anything.
#
# Usage: sudo scripts/hass-root.sh [build]        build the root unless cached; print its path
#        scripts/hass-root.sh path                 print the cached root's path (exit 3: none)
#        scripts/hass-root.sh version              print the Home Assistant version it is built for
#        sudo scripts/hass-root.sh run CONFIG [--publish PORT]... [--reach PORT]... [-- ARG...]
#                                                  run hass on the config folder CONFIG (until killed),
#                                                  in a network of its own: --publish makes its
#                                                  127.0.0.1:PORT the host's, --reach the host's its
#        scripts/hass-root.sh newest               the newest homeassistant pip would install there
#
# Settings (environment):
#   EDGE_DAEMON_HASS_CACHE    where roots are kept (default /var/cache/edge-daemon-hass)
#   EDGE_DAEMON_HASS_VERSION  the homeassistant release (default: the one below,
#                             what the test and docs/mqtt.md were checked against)
#   EDGE_DAEMON_HASS_MIRROR   the Debian mirror (default: the host's apt mirror)
#
# The root is keyed by its recipe (suite, mirror, version, integrations, the
# revision below): a rerun with the same recipe takes no time, a changed one
# builds a new root and removes the old. Builds take turns through a lock;
# `run` holds another one shared, so a build never removes a root in use. Everything
# runs in a private mount and PID namespace: no mount outlives it, and killing
# the `run` process ends Home Assistant with it. pip in the root gets the host's
# settings (index, certificates, proxy). `run` binds the cached root read-only:
# Home Assistant writes only to CONFIG; its network namespace has only a
# loopback, reached through the relays `run` sets up.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC
# shellcheck source=scripts/debian-root.sh
source "$SRC/scripts/debian-root.sh"

readonly SUITE=forky # Debian testing: python3 3.14 (Home Assistant 2026.3+ needs >= 3.14.2)
# g++ and the headers: two requirements of the voice integrations Home
# Assistant always sets up (pymicro-vad, pyspeex-noise) have no wheel for 3.14;
# libturbojpeg0 for the camera integration's images.
readonly INCLUDE=python3,python3-venv,python3-dev,g++,libturbojpeg0,ca-certificates,tzdata
readonly DEFAULT_VERSION=2026.11.0
readonly VERSION=${EDGE_DAEMON_HASS_VERSION:-$DEFAULT_VERSION}
# The integrations the test configures; the requirements of these, of the ones
# Home Assistant always loads, and of their dependencies are installed ahead.
readonly DOMAINS="http api websocket_api config mqtt automation input_boolean logger"
# Bump when the steps below change what a root holds.
readonly RECIPE=2
readonly CACHE=${EDGE_DAEMON_HASS_CACHE:-/var/cache/edge-daemon-hass}
readonly VENV=/opt/hass
readonly IN_SRC=/src/edge-daemon
readonly HOST_FILES=/run/hass-root-host

log() { printf '[hass-root] %s\n' "$*" >&2; }
die() {
    printf '[hass-root] error: %s\n' "$*" >&2
    exit 1
}

# --- Inside the root (chroot, as root): the venv --------------------------------

inside_build() {
    local version=$1 domains=$2 site reqs=/tmp/hass-requirements req failed=()
    log "python $(python3 -c 'import platform; print(platform.python_version())'); venv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --no-input --no-cache-dir --upgrade pip >/dev/null
    log "pip install homeassistant==$version"
    "$VENV/bin/python" -m pip install --no-input --no-cache-dir "homeassistant==$version"
    site=$("$VENV/bin/python" -c 'import homeassistant, os; print(os.path.dirname(homeassistant.__file__))')
    # The integrations' requirements, from their manifests: the named ones and
    # their dependencies (reqs.needed), and those Home Assistant sets up without
    # being asked (bootstrap's lists) and theirs (reqs.others).
    "$VENV/bin/python" - "$domains" "$reqs" <<'EOF'
import json, sys
from pathlib import Path

import homeassistant
from homeassistant import bootstrap

components = Path(homeassistant.__file__).parent / "components"


def closure(domains):
    seen, todo, requirements = set(), sorted(domains), set()
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest = components / domain / "manifest.json"
        if not manifest.exists():
            continue  # an optional one (sentry, isal, ...) not shipped with the core
        data = json.loads(manifest.read_text())
        requirements |= set(data.get("requirements", []))
        # after_dependencies too: their modules get imported when they are
        # there (mqtt's config flow imports hassio, analytics recorder ...).
        todo += data.get("dependencies", []) + data.get("after_dependencies", [])
    return seen, requirements


named = set(sys.argv[1].split())
always = set()
for name in ("CORE_INTEGRATIONS", "LOGGING_AND_HTTP_DEPS_INTEGRATIONS", "FRONTEND_INTEGRATIONS",
             "DEFAULT_INTEGRATIONS"):
    always |= set(getattr(bootstrap, name, ()))
_, needed = closure(named)
domains, everything = closure(named | always)
print(f"[hass-root] {len(domains)} integrations: {' '.join(sorted(domains))}", file=sys.stderr)
Path(sys.argv[2] + ".needed").write_text("".join(f"{r}\n" for r in sorted(needed)))
Path(sys.argv[2] + ".others").write_text("".join(f"{r}\n" for r in sorted(everything - needed)))
EOF
    log "the requirements of the test's integrations: $(tr '\n' ' ' <"$reqs.needed")"
    log "and of the ones always set up: $(tr '\n' ' ' <"$reqs.others")"
    local pip=("$VENV/bin/python" -m pip install --no-input --no-cache-dir -c "$site/package_constraints.txt")
    "${pip[@]}" -r "$reqs.needed"
    # Everything else at once; what fails then goes one by one, and what still
    # fails is listed in $VENV/not-installed.txt (those integrations fail to set up).
    : >"$VENV/not-installed.txt"
    if ! "${pip[@]}" -r "$reqs.others"; then
        while IFS= read -r req; do
            "${pip[@]}" "$req" || failed+=("$req")
        done <"$reqs.others"
        printf '%s\n' ${failed[@]+"${failed[@]}"} >"$VENV/not-installed.txt"
        log "not installed: ${failed[*]:-none}"
    fi
    "$VENV/bin/python" -c 'import paho.mqtt, homeassistant.components.mqtt'
    "$VENV/bin/hass" --version
    mkdir -p /config
}

# --- On the host, inside the private namespace -------------------------------------

recipe() {
    printf '%s\n' "recipe=$RECIPE" "suite=$SUITE" "include=$INCLUDE" "mirror=$1" \
        "homeassistant=$VERSION" "domains=$DOMAINS"
}

key_of() { recipe "$1" | sha256sum | cut -c1-16; }

mirror() { printf '%s' "${EDGE_DAEMON_HASS_MIRROR:-$(host_mirror)}"; }

# The cached, untouched debootstrap root (built when absent or stale).
base_root() {
    local mirror=$1 base=$CACHE/base-$SUITE want
    want="$SUITE $mirror minbase include=$INCLUDE"
    if [[ -f $base/.hass-base-stamp && $(<"$base/.hass-base-stamp") == "$want" ]]; then
        log "reusing the Debian $SUITE root in $base"
        printf '%s' "$base"
        return
    fi
    log "debootstrap $SUITE from $mirror"
    rm -rf --one-file-system -- "$base.new" "$base"
    # debootstrap's script for testing covers any suite after the one it knows.
    debootstrap --variant=minbase --include="$INCLUDE" \
        "$SUITE" "$base.new" "$mirror" /usr/share/debootstrap/scripts/sid >&2
    rm -f -- "$base.new"/var/cache/apt/archives/*.deb
    printf '%s' "$want" >"$base.new/.hass-base-stamp"
    mv -- "$base.new" "$base"
    printf '%s' "$base"
}

mount_system() {
    local root=$1
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
}

build_main() {
    local mirror key dir base t0=$SECONDS old
    mkdir -p "$CACHE"
    exec 8>"$CACHE/build.lock"
    flock 8 # one build at a time
    mirror=$(mirror)
    key=$(key_of "$mirror")
    dir=$CACHE/hass-$key
    if [[ -f $dir/.hass-root ]]; then
        log "reusing $dir (Home Assistant $VERSION)"
        printf '%s\n' "$dir"
        return
    fi
    base=$(base_root "$mirror")
    log "building $dir: Home Assistant $VERSION in a venv"
    rm -rf --one-file-system -- "$dir.new"
    cp -a --reflink=auto -- "$base" "$dir.new"
    BUILDING=$dir.new
    trap 'unmount_tree "$BUILDING"' EXIT
    mount_system "$dir.new"
    bind_ro "$SRC" "$dir.new$IN_SRC"
    host_pip_settings
    host_proxy_settings
    bind_host_files "$dir.new"
    cp -L /etc/resolv.conf "$dir.new/etc/resolv.conf"
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb PIP_DISABLE_PIP_VERSION_CHECK=1 \
        ${PIP_ENV[@]+"${PIP_ENV[@]}"} ${PROXY_ENV[@]+"${PROXY_ENV[@]}"} \
        chroot "$dir.new" /bin/bash "$IN_SRC/scripts/hass-root.sh" --inside-build "$VERSION" "$DOMAINS"
    unmount_tree "$dir.new"
    trap - EXIT
    rm -rf -- "$dir.new/root/.cache"
    { recipe "$mirror"; printf 'built_in_seconds=%d\n' "$((SECONDS - t0))"; } >"$dir.new/.hass-root"
    mv -- "$dir.new" "$dir"
    # Older roots go, unless a run still uses one (then the next build removes it).
    exec 9>"$CACHE/lock"
    if flock -n 9; then
        for old in "$CACHE"/hass-*; do
            [[ $old == "$dir" || ! -d $old ]] || rm -rf --one-file-system -- "$old"
        done
    fi
    exec 9>&-
    log "built $dir in $((SECONDS - t0)) s"
    printf '%s\n' "$dir"
}

ready_root() {
    local dir
    dir=$CACHE/hass-$(key_of "$(mirror)")
    [[ -f $dir/.hass-root ]] || return 3
    printf '%s\n' "$dir"
}

inside_run() {
    local root=$1 config=$2 relay=$3 publish=$4 reach=$5 mnt=$CACHE/mnt p
    shift 5
    touch "$CACHE/lock"
    exec 9<"$CACHE/lock"
    flock -s 9 # held by hass itself: no build removes the root meanwhile
    [[ -f $root/.hass-root ]] || die "$root was removed meanwhile; run again"
    mkdir -p "$mnt"
    mount -t tmpfs tmpfs "$mnt"
    mkdir "$mnt/root"
    mount --bind "$root" "$mnt/root"
    mount -o remount,bind,ro "$mnt/root"
    mount_system "$mnt/root"
    mount --bind "$config" "$mnt/root/config"
    # Names resolve on loopback only (where nothing answers): the integrations
    # Home Assistant always sets up that would fetch something from outside
    # (catalogs, brand images) fail at once instead.
    printf 'nameserver 127.0.0.1\n' >"$mnt/resolv.conf"
    mount --bind "$mnt/resolv.conf" "$mnt/root/etc/resolv.conf"
    # This network namespace has nothing but its own loopback: the other end
    # of each relay (see run_main) is on the host's.
    ip link set lo up
    for p in $publish; do
        socat "UNIX-LISTEN:$relay/in-$p.sock,fork,mode=600" "TCP:127.0.0.1:$p" &
    done
    for p in $reach; do
        socat "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$relay/out-$p.sock" &
    done
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb PYTHONDONTWRITEBYTECODE=1 \
        chroot "$mnt/root" "$VENV/bin/hass" --config /config --skip-pip "$@"
}

# run CONFIG [--publish PORT]... [--reach PORT]... [-- HASS-ARG...]: Home
# Assistant in namespaces of its own, network included (only a loopback, so
# nothing it does reaches beyond this machine, and what it binds, mDNS
# included, is its own). socat relays through Unix sockets in CONFIG/.relay:
# --publish PORT makes its 127.0.0.1:PORT the host's 127.0.0.1:PORT (its HTTP
# API), --reach PORT the other way round (the broker). Killing the process
# group ends everything.
run_main() {
    local root config relay publish="" reach="" p pids=() status=0
    root=$(ready_root) || die "no Home Assistant $VERSION root in $CACHE: build it with sudo scripts/hass-root.sh build"
    config=$(cd "$1" && pwd)
    shift
    while (($#)); do
        case $1 in
        --publish) publish+=" ${2:?--publish needs a port}"; shift ;;
        --reach) reach+=" ${2:?--reach needs a port}"; shift ;;
        --) shift; break ;;
        *) break ;;
        esac
        shift
    done
    relay=$config/.relay
    ((${#relay} < 90)) || die "$config: too long a path for the relay sockets; use a shorter one"
    rm -rf -- "$relay"
    mkdir -m 0700 "$relay"
    for p in $publish; do
        socat "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$relay/in-$p.sock" &
        pids+=($!)
    done
    for p in $reach; do
        socat "UNIX-LISTEN:$relay/out-$p.sock,fork,mode=600" "TCP:127.0.0.1:$p" &
        pids+=($!)
    done
    unshare --mount --propagation private --pid --net --fork --kill-child -- \
        bash "${BASH_SOURCE[0]}" --inside-run "$root" "$config" "$relay" "$publish" "$reach" "$@" ||
        status=$?
    kill ${pids[@]+"${pids[@]}"} 2>/dev/null || true
    rm -rf -- "$relay"
    return "$status"
}

need_root() {
    ((EUID == 0)) || die "run as root (it mounts and chroots): sudo $0 $*"
    local tool
    for tool in unshare chroot findmnt flock "$@"; do
        command -v "$tool" >/dev/null || die "$tool is missing (apt install debootstrap util-linux socat iproute2)"
    done
}

main() {
    local cmd=${1:-build}
    case $cmd in
    --inside-build) inside_build "$2" "$3" ;;
    --inside-run) shift && inside_run "$@" ;;
    --namespace-build) build_main ;;
    build)
        need_root debootstrap
        exec unshare --mount --propagation private --pid --fork --kill-child -- \
            bash "${BASH_SOURCE[0]}" --namespace-build
        ;;
    path)
        ready_root || {
            log "no Home Assistant $VERSION root in $CACHE: build it with sudo scripts/hass-root.sh build"
            return 3
        }
        ;;
    version) printf '%s\n' "$VERSION" ;;
    newest)
        # The host's pip (its index settings), asked for the root's Python.
        local root py
        root=$(ready_root) || die "no root yet to ask for its Python (sudo scripts/hass-root.sh build)"
        py=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
        "${ROOT_PIP_PYTHON:-python3}" -m pip index versions homeassistant --python-version "$py" \
            --only-binary=:all: 2>/dev/null | sed -n 's/^homeassistant (\(.*\))$/\1/p'
        ;;
    run)
        [[ -d ${2:-} ]] || die "run needs the Home Assistant config folder: $0 run CONFIG [--publish PORT]... [--reach PORT]... [-- HASS-ARG...]"
        need_root socat ip
        shift
        run_main "$@"
        ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command: $cmd (see --help)" ;;
    esac
}

main "$@"
