#!/usr/bin/env bash
# The lab: Debian 12 hosts with systemd as PID 1 (systemd-nspawn machines on a bridge of their
# own), converged by the production playbook ansible/site.yml, then tested by tests/infra.
#
#   tests/lab/lab.sh up       build the image once, boot the hosts, write the inventory, converge
#   tests/lab/lab.sh down     power the hosts off, remove the bridge, the proxy and the copies;
#                             returns once every host's interfaces and namespaces are gone
#   tests/lab/lab.sh test     pytest tests/infra against the lab  (--scale-out: add a web host
#                             and a worker host too)
#   tests/lab/lab.sh status   what runs
#   tests/lab/lab.sh ssh HOST [CMD...]
#   tests/lab/lab.sh poweroff HOST   clean power-off of one host (its disk stays)
#   tests/lab/lab.sh crash HOST      power loss: every process of the host SIGKILLed at once
#   tests/lab/lab.sh boot HOST       boot it again and wait for SSH (nothing else is done to it)
#   tests/lab/lab.sh wipe HOST       its disk destroyed: power loss if it runs, then the bare base
#                                    image again (new machine-id and SSH host keys, same name and
#                                    address), booted, waiting for SSH: a replaced server, unprovisioned
#
# Size: LAB_WEB_HOSTS=3 tests/lab/lab.sh up  (default 2, or as many web hosts as already run);
# LAB_WORKER_HOSTS=N adds hosts worker1..N that run only Celery workers (default 0, or as many as
# already run).
# Several labs side by side: LAB_ID=N (0..9, default 0) gives lab N its own bridge synlabN,
# network 10.77.N.0/24, hosts and inventory; the SSH key is shared, the base image is per
# checkout (LAB_BASE=DIR to share one between checkouts).
# Everything it makes lives under .cache/lab/ (git-ignored) plus ansible/inventories/lab[N]/.
# Traffic goes only to the lab's own network 10.77.N.0/24; no other interface is touched.
#
# The parts, where to look: lib/settings.sh (paths, addresses, topology), lib/image.sh (controller
# tools and the base image), lib/network.sh (bridge and apt proxy), lib/machines.sh (host copies,
# boot, power-off, crash, and the checks that a host is really ours), lib/converge.sh (inventory,
# wheelhouse, ansible-playbook).
set -euo pipefail

LAB_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")/lib" && pwd)
# shellcheck source=lib/settings.sh
source "$LAB_LIB/settings.sh"
# shellcheck source=lib/image.sh
source "$LAB_LIB/image.sh"
# shellcheck source=lib/network.sh
source "$LAB_LIB/network.sh"
# shellcheck source=lib/machines.sh
source "$LAB_LIB/machines.sh"
# shellcheck source=lib/converge.sh
source "$LAB_LIB/converge.sh"

cmd_up() {
    need_root
    ensure_host_tools
    ensure_inotify
    ensure_venv
    local fresh=0 name addr
    while read -r name addr; do alive "$RUN/$name.pid" systemd-nspawn || fresh=1; done < <(topology)
    build_base
    ensure_ssh_key
    remove_extra_hosts
    bridge_up
    proxy_up
    while read -r name addr; do make_host "$name" "$addr"; done < <(topology)
    while read -r name addr; do boot_host "$name"; done < <(topology)
    while read -r name addr; do wait_ssh "$name" "$addr"; done < <(topology)
    say "all hosts answer on SSH"
    write_inventory
    build_wheelhouse
    check_hosts_alive
    run_playbook
    local elapsed
    elapsed=$(elapsed)
    if ((fresh)); then record_timing up_from_nothing "$elapsed"; else record_timing converge_again "$elapsed"; fi
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
    wait_hosts_gone
    proxy_down
    bridge_down
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
    export LAB_INVENTORY=$INVENTORY_DIR/hosts.ini LAB_SSH_KEY=$SSH_KEY LAB_LB_URL="https://$FLOATING_ADDR" \
        LAB_STATE=$STATE
    cd "$REPO"
    say "pytest tests/infra against $LAB_INVENTORY${LAB_SCALE_OUT:+ (with scale-out)}"
    # --durations: where the lab suite's time goes, in every run's log (make test's budget).
    pytest "${paths[@]}" -p no:cacheprovider --durations=25 --ansible-inventory="$LAB_INVENTORY" \
        "${args[@]}"
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

known_host() {  # NAME: die unless it is a host of this lab
    [[ -n $(host_addr "$1") && -f $(host_root "$1")/.lab-host ]] || die "no host $1 in lab $LAB_ID"
}

cmd_poweroff() {
    need_root
    local name=${1:?usage: lab.sh poweroff HOST}
    known_host "$name"
    stop_hosts "$name"
    wait_hosts_gone "$name"
}

cmd_crash() {
    need_root
    local name=${1:?usage: lab.sh crash HOST}
    known_host "$name"
    crash_host "$name"
}

cmd_boot() {
    need_root
    local name=${1:?usage: lab.sh boot HOST}
    known_host "$name"
    boot_host "$name"
    wait_ssh "$name" "$(host_addr "$name")"
    say "$name: answers on SSH"
}

cmd_wipe() {
    need_root
    local name=${1:?usage: lab.sh wipe HOST}
    known_host "$name"
    if alive "$RUN/$name.pid" systemd-nspawn; then crash_host "$name"; fi
    wipe_host "$name"
    make_host "$name" "$(host_addr "$name")"
    boot_host "$name"
    wait_ssh "$name" "$(host_addr "$name")"
    say "$name: wiped back to the base image, answers on SSH"
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    test) shift; cmd_test "$@" ;;
    status) shift; cmd_status "$@" ;;
    ssh) shift; cmd_ssh "$@" ;;
    poweroff) shift; cmd_poweroff "$@" ;;
    crash) shift; cmd_crash "$@" ;;
    boot) shift; cmd_boot "$@" ;;
    wipe) shift; cmd_wipe "$@" ;;
    *) sed -n '2,23p' "$0"; exit 2 ;;
esac
