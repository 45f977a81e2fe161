# shellcheck shell=bash
# Helpers for the scripts that build and enter cached Debian roots
# (scripts/pi-os-check.sh, scripts/hass-root.sh, scripts/camera-check.sh):
# sourced, not run.
#
#   host_mirror             the Debian mirror the host's apt uses
#   host_pip_settings       the host's pip settings as PIP_* variables (PIP_ENV),
#                           and the local files they name (PIP_PATHS), which
#                           bind_host_files binds into a root under HOST_FILES
#   host_proxy_settings     proxy variables, as they are (PROXY_ENV)
#   bind_ro FROM TO         a read-only bind mount
#   unmount_tree DIR        unmount everything under DIR, deepest first
#
# The caller sets HOST_FILES (where a root sees the host's files) and, for
# host_pip_settings, may set ROOT_PIP_PYTHON to a Python whose pip reads them.

# The Debian mirror the host's apt uses (deb822 .sources or one-line lists).
host_mirror() {
    local uri
    uri=$(
        {
            awk 'tolower($1) == "uris:" && !/security/ { for (i = 2; i <= NF; i++) print $i }' \
                /etc/apt/sources.list.d/*.sources 2>/dev/null
            awk '$1 == "deb" && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
        } | grep -m1 -E '^(https?|file)://' || true
    )
    printf '%s' "${uri:-http://deb.debian.org/debian}"
}

# The host's pip settings as PIP_* variables, for a chroot's environment.
# The local files they name (certificates, constraints, wheel folders) are
# bound read-only under HOST_FILES in the root, and the values point there:
# at their own paths they would hide the root's files (its CA bundle).
PIP_ENV=()
PIP_PATHS=()
host_pip_settings() {
    local py="" line key value token scheme words candidate
    # Any Python with pip reads the same settings.
    for candidate in ${ROOT_PIP_PYTHON:-} python3; do
        if "$candidate" -m pip --version >/dev/null 2>&1; then
            py=$candidate
            break
        fi
    done
    [[ -n $py ]] || return 0
    while IFS= read -r line; do
        key=${line%%=*} value=${line#*=}
        key=${key#*.} # global.cert, install.x, :env:.cert -> cert
        value=${value#\'} value=${value%\'}
        words=()
        for token in $value; do
            scheme=""
            if [[ $token == file://* ]]; then
                scheme=file:// token=${token#file://}
            fi
            if [[ $token == /* && -e $token ]]; then
                # An index's pages may link to files beside it (../files/).
                case $key in
                index-url | extra-index-url) PIP_PATHS+=("$(dirname "$token")") ;;
                *) PIP_PATHS+=("$token") ;;
                esac
                token=$HOST_FILES$token
            fi
            words+=("$scheme$token")
        done
        PIP_ENV+=("PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")=${words[*]}")
    done < <("$py" -m pip config list 2>/dev/null)
}

# Proxy variables, passed on as they are.
PROXY_ENV=()
host_proxy_settings() {
    local v
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        if [[ -n ${!v:-} ]]; then
            PROXY_ENV+=("$v=${!v}")
        fi
    done
}

bind_ro() {
    local from=$1 to=$2
    if findmnt -rn -o TARGET | grep -qxF -- "$to"; then
        return 0 # named twice (pip's global and environment settings)
    fi
    if [[ -d $from ]]; then mkdir -p -- "$to"; else mkdir -p -- "$(dirname "$to")" && touch -- "$to"; fi
    mount --bind -- "$from" "$to"
    mount -o remount,bind,ro -- "$to"
}

# The files host_pip_settings named, read-only under ROOT$HOST_FILES.
bind_host_files() {
    local root=$1 p
    for p in ${PIP_PATHS[@]+"${PIP_PATHS[@]}"}; do
        bind_ro "$p" "$root$HOST_FILES$p"
    done
}

# Unmount everything under DIR, deepest first.
unmount_tree() {
    local dir=$1 m
    findmnt -rn -o TARGET | awk -v w="$dir/" 'index($0, w) == 1 || $0 == substr(w, 1, length(w) - 1)' |
        sort -r | while IFS= read -r m; do umount -l -- "$m" 2>/dev/null || true; done
}
