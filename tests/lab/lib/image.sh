# shellcheck shell=bash
# The controller's tools and the Debian 12 base image every host is an overlay of
# (sourced by tests/lab/lab.sh).

SUITE=bookworm
# What a minimal Debian server has. apt's lists are kept, as on an installed server: mmdebstrap
# would empty them, and an empty list folder with a fresh date fools apt's cache_valid_time into
# skipping the update.
BASE_PACKAGES=systemd,systemd-sysv,dbus,iproute2,openssh-server,python3,python3-apt,sudo,ca-certificates,procps
# Every Debian package a role of ansible/ installs on some host, pre-installed so that a fresh
# lab downloads and unpacks nothing through the proxy (eight hosts on two cores: minutes of each
# converge). The roles still install them, as in production; here they find them there. Their
# services are left disabled: a host runs what its roles enable (tests/infra/common checks that
# a converge installs nothing, so a package missing here shows).
ROLE_PACKAGES=(
    acl sudo ca-certificates python3-apt nftables python3 python3-venv   # common, firewall, python
    postgresql-15 python3-psycopg2 patroni python3-etcd                  # postgresql
    etcd-server etcd-client                                               # etcd
    redis-server redis-sentinel redis-tools                               # redis, backup
    pgbackrest                                                            # backup
    nginx logrotate openssl keepalived                                    # nginx (lb)
    certbot                                                               # acme (lb)
    pebble                                                                # the lab's ACME server (tests/lab/pebble.yml)
    prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter
    prometheus-nginx-exporter prometheus prometheus-alertmanager          # exporters, monitoring
)
HOST_TOOLS=(mmdebstrap:mmdebstrap systemd-nspawn:systemd-container tinyproxy:tinyproxy-bin
            ssh:openssh-client ssh-keygen:openssh-client ip:iproute2 setsid:util-linux)
IMAGE_BUILT=0

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

# What the image is made of: a change rebuilds it.
IMAGE_FORMAT=3  # raise when the way the image is made changes: a cached image is then rebuilt
image_recipe() { echo "format $IMAGE_FORMAT $SUITE $BASE_PACKAGES ${ROLE_PACKAGES[*]}"; }

build_base() {
    if [[ -f $BASE/.lab-complete ]]; then
        if [[ $(<"$BASE/.lab-complete") == "$(image_recipe)" ]]; then say "base image cached: $BASE"; return; fi
        # The running hosts are overlays of it: it cannot change under them.
        if [[ -n $(find "$HOSTS_DIR" -mindepth 1 -maxdepth 1 2>/dev/null) ]]; then
            say "base image out of date (its package list changed); kept while this lab's hosts exist: 'make lab-down' rebuilds it"
            return
        fi
    fi
    # Labs sharing one LAB_BASE: one builds it, the others wait for that build.
    mkdir -p "$(dirname "$BASE")"
    exec 8>"$BASE.lock"
    flock 8
    if [[ -f $BASE/.lab-complete && $(<"$BASE/.lab-complete") == "$(image_recipe)" ]]; then
        flock -u 8; say "base image built meanwhile: $BASE"; return
    fi
    IMAGE_BUILT=1
    say "building the Debian 12 base image with mmdebstrap (once; with the roles' packages: ~3-5 min)"
    rm -rf "$BASE" "$BASE.tmp"
    mkdir -p "$LAB_DIR"
    # The roles' packages go in with apt inside the image (its own defaults, Recommends
    # included, as a role's apt task on a server); then every unit link their packages made is
    # removed, which is what disabling is: the .wants/ links and the aliases too (redis.service,
    # sentinel.service, etcd2.service: with an alias left, `systemctl is-enabled` says
    # "enabled" and a role's `enabled: true` changes nothing, yet nothing starts the unit at
    # boot). apt's history is emptied. As the postgresql role does before its install, no
    # PostgreSQL cluster is created with the package: Patroni makes it.
    local wants='find "$1/etc/systemd/system" -type l | sort'
    mmdebstrap --variant=minbase --include="$BASE_PACKAGES" --skip=cleanup/apt/lists \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
        --customize-hook="$wants >\"\$1/tmp/wants-before\"" \
        --customize-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d"; echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.d/lab-image.conf"' \
        --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${ROLE_PACKAGES[*]}" \
        --customize-hook="$wants | comm -13 \"\$1/tmp/wants-before\" - | xargs -r rm -f" \
        --customize-hook='rm -f "$1/tmp/wants-before"; chroot "$1" apt-get clean; : > "$1/var/log/apt/history.log"' \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key* "$1"/etc/hostname; : > "$1"/etc/machine-id' \
        "$SUITE" "$BASE.tmp" \
        "deb http://deb.debian.org/debian $SUITE main" \
        "deb http://deb.debian.org/debian $SUITE-updates main" \
        "deb http://deb.debian.org/debian-security $SUITE-security main" \
        >"$LAB_DIR/mmdebstrap.log" 2>&1 || { tail -20 "$LAB_DIR/mmdebstrap.log"; die "mmdebstrap failed"; }
    image_recipe >"$BASE.tmp/.lab-complete"
    mv "$BASE.tmp" "$BASE"
    flock -u 8
    say "base image ready ($(du -sh "$BASE" | cut -f1))"
}

ensure_ssh_key() {
    [[ -f $SSH_KEY ]] && return
    mkdir -p "$(dirname "$SSH_KEY")"
    ssh-keygen -q -t ed25519 -N '' -C synspirit-lab -f "$SSH_KEY"
}
