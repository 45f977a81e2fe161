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

# The --root argument made absolute, without trailing slashes; "/" is refused
# (that is the live system, which is what leaving out --root means).
normalise_root() {
    local root=$1
    [[ $root == /* ]] || root=$PWD/$root
    while [[ $root == */ ]]; do root=${root%/}; done
    [[ -n $root ]] || die "--root /: that is the live system; leave out --root"
    printf '%s' "$root"
}
