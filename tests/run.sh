#!/usr/bin/env bash
# The README's test command: on a fresh Debian 12 machine (root or sudo) install
# everything the tests need, then run them. Podman itself is configured, started
# and stopped by the pytest fixtures (tests/conftest.py, tests/rig/).
#   bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
for pair in podman:podman runc:runc socat:socat busybox:busybox-static \
            systemd-socket-activate:systemd systemd-analyze:systemd setpriv:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "tests/run.sh: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" python3-venv >/dev/null
fi

# Podman's --userns=auto (the daemon's default) takes container ids from this range.
$SUDO bash daemon/subids.sh

VENV="${PODMAN_RPC_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[test]'

export CONTAINERS_CONF="$PWD/tests/rig/containers.conf"
exec "$VENV/bin/python" -m pytest "$@"
