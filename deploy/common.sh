# Helpers shared by install.sh and uninstall.sh (sourced, not run).
# shellcheck shell=bash

log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Print a command, then run it unless this is a dry run (DRY_RUN=1).
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if ((!DRY_RUN)); then
        "$@"
    fi
}
