#!/usr/bin/env bash
# Give the "containers" user the subordinate uid and gid range that Podman's
# --userns=auto (the daemon's default, policy userns = "auto") takes each
# container's own user namespace from, so that container root is not host root.
# Idempotent: an existing "containers" line is kept as it is. Run as root.
#   bash daemon/subids.sh
set -euo pipefail

OWNER=containers
START=2147483647   # the upper half of the 32-bit id space, far from any login's ids
COUNT=2147483648

if [ "$(id -u)" -ne 0 ]; then
  exec sudo bash "$0" "$@"
fi
for file in /etc/subuid /etc/subgid; do
  # Lock the file itself: several installs or test runs may call this at once.
  (
    flock -x 9
    if ! grep -q "^${OWNER}:" "$file"; then
      printf '%s:%s:%s\n' "$OWNER" "$START" "$COUNT" >&9
      echo "subids.sh: added ${OWNER}:${START}:${COUNT} to $file" >&2
    fi
  ) 9>>"$file"
done
