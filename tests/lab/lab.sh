#!/usr/bin/env bash
# The lab: Debian 12 hosts with systemd as PID 1 (systemd-nspawn machines on a bridge of their
# own), converged by the production playbook ansible/site.yml, then tested by tests/infra.
#
#   tests/lab/lab.sh up       build the image once, boot the hosts, write the inventory, converge
#   tests/lab/lab.sh down     power the hosts off, remove the bridge, the proxy and the copies
#   tests/lab/lab.sh test     pytest tests/infra against the lab  (--scale-out: add a web host too)
#   tests/lab/lab.sh status   what runs
#   tests/lab/lab.sh ssh HOST [CMD...]
#   tests/lab/lab.sh poweroff HOST   clean power-off of one host (its disk stays)
#   tests/lab/lab.sh boot HOST       boot it again and wait for SSH (nothing else is done to it)
#
# Size: LAB_WEB_HOSTS=3 tests/lab/lab.sh up  (default 2, or as many web hosts as already run).
# Several labs side by side: LAB_ID=N (0..9, default 0) gives lab N its own bridge synlabN,
# network 10.77.N.0/24, hosts and inventory; the base image (LAB_BASE=DIR to share one between
# checkouts) and SSH key are shared.
# Everything it makes lives under .cache/lab/ (git-ignored) plus ansible/inventories/lab[N]/.
# Traffic goes only to the lab's own network 10.77.N.0/24; no other interface is touched.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB_ID=${LAB_ID:-0}
[[ $LAB_ID =~ ^[0-9]$ ]] || { echo "[lab] LAB_ID must be 0..9, got '$LAB_ID'" >&2; exit 2; }
LAB_DIR=$REPO/.cache/lab
BASE=${LAB_BASE:-$LAB_DIR/base}  # the Debian 12 root file system, built once, never booted
SSH_KEY=$LAB_DIR/ssh/id_ed25519
if ((LAB_ID == 0)); then STATE=$LAB_DIR; SUFFIX=; else STATE=$LAB_DIR/lab$LAB_ID; SUFFIX=$LAB_ID; fi
HOSTS_DIR=$STATE/hosts           # one overlay of BASE per host
RUN=$STATE/run                   # PIDs, logs, proxy configuration of the running lab
TIMINGS=$STATE/timings.json
WHEELHOUSE=$REPO/.cache/wheelhouse
INVENTORY_DIR=$REPO/ansible/inventories/lab$SUFFIX
VENV=$REPO/.venv

BRIDGE=synlab$LAB_ID
NET=10.77.$LAB_ID
BRIDGE_ADDR=$NET.1
PROXY_PORT=3128
PROXY_URL=http://$BRIDGE_ADDR:$PROXY_PORT
SUITE=bookworm
# What a minimal Debian server has; the roles install everything else through the apt proxy.
# apt's lists are kept, as on an installed server: mmdebstrap would empty them, and an empty
# list folder with a fresh date fools apt's cache_valid_time into skipping the update.
BASE_PACKAGES=systemd,systemd-sysv,dbus,iproute2,openssh-server,python3,python3-apt,sudo,ca-certificates,procps
HOST_TOOLS=(mmdebstrap:mmdebstrap systemd-nspawn:systemd-container tinyproxy:tinyproxy-bin
            ssh:openssh-client ssh-keygen:openssh-client ip:iproute2 setsid:util-linux)
SSH_OPTS=(-i "$SSH_KEY" -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no
          -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)

T0=$(date +%s%N)
IMAGE_BUILT=0
elapsed() { local ms=$((($(date +%s%N) - T0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say()  { printf '\033[1m[lab %6ss]\033[0m %s\n' "$(elapsed)" "$*"; }
die()  { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- topology
# One line per host: NAME ADDRESS. Web host N is 10.77.ID.1N (contract), so at most 9.
web_count() {
    if [[ -n ${LAB_WEB_HOSTS:-} ]]; then echo "$LAB_WEB_HOSTS"; return; fi
    local n=0 d
    for d in "$HOSTS_DIR"/web*; do [[ -d $d ]] && n=$((n + 1)); done
    (( n >= 2 )) && echo "$n" || echo 2
}
topology() {
    local n i
    n=$(web_count)
    [[ $n =~ ^[1-9]$ ]] || die "LAB_WEB_HOSTS must be 1..9 (web N is $NET.1N), got '$n'"
    echo "lb1 $NET.10"
    for ((i = 1; i <= n; i++)); do echo "web$i $NET.1$i"; done
    echo "data1 $NET.20"
    echo "mon1 $NET.30"
}
host_addr() { topology | awk -v h="$1" '$1 == h {print $2}'; }

# ---------------------------------------------------------------- controller prerequisites
need_root() { [[ $EUID -eq 0 ]] || die "run as root (systemd-nspawn, bridges)"; }

ensure_host_tools() {
    local missing=() pair
    for pair in "${HOST_TOOLS[@]}"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        echo "[lab] installing controller packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# Every host's systemd takes inotify instances from the controller's per-user budget (128 by
# default): a lab of five hosts, or several labs, run out ("Too many open files" at boot).
ensure_inotify() {
    local have
    have=$(cat /proc/sys/fs/inotify/max_user_instances)
    if ((have < 1024)); then
        say "raising fs.inotify.max_user_instances from $have to 1024 (systemd in every host uses some)"
        sysctl -qw fs.inotify.max_user_instances=1024
    fi
}

ensure_venv() {
    if [[ ! -x $VENV/bin/ansible-playbook || ! -x $VENV/bin/pytest ]]; then
        [[ -x $REPO/tests/bootstrap.sh ]] || die "$VENV lacks ansible/pytest and tests/bootstrap.sh is missing"
        say "creating the virtualenv (tests/bootstrap.sh)"
        "$REPO/tests/bootstrap.sh"
    fi
    export PATH=$VENV/bin:$PATH   # ansible-inventory must be on PATH for testinfra
}

# ---------------------------------------------------------------- image and host copies
build_base() {
    [[ -f $BASE/.lab-complete ]] && { say "base image cached: $BASE"; return; }
    # Labs sharing one LAB_BASE: one builds it, the others wait for that build.
    mkdir -p "$(dirname "$BASE")"
    exec 8>"$BASE.lock"
    flock 8
    [[ -f $BASE/.lab-complete ]] && { flock -u 8; say "base image built meanwhile: $BASE"; return; }
    IMAGE_BUILT=1
    say "building the Debian 12 base image with mmdebstrap (once)"
    rm -rf "$BASE" "$BASE.tmp"
    mkdir -p "$LAB_DIR"
    mmdebstrap --variant=minbase --include="$BASE_PACKAGES" --skip=cleanup/apt/lists \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key* "$1"/etc/hostname; : > "$1"/etc/machine-id' \
        "$SUITE" "$BASE.tmp" \
        "deb http://deb.debian.org/debian $SUITE main" \
        "deb http://deb.debian.org/debian $SUITE-updates main" \
        "deb http://deb.debian.org/debian-security $SUITE-security main" \
        >"$LAB_DIR/mmdebstrap.log" 2>&1 || { tail -20 "$LAB_DIR/mmdebstrap.log"; die "mmdebstrap failed"; }
    touch "$BASE.tmp/.lab-complete"
    mv "$BASE.tmp" "$BASE"
    flock -u 8
    say "base image ready ($(du -sh "$BASE" | cut -f1))"
}

ensure_ssh_key() {
    [[ -f $SSH_KEY ]] && return
    mkdir -p "$(dirname "$SSH_KEY")"
    ssh-keygen -q -t ed25519 -N '' -C synspirit-lab -f "$SSH_KEY"
}

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
EOF
    install -d -m 0700 "$root/root/.ssh"
    install -m 0600 "$SSH_KEY.pub" "$root/root/.ssh/authorized_keys"
    echo "$name $addr" >"$root/.lab-host"
}

# LAB_WEB_HOSTS smaller than what runs: the web hosts beyond it go away.
remove_extra_web_hosts() {
    local dir name extra=()
    shopt -s nullglob
    for dir in "$HOSTS_DIR"/web*; do
        name=$(basename "$dir")
        [[ -n $(host_addr "$name") ]] || extra+=("$name")
    done
    ((${#extra[@]})) || return 0
    say "LAB_WEB_HOSTS=$(web_count): removing ${extra[*]}"
    stop_hosts "${extra[@]}"
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

# ---------------------------------------------------------------- network: bridge and apt proxy
bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "creating bridge $BRIDGE ($BRIDGE_ADDR/24)"
        ip link add "$BRIDGE" type bridge
    fi
    [[ $(ip -o -4 addr show dev "$BRIDGE") == *" $BRIDGE_ADDR/24 "* ]] || ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
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

# ---------------------------------------------------------------- machines
boot_host() {
    local name=$1
    if alive "$RUN/$name.pid" systemd-nspawn; then return; fi
    say "$name: booting (systemd-nspawn)"
    # No systemd-machined on the controller: --register=no --keep-unit.
    # The machine name also names the bridge-side veth (vb-NAME): unique per lab.
    setsid systemd-nspawn -b -D "$(host_root "$name")" --machine="${SUFFIX:+l$SUFFIX}$name" --register=no --keep-unit \
        --console=passive --network-bridge="$BRIDGE" \
        </dev/null >"$RUN/$name.console.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

# PID of the host's systemd (PID 1 inside), for nsenter.
init_pid() {
    local nspawn pid
    nspawn=$(<"$RUN/$1.pid")
    for pid in $(pgrep -P "$nspawn"); do
        if grep -q '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" 2>/dev/null; then echo "$pid"; return; fi
    done
}

wait_ssh() {
    local name=$1 addr=$2 i
    for ((i = 0; i < 120; i++)); do
        if ssh "${SSH_OPTS[@]}" "root@$addr" true 2>/dev/null; then return; fi
        alive "$RUN/$name.pid" systemd-nspawn || { tail -30 "$RUN/$name.console.log" >&2; die "$name died while booting"; }
        sleep 0.5
    done
    tail -30 "$RUN/$name.console.log" >&2
    die "$name: no SSH on $addr after 60 s"
}

# Power hosts off in parallel: SIGTERM to nspawn is a clean poweroff of the host's systemd;
# SIGKILL after 30 s.
stop_hosts() {
    local name pid i pids=() names=()
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
            say "${names[$i]}: no poweroff after 30 s, SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 50; i++)); do running_pids "${pids[@]}" || break; sleep 0.1; done
    for name in "$@"; do rm -f "$RUN/$name.pid"; done
}
running_pids() { local p; for p in "$@"; do [[ -d /proc/$p ]] && return 0; done; return 1; }

# ---------------------------------------------------------------- ansible
write_inventory() {
    local name addr web_hosts first_web
    web_hosts=$(topology | awk '$1 ~ /^web/ {print $1}')
    first_web=$(head -1 <<<"$web_hosts")
    mkdir -p "$INVENTORY_DIR/group_vars"
    {
        echo "# Generated by tests/lab/lab.sh: the lab's hosts (systemd-nspawn machines on $BRIDGE)."
        echo "[lb]"
        echo "lb1 ansible_host=$(host_addr lb1)"
        echo
        echo "[web]"
        for name in $web_hosts; do echo "$name ansible_host=$(host_addr "$name")"; done
        echo
        echo "[postgresql]"
        echo "data1 ansible_host=$(host_addr data1)"
        echo
        echo "[redis]"
        echo "data1"
        echo
        echo "# exactly one beat in a deployment: the first web host"
        echo "[beat]"
        echo "$first_web"
        echo
        echo "[monitoring]"
        echo "mon1 ansible_host=$(host_addr mon1)"
    } >"$INVENTORY_DIR/hosts.ini"
    cat >"$INVENTORY_DIR/group_vars/all.yml" <<EOF
---
# Generated by tests/lab/lab.sh. Everything that makes this deployment a lab lives here.
ansible_user: root
ansible_ssh_private_key_file: $SSH_KEY
ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
# The hosts reach Debian's mirror only through the controller's proxy on the lab bridge.
common_apt_proxy: $PROXY_URL
EOF
}

build_wheelhouse() {
    local stamp=$WHEELHOUSE/.lab-stamp
    if [[ -f $stamp ]] && [[ -z $(find "$REPO/backend" -newer "$stamp" -type f \
            -not -path '*/__pycache__/*' -not -path '*/build/*' -not -path '*.egg-info/*' -print -quit) ]]; then
        say "wheelhouse up to date: $WHEELHOUSE"
        return
    fi
    say "building the wheelhouse on the controller"
    # Built afresh each time so that no wheel of an older pin lingers (a stale extra wheel
    # would hide a missing pin from the hosts' pip install).
    rm -rf "$WHEELHOUSE.new"
    mkdir -p "$WHEELHOUSE.new"
    # (grep: this machine's pip.conf may name find-links folders that do not exist)
    { "$VENV/bin/pip" wheel -q --no-deps -r "$REPO/backend/requirements.txt" -w "$WHEELHOUSE.new" &&
      "$VENV/bin/pip" wheel -q --no-deps "$REPO/backend" -w "$WHEELHOUSE.new"; } 2>&1 |
        { grep -v "^WARNING: Location '.*' is ignored" || true; } || die "pip wheel failed"
    rm -rf "$REPO/backend/build" "$WHEELHOUSE"
    mv "$WHEELHOUSE.new" "$WHEELHOUSE"
    touch "$stamp"
    say "wheelhouse: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels"
}

run_playbook() {
    local log=$RUN/ansible-$(date +%Y%m%dT%H%M%S).log rc=0
    if [[ ! -f $REPO/ansible/site.yml ]]; then
        say "ansible/site.yml does not exist yet: hosts are up, nothing converged"
        return 0
    fi
    say "ansible-playbook -i inventories/lab$SUFFIX/hosts.ini site.yml (log: $log)"
    # profile_tasks: the lab shows where a converge spends its time.
    (cd "$REPO/ansible" && ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-1} \
        ANSIBLE_CALLBACKS_ENABLED=${ANSIBLE_CALLBACKS_ENABLED:-ansible.posix.profile_tasks} \
        ansible-playbook -i "inventories/lab$SUFFIX/hosts.ini" site.yml "$@") 2>&1 | tee "$log" || rc=$?
    ln -sf "$(basename "$log")" "$RUN/ansible-last.log"
    ((rc == 0)) || die "ansible-playbook failed (rc=$rc), see $log"
}

record_timing() {  # KIND SECONDS
    python3 - "$TIMINGS" "$1" "$2" "$(web_count)" "$IMAGE_BUILT" <<'EOF'
import json, sys, datetime, pathlib
path, kind, seconds, webs = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
data = json.loads(path.read_text()) if path.exists() else {}
entry = {"seconds": round(seconds, 1), "web_hosts": webs, "image_built": sys.argv[5] == "1",
         "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
data[kind] = entry
data.setdefault("history", []).append({"kind": kind, **entry})
data["history"] = data["history"][-20:]
path.write_text(json.dumps(data, indent=2) + "\n")
EOF
}

print_summary() {
    local name addr
    echo
    echo "SynSpirit lab is up.  Load balancer: https://$(host_addr lb1)/  (self-signed certificate)"
    echo "Inventory: $INVENTORY_DIR/hosts.ini"
    echo "Reach a host:"
    while read -r name addr; do
        printf '  %-6s %-11s ssh -i %s root@%s   |   nsenter -t %s -a bash\n' \
            "$name" "$addr" "$SSH_KEY" "$addr" "$(init_pid "$name")"
    done < <(topology)
    echo "  (or: tests/lab/lab.sh ssh HOST)"
}

# ---------------------------------------------------------------- commands
cmd_up() {
    need_root
    ensure_host_tools
    ensure_inotify
    ensure_venv
    local fresh=0 name addr
    while read -r name addr; do alive "$RUN/$name.pid" systemd-nspawn || fresh=1; done < <(topology)
    build_base
    ensure_ssh_key
    remove_extra_web_hosts
    bridge_up
    proxy_up
    while read -r name addr; do make_host "$name" "$addr"; done < <(topology)
    while read -r name addr; do boot_host "$name"; done < <(topology)
    while read -r name addr; do wait_ssh "$name" "$addr"; done < <(topology)
    say "all hosts answer on SSH"
    write_inventory
    build_wheelhouse
    run_playbook
    local elapsed
    elapsed=$(elapsed)
    if [[ -f $REPO/ansible/site.yml ]]; then
        if ((fresh)); then record_timing up_from_nothing "$elapsed"; else record_timing converge_again "$elapsed"; fi
    fi
    say "done in ${elapsed%.*} s"
    print_summary
}

cmd_down() {
    need_root
    local pidfile names=()
    shopt -s nullglob
    for pidfile in "$RUN"/*.pid; do
        [[ $pidfile == */tinyproxy.pid ]] || names+=("$(basename "$pidfile" .pid)")
    done
    ((${#names[@]} == 0)) || stop_hosts "${names[@]}"
    if alive "$RUN/tinyproxy.pid" tinyproxy; then
        say "stopping tinyproxy"
        kill -TERM "$(<"$RUN/tinyproxy.pid")"
    fi
    rm -f "$RUN/tinyproxy.pid"
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "deleting bridge $BRIDGE"
        ip link del "$BRIDGE"
    fi
    if [[ -d $HOSTS_DIR ]]; then
        say "removing the hosts' overlays (the base image stays cached)"
        remove_hosts
    fi
    rm -rf "$INVENTORY_DIR"
    say "lab removed"
}

cmd_test() {
    need_root
    ensure_venv
    local args=() paths=()
    while (($#)); do
        case $1 in
            --scale-out) export LAB_SCALE_OUT=1 ;;
            tests/*) paths+=("$1") ;;
            *) args+=("$1") ;;
        esac
        shift
    done
    ((${#paths[@]})) || paths=(tests/infra)
    [[ -f $INVENTORY_DIR/hosts.ini ]] || die "no lab inventory: run 'tests/lab/lab.sh up' (make lab) first"
    export LAB_INVENTORY=$INVENTORY_DIR/hosts.ini LAB_SSH_KEY=$SSH_KEY LAB_LB_URL="https://$(host_addr lb1)" \
        LAB_STATE=$STATE
    cd "$REPO"
    say "pytest tests/infra against $LAB_INVENTORY${LAB_SCALE_OUT:+ (with scale-out)}"
    pytest "${paths[@]}" -p no:cacheprovider --ansible-inventory="$LAB_INVENTORY" "${args[@]}"
}

cmd_status() {
    local name addr
    while read -r name addr; do
        if alive "$RUN/$name.pid" systemd-nspawn; then
            printf '%-6s %-11s running (nspawn %s, init %s)\n' "$name" "$addr" "$(<"$RUN/$name.pid")" "$(init_pid "$name")"
        else
            printf '%-6s %-11s stopped\n' "$name" "$addr"
        fi
    done < <(topology)
    alive "$RUN/tinyproxy.pid" tinyproxy && echo "proxy  $PROXY_URL running" || echo "proxy  stopped"
    ip -br addr show "$BRIDGE" 2>/dev/null || echo "bridge $BRIDGE absent"
}

cmd_ssh() {
    local name=${1:?usage: lab.sh ssh HOST [CMD...]}
    shift
    exec ssh "${SSH_OPTS[@]}" "root@$(host_addr "$name")" "$@"
}

cmd_poweroff() {
    need_root
    local name=${1:?usage: lab.sh poweroff HOST}
    [[ -n $(host_addr "$name") ]] || die "no host $name in lab $LAB_ID"
    stop_hosts "$name"
}

cmd_boot() {
    need_root
    local name=${1:?usage: lab.sh boot HOST} addr
    addr=$(host_addr "$name")
    [[ -n $addr && -f $(host_root "$name")/.lab-host ]] || die "no host $name in lab $LAB_ID"
    boot_host "$name"
    wait_ssh "$name" "$addr"
    say "$name: answers on SSH"
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    test) shift; cmd_test "$@" ;;
    status) shift; cmd_status "$@" ;;
    ssh) shift; cmd_ssh "$@" ;;
    poweroff) shift; cmd_poweroff "$@" ;;
    boot) shift; cmd_boot "$@" ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
esac
