#!/usr/bin/env bash
# Install and run edge-daemon on emulated Raspberry Pi OS: a Debian 12 root per
# architecture (arm64 = 64-bit Pi OS, armhf = 32-bit Pi OS and Pi Zero/1),
# built with debootstrap from the mirror the host's apt uses and run under
# qemu-user-static. In each root it:
#
#   1. installs the project with deploy/install.sh as a user would (apt, venv,
#      config, model, unit), in image-build mode since systemd is not running;
#   2. runs `edge-daemon check` as the service user;
#   3. classifies the fixture photos with every TFLite runtime that has a wheel
#      for the architecture and checks them against ../shared/images/expected.yaml;
#   4. runs `edge-daemon run` over the files source as the service user;
#   5. (armhf) teaches three classes from the fixture photos, trains, exports
#      and classifies with the taught model (pure Python training and export);
#
# then prints a table: architecture, runtime, versions, wheels, goldens, time.
#
# Usage: sudo scripts/pi-os-check.sh [--arch arm64|armhf]... [--quick]
#   --arch ARCH   check only this architecture (repeatable; default: both)
#   --quick       classify with the default model only (not every 224x224 one)
#
# Needs root and the apt packages debootstrap, qemu-user-static and
# binfmt-support. Talks only to the apt mirror and the Python package index
# (with the host's pip settings: index, certificates, proxy). The debootstrap
# roots are kept, untouched, in $EDGE_DAEMON_PI_CACHE (default
# /var/cache/edge-daemon-pi-check) and reused by the next run; each run works
# on a throwaway overlay. Everything runs in a private mount and PID namespace,
# so no mount it makes outlives it, even when it is killed.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC
readonly SUITE=bookworm
# What Raspberry Pi OS Lite has and minbase lacks, among what the installer
# relies on: systemd (systemctl and systemd-sysusers work in an image build),
# Python and the CA certificates.
readonly INCLUDE=systemd,python3,ca-certificates
readonly CACHE=${EDGE_DAEMON_PI_CACHE:-/var/cache/edge-daemon-pi-check}
# Where the root sees the source tree and the fixtures (read-only binds).
readonly IN_SRC=/src/edge-daemon
readonly IN_SHARED=/srv/edge-daemon-shared
readonly VENV=/opt/edge-daemon/venv
# shellcheck source=scripts/debian-root.sh
source "$SRC/scripts/debian-root.sh"

log() { printf '[pi-os-check] %s\n' "$*"; }
die() {
    printf '[pi-os-check] error: %s\n' "$*" >&2
    exit 1
}

qemu_of() {
    case $1 in
    arm64) printf qemu-aarch64 ;;
    armhf) printf qemu-arm ;;
    *) die "unknown architecture $1 (arm64 or armhf)" ;;
    esac
}

# --- Inside the root (run by chroot, as root) ---------------------------------

# Seconds since T0 as an integer.
since() { printf '%d' "$((SECONDS - $1))"; }

inside() {
    local arch=$1 quick=$2 shared=$IN_SHARED rows=/tmp/pi-check.rows t0
    local goldens=("$IN_SRC/scripts/pi_check_goldens.py" --shared "$shared")
    : >"$rows"

    log "$arch: deploy/install.sh (apt, venv, config, model, unit)"
    t0=$SECONDS
    bash "$IN_SRC/deploy/install.sh" --model-dir "$shared/models" 2>&1 | tee /tmp/install.log
    ((PIPESTATUS[0] == 0)) || die "$arch: deploy/install.sh failed"
    printf 'install\t%s\n' "$(since "$t0")" >>"$rows"
    # Image-build mode: enabled for the next boot, not started, nothing measured kept.
    grep -q 'image-build mode' /tmp/install.log || die "$arch: install.sh did not notice that systemd is not running"
    grep -q 'python3-picamera2 is not in this system' /tmp/install.log ||
        die "$arch: install.sh did not say that picamera2 is missing"
    [[ $(readlink /etc/systemd/system/multi-user.target.wants/edge-daemon.service) == */edge-daemon.service ]] ||
        die "$arch: the unit is not enabled"
    [[ ! -e /var/lib/edge-daemon/state/delegates.json ]] ||
        die "$arch: a delegate choice measured at install time was left behind"

    log "$arch: edge-daemon check, as the service user"
    t0=$SECONDS
    runuser -u edge-daemon -- "$VENV/bin/edge-daemon" check --config /etc/edge-daemon/config.yaml
    printf 'check\t%s\n' "$(since "$t0")" >>"$rows"

    log "$arch: edge-daemon run over the fixture photos (files source), as the service user"
    t0=$SECONDS
    local out=/var/lib/edge-daemon/pi-check
    install -d -o edge-daemon -g edge-daemon -m 0750 "$out"
    cat >"$out/config.yaml" <<EOF
model:
  path: /var/lib/edge-daemon/models/mobilenet_v1_1.0_224_quant.tflite
  labels: /var/lib/edge-daemon/models/labels_mobilenet_quant_v1_224.txt
source:
  kind: files
  path: $shared/images
outputs:
  prediction_log: $out/predictions.jsonl
  status_file: $out/status.json
daemon:
  state_dir: $out/state
http:
  # The web server on a free loopback port: the web extra works on this CPU,
  # without taking 8080 from anything on the host (the chroot shares its network).
  listen: 127.0.0.1:0
EOF
    runuser -u edge-daemon -- "$VENV/bin/edge-daemon" run --config "$out/config.yaml"
    "$VENV/bin/python" "${goldens[@]}" log "$out/predictions.jsonl"
    printf 'run\t%s\n' "$(since "$t0")" >>"$rows"

    if [[ $arch == armhf ]]; then
        # 32-bit Pi OS: teach trains and exports in pure Python (no TFLite schema
        # module in tflite-runtime), once, on the fixture photos.
        log "$arch: edge-daemon teach add + train + classify, as the service user"
        t0=$SECONDS
        local cls img
        for cls in cat bird other; do
            case $cls in
            cat) img=(cat.bmp cat_720p.jpg cat.bmp) ;;
            bird) img=(bird.bmp parrot.jpg bird.bmp) ;;
            other) img=(grace_hopper.bmp hot_dog.jpg dragonfly.bmp) ;;
            esac
            runuser -u edge-daemon -- "$VENV/bin/edge-daemon" teach add "$cls" \
                "${img[@]/#/$shared/images/}" --config "$out/config.yaml"
        done
        runuser -u edge-daemon -- "$VENV/bin/edge-daemon" teach train --config "$out/config.yaml" ||
            die "$arch: teach train failed"
        runuser -u edge-daemon -- "$VENV/bin/edge-daemon" classify --json --config "$out/config.yaml" \
            "$shared/images/cat.bmp" >/tmp/teach-classify.json
        grep -q '"label": "cat"' /tmp/teach-classify.json || die "$arch: the taught model missed cat.bmp"
        printf 'teach\t%s\n' "$(since "$t0")" >>"$rows"
    fi

    # Every runtime with a wheel for this architecture: the installed one
    # first, then the other one added to the same venv.
    local runtime extra pkg status summary
    for runtime in ai_edge_litert tflite_runtime; do
        case $runtime in
        ai_edge_litert) pkg=ai-edge-litert extra=() ;;
        tflite_runtime) pkg=tflite-runtime extra=("numpy<2") ;;
        esac
        t0=$SECONDS
        if ! "$VENV/bin/python" -c "import $runtime.interpreter" 2>/dev/null; then
            log "$arch: adding $pkg to the venv"
            status=0
            "$VENV/bin/python" -m pip install --no-input --only-binary=:all: "$pkg" \
                ${extra[@]+"${extra[@]}"} >/tmp/pip-"$pkg".log 2>&1 || status=$?
            if ((status != 0)); then
                cat /tmp/pip-"$pkg".log
                grep -q 'No matching distribution found' /tmp/pip-"$pkg".log ||
                    die "$arch: pip install $pkg failed"
                printf 'row\t%s\n' "$(printf '%s\t' "$runtime" "-" "no $pkg wheel for $(uname -m)" "-")$(since "$t0") s" >>"$rows"
                continue
            fi
        fi
        log "$arch: classifying the fixture photos with $runtime"
        status=0
        summary=$("$VENV/bin/python" "${goldens[@]}" classify "$runtime" \
            --edge-daemon "$VENV/bin/edge-daemon" ${quick:+--quick}) || status=$?
        printf '%s\n' "$summary"
        "$VENV/bin/python" - "$summary" "$(since "$t0")" >>"$rows" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
print("row\t" + "\t".join([s["runtime"], s["versions"], s["wheels"], s["goldens"], sys.argv[2] + " s"]))
EOF
        ((status == 0)) || die "$arch: $runtime missed goldens (above)"
    done
}

# --- On the host, inside the private namespace ----------------------------------

# The host's mirror, pip and proxy settings, bind_ro: scripts/debian-root.sh.
# pip's settings point under HOST_FILES in the root.
readonly HOST_FILES=/run/pi-os-check-host
# Any Python with pip reads the host's pip settings; scripts/test.sh names its venv's.
ROOT_PIP_PYTHON=${PI_CHECK_PYTHON:-}

# The cached, untouched debootstrap root for ARCH (built when absent or stale).
base_root() {
    local arch=$1 mirror=$2 base want
    base=$CACHE/base-$arch
    want="$SUITE $mirror minbase include=$INCLUDE"
    if [[ -f $base/.pi-check-stamp && $(<"$base/.pi-check-stamp") == "$want" ]]; then
        log "$arch: reusing the Debian root in $base" >&2
        printf '%s' "$base"
        return
    fi
    log "$arch: debootstrap $SUITE from $mirror" >&2
    rm -rf --one-file-system -- "$base.new" "$base"
    debootstrap --arch="$arch" --variant=minbase --include="$INCLUDE" \
        "$SUITE" "$base.new" "$mirror" >&2
    rm -f -- "$base.new"/var/cache/apt/archives/*.deb
    printf '%s' "$want" >"$base.new/.pi-check-stamp"
    mv -- "$base.new" "$base"
    printf '%s' "$base"
}

# An ARM /proc/cpuinfo for the root: under qemu-user the root would read the
# host's x86 one, on which LiteRT crashes (a real Pi has its own). Cortex-A72,
# as in a Pi 4, one entry per host CPU so it agrees with /sys.
fake_cpuinfo() {
    local arch=$1 n i
    n=$(nproc)
    for ((i = 0; i < n; i++)); do
        if [[ $arch == arm64 ]]; then
            printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
            printf 'CPU implementer\t: 0x41\nCPU architecture: 8\n'
        else
            printf 'processor\t: %d\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n' "$i"
            printf 'Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n'
            printf 'CPU implementer\t: 0x41\nCPU architecture: 7\n'
        fi
        printf 'CPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 0000000000000000\n'
    printf 'Model\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
}

check_arch() {
    local arch=$1 mirror=$2 work=$3 quick=$4 base root t0
    t0=$SECONDS
    base=$(base_root "$arch" "$mirror")
    printf 'root\t%s\n' "$(since "$t0")" >"$work/$arch.times"
    root=$work/$arch/root
    mkdir -p "$work/$arch/upper" "$work/$arch/work" "$root"
    mount -t overlay overlay \
        -o "lowerdir=$base,upperdir=$work/$arch/upper,workdir=$work/$arch/work" "$root"
    mount -t proc proc "$root/proc"
    fake_cpuinfo "$arch" >"$work/$arch/cpuinfo"
    mount --bind "$work/$arch/cpuinfo" "$root/proc/cpuinfo"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    # No /run/systemd/system: systemd is not running, as in an image build.
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    bind_ro "$SRC" "$root$IN_SRC"
    bind_ro "$SHARED" "$root$IN_SHARED"
    bind_host_files "$root"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    apt-config dump 'Acquire::http::Proxy' 'Acquire::https::Proxy' 2>/dev/null |
        grep -i 'proxy "' >"$root/etc/apt/apt.conf.d/90host-proxy" || true

    # A clean environment, plus what pip and apt need to reach the registries.
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
        ${PIP_ENV[@]+"${PIP_ENV[@]}"} ${PROXY_ENV[@]+"${PROXY_ENV[@]}"} \
        chroot "$root" /bin/bash "$IN_SRC/scripts/pi-os-check.sh" --inside "$arch" "$quick"
    cat "$root/tmp/pi-check.rows" >>"$work/$arch.times"
    printf 'total\t%s\n' "$(since "$t0")" >>"$work/$arch.times"
}

# Unmount everything under WORK, deepest first, then remove it.
cleanup() {
    local work=$1
    [[ -n $work && -d $work ]] || return 0
    unmount_tree "$work"
    rm -rf --one-file-system -- "$work"
}

table() {
    local work=$1 arch line kind
    printf '\n| Architecture | Runtime | Versions | Wheels resolved | Goldens passed | Time |\n'
    printf '| --- | --- | --- | --- | --- | --- |\n'
    for arch in "${ARCHES[@]}"; do
        [[ -f $work/$arch.times ]] || continue
        while IFS=$'\t' read -r kind line; do
            [[ $kind == row ]] && printf '| %s | %s |\n' "$arch" "${line//$'\t'/ | }"
        done <"$work/$arch.times"
    done
    printf '\nTime per architecture (s, emulated; both ran side by side):\n'
    for arch in "${ARCHES[@]}"; do
        [[ -f $work/$arch.times ]] || continue
        awk -F'\t' -v a="$arch" '$1 != "row" { s = s sprintf(" %s %s", $1, $2) } END { print "  " a ":" s }' \
            "$work/$arch.times"
    done
}

WORK=""
host_main() {
    local quick=$1 mirror work arch q pids=() failed=0 i
    mkdir -p "$CACHE"
    exec 9>"$CACHE/lock"
    flock 9 # one check at a time per machine (they share the cached roots)
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        # Inside this namespace only; the registrations live as long as it does.
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    for arch in "${ARCHES[@]}"; do
        q=$(qemu_of "$arch")
        [[ -e /proc/sys/fs/binfmt_misc/$q ]] || update-binfmts --import "$q" >/dev/null 2>&1 || true
        update-binfmts --enable "$q" >/dev/null 2>&1 || true
        [[ $(head -n1 "/proc/sys/fs/binfmt_misc/$q" 2>/dev/null) == enabled ]] ||
            die "$q is not registered with binfmt_misc (apt install qemu-user-static binfmt-support)"
    done
    mirror=${EDGE_DAEMON_PI_MIRROR:-$(host_mirror)}
    host_pip_settings
    host_proxy_settings
    # Leftovers of a run that was killed (its mounts died with its namespace).
    rm -rf --one-file-system -- "$CACHE"/run.*
    work=$(mktemp -d "$CACHE/run.XXXXXX")
    WORK=$work
    trap 'cleanup "$WORK"' EXIT
    trap 'exit 130' INT TERM
    log "mirror $mirror; architectures ${ARCHES[*]}; logs in $work while running"
    for arch in "${ARCHES[@]}"; do
        check_arch "$arch" "$mirror" "$work" "$quick" >"$work/$arch.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!ARCHES[@]}"; do
        if ! wait "${pids[$i]}"; then
            failed=1
            log "${ARCHES[$i]}: FAILED; the end of its log:"
            tail -n 60 "$work/${ARCHES[$i]}.log" | sed "s/^/  ${ARCHES[$i]}| /"
        else
            grep -E '^\[pi-os-check\]|^ok:|^run:|^warning:|^Done:' "$work/${ARCHES[$i]}.log" |
                sed "s/^/  ${ARCHES[$i]}| /"
        fi
    done
    table "$work"
    ((!failed)) || die "the emulated Pi OS check failed"
    log "passed"
}

ARCHES=()
main() {
    if [[ ${1:-} == --inside ]]; then
        inside "$2" "${3:-}"
        return
    fi
    local quick="" args=("$@")
    while (($#)); do
        case $1 in
        --arch) ARCHES+=("${2:?--arch needs arm64 or armhf}"); shift ;;
        --arch=*) ARCHES+=("${1#*=}") ;;
        --quick) quick=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return ;;
        *) die "unknown option: $1 (see --help)" ;;
        esac
        shift
    done
    ((${#ARCHES[@]})) || ARCHES=(arm64 armhf)
    for arch in "${ARCHES[@]}"; do qemu_of "$arch" >/dev/null; done
    SHARED=$(cd "${EDGE_DAEMON_SHARED:-$SRC/../shared}" 2>/dev/null && pwd) ||
        die "no fixtures: ../shared (or \$EDGE_DAEMON_SHARED) must hold models/ and images/"
    [[ -f $SHARED/images/expected.yaml ]] || die "$SHARED/images/expected.yaml is missing"
    if [[ -z ${PI_OS_CHECK_NAMESPACE:-} ]]; then
        ((EUID == 0)) || die "run as root (it builds roots, mounts and chroots): sudo $0"
        local tool
        for tool in debootstrap update-binfmts unshare chroot findmnt flock; do
            command -v "$tool" >/dev/null || die "$tool is missing (apt install debootstrap qemu-user-static binfmt-support)"
        done
        # A private mount namespace (every mount vanishes with it) and PID
        # namespace (every process in the roots dies with it).
        exec unshare --mount --propagation private --pid --fork --kill-child -- \
            env PI_OS_CHECK_NAMESPACE=1 EDGE_DAEMON_SHARED="$SHARED" bash "${BASH_SOURCE[0]}" ${args[@]+"${args[@]}"}
    fi
    host_main "$quick"
}

main "$@"
