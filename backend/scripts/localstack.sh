#!/usr/bin/env bash
# Private PostgreSQL and Redis instances for one machine (start.sh, the test suite).
# Not systemd: plain processes whose data, logs, sockets and passwords live in DATADIR.
#
#   localstack.sh install                  install postgresql / redis-server if missing
#   localstack.sh start DATADIR [options]  start (or reuse) the instances; prints
#                                          `export DATABASE_URL=...` / `export REDIS_URL=...`
#       --pg-port N / --redis-port N       ports (default: the ones used last time if
#                                          free, else a free one)
#       --db NAME                          database (and role) name (default: synspirit)
#       --only pg|redis                    start only one of the two
#       --fast                             no fsync (throw-away data, for tests)
#   localstack.sh env DATADIR              print the exports for running instances
#   localstack.sh status DATADIR           say what runs (exit 0 when both run)
#   localstack.sh resetdb DATADIR NAME     drop and re-create database NAME (owned by the role)
#   localstack.sh stop DATADIR [pg|redis]  stop the instances (default: both)
#
# `start` also prints `export LOCALSTACK_STARTED='pg redis'` naming what it started now
# (empty when everything was already running), so callers stop only what they started.
# The file can be sourced too: it then only defines the ls_* functions.
# Layout: DATADIR/pg (PGDATA, owned by postgres; socket inside), DATADIR/redis,
# DATADIR/logs, DATADIR/localstack.env (ports and passwords, mode 0600).

# Why one file, not a PostgreSQL part and a Redis part sourced from here (judged when the long
# scripts were split; start.sh `eval`s the exports, the test suites run it):
# - the sections below (state, PostgreSQL, Redis, commands) share one state: _ls_paths and
#   _ls_load set the LS_* paths and PG_*/REDIS_* ports and passwords that the PostgreSQL, Redis
#   and command functions all read and set, and _ls_save writes back together; in three files
#   that contract would have no one place;
# - the Redis part is ~45 lines; what is long is PostgreSQL (~120, mostly where its data and
#   socket may live when run as root), and a reader finds it under its `# --- PostgreSQL` line;
# - the usage text is lines 2-22 of this very file (`sed -n '2,22p' "$0"` below), and sourcing
#   this one path gives every ls_* function.

_LS_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$_LS_HERE/common.sh"

ls_pg_bindir() {
    local d
    # shellcheck disable=SC2012  # plain version directories
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && { echo "$d"; return 0; }
    done
    return 1
}

ls_install() {
    local need=()
    ls_pg_bindir >/dev/null && command -v psql >/dev/null || need+=(postgresql)
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need+=(redis-server)
    ((${#need[@]})) || return 0
    ss_apt_ensure "${need[@]}"
}

# --- state ------------------------------------------------------------------------------

_ls_paths() {  # sets the LS_* path variables for datadir $1
    mkdir -p "$1"
    LS_DIR="$(cd "$1" && pwd)"
    LS_STATE="$LS_DIR/localstack.env"
    LS_PGDATA="$LS_DIR/pg"
    LS_REDISDIR="$LS_DIR/redis"
    LS_LOGS="$LS_DIR/logs"
}

_ls_load() {
    PG_PORT="" REDIS_PORT="" PG_PASSWORD="" REDIS_PASSWORD="" REDIS_ADMIN_PASSWORD="" PG_DB="" PG_SOCKDIR=""
    # shellcheck disable=SC1090
    [[ -f "$LS_STATE" ]] && source "$LS_STATE"
    return 0
}

_ls_save() {
    (
        umask 077
        cat >"$LS_STATE.tmp" <<EOF
PG_PORT=$PG_PORT
PG_DB=$PG_DB
PG_PASSWORD=$PG_PASSWORD
PG_SOCKDIR=$PG_SOCKDIR
REDIS_PORT=$REDIS_PORT
REDIS_PASSWORD=$REDIS_PASSWORD
REDIS_ADMIN_PASSWORD=$REDIS_ADMIN_PASSWORD
EOF
        mv "$LS_STATE.tmp" "$LS_STATE"
    )
}

_ls_pg_running() {
    local bin
    bin=$(ls_pg_bindir) || return 1
    [[ -f "$LS_PGDATA/PG_VERSION" ]] || return 1
    runuser -u postgres -- "$bin/pg_ctl" -D "$(readlink -f "$LS_PGDATA")" status >/dev/null 2>&1
}

_ls_redis_pid() {
    local pid
    pid=$(cat "$LS_REDISDIR/redis.pid" 2>/dev/null) || return 1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    grep -q redis "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

_ls_redis_running() {
    _ls_redis_pid >/dev/null || return 1
    [[ "$(REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

# shellcheck disable=SC2120,SC2119  # SQL comes on stdin; extra psql arguments are optional
_ls_psql() {  # superuser psql over the private socket, SQL on stdin
    local bin
    bin=$(ls_pg_bindir)
    PGOPTIONS="-c client_min_messages=warning" runuser -u postgres -- "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

# --- PostgreSQL ---------------------------------------------------------------------------

# A folder at a predictable path in a world-writable place (/tmp, /var/tmp): another user may
# have made it first, or planted a symlink there for `install -d -o` to chown its target.
# Made with mkdir (which fails on anything already there), reused only when it is a real
# folder of OWNER with mode 0700.
_ls_private_dir() {  # DIR OWNER
    local dir=$1 owner=$2
    if mkdir -m 0700 "$dir" 2>/dev/null; then
        chown -h "$owner:$owner" "$dir"
        return 0
    fi
    [[ ! -L $dir && -d $dir && $(stat -c '%U %a' "$dir") == "$owner 700" ]] ||
        ss_die "refusing $dir: it exists and is not a folder of $owner with mode 0700 (a symlink, or another user's); remove it if it is yours"
}

# Make sure the postgres user can reach LS_PGDATA; if it cannot traverse LS_DIR, put the
# cluster (and its log) under /var/tmp and leave a symlink. Sets LS_PGLOG.
_ls_pg_place() {
    if [[ ! -L "$LS_PGDATA" && ! -d "$LS_PGDATA" ]]; then
        if runuser -u postgres -- test -x "$LS_DIR"; then
            install -d -o postgres -g postgres -m 0700 "$LS_PGDATA"
        else
            local alt
            alt="/var/tmp/synspirit-pg-$(printf '%s' "$LS_DIR" | sha256sum | cut -c1-12)"
            ss_log "the postgres user cannot traverse $LS_DIR; keeping PostgreSQL data in $alt (symlinked from $LS_PGDATA)"
            _ls_private_dir "$alt" postgres
            # inside a folder of postgres: made as postgres, so no link of its is followed by root
            runuser -u postgres -- mkdir -p -m 0700 "$alt/data"
            ln -s "$alt/data" "$LS_PGDATA"
        fi
    fi
    if [[ -L "$LS_PGDATA" ]]; then
        LS_PGLOG="$(dirname "$(readlink -f "$LS_PGDATA")")/postgresql.log"
        ln -sfn "$LS_PGLOG" "$LS_LOGS/postgresql.log"
    else
        LS_PGLOG="$LS_LOGS/postgresql.log"
    fi
}

_ls_pg_start() {
    local fast="$1" bin
    bin=$(ls_pg_bindir) || ss_die "PostgreSQL server binaries not found (run: $0 install)"
    _ls_pg_place
    local real
    real=$(readlink -f "$LS_PGDATA")
    if [[ -z "$PG_PASSWORD" || ! -f "$real/PG_VERSION" ]]; then
        PG_PASSWORD=$(ss_rand_hex 24)
    fi
    # Socket inside the data dir unless that path would be too long for a unix socket.
    PG_SOCKDIR="$real"
    if ((${#PG_SOCKDIR} > 80)); then
        PG_SOCKDIR="/tmp/synspirit-pg-$(printf '%s' "$real" | sha256sum | cut -c1-12)"
        _ls_private_dir "$PG_SOCKDIR" postgres
    fi
    local fresh=0
    if [[ ! -f "$real/PG_VERSION" ]]; then
        ss_log "initialising PostgreSQL cluster in $LS_PGDATA"
        chown postgres:postgres "$real"
        chmod 0700 "$real"
        runuser -u postgres -- "$bin/initdb" -D "$real" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >"$LS_LOGS/initdb.log" 2>&1 \
            || { cat "$LS_LOGS/initdb.log" >&2; ss_die "initdb failed"; }
        fresh=1
    fi
    # Our settings, re-written at every start (ports may change).
    {
        echo "# written by SynSpirit localstack.sh at every start"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = '$PG_SOCKDIR'"
        echo "max_connections = 300"
        echo "password_encryption = 'scram-sha-256'"
        if [[ "$fast" == 1 ]]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >"$real/synspirit.conf"
    chown postgres:postgres "$real/synspirit.conf"
    grep -q "^include_if_exists = 'synspirit.conf'" "$real/postgresql.conf" \
        || echo "include_if_exists = 'synspirit.conf'" >>"$real/postgresql.conf"
    # the log is written by postgres, in a folder of postgres (/var/tmp) or of ours
    if [[ $(stat -c %U "$(dirname "$LS_PGLOG")") == postgres ]]; then
        runuser -u postgres -- touch "$LS_PGLOG"
    else
        touch "$LS_PGLOG"
        chown -h postgres:postgres "$LS_PGLOG"
    fi
    ss_log "starting PostgreSQL on 127.0.0.1:$PG_PORT (data $LS_PGDATA)"
    # Daemons must not inherit our lock (fd 9) nor the caller's stdout (a $(...) pipe).
    runuser -u postgres -- "$bin/pg_ctl" -D "$real" -l "$LS_PGLOG" -w -t 60 start \
        </dev/null >>"$LS_LOGS/pg_ctl.log" 2>&1 9>&- \
        || { cat "$LS_LOGS/pg_ctl.log" >&2; tail -n 30 "$LS_PGLOG" >&2; ss_die "PostgreSQL did not start"; }
    # Role and database (idempotent); password (re)set every start so the state file rules.
    _ls_pg_role_db
    ((fresh)) && ss_log "created PostgreSQL role and database '$PG_DB'"
    return 0
}

# The role (named like the database; CREATEDB so that tests can make scratch databases) and
# its database; idempotent. The password is (re)set so that the state file rules.
_ls_pg_role_db() {
    _ls_psql >/dev/null <<SQL || ss_die "could not create the PostgreSQL role/database $PG_DB"
SELECT 'CREATE ROLE "$PG_DB" LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_DB') \gexec
ALTER ROLE "$PG_DB" WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE "$PG_DB" OWNER "$PG_DB"' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
SQL
}

_ls_pg_stop() {
    local bin
    bin=$(ls_pg_bindir) || return 0
    if _ls_pg_running; then
        ss_log "stopping PostgreSQL ($LS_PGDATA)"
        local real
        real=$(readlink -f "$LS_PGDATA")
        runuser -u postgres -- "$bin/pg_ctl" -D "$real" -m fast -w -t 60 stop >/dev/null \
            || runuser -u postgres -- "$bin/pg_ctl" -D "$real" -m immediate -w stop >/dev/null || true
    fi
}

# --- Redis ----------------------------------------------------------------------------------

# What the application's Redis user (the default user) may do: every key and channel of its
# server, every command but those that administer it. The deployment gives the same rules
# (ansible/roles/redis, redis_app_acl_rules; tests/backend/security/test_redis_acl.py checks
# that they are equal).
REDIS_APP_ACL='~* &* +@all -@admin -@dangerous'

_ls_redis_start() {
    command -v redis-server >/dev/null || ss_die "redis-server not found (run: $0 install)"
    install -d -m 0700 "$LS_REDISDIR"
    [[ -n "$REDIS_PASSWORD" ]] || REDIS_PASSWORD=$(ss_rand_hex 24)
    [[ -n "$REDIS_ADMIN_PASSWORD" ]] || REDIS_ADMIN_PASSWORD=$(ss_rand_hex 24)
    (
        umask 077
        cat >"$LS_REDISDIR/redis.conf" <<EOF
# written by SynSpirit localstack.sh at every start
bind 127.0.0.1
protected-mode yes
port $REDIS_PORT
# The users of the deployment's Redis role (ansible/roles/redis): the application is the
# default user, which may not administer the server (CONFIG, FLUSHALL, DEBUG, KEYS,
# SHUTDOWN...); admin is for the suites' fixtures and the operator.
user default on >$REDIS_PASSWORD $REDIS_APP_ACL
user admin on >$REDIS_ADMIN_PASSWORD ~* &* +@all
daemonize yes
pidfile $LS_REDISDIR/redis.pid
logfile $LS_LOGS/redis.log
dir $LS_REDISDIR
appendonly yes
appendfsync everysec
save ""
maxclients 4000
EOF
    )
    rm -f "$LS_REDISDIR/redis.pid"
    ss_log "starting Redis on 127.0.0.1:$REDIS_PORT (data $LS_REDISDIR)"
    redis-server "$LS_REDISDIR/redis.conf" </dev/null >>"$LS_LOGS/redis.log" 2>&1 9>&- || ss_die "redis-server failed to start"
    for _ in $(seq 1 100); do
        _ls_redis_running && return 0
        sleep 0.1
    done
    tail -n 20 "$LS_LOGS/redis.log" >&2
    ss_die "Redis did not answer on 127.0.0.1:$REDIS_PORT"
}

_ls_redis_stop() {
    local pid
    pid=$(_ls_redis_pid) || return 0
    ss_log "stopping Redis ($LS_REDISDIR)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# --- commands -------------------------------------------------------------------------------

_ls_exports() {
    local want="$1"
    if [[ "$want" != redis ]]; then
        echo "export DATABASE_URL='postgresql+psycopg2://$PG_DB:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB'"
    fi
    if [[ "$want" != pg ]]; then
        echo "export REDIS_URL='redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0'"
        # Not for the application (start.sh drops it): the test suites' fixtures and the bench.
        echo "export REDIS_ADMIN_URL='redis://admin:$REDIS_ADMIN_PASSWORD@127.0.0.1:$REDIS_PORT/0'"
    fi
}

_ls_pick_port() {  # _ls_pick_port GIVEN SAVED
    if [[ -n "$1" ]]; then
        ss_port_in_use "$1" && ss_die "port $1 is already in use"
        echo "$1"
    elif [[ -n "$2" ]] && ! ss_port_in_use "$2"; then
        echo "$2"
    else
        ss_free_port
    fi
}

ls_start() {
    local dir="" pg_port="" redis_port="" db="" only="" fast=0
    while (($#)); do
        case "$1" in
            --pg-port) pg_port="$2"; shift 2 ;;
            --redis-port) redis_port="$2"; shift 2 ;;
            --db) db="$2"; shift 2 ;;
            --only) only="$2"; shift 2 ;;
            --fast) fast=1; shift ;;
            -*) ss_die "unknown option $1" ;;
            *) [[ -z "$dir" ]] || ss_die "one DATADIR only"; dir="$1"; shift ;;
        esac
    done
    [[ -n "$dir" ]] || ss_die "usage: localstack.sh start DATADIR [options]"
    [[ -z "$only" || "$only" == pg || "$only" == redis ]] || ss_die "--only pg|redis"
    [[ $(id -u) -eq 0 ]] || ss_die "must run as root (PostgreSQL runs as the postgres user)"
    _ls_paths "$dir"
    mkdir -p "$LS_LOGS"
    chmod 0755 "$LS_LOGS"
    # One start at a time per DATADIR.
    exec 9>"$LS_DIR/.localstack.lock"
    flock -w 300 9 || ss_die "another localstack.sh start holds $LS_DIR/.localstack.lock"
    _ls_load
    [[ -n "$db" ]] && PG_DB="$db"
    [[ -n "$PG_DB" ]] || PG_DB=synspirit
    [[ "$PG_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || ss_die "bad database name: $PG_DB"
    ls_install
    local started=()
    if [[ "$only" != redis ]]; then
        if _ls_pg_running && [[ -z "$pg_port" || "$pg_port" == "$PG_PORT" ]]; then
            ss_log "reusing PostgreSQL already running on 127.0.0.1:$PG_PORT ($LS_PGDATA)"
            _ls_pg_role_db
        else
            _ls_pg_stop
            PG_PORT=$(_ls_pick_port "$pg_port" "$PG_PORT")
            _ls_pg_start "$fast"
            started+=(pg)
        fi
    fi
    if [[ "$only" != pg ]]; then
        if _ls_redis_running && [[ -z "$redis_port" || "$redis_port" == "$REDIS_PORT" ]]; then
            ss_log "reusing Redis already running on 127.0.0.1:$REDIS_PORT ($LS_REDISDIR)"
        else
            _ls_redis_stop
            REDIS_PORT=$(_ls_pick_port "$redis_port" "$REDIS_PORT")
            _ls_redis_start
            started+=(redis)
        fi
    fi
    _ls_save
    _ls_exports "$only"
    echo "export LOCALSTACK_STARTED='${started[*]}'"
    exec 9>&-
}

ls_env() {
    _ls_paths "$1"
    _ls_load
    local ok=0
    if [[ -n "$PG_PORT" ]] && _ls_pg_running; then _ls_exports pg; ok=1; fi
    if [[ -n "$REDIS_PORT" ]] && _ls_redis_running; then _ls_exports redis; ok=1; fi
    ((ok)) || { ss_log "nothing running in $LS_DIR"; return 1; }
}

ls_status() {
    _ls_paths "$1"
    _ls_load
    local rc=0
    if _ls_pg_running; then echo "postgresql: running on 127.0.0.1:$PG_PORT"; else echo "postgresql: stopped"; rc=1; fi
    if [[ -n "$REDIS_PORT" ]] && _ls_redis_running; then echo "redis: running on 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; rc=1; fi
    return $rc
}

ls_resetdb() {
    local name="$2"
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || ss_die "bad database name: $name"
    _ls_paths "$1"
    _ls_load
    _ls_pg_running || ss_die "PostgreSQL is not running in $LS_DIR"
    _ls_psql <<SQL >/dev/null || ss_die "could not re-create database $name"
SELECT 'CREATE ROLE "$PG_DB" LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_DB') \gexec
DROP DATABASE IF EXISTS "$name" WITH (FORCE);
CREATE DATABASE "$name" OWNER "$PG_DB";
SQL
    echo "export DATABASE_URL='postgresql+psycopg2://$PG_DB:$PG_PASSWORD@127.0.0.1:$PG_PORT/$name'"
}

ls_stop() {
    local what="${2:-all}"
    _ls_paths "$1"
    _ls_load
    [[ "$what" == redis ]] || _ls_pg_stop
    [[ "$what" == pg ]] || _ls_redis_stop
    return 0
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    export SS_LOG_PREFIX=localstack
    cmd="${1:-}"
    shift || true
    case "$cmd" in
        install) ls_install ;;
        start) ls_start "$@" ;;
        env) [[ $# -eq 1 ]] || ss_die "usage: localstack.sh env DATADIR"; ls_env "$1" ;;
        status) [[ $# -eq 1 ]] || ss_die "usage: localstack.sh status DATADIR"; ls_status "$1" ;;
        resetdb) [[ $# -eq 2 ]] || ss_die "usage: localstack.sh resetdb DATADIR NAME"; ls_resetdb "$1" "$2" ;;
        stop) [[ $# -ge 1 ]] || ss_die "usage: localstack.sh stop DATADIR [pg|redis]"; ls_stop "$@" ;;
        *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
fi
