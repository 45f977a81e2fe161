#!/usr/bin/env bash
# Remove edge-daemon installed by deploy/install.sh.
#
# Stops and disables the service and removes the unit and /opt/edge-daemon.
# Keeps the config (/etc/edge-daemon), the prediction log (/var/log/edge-daemon),
# the models and caches (/var/lib/edge-daemon) and the service account, so a
# re-install picks up where it left off; --purge removes those too.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo deploy/uninstall.sh [OPTIONS]

Options:
  --purge      also remove the config, logs, models, caches, local unit
               overrides and the edge-daemon account
  --dry-run    print every action, change nothing
  --root DIR   uninstall from the staging root DIR (no systemctl, no userdel)
  -h, --help   show this help
EOF
}

readonly NAME=edge-daemon
readonly PREFIX=/opt/edge-daemon
readonly CONF_DIR=/etc/edge-daemon
readonly STATE_DIR=/var/lib/edge-daemon
readonly LOG_DIR=/var/log/edge-daemon
readonly UNIT=/etc/systemd/system/$NAME.service
readonly UNIT_DROPINS=/etc/systemd/system/$NAME.service.d
readonly WANTS_LINK=/etc/systemd/system/multi-user.target.wants/$NAME.service
readonly SYSUSERS=/usr/lib/sysusers.d/$NAME.conf

ROOT=""
DRY_RUN=0
PURGE=0

# log, warn, die, run
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

staging() { [[ -n $ROOT ]]; }
r() { printf '%s%s' "$ROOT" "$1"; }

# Remove a file, link or directory tree if it is there.
remove() {
    local t
    t=$(r "$1")
    if [[ -e $t || -L $t ]]; then
        run rm -rf -- "$t"
    fi
}

keep() {
    if [[ -e $(r "$1") ]]; then
        log "kept: $1 ($2; --purge removes it)"
    fi
}

parse_args() {
    while (($#)); do
        case $1 in
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --root=*) ROOT=${1#*=} ;;
        --purge) PURGE=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if [[ -n $ROOT ]]; then
        ROOT=$(normalise_root "$ROOT")
        [[ -d $ROOT ]] || die "--root $ROOT: not a directory"
    elif ((EUID != 0 && !DRY_RUN)); then
        die "run as root (sudo $0), or use --dry-run or --root DIR"
    fi
    if ((DRY_RUN)); then
        log "Dry run: printing what would be done; nothing is changed."
    fi
}

stop_service() {
    if staging; then
        remove "$WANTS_LINK"
        return
    fi
    if [[ -e $UNIT ]] || systemctl cat "$NAME.service" >/dev/null 2>&1; then
        run systemctl disable --now "$NAME.service"
    fi
}

main() {
    parse_args "$@"
    stop_service
    remove "$UNIT"
    if ((PURGE)); then
        remove "$UNIT_DROPINS"
    fi
    if ! staging; then
        run systemctl daemon-reload
        # Forget a failed state, if any, so `systemctl status` is clean.
        if systemctl is-failed --quiet "$NAME.service" 2>/dev/null; then
            run systemctl reset-failed "$NAME.service"
        fi
    fi
    # The venv, the manifest and the installer's copy of the default config.
    remove "$PREFIX"

    if ((!PURGE)); then
        keep "$CONF_DIR" "the config"
        keep "$LOG_DIR" "the prediction log"
        keep "$STATE_DIR" "models and caches"
        keep "$SYSUSERS" "the $NAME account"
        log "Done."
        return
    fi
    remove "$CONF_DIR"
    remove "$LOG_DIR"
    remove "$STATE_DIR"
    remove "$SYSUSERS"
    # Every file the account owned is gone now, so its uid can go too.
    if ! staging && getent passwd "$NAME" >/dev/null; then
        run userdel "$NAME"
    fi
    if ! staging && getent group "$NAME" >/dev/null; then
        run groupdel "$NAME"
    fi
    log "Done (purged)."
}

main "$@"
