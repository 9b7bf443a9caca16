"""The warm pool's sentinel: a small child that removes its daemon's warm containers when it dies.

The reaper needs a live daemon: a SIGKILLed one that nobody restarts would leave
its idle warm containers running until conmon's backstop (ttl + max_run_seconds).
The sentinel holds the read end of a pipe whose write end only the daemon holds
(close-on-exec, so no other child inherits it). Whatever ends the daemon, the
kernel closes that end, the sentinel reads EOF, lists the containers labelled
with the daemon's instance and ``WARM_EXPIRES``, force-removes them and exits.
After a clean shutdown it finds none. Standard library only: one small Python
process (about 10 MB resident), started only when warm pools are configured.

    python -m podman_rpc.daemon.warm.sentinel PODMAN_SOCKET INSTANCE_ID
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import urllib.parse
from typing import Any

from podman_rpc.daemon.podman.labels import INSTANCE, WARM_EXPIRES

API = "/v4.0.0/libpod"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("d", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def _call(podman_socket: str, method: str, path: str) -> tuple[int, bytes]:
    connection = _UnixConnection(podman_socket)
    try:
        connection.request(method, API + path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def sweep(podman_socket: str, instance: str) -> int:
    """Force-remove every warm container of ``instance``; how many went."""
    filters = urllib.parse.quote(json.dumps({"label": [f"{INSTANCE}={instance}"]}))
    status, body = _call(podman_socket, "GET", f"/containers/json?all=true&filters={filters}")
    if status != 200:
        return 0
    listed: list[dict[str, Any]] = json.loads(body)
    removed = 0
    for attrs in listed:
        if WARM_EXPIRES not in (attrs.get("Labels") or {}):
            continue  # not warm: the reaper's, under its own rules
        status, _ = _call(podman_socket, "DELETE",
                          f"/containers/{attrs['Id']}?force=true&timeout=0")
        removed += status in (200, 204, 404)
    return removed


def main(argv: list[str]) -> int:
    podman_socket, instance = argv
    while sys.stdin.buffer.read(4096):
        pass  # the daemon never writes: this waits for EOF, i.e. its end
    try:
        removed = sweep(podman_socket, instance)
    except OSError as error:  # Podman gone too: conmon's backstop and the next daemon's reaper
        print(f"warm sentinel: Podman unreachable: {error}", file=sys.stderr)
        return 1
    # Into the daemon's log (its stderr): a crash's cleanup is not silent.
    print(f"warm sentinel: daemon {instance} ended; removed {removed} warm containers",
          file=sys.stderr)
    return 0


class Sentinel:
    """The daemon's side: start the child, and (at a clean stop) let it go."""

    def __init__(self, podman_socket: str, instance: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, podman_socket, instance],
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
