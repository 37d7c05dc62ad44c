#!/usr/bin/env bash
# SynSpirit on one machine, in the foreground: ./start.sh   (Ctrl-C stops everything)
#
# On a fresh Debian 12 machine, as root, with nothing done first, this:
#   1. creates the virtualenv .venv and installs the pinned backend (backend/requirements.txt
#      plus `pip install -e ./backend`); re-installs only when those files change;
#   2. uses PostgreSQL / Redis at DATABASE_URL / REDIS_URL when given; otherwise installs the
#      Debian packages if missing (saying so) and runs private instances under .data/dev
#      (backend/scripts/localstack.sh: loopback only, passwords, no systemd needed);
#   3. generates a SECRET_KEY once and keeps it in .data/secret_key (mode 0600);
#   4. applies the schema migrations (flask --app app db upgrade);
#   5. runs the web instance (gunicorn with production's settings, app/gunicorn_config.py), the
#      io worker (gevent pool),
#      the cpu worker (prefork pool) and the scheduler (celery beat), prints the URL once
#      /healthz answers (the web page: sign up, write, like, comment), and stops all of it (and the private PostgreSQL/Redis it started)
#      on Ctrl-C / SIGTERM, or when one of them dies.
#
# Environment: API_HOST (127.0.0.1), API_PORT (5000), WORKER_CONNECTIONS and WEB_TIMEOUT
# (gunicorn's --worker-connections and --timeout, default 12000 and 120: gunicorn_config.py),
# CPU_CONCURRENCY (number of cores), DATABASE_URL, REDIS_URL, SECRET_KEY,
# SYNSPIRIT_ADMINS (the admins' usernames, comma-separated), SYNSPIRIT_ENV (production), SYNSPIRIT_DATA (.data/dev), and the other variables of
# docs/contract.md, which are passed through to every process.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR/.. source-path=SCRIPTDIR
source "$ROOT/backend/scripts/common.sh"
export SS_LOG_PREFIX=start.sh

VENV="$ROOT/.venv"
DATA="${SYNSPIRIT_DATA:-$ROOT/.data/dev}"
LOCALSTACK="$ROOT/backend/scripts/localstack.sh"
export API_HOST="${API_HOST:-127.0.0.1}"
export API_PORT="${API_PORT:-5000}"
# gunicorn reads these two from the environment (backend/app/gunicorn_config.py, which gives
# production's defaults). The open-files limit is raised to the hard limit for the sockets.
export SYNSPIRIT_WEB_WORKER_CONNECTIONS="${WORKER_CONNECTIONS:-${SYNSPIRIT_WEB_WORKER_CONNECTIONS:-}}"
export SYNSPIRIT_WEB_TIMEOUT="${WEB_TIMEOUT:-${SYNSPIRIT_WEB_TIMEOUT:-}}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CPU_CONCURRENCY="${CPU_CONCURRENCY:-$(nproc)}"
export SYNSPIRIT_ENV="${SYNSPIRIT_ENV:-production}"

PIDS=()          # main pid of each component (each leads its own process group)
NAMES=()
STACK_STARTED="" # what localstack started for us (stopped on exit)
CLEANED=0

cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    trap '' INT TERM HUP
    local i pid deadline
    if ((${#PIDS[@]})); then
        ss_log "stopping: ${NAMES[*]}"
        for pid in "${PIDS[@]}"; do
            kill -TERM "$pid" 2>/dev/null || true
        done
        deadline=$((SECONDS + 30))
        for i in "${!PIDS[@]}"; do
            pid=${PIDS[$i]}
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                ss_log "${NAMES[$i]} did not stop in time; killing it"
            fi
            # The whole group: also catches pool children left behind.
            kill -KILL -- "-$pid" 2>/dev/null || true
        done
        wait 2>/dev/null || true
    fi
    if [[ -n "$STACK_STARTED" ]]; then
        local what
        for what in $STACK_STARTED; do
            "$LOCALSTACK" stop "$DATA" "$what" || true
        done
    fi
    ss_log "stopped"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP
trap 'rc=$?; cleanup; exit $rc' EXIT

# --- 1. virtualenv ---------------------------------------------------------------------------
install_backend() {
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r backend/requirements.txt \
        && "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e ./backend
}
ss_ensure_venv "$VENV"
ss_stamped "$VENV" backend "backend/requirements.txt backend/pyproject.toml" install_backend
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"

# --- 2. PostgreSQL and Redis -----------------------------------------------------------------
only=""
if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
    ss_log "using PostgreSQL and Redis from DATABASE_URL / REDIS_URL"
else
    if [[ -n "${DATABASE_URL:-}" ]]; then
        only=redis
        ss_log "using PostgreSQL from DATABASE_URL; private Redis under $DATA"
    elif [[ -n "${REDIS_URL:-}" ]]; then
        only=pg
        ss_log "using Redis from REDIS_URL; private PostgreSQL under $DATA"
    fi
    [[ $(id -u) -eq 0 ]] || ss_die "private PostgreSQL/Redis need root; run as root or set DATABASE_URL and REDIS_URL"
    stack_out=$("$LOCALSTACK" start "$DATA" ${only:+--only "$only"}) || ss_die "could not start PostgreSQL/Redis"
    eval "$stack_out"
    STACK_STARTED="${LOCALSTACK_STARTED:-}"
    unset LOCALSTACK_STARTED REDIS_ADMIN_URL  # the application has Redis's limited default user
fi
export DATABASE_URL REDIS_URL

# --- 3. SECRET_KEY ---------------------------------------------------------------------------
if [[ -z "${SECRET_KEY:-}" ]]; then
    keyfile="$ROOT/.data/secret_key"
    if [[ ! -s "$keyfile" ]]; then
        mkdir -p "$ROOT/.data"
        (umask 077; ss_rand_hex 32 >"$keyfile")
        ss_log "generated a SECRET_KEY in $keyfile"
    fi
    chmod 0600 "$keyfile"
    SECRET_KEY=$(cat "$keyfile")
fi
export SECRET_KEY

# --- 4. migrations -----------------------------------------------------------------------------
ss_log "applying database migrations"
(cd backend && flask --app app db upgrade) || ss_die "migrations failed"

# --- 5. the processes ----------------------------------------------------------------------------
if ss_port_in_use "$API_PORT" && [[ "$API_HOST" == 127.0.0.1 || "$API_HOST" == 0.0.0.0 || "$API_HOST" == localhost ]]; then
    ss_die "port $API_PORT is already in use (set API_PORT)"
fi
mkdir -p "$DATA"

# run NAME CMD...: start CMD in backend/ as the leader of its own process group (so a
# terminal Ctrl-C reaches only this script, which then stops the components in order),
# output prefixed with [NAME].
run() {
    local name="$1"
    shift
    (cd backend && exec setsid "$@") \
        > >(trap '' INT TERM HUP; exec sed -u "s/^/[$name] /") 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
}

run web gunicorn --config python:app.gunicorn_config --bind "$API_HOST:$API_PORT" run:app
run io celery -A app.celery_utils worker --pool=gevent -c 1000 -O fair --prefetch-multiplier=1 \
    -Q io -n io@%h --without-mingle --without-gossip --without-heartbeat --loglevel=INFO
run cpu celery -A app.celery_utils worker --pool=prefork -c "$CPU_CONCURRENCY" -Q cpu -n cpu@%h \
    --without-mingle --without-gossip --without-heartbeat --loglevel=INFO
run beat celery -A app.celery_utils beat --loglevel=INFO

case "$API_HOST" in
    0.0.0.0 | "::" | "") url_host=127.0.0.1 ;;
    *:*) url_host="[$API_HOST]" ;;
    *) url_host="$API_HOST" ;;
esac
URL="http://$url_host:$API_PORT"

healthy() {
    python -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "$URL/healthz"
}

deadline=$((SECONDS + 120))
until healthy; do
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[$i]}" 2>/dev/null || ss_die "${NAMES[$i]} exited during start-up"
    done
    ((SECONDS < deadline)) || ss_die "$URL/healthz did not answer within 120 s"
    sleep 0.5
done
ss_log "SynSpirit is running: open $URL/ in a browser  (API $URL/api/, Socket.IO $URL/socket.io/) - Ctrl-C stops it"

# Stay in the foreground until a signal arrives or a component dies.
while :; do
    wait -n "${PIDS[@]}" 2>/dev/null || true
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            ss_log "${NAMES[$i]} exited; stopping everything"
            exit 1
        fi
    done
done
