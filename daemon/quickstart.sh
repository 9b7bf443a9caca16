#!/usr/bin/env bash
# The README's run command: on a fresh Debian 12 machine install Podman and the
# daemon, make the examples' image, put `podman-rpc` on PATH, then run the
# daemon in the foreground. With no Podman service answering, the daemon starts
# (and stops) a private one, configured for this host (daemon/podman/conf.py).
#   bash daemon/quickstart.sh [podman-rpc serve flags...]     as root, or with sudo in front
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "quickstart: $*" >&2; }
as_root() {  # never sudo when already root: a stock Debian root system has no sudo
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "needs root for: $*; run it as root"; exit 1
  fi
}

need=()
for pair in podman:podman runc:runc socat:socat busybox:busybox-static; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]} (apt-get, about a minute)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Each container's root is an unprivileged host id from the containers range
# (policy userns = "auto"): /etc/subuid and /etc/subgid must hold it.
say "checking the subordinate id range for user namespaces"
as_root bash daemon/subids.sh

VENV="${PODMAN_RPC_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment $VENV"
  python3 -m venv "$VENV"
fi
VENV="$(cd "$VENV" && pwd)"
stamp="$VENV/.podman-rpc-daemon"  # pip runs again only when pyproject.toml changed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing podman-rpc and the daemon's packages into $VENV (pip)"
  "$VENV/bin/python" -m pip install -qq -e '.[daemon]' >/dev/null
  echo "$want" >"$stamp"
fi

if [ "$(id -u)" -eq 0 ]; then
  for cmd in podman-rpc podman-rpcd podman-rpc-compat; do
    link="/usr/local/bin/$cmd"
    if [ ! -e "$link" ] || [ -L "$link" ]; then ln -sfn "$VENV/bin/$cmd" "$link"; fi
  done
  say "podman-rpc is on PATH: $(command -v podman-rpc) -> $(readlink -f "$(command -v podman-rpc)")"
else
  say "podman-rpc is $VENV/bin/podman-rpc (add $VENV/bin to PATH)"
fi

say "making the examples' image localhost/busybox:latest (busybox-static; no registry needed)"
"$VENV/bin/python" -m podman_rpc.daemon.podman.busybox \
  || say "carrying on without it: the run examples need it (retry: $VENV/bin/python -m podman_rpc.daemon.podman.busybox)"

say "starting the daemon (Ctrl-C stops it): podman-rpc serve $*"
exec "$VENV/bin/podman-rpc" serve "$@"
