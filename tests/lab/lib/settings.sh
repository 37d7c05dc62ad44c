# shellcheck shell=bash
# The lab's paths, addresses and hosts (sourced by tests/lab/lab.sh).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
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
FLOATING_ADDR=$NET.9               # the site's address, on lb1 or lb2 (keepalived)
PROXY_URL=http://$BRIDGE_ADDR:$PROXY_PORT
SSH_OPTS=(-i "$SSH_KEY" -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no
          -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)

T0=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - T0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say()  { printf '\033[1m[lab %6ss]\033[0m %s\n' "$(elapsed)" "$*"; }
die()  { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }
need_root() { [[ $EUID -eq 0 ]] || die "run as root (systemd-nspawn, bridges)"; }

# One line per host: NAME ADDRESS. Two load balancers beside the floating address .9
# (keepalived), web host N at .1N (contract, so at most 9), data host N at .2(N-1) (three by
# default, LAB_DATA_HOSTS up to 9), one monitoring host, worker host N (LAB_WORKER_HOSTS, none by
# default) at .4N.
# How many hosts of a kind: LAB_<KIND>_HOSTS if set, else as many as the lab has, at least MIN.
host_count() {  # KIND MIN
    local var=LAB_${1^^}_HOSTS n=0 d
    if [[ -n ${!var:-} ]]; then echo "${!var}"; return; fi
    for d in "$HOSTS_DIR/$1"*; do [[ -d $d ]] && n=$((n + 1)); done
    (( n >= $2 )) && echo "$n" || echo "$2"
}
web_count() { host_count web 2; }
worker_count() { host_count worker 0; }
data_count() { host_count data 3; }
topology() {
    local n w d i
    n=$(web_count)
    w=$(worker_count)
    d=$(data_count)
    [[ $n =~ ^[1-9]$ ]] || die "LAB_WEB_HOSTS must be 1..9 (web N is $NET.1N), got '$n'"
    [[ $w =~ ^[0-9]$ ]] || die "LAB_WORKER_HOSTS must be 0..9 (worker N is $NET.4N), got '$w'"
    [[ $d =~ ^[3-9]$ ]] || die "LAB_DATA_HOSTS must be 3..9 (etcd and Redis need data1..3), got '$d'"
    echo "lb1 $NET.10"
    echo "lb2 $NET.8"
    for ((i = 1; i <= n; i++)); do echo "web$i $NET.1$i"; done
    for ((i = 1; i <= w; i++)); do echo "worker$i $NET.4$i"; done
    for ((i = 1; i <= d; i++)); do echo "data$i $NET.2$((i - 1))"; done
    echo "mon1 $NET.30"
}
host_addr() { topology | awk -v h="$1" '$1 == h {print $2}'; }
