"""The warm pool's sentinel: a small child that removes its daemon's warm containers when it dies.

The reaper needs a live daemon: a SIGKILLed one that nobody restarts would leave
its idle warm containers running until conmon's backstop (ttl + max_run_seconds).
The sentinel holds the read end of a pipe whose write end only the daemon holds
(close-on-exec, so no other child inherits it). Whatever ends the daemon, the
kernel closes that end, the sentinel reads EOF, lists the containers labelled
with the daemon's instance and ``WARM_EXPIRES``, force-removes them and exits.
After a clean shutdown it finds none. Until then only ``sh`` and ``cat`` wait on
the pipe (their RSS is in the bench's warm case); Python starts for the sweep, as
``python -I -S`` on this file, importing a few standard modules. Started only
when warm pools are configured.

    sh -c 'cat >/dev/null; exec python -I -S sentinel.py PODMAN_SOCKET INSTANCE ...'
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.parse
from typing import Any

API = "/v4.0.0/libpod"


def _call(podman_socket: str, method: str, path: str) -> tuple[int, bytes]:
    """One HTTP/1.0 exchange (Podman answers it unchunked and closes): status and body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(podman_socket)
        sock.sendall(f"{method} {API}{path} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


def sweep(podman_socket: str, instance: str, instance_label: str, warm_label: str) -> int:
    """Force-remove every warm container of ``instance``; how many went."""
    filters = urllib.parse.quote(json.dumps({"label": [f"{instance_label}={instance}"]}))
    status, body = _call(podman_socket, "GET", f"/containers/json?all=true&filters={filters}")
    if status != 200:
        return 0
    listed: list[dict[str, Any]] = json.loads(body)
    removed = 0
    for attrs in listed:
        if warm_label not in (attrs.get("Labels") or {}):
            continue  # not warm: the reaper's, under its own rules
        status, _ = _call(podman_socket, "DELETE",
                          f"/containers/{attrs['Id']}?force=true&timeout=0")
        removed += status in (200, 204, 404)
    return removed


def main(argv: list[str]) -> int:
    """Sweep now: the shell that started this has already read EOF, i.e. the daemon ended."""
    podman_socket, instance, instance_label, warm_label = argv
    try:
        removed = sweep(podman_socket, instance, instance_label, warm_label)
    except OSError as error:  # Podman gone too: conmon's backstop and the next daemon's reaper
        print(f"warm sentinel: Podman unreachable: {error}", file=sys.stderr)
        return 1
    # Into the daemon's log (its stderr): a crash's cleanup is not silent.
    print(f"warm sentinel: daemon {instance} ended; removed {removed} warm containers",
          file=sys.stderr)
    return 0


_WAIT_THEN_SWEEP = 'cat >/dev/null; exec "$0" -I -S "$1" "$2" "$3" "$4" "$5"'


class Sentinel:
    """The daemon's side: start the child, and (at a clean stop) let it go."""

    def __init__(self, podman_socket: str, instance: str) -> None:
        from podman_rpc.daemon.podman.labels import INSTANCE, WARM_EXPIRES

        # While the daemon lives only sh and cat wait (about 2 MB); Python starts after EOF,
        # with -I -S and this file's path: no site-packages, no package imports.
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", _WAIT_THEN_SWEEP, sys.executable, __file__, podman_socket,
             instance, INSTANCE, WARM_EXPIRES],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)

    def close(self, wait: float = 5.0) -> None:
        """EOF now: it sweeps (finding nothing after a clean stop) and exits."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            pass  # it finishes on its own


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
