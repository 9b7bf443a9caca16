#!/usr/bin/env bash
# The README's run command: on a fresh Debian 12 machine install Podman and the
# daemon, then run it in the foreground. With no Podman service answering, the
# daemon starts (and stops) a private one itself.
#   sudo bash daemon/quickstart.sh [podman-rpc serve flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
for pair in podman:podman runc:runc socat:socat; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" python3-venv >/dev/null
fi

VENV="${PODMAN_RPC_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e '.[daemon]' >/dev/null

# crun cannot run on hosts with hybrid cgroups, and Podman's default ulimits
# fail where the hard limits are lower: use runc and the host's limits there.
if [ -z "${CONTAINERS_CONF:-}" ] && { [ "$(stat -fc %T /sys/fs/cgroup)" != "cgroup2fs" ] \
     || [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 1048576 ]; }; then
  export CONTAINERS_CONF="$PWD/tests/rig/containers.conf"
fi
exec "$VENV/bin/podman-rpc" serve "$@"
