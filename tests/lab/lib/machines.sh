# shellcheck shell=bash
# The lab's machines: one overlay of the base image per host, booted by systemd-nspawn; clean
# power-off, power loss (crash), and the checks that make `up` and `down` trustworthy: a host
# counts as gone only when its interface and namespaces are, and as up only when the machine
# that answers on its address is this one, still running (sourced by tests/lab/lab.sh).

# The machine name also names the bridge-side veth (vb-NAME), at most 15 characters in all:
# unique per lab.
machine_name() { echo "${SUFFIX:+l$SUFFIX}$1"; }
veth_of() { echo "vb-$(machine_name "$1")"; }

# Each host is an overlay of BASE (instant, and only its changes take disk space) with its own
# identity: machine-id, SSH host keys, hostname, static address, root's authorized key.
host_root() { echo "$HOSTS_DIR/$1/root"; }

mount_host() {
    local dir=$HOSTS_DIR/$1
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    mountpoint -q "$dir/root" ||
        mount -t overlay "lab-$1" -o "lowerdir=$BASE,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
}

make_host() {
    local name=$1 addr=$2 root
    root=$(host_root "$name")
    mount_host "$name"
    [[ -f $root/.lab-host ]] && return
    say "$name: new host on an overlay of the base image"
    tr -d '-' </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
    ssh-keygen -q -A -f "$root" >/dev/null
    echo "$name" >"$root/etc/hostname"
    {
        printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$name"
        topology | awk '{printf "%s\t%s\n", $2, $1}'
    } >"$root/etc/hosts"
    # Must sort before the image's 80-container-host0.network, which would win otherwise.
    cat >"$root/etc/systemd/network/10-lab.network" <<EOF
[Match]
Name=host0

[Network]
Address=$addr/24
Gateway=$BRIDGE_ADDR
# A server's address stays when its link goes down, as on ifupdown: the network-cut scenario
# must not take PostgreSQL's listen address away (it came back on 127.0.0.1 only).
IgnoreCarrierLoss=yes
ConfigureWithoutCarrier=yes
EOF
    install -d -m 0700 "$root/root/.ssh"
    install -m 0600 "$SSH_KEY.pub" "$root/root/.ssh/authorized_keys"
    echo "$name $addr" >"$root/.lab-host"
}

# A destroyed disk: the host's overlay loses every change it made to the base image (its
# identity too: make_host gives it a new one). The host must be off.
wipe_host() {
    local dir=$HOSTS_DIR/$1
    say "$1: wiping its disk (the overlay's changes) back to the base image"
    if mountpoint -q "$dir/root"; then umount "$dir/root"; fi
    rm -rf "$dir/upper" "$dir/work"
}

# LAB_WEB_HOSTS, LAB_WORKER_HOSTS or LAB_DATA_HOSTS smaller than what runs: the hosts beyond it
# go away (a data host's Patroni and etcd members are not removed from the cluster: lab use only).
remove_extra_hosts() {
    local dir name extra=()
    shopt -s nullglob
    for dir in "$HOSTS_DIR"/web* "$HOSTS_DIR"/worker* "$HOSTS_DIR"/data*; do
        name=$(basename "$dir")
        [[ -n $(host_addr "$name") ]] || extra+=("$name")
    done
    ((${#extra[@]})) || return 0
    say "LAB_WEB_HOSTS=$(web_count) LAB_WORKER_HOSTS=$(worker_count) LAB_DATA_HOSTS=$(data_count): removing ${extra[*]}"
    stop_hosts "${extra[@]}"
    wait_hosts_gone "${extra[@]}"
    for name in "${extra[@]}"; do
        mountpoint -q "$HOSTS_DIR/$name/root" && umount "$HOSTS_DIR/$name/root"
        rm -rf "${HOSTS_DIR:?}/$name"
    done
}

remove_hosts() {
    local dir
    shopt -s nullglob
    for dir in "$HOSTS_DIR"/*/; do
        dir=${dir%/}
        if mountpoint -q "$dir/root"; then umount "$dir/root" || umount -l "$dir/root"; fi
        rm -rf "$dir"
    done
    rm -rf "$HOSTS_DIR"
}

# ---------------------------------------------------------------- boot
boot_host() {  # NAME
    local name=$1 left
    if alive "$RUN/$name.pid" systemd-nspawn; then return; fi
    # What an earlier boot leaves behind makes nspawn fail ("Failed to add new veth interfaces:
    # File exists") while an old copy of the host may still answer on its address (wait_ssh
    # also checks that the machine answering is this one).
    left=$(hosts_remaining "$name")
    if [[ -n $left ]]; then
        say "$name: waiting for what an earlier boot left: $left"
        wait_hosts_gone "$name"
    fi
    say "$name: booting (systemd-nspawn)"
    mkdir -p "$RUN"
    # No systemd-machined on the controller: --register=no --keep-unit.
    setsid systemd-nspawn -b -D "$(host_root "$name")" --machine="$(machine_name "$name")" --register=no \
        --keep-unit --console=passive --network-bridge="$BRIDGE" \
        </dev/null >"$RUN/$name.console.log" 2>&1 &
    local pid=$! i
    echo "$pid" >"$RUN/$name.pid"
    rm -f "$RUN/$name.ns"
    # $! is a copy of this shell, then setsid, until it has exec'd systemd-nspawn: until then
    # `alive` would call the host dead (under load this takes a while).
    for ((i = 0; i < 200; i++)); do
        [[ -d /proc/$pid ]] && ! alive "$RUN/$name.pid" systemd-nspawn || break
        sleep 0.05
    done
}

# PID of the host's systemd (PID 1 inside), for nsenter.
init_pid() {
    local nspawn pid
    [[ -f $RUN/$1.pid ]] || return 0
    nspawn=$(<"$RUN/$1.pid")
    for pid in $(pgrep -P "$nspawn"); do
        if grep -q '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" 2>/dev/null; then echo "$pid"; return; fi
    done
}

# Why a host's nspawn is not running: the end of its console, the errors first.
why_dead() {
    local log=$RUN/$1.console.log
    [[ -f $log ]] || { echo "(no console log)"; return; }
    grep -aE 'Failed|failed|rror' "$log" | tail -5 || true
    echo "--- last lines of $log:"
    tail -15 "$log"
}

wait_ssh() {  # NAME ADDRESS
    local name=$1 addr=$2 i want got
    want=$(<"$(host_root "$name")/etc/machine-id")
    for ((i = 0; i < 120; i++)); do
        alive "$RUN/$name.pid" systemd-nspawn || { why_dead "$name" >&2; die "$name: its systemd-nspawn died while booting"; }
        # </dev/null: ssh would read the caller's stdin, the rest of the list of hosts to wait for.
        if got=$(ssh "${SSH_OPTS[@]}" "root@$addr" cat /etc/machine-id </dev/null 2>/dev/null); then
            [[ $got == "$want" ]] || die "$name: the machine answering on $addr is not this lab's $name (machine-id $got)"
            record_namespaces "$name"
            return
        fi
        sleep 0.5
    done
    why_dead "$name" >&2
    die "$name: no SSH on $addr after 60 s"
}

# Before converging: every host's nspawn still runs (a host that died after answering once
# would leave half a lab converged and the playbook failing on "No route to host").
check_hosts_alive() {
    local name addr dead=()
    while read -r name addr; do
        alive "$RUN/$name.pid" systemd-nspawn || { why_dead "$name" >&2; dead+=("$name"); }
    done < <(topology)
    ((${#dead[@]} == 0)) || die "systemd-nspawn of ${dead[*]} died after booting (console above)"
}

# ---------------------------------------------------------------- power off, crash, gone
# The host's PID and network namespaces (their inode numbers), to know when they are gone.
record_namespaces() {
    local init
    init=$(init_pid "$1")
    [[ -n $init ]] || return 0
    stat -L -c %i "/proc/$init/ns/pid" "/proc/$init/ns/net" | tr '\n' ' ' >"$RUN/$1.ns"
}

# Power hosts off in parallel: SIGTERM to nspawn is a clean poweroff of the host's systemd;
# SIGKILL after 30 s.
stop_hosts() {
    local name pid i init pids=() names=()
    for name in "$@"; do
        if alive "$RUN/$name.pid" systemd-nspawn; then
            pid=$(<"$RUN/$name.pid")
            say "$name: powering off (nspawn PID $pid)"
            kill -TERM "$pid"
            pids+=("$pid"); names+=("$name")
        fi
    done
    for ((i = 0; i < 300; i++)); do
        running_pids "${pids[@]}" || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if [[ -d /proc/${pids[$i]} ]]; then
            # The host's PID 1 first, as a power loss (crash_host): SIGKILL to nspawn alone left
            # the host's systemd running, orphaned, holding its interface and namespaces.
            init=$(init_pid "${names[$i]}")
            say "${names[$i]}: no poweroff after 30 s, SIGKILL (init ${init:-gone}, nspawn ${pids[$i]})"
            [[ -z $init ]] || kill -KILL "$init" 2>/dev/null || true
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 50; i++)); do running_pids "${pids[@]}" || break; sleep 0.1; done
    for name in "$@"; do rm -f "$RUN/$name.pid"; done
}
running_pids() { local p; for p in "$@"; do [[ -d /proc/$p ]] && return 0; done; return 1; }

# Power loss: SIGKILL to the host's PID 1 from outside; the kernel then kills every process of
# its PID namespace at once (no stop jobs, no flush, no goodbye on the network), and nspawn,
# its parent, exits and removes the interface.
crash_host() {
    local name=$1 init
    alive "$RUN/$name.pid" systemd-nspawn || die "$name is not running"
    init=$(init_pid "$name")
    [[ -n $init ]] || die "$name: no init process found under nspawn $(<"$RUN/$name.pid")"
    kill -KILL "$init"
    # The moment of the power loss, for whoever measures what follows (tests/chaos).
    say "$name: crash (SIGKILL to its PID 1, $init) at $(date +%s.%N)"
    wait_hosts_gone "$name"
    rm -f "$RUN/$name.pid"
}

# Wait until the hosts' nspawn, interfaces and namespaces are gone (default: every host this
# lab has a trace of): a later boot of the same host would otherwise fail.
wait_hosts_gone() {
    local names=("$@") name i left f
    if ((${#names[@]} == 0)); then
        shopt -s nullglob
        for f in "$RUN"/*.ns "$RUN"/*.pid "$HOSTS_DIR"/*/; do
            name=$(basename "${f%/}"); name=${name%.*}
            [[ $name == tinyproxy ]] || names+=("$name")
        done
        ((${#names[@]})) || return 0
        mapfile -t names < <(printf '%s\n' "${names[@]}" | sort -u)
    fi
    for ((i = 0; i < 600; i++)); do
        left=$(hosts_remaining "${names[@]}")
        [[ -z $left ]] && break
        sleep 0.1
    done
    [[ -z $left ]] || die "still there 60 s after the power-off: $left"
    for name in "${names[@]}"; do rm -f "$RUN/$name.ns"; done
}

hosts_remaining() {  # NAMES: what is left of them, one phrase each
    local name nsid live
    live=$(lsns -n -r -o NS 2>/dev/null || true)
    for name in "$@"; do
        alive "$RUN/$name.pid" systemd-nspawn && printf '%s ' "$name:nspawn"
        ip link show "$(veth_of "$name")" >/dev/null 2>&1 && printf '%s ' "$name:$(veth_of "$name")"
        if [[ -f $RUN/$name.ns ]]; then
            for nsid in $(<"$RUN/$name.ns"); do
                grep -qx "$nsid" <<<"$live" && printf '%s ' "$name:namespace-$nsid"
            done
        fi
    done
    return 0
}
