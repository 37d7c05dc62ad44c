# shellcheck shell=bash
# Shared helpers for start.sh, backend/scripts/localstack.sh and tests/bootstrap.sh.
# Source it; it defines functions only (no side effects).

# Messages go to stderr so that stdout can carry machine-readable output.
ss_log()  { printf '%s\n' "${SS_LOG_PREFIX:-synspirit}: $*" >&2; }
ss_die()  { ss_log "error: $*"; exit 1; }

# Random lowercase hex string (URL safe); needs only coreutils.
ss_rand_hex() {
    local n="${1:-24}"
    head -c "$n" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# Is something listening on 127.0.0.1:PORT?
ss_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free loopback TCP port from the unprivileged, non-ephemeral range.
ss_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
        if ! ss_port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    ss_die "no free TCP port found"
}

# Install the given Debian packages if any of them is missing. Says what it installs.
# Runs `apt-get update` at most once per process. Services shipped by the packages are
# kept from starting during the install (policy-rc.d), so no stray system daemons
# (a system redis on 6379, a postgres "main" cluster on 5432, nginx on 80) appear.
ss_apt_ensure() {
    local missing=() pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [[ "$status" == "installed" ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || ss_die "Debian packages missing (${missing[*]}); run as root or install them"
    command -v apt-get >/dev/null || ss_die "apt-get not found; install by hand: ${missing[*]}"
    ss_log "installing Debian packages: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, made by SynSpirit: do not start services during install\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made_policy=1
    fi
    local rc=0 aptlog
    aptlog=$(mktemp /tmp/synspirit-apt.XXXXXX)
    (
        export DEBIAN_FRONTEND=noninteractive
        if [[ -z "${SS_APT_UPDATED:-}" ]]; then
            apt-get update -q || exit 1
        fi
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    ) </dev/null >"$aptlog" 2>&1 || rc=$?
    export SS_APT_UPDATED=1
    if ((made_policy)); then rm -f "$policy"; fi
    if ((rc != 0)); then
        tail -n 40 "$aptlog" >&2
        rm -f "$aptlog"
        ss_die "apt-get install failed (exit $rc) for: ${missing[*]}"
    fi
    rm -f "$aptlog"
    ss_log "installed: ${missing[*]}"
}

# Create (or repair) a virtualenv at $1 with python3; installs python3-venv if needed.
ss_ensure_venv() {
    local venv="$1"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        return 0
    fi
    if ! { command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null; }; then
        ss_apt_ensure python3 python3-venv
    fi
    ss_log "creating virtualenv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
}

# Run the command "$@" (e.g. a function doing pip installs) only when the hash of the
# given files changed since its last successful run; the stamp lives inside the venv:
#   ss_stamped VENV STAMPNAME "file1 file2" command args...
ss_stamped() {
    local venv="$1" name="$2" files="$3"
    shift 3
    local stamp="$venv/.synspirit-stamp-$name" want
    # shellcheck disable=SC2086
    want=$(cat $files | sha256sum | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    ss_log "installing Python packages into $venv ($name)"
    local piplog
    piplog=$(mktemp /tmp/synspirit-pip.XXXXXX)
    if ! "$@" </dev/null >"$piplog" 2>&1; then
        tail -n 40 "$piplog" >&2
        rm -f "$piplog"
        ss_die "installing Python packages failed ($name)"
    fi
    rm -f "$piplog"
    echo "$want" >"$stamp"
}
