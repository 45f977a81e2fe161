#!/usr/bin/env bash
# Install edge-daemon as a systemd service on Raspberry Pi OS Bookworm
# (Debian 12): apt packages, the service account, a venv under
# /opt/edge-daemon, the config, the model, the unit; then enable and start it.
#
# Where systemd is not running (a chroot, as pi-gen and rpi-image-gen build SD
# card images, or SYSTEMD_OFFLINE=1) it installs everything and enables the
# unit without starting it: image-build mode.
#
# Safe to run again: what is already in place is left alone, an edited
# /etc/edge-daemon/config.yaml is kept (the new default goes beside it as
# config.yaml.new), and a running service is restarted only if something
# changed. See deploy/README.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo deploy/install.sh [OPTIONS]

Install edge-daemon as a systemd service (Raspberry Pi OS Bookworm / Debian 12).

Options:
  --model-dir DIR  copy mobilenet_v1_1.0_224_quant.tflite and
                   labels_mobilenet_quant_v1_224.txt from DIR instead of
                   downloading them
  --dry-run        print every action, change nothing
  --root DIR       install into the staging root DIR instead of the live
                   system: every path is prefixed with DIR; no apt, no
                   account creation, no systemctl (the unit is enabled by
                   its multi-user.target.wants link); owners are set only
                   when running as root and DIR/etc/passwd knows the account,
                   and are always listed in DIR/opt/edge-daemon/manifest
  --no-venv        do not create the venv or install the project into it
                   (for checking a staging root quickly, e.g. in CI)
  --python PATH    interpreter for the venv (default: /usr/bin/python3)
  --extra NAME     the project's runtime extra: litert or tflite (default:
                   litert, tflite on 32-bit ARM where LiteRT has no wheels)
  --no-apt         do not install apt packages (they are already there)
  --no-start       enable the service but do not start or restart it
  -h, --help       show this help

Image-build mode: where systemd is not running (a chroot such as pi-gen's or
rpi-image-gen's, or SYSTEMD_OFFLINE=1 in the environment), everything is
installed and the unit is enabled for the next boot, not started; a delegate
choice measured here is not kept. SYSTEMD_OFFLINE=0 forces the live behaviour.
EOF
}

# --- Layout (the unit and deploy/config.yaml name the same paths) ------------
readonly NAME=edge-daemon
readonly PREFIX=/opt/edge-daemon
readonly VENV=$PREFIX/venv
readonly MANIFEST=$PREFIX/manifest
# The default config as last installed: tells an edited config from an old
# default that can simply be replaced.
readonly CONF_DEFAULT=$PREFIX/config.yaml.default
# What the venv was built from, so an unchanged re-run skips pip.
readonly VENV_STAMP=$PREFIX/venv.stamp
readonly CONF_DIR=/etc/edge-daemon
readonly CONF=$CONF_DIR/config.yaml
readonly STATE_DIR=/var/lib/edge-daemon
readonly MODEL_DIR=$STATE_DIR/models
readonly CACHE_DIR=$STATE_DIR/state
readonly LOG_DIR=/var/log/edge-daemon
readonly UNIT=/etc/systemd/system/$NAME.service
readonly WANTS_LINK=/etc/systemd/system/multi-user.target.wants/$NAME.service
readonly SYSUSERS=/usr/lib/sysusers.d/$NAME.conf
# The daemon's delegate choice in CACHE_DIR (edge_daemon/engine/autoselect.py's
# CACHE_FILE), measured on the machine it runs on.
readonly DELEGATE_CACHE=delegates.json
readonly MODEL_FILES=(mobilenet_v1_1.0_224_quant.tflite labels_mobilenet_quant_v1_224.txt)
# picamera2 and libcamera's Python bindings only come from apt (hence the
# venv's --system-site-packages); --no-install-recommends keeps the desktop
# preview dependencies off a headless Pi. python3-picamera2 is in Raspberry Pi
# OS's own archive, not Debian's: elsewhere the install goes on without it.
readonly APT_PACKAGES=(python3-picamera2 python3-systemd python3-venv)
readonly APT_CAMERA=python3-picamera2
# PyPI has no 32-bit ARM wheels of these (piwheels may not be configured, and
# building them on a Pi Zero takes hours): Debian's builds serve the venv.
readonly APT_PACKAGES_ARM32=(python3-numpy python3-pil python3-yaml)
# The outputs (MQTT, the web page and metrics) work after any install; both
# extras are pure Python.
readonly OUTPUT_EXTRAS=mqtt,web

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC

ROOT=""
DRY_RUN=0
MODEL_SRC=""
WITH_VENV=1
PYTHON=/usr/bin/python3
EXTRA=""
WITH_APT=1
START=1

# 1 when systemd is not running here (image-build mode), see systemd_offline.
OFFLINE=0
# Set when anything on disk changed, to decide whether to restart the service.
CHANGED=0
MANIFEST_LINES=()
TMP_DIR=""

# log, warn, die, run
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cleanup() {
    if [[ -n $TMP_DIR ]]; then
        rm -rf -- "$TMP_DIR"
    fi
}

parse_args() {
    while (($#)); do
        case $1 in
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --root=*) ROOT=${1#*=} ;;
        --model-dir) MODEL_SRC=${2:?--model-dir needs a directory}; shift ;;
        --model-dir=*) MODEL_SRC=${1#*=} ;;
        --python) PYTHON=${2:?--python needs a path}; shift ;;
        --python=*) PYTHON=${1#*=} ;;
        --extra) EXTRA=${2:?--extra needs litert or tflite}; shift ;;
        --extra=*) EXTRA=${1#*=} ;;
        --dry-run) DRY_RUN=1 ;;
        --no-venv) WITH_VENV=0 ;;
        --no-apt) WITH_APT=0 ;;
        --no-start) START=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if [[ -n $ROOT ]]; then
        ROOT=$(normalise_root "$ROOT")
    fi
    if [[ -n $MODEL_SRC ]]; then
        [[ -d $MODEL_SRC ]] || die "--model-dir $MODEL_SRC: not a directory"
        MODEL_SRC=$(cd "$MODEL_SRC" && pwd)
        local f
        for f in "${MODEL_FILES[@]}"; do
            [[ -f $MODEL_SRC/$f ]] || die "--model-dir $MODEL_SRC: no $f there"
        done
    fi
    case $EXTRA in
    "" | litert | tflite) ;;
    *) die "--extra $EXTRA: expected litert or tflite" ;;
    esac
}

staging() { [[ -n $ROOT ]]; }

# The path inside the target root.
r() { printf '%s%s' "$ROOT" "$1"; }

# "0644" and "644" both become "644", as stat prints it.
norm_mode() { printf '%o' "$((8#$1))"; }

# A uid or gid from the target's account database (the staging root's own
# /etc/passwd and /etc/group, never the build machine's).
target_id() {
    local db=$1 name=$2
    if staging; then
        [[ -f $ROOT/etc/$db ]] || return 1
        awk -F: -v n="$name" '$1 == n { print $3; found = 1 } END { exit !found }' "$ROOT/etc/$db"
    else
        getent "$db" "$name" | cut -d: -f3
    fi
}

# Give PATH (a target path) to OWNER:GROUP when that is possible here.
set_owner() {
    local path=$1 owner=$2 group=$3 t uid gid
    t=$(r "$path")
    if staging && ((EUID != 0)); then
        return 0 # recorded in the manifest; the target fixes it
    fi
    if ! uid=$(target_id passwd "$owner") || ! gid=$(target_id group "$group") ||
        [[ -z $uid || -z $gid ]]; then
        if staging; then
            return 0 # recorded in the manifest; the target fixes it
        fi
        # Live dry run before the account exists: say what would happen.
        run chown "$owner:$group" "$t"
        return 0
    fi
    if [[ ! -e $t || $(stat -c '%u:%g' "$t") != "$uid:$gid" ]]; then
        if staging; then
            run chown "$uid:$gid" "$t"
        else
            run chown "$owner:$group" "$t"
        fi
        CHANGED=1
    fi
}

record() { MANIFEST_LINES+=("$*"); }

# ensure_dir PATH MODE OWNER GROUP
ensure_dir() {
    local path=$1 mode=$2 owner=$3 group=$4 t
    t=$(r "$path")
    record "d $mode $owner $group $path"
    if [[ ! -d $t ]]; then
        run install -d -m "$mode" "$t"
        CHANGED=1
    elif [[ $(stat -c '%a' "$t") != "$(norm_mode "$mode")" ]]; then
        run chmod "$mode" "$t"
        CHANGED=1
    fi
    set_owner "$path" "$owner" "$group"
}

# install_file SOURCE PATH MODE OWNER GROUP: copy if the content differs.
install_file() {
    local src=$1 path=$2 mode=$3 owner=$4 group=$5 t
    t=$(r "$path")
    record "f $mode $owner $group $path"
    if [[ -f $t ]] && cmp -s -- "$src" "$t"; then
        if [[ $(stat -c '%a' "$t") != "$(norm_mode "$mode")" ]]; then
            run chmod "$mode" "$t"
            CHANGED=1
        fi
    else
        run install -D -m "$mode" -T -- "$src" "$t"
        CHANGED=1
    fi
    set_owner "$path" "$owner" "$group"
}

# A file whose content this script writes (sysusers.d entry, manifest, stamp).
write_file() {
    local path=$1 mode=$2 content=$3 tmp
    tmp=$TMP_DIR/${path##*/}
    printf '%s' "$content" >"$tmp"
    install_file "$tmp" "$path" "$mode" root root
}

preflight() {
    [[ -f $SRC/pyproject.toml && -f $SRC/deploy/edge-daemon.service && -f $SRC/deploy/config.yaml ]] ||
        die "$SRC does not look like the edge-daemon source tree"
    if staging; then
        log "Installing into the staging root $ROOT"
    elif ((EUID != 0 && !DRY_RUN)); then
        die "run as root (sudo $0), or use --dry-run or --root DIR"
    fi
    if ((OFFLINE)); then
        log "systemd is not running here: image-build mode (install and enable, do not start)"
    fi
    if ((DRY_RUN)); then
        log "Dry run: printing what would be done; nothing is changed."
    fi
    if staging && ((!DRY_RUN)); then
        mkdir -p -- "$ROOT"
    fi
}

# The target's userspace architecture, not uname -m: 32-bit Raspberry Pi OS
# often runs a 64-bit kernel.
target_arch() { dpkg --print-architecture 2>/dev/null || uname -m; }

arm32() {
    case $(target_arch) in
    armhf | armel | armv6l | armv7l) return 0 ;;
    *) return 1 ;;
    esac
}

# Whether apt knows a package (has an installable version of it).
apt_has() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    [[ -n $candidate && $candidate != "(none)" ]]
}

install_packages() {
    local wanted=("${APT_PACKAGES[@]}")
    if arm32; then
        wanted+=("${APT_PACKAGES_ARM32[@]}")
    fi
    if staging; then
        log "apt: skipped in a staging root (needs: ${wanted[*]})"
        return
    fi
    if ((!WITH_APT)); then
        log "apt: skipped (--no-apt)"
        return
    fi
    local missing=() pkg
    for pkg in "${wanted[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        log "apt: ${wanted[*]} already installed"
        return
    fi
    run apt-get update
    local install=()
    for pkg in "${missing[@]}"; do
        if [[ $pkg == "$APT_CAMERA" ]] && ! apt_has "$pkg"; then
            # Debian has no picamera2; Raspberry Pi OS adds it from
            # archive.raspberrypi.com. Everything else works without it.
            warn "$pkg is not in this system's apt sources (it comes with Raspberry Pi OS):" \
                "installing without it; the picamera2 source will not work here, the files source does"
            continue
        fi
        install+=("$pkg")
    done
    if ((${#install[@]})); then
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${install[@]}"
        CHANGED=1
    fi
}

in_group() { id -nG "$NAME" 2>/dev/null | tr ' ' '\n' | grep -qx "$1"; }

create_account() {
    # One declarative source for the account, usable by systemd-sysusers on
    # the target (also when building an image from a staging root).
    write_file "$SYSUSERS" 0644 "# edge-daemon: the service's own unprivileged account (see deploy/README.md).
u $NAME - \"edge-daemon image classifier\" $STATE_DIR /usr/sbin/nologin
# Camera nodes (/dev/video*, /dev/media*, /dev/dma_heap/*, /dev/vchiq) belong
# to group video on Raspberry Pi OS.
m $NAME video
# The Coral USB Accelerator's udev rule gives the device to group plugdev.
m $NAME plugdev
"
    if staging; then
        log "account: not created in a staging root (run systemd-sysusers --root on the target image)"
        return
    fi
    if ! getent passwd "$NAME" >/dev/null || ! in_group video || ! in_group plugdev; then
        if command -v systemd-sysusers >/dev/null; then
            run systemd-sysusers "$SYSUSERS"
        else
            # A root without systemd yet (a bare image being built): the same
            # account with shadow's tools.
            getent passwd "$NAME" >/dev/null ||
                run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
                    --shell /usr/sbin/nologin --comment "edge-daemon image classifier" "$NAME"
            run usermod -a -G video,plugdev "$NAME"
        fi
        CHANGED=1
    fi
    # /dev/apex_0 (Coral PCIe/M.2) belongs to group apex once the Coral driver
    # is set up. The unit cannot name a group that may not exist, so the
    # membership goes into /etc/group.
    if getent group apex >/dev/null && ! in_group apex; then
        run usermod -a -G apex "$NAME"
        CHANGED=1
    fi
}

create_dirs() {
    # systemd re-applies these modes and the owner of state and logs at every
    # start; creating them the same way here means the models stay root-owned
    # (systemd only re-owns a tree whose top directory has the wrong owner).
    ensure_dir "$PREFIX" 0755 root root
    ensure_dir "$CONF_DIR" 0755 root root
    ensure_dir "$STATE_DIR" 0750 "$NAME" "$NAME"
    ensure_dir "$MODEL_DIR" 0755 root root
    ensure_dir "$CACHE_DIR" 0750 "$NAME" "$NAME"
    ensure_dir "$LOG_DIR" 0750 "$NAME" "$NAME"
}

pick_extra() {
    if [[ -n $EXTRA ]]; then
        printf '%s' "$EXTRA"
    elif arm32; then
        # LiteRT has no 32-bit ARM wheels; tflite-runtime has (armv7l).
        printf tflite
    else
        printf litert
    fi
}

venv_stamp() {
    local extra=$1
    {
        printf 'extra=%s,%s\n' "$extra" "$OUTPUT_EXTRAS"
        "$(r "$VENV")/bin/python" -c 'import sys; print(sys.version)'
        (cd "$SRC" && find edge_daemon pyproject.toml -type f ! -name '*.pyc' -print0 |
            sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -d' ' -f1
}

install_venv() {
    if ((!WITH_VENV)); then
        log "venv: skipped (--no-venv)"
        return
    fi
    local vdir vpy extra stamp="" reqs
    vdir=$(r "$VENV")
    vpy=$vdir/bin/python
    extra=$(pick_extra)
    record "d 0755 root root $VENV"
    if [[ ! -x $vpy ]]; then
        [[ -x $PYTHON ]] || die "--python $PYTHON: not an executable"
        run "$PYTHON" -m venv --system-site-packages "$vdir"
        CHANGED=1
    fi
    if [[ -x $vpy ]]; then
        stamp=$(venv_stamp "$extra")
        if [[ -x $vdir/bin/$NAME && -f $(r "$VENV_STAMP") && $(<"$(r "$VENV_STAMP")") == "$stamp" ]]; then
            log "venv: $VENV up to date"
            record "f 0644 root root $VENV_STAMP"
            return
        fi
    fi
    # pip builds a local project in place; building a copy keeps root-owned
    # build/ and *.egg-info out of the (user's) source tree.
    local build=$TMP_DIR/src
    log "copying $SRC to $build for the build"
    if ((!DRY_RUN)); then
        mkdir -p "$build"
        tar -C "$SRC" --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' \
            --exclude=./models --exclude='./.venv*' --exclude=./edge-daemon-data \
            --exclude=__pycache__ -cf - . | tar -C "$build" -xf -
    fi
    # mqtt and web (the page, the HTTP API and /metrics, on by default on
    # 127.0.0.1:8080): the outputs work after any install.
    reqs=("${build}[${extra},${OUTPUT_EXTRAS}]")
    local pip_args=(--disable-pip-version-check --no-input install --upgrade --upgrade-strategy only-if-needed)
    # apt's picamera2 stack (simplejpeg, ...) is built against Bookworm's
    # NumPy 1.x; a NumPy 2 in the venv would shadow it and break the camera.
    if "$PYTHON" -c 'import numpy, sys; sys.exit(numpy.__version__[0] != "1")' 2>/dev/null; then
        printf 'numpy<2\n' >"$TMP_DIR/constraints.txt"
        pip_args+=(--constraint "$TMP_DIR/constraints.txt")
    fi
    run "$vpy" -m pip "${pip_args[@]}" "${reqs[@]}"
    CHANGED=1
    if ((!DRY_RUN)); then
        stamp=$(venv_stamp "$extra")
    fi
    write_file "$VENV_STAMP" 0644 "$stamp
"
}

install_config() {
    local new=$SRC/deploy/config.yaml t pristine
    t=$(r "$CONF")
    pristine=$(r "$CONF_DEFAULT")
    if [[ ! -e $t ]] || cmp -s -- "$new" "$t" ||
        { [[ -f $pristine ]] && cmp -s -- "$pristine" "$t"; }; then
        # Absent, current, or an untouched older default: install the new one.
        install_file "$new" "$CONF" 0644 root root
        if [[ -f $t.new ]] && cmp -s -- "$new" "$t.new"; then
            # Left from an earlier run; the config now matches it.
            run rm -f -- "$t.new"
        fi
    else
        log "config: keeping your edited $CONF; the new default is $CONF.new"
        record "f 0644 root root $CONF"
        install_file "$new" "$CONF.new" 0644 root root
    fi
    install_file "$new" "$CONF_DEFAULT" 0644 root root
}

install_models() {
    local f from=$MODEL_SRC have=1
    for f in "${MODEL_FILES[@]}"; do
        [[ -f $(r "$MODEL_DIR/$f") ]] || have=0
    done
    if [[ -z $from ]]; then
        if ((have)); then
            # Never download again; a newer model is installed with --model-dir.
            log "model: ${MODEL_FILES[*]} already in $MODEL_DIR"
            for f in "${MODEL_FILES[@]}"; do
                record "f 0644 root root $MODEL_DIR/$f"
            done
            return
        fi
        if ((!WITH_VENV)); then
            warn "no model installed: pass --model-dir DIR (or drop --no-venv to download it)"
            return
        fi
        # Download next to nothing, then install like a local copy: the files
        # get their modes here (the service must be able to read them).
        from=$TMP_DIR/model
        run "$(r "$VENV")/bin/$NAME" models fetch --dest "$from"
    fi
    for f in "${MODEL_FILES[@]}"; do
        [[ -f $from/$f ]] || ((DRY_RUN)) || die "the download has no $f"
    done
    for f in "${MODEL_FILES[@]}"; do
        install_file "$from/$f" "$MODEL_DIR/$f" 0644 root root
    done
}

install_unit() {
    install_file "$SRC/deploy/edge-daemon.service" "$UNIT" 0644 root root
    if staging; then
        # What `systemctl enable` does, without a running systemd.
        local link
        link=$(r "$WANTS_LINK")
        record "l 0777 root root $WANTS_LINK"
        if [[ $(readlink "$link" 2>/dev/null) != "$UNIT" ]]; then
            run install -d -m 0755 "$(dirname "$link")"
            run ln -sfn "$UNIT" "$link"
            CHANGED=1
        fi
    fi
}

write_manifest() {
    local changed=$CHANGED
    write_file "$MANIFEST" 0644 "# edge-daemon installation: type mode owner group path
$(printf '%s\n' "${MANIFEST_LINES[@]}" | sort -k5 -u)
"
    # The manifest only changes when something else did.
    CHANGED=$changed
}

# Whether systemd is not running here: a chroot (pi-gen, rpi-image-gen), a
# container, or SYSTEMD_OFFLINE=1. SYSTEMD_OFFLINE=0 says it is (as systemctl
# reads that variable too).
systemd_offline() {
    case ${SYSTEMD_OFFLINE:-} in
    1 | yes | true) return 0 ;;
    0 | no | false) return 1 ;;
    esac
    # What sd_booted() checks.
    [[ ! -d /run/systemd/system ]]
}

# The same check the service would fail at, as the service's user.
check_as_service() {
    run runuser -u "$NAME" -- "$VENV/bin/$NAME" check --config "$CONF"
}

# Image-build mode: install and enable, do not start; keep nothing measured.
enable_offline() {
    if ((WITH_VENV)); then
        local status=0
        check_as_service || status=$?
        # The check may have measured the delegates (engine.delegates: auto)
        # on the build machine, often under emulation: the Pi measures its own.
        if [[ -e $CACHE_DIR/$DELEGATE_CACHE ]]; then
            run rm -f -- "$CACHE_DIR/$DELEGATE_CACHE"
        fi
        if ((status == 139)); then
            warn "the check crashed (SIGSEGV): under qemu-user, LiteRT needs an ARM /proc/cpuinfo" \
                "(see docs/pi-image.md); the service checks again when it starts on the Pi"
        elif ((status != 0)); then
            warn "the check failed (exit $status): fix $CONF or the model before the image" \
                "boots; the service would stop at the same error"
        fi
    fi
    if command -v systemctl >/dev/null; then
        run env SYSTEMD_OFFLINE=1 systemctl enable "$NAME.service"
    elif [[ $(readlink "$WANTS_LINK" 2>/dev/null) != "$UNIT" ]]; then
        # What `systemctl enable` does.
        run install -d -m 0755 "$(dirname "$WANTS_LINK")"
        run ln -sfn "$UNIT" "$WANTS_LINK"
    fi
    log "Done: installed and enabled, not started: systemd is not running here (an image" \
        "build or a chroot). $NAME starts at the next boot on the Pi, and measures its delegates there."
}

enable_service() {
    if staging; then
        log "Done: $ROOT holds the installation (file list in $ROOT$MANIFEST)."
        return
    fi
    if ((OFFLINE)); then
        enable_offline
        return
    fi
    run systemctl daemon-reload
    if ((WITH_VENV)); then
        # Before systemd starts it (and restarts it in a loop).
        if ! check_as_service; then
            die "the check failed: fix $CONF or the model, then: sudo systemctl enable --now $NAME"
        fi
    fi
    run systemctl enable "$NAME.service"
    if ((!START)); then
        log "Done: enabled, not started (--no-start)."
        return
    fi
    local state before new_invocation=0
    state=$(systemctl show -p ActiveState --value "$NAME.service" 2>/dev/null || true)
    before=$(systemctl show -p InvocationID --value "$NAME.service" 2>/dev/null || true)
    case $state in
    active | reloading | activating)
        if ((CHANGED)); then
            # Running (or still starting) the old code or config.
            run systemctl restart --no-block "$NAME.service"
            new_invocation=1
        elif [[ $state != activating ]]; then
            log "Done: $NAME is running and up to date."
            return
        fi
        ;;
    *)
        if [[ $state == failed ]]; then
            # Presumably what made it fail was just fixed: re-arm the start limit.
            run systemctl reset-failed "$NAME.service"
        fi
        run systemctl start --no-block "$NAME.service"
        ;;
    esac
    if ((!DRY_RUN)); then
        wait_for_start "$before" "$new_invocation"
    fi
}

# Wait for the service to become active (after a restart: its new invocation).
# Not blocking on the start job itself: the daemon reports ready after its
# first classified frame, which never comes while the camera is unplugged, and
# the install should still finish.
wait_for_start() {
    local before=$1 new_invocation=$2 state i
    for ((i = 0; i < 60; i++)); do
        sleep 1
        if ((new_invocation)) &&
            [[ $(systemctl show -p InvocationID --value "$NAME.service") == "$before" ]]; then
            continue
        fi
        state=$(systemctl show -p ActiveState --value "$NAME.service")
        case $state in
        active)
            log "Done: $NAME is running. systemctl status $NAME; journalctl -u $NAME -f"
            return
            ;;
        failed)
            systemctl status --no-pager "$NAME.service" >&2 || true
            die "$NAME failed to start: journalctl -u $NAME"
            ;;
        esac
    done
    warn "$NAME is still starting after 60 s (is the camera connected?); follow it with: journalctl -u $NAME -f"
}

main() {
    parse_args "$@"
    if ! staging && systemd_offline; then
        OFFLINE=1
    fi
    preflight
    TMP_DIR=$(mktemp -d)
    trap cleanup EXIT
    install_packages
    create_account
    create_dirs
    install_venv
    install_config
    install_models
    install_unit
    write_manifest
    enable_service
}

main "$@"
