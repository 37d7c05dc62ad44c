# shellcheck shell=bash
# The lab's own network: a bridge on the controller, and tinyproxy on it as the hosts' only way
# to Debian's mirror (sourced by tests/lab/lab.sh).

bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "creating bridge $BRIDGE ($BRIDGE_ADDR/24)"
        ip link add "$BRIDGE" type bridge
    fi
    [[ $(ip -o -4 addr show dev "$BRIDGE") == *" $BRIDGE_ADDR/24 "* ]] || ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

bridge_down() {
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "deleting bridge $BRIDGE"
        ip link del "$BRIDGE"
    fi
}

alive() {  # PIDFILE EXPECTED_COMM
    local pid
    [[ -f $1 ]] || return 1
    pid=$(<"$1")
    [[ -r /proc/$pid/comm && $(</proc/$pid/comm) == "$2"* ]]
}

proxy_up() {
    mkdir -p "$RUN"
    if alive "$RUN/tinyproxy.pid" tinyproxy; then return; fi
    say "starting tinyproxy on $PROXY_URL (Debian mirrors only, for $NET.0/24 only)"
    # Hosts have no route out: their only way to Debian's mirror is this proxy, bound to the
    # bridge address, answering the lab network only and forwarding to Debian's hosts only.
    printf '%s\n' '^deb\.debian\.org$' '^security\.debian\.org$' >"$RUN/tinyproxy.filter"
    cat >"$RUN/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $PROXY_PORT
Listen $BRIDGE_ADDR
Timeout 600
MaxClients 100
Allow $NET.0/24
DisableViaHeader Yes
Filter "$RUN/tinyproxy.filter"
FilterURLs Off
FilterType ere
FilterDefaultDeny Yes
LogLevel Notice
EOF
    setsid tinyproxy -d -c "$RUN/tinyproxy.conf" </dev/null >"$RUN/tinyproxy.log" 2>&1 &
    echo $! >"$RUN/tinyproxy.pid"
    local i
    for ((i = 0; i < 50; i++)); do
        (exec 3<>"/dev/tcp/$BRIDGE_ADDR/$PROXY_PORT") 2>/dev/null && return
        sleep 0.1
    done
    cat "$RUN/tinyproxy.log" >&2
    die "tinyproxy did not start"
}

proxy_down() {
    if alive "$RUN/tinyproxy.pid" tinyproxy; then
        say "stopping tinyproxy"
        kill -TERM "$(<"$RUN/tinyproxy.pid")"
    fi
    rm -f "$RUN/tinyproxy.pid"
}
