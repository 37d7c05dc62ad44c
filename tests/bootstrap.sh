#!/usr/bin/env bash
# `make setup`: the Debian packages the test suites need and the pinned virtualenv .venv.
# Idempotent and quiet: it only speaks when it installs something.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR/.. source-path=SCRIPTDIR
source "$ROOT/backend/scripts/common.sh"
export SS_LOG_PREFIX=bootstrap

# The one list of Debian packages the test suites use:
#   backend suite: postgresql, redis-server (private instances, backend/scripts/localstack.sh),
#   redis-sentinel (a master, its replicas and three Sentinels: failover/test_sentinel_failover.py)
#   lab and infra suites: mmdebstrap, systemd-container (systemd-nspawn hosts), tinyproxy-bin
#   (apt proxy for the hosts), openssh-client, iproute2 (bridge), rsync, nginx, wrk, curl
#   the virtualenv: python3, python3-venv
#   browser tests (tests/backend/browser/): chromium, chromium-driver (Selenium's driver,
#   /usr/bin/chromedriver) and fonts-wqy-microhei (a Chinese font: Debian's minimal systems
#   have none, and the page's Chinese text would show as boxes)
TEST_DEBS=(
    python3 python3-venv ca-certificates make
    postgresql redis-server redis-sentinel
    chromium chromium-driver fonts-wqy-microhei
    nginx wrk curl
    mmdebstrap systemd-container tinyproxy-bin openssh-client iproute2 rsync
)

ss_apt_ensure "${TEST_DEBS[@]}"

VENV="$ROOT/.venv"
install_test_env() {
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt \
        && "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e ./backend
}
ss_ensure_venv "$VENV"
ss_stamped "$VENV" tests "tests/requirements.txt backend/requirements.txt backend/pyproject.toml" \
    install_test_env
