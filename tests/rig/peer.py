"""A real unprivileged peer: a client run under another uid with ``setpriv``.

Security tests connect as ``PEER_UID`` (nobody), admitted through the group
``PEER_GROUP`` (users) the way a member of the socket's group is, so the kernel's
SO_PEERCRED decides who is calling. ``open_daemons`` starts daemons whose
directory and socket that uid can reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.rig.daemon import DaemonProcess

PEER_UID = 65534  # nobody
PEER_GROUP = 100  # users: the group the peer is admitted through
SYSTEM_PYTHON = "/usr/bin/python3"
GROUP_ACCESS = f"[daemon.access]\nallow_uids = [0]\nallow_groups = [{PEER_GROUP}]\n"
"""The access table of a daemon that admits the peer by group, with the default role."""

CLIENT = r"""
import json, socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(float(sys.argv[3]))
sock.connect(sys.argv[1])
requests = json.loads(sys.argv[2])
replies, buffer = [], b""
def read_line():
    global buffer
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    line, buffer = buffer.split(b"\n", 1)
    return json.loads(line)
if not requests:  # just listen: what does the daemon say before we speak?
    while True:
        reply = read_line()
        replies.append(reply)
        if reply is None:
            break
for request in requests:
    sock.sendall(json.dumps(request).encode() + b"\n")
    while True:  # skip $/progress notifications
        reply = read_line()
        if reply is None or isinstance(reply, list) or "id" in reply:
            break
    replies.append(reply)
print(json.dumps(replies))
"""


def setpriv_args(uid: int = PEER_UID, groups: str | None = str(PEER_GROUP)) -> list[str]:
    """The ``setpriv`` prefix that runs a command as ``uid`` with only ``groups``."""
    group_args = ["--groups", groups] if groups else ["--clear-groups"]
    return ["setpriv", "--reuid", str(uid), "--regid", str(uid), *group_args]


def as_peer(socket_path: Path, requests: list[Any], *, uid: int = PEER_UID,
            groups: str | None = str(PEER_GROUP), timeout: float = 60) -> list[Any]:
    """Send ``requests`` one by one as ``uid``; the replies, None meaning EOF."""
    done = subprocess.run(
        [*setpriv_args(uid, groups), SYSTEM_PYTHON, "-c", CLIENT, str(socket_path),
         json.dumps(requests), str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10, cwd="/")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def request(method: str, params: dict[str, Any] | None = None, rid: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}


def open_daemons(podman_socket: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Factory of daemons whose directory and socket (0666) other uids can reach."""
    if shutil.which("setpriv") is None or not os.access(SYSTEM_PYTHON, os.X_OK):
        raise RuntimeError("setpriv and /usr/bin/python3 are needed for the peer tests")
    if os.geteuid() != 0:
        raise RuntimeError("the peer tests switch uid and need root")
    base = Path(tempfile.mkdtemp(prefix="prpc-peer-"))
    base.chmod(0o711)
    started: list[DaemonProcess] = []

    def make(config_toml: str = "", start: bool = True) -> DaemonProcess:
        directory = base / f"d{len(started)}"
        directory.mkdir()
        directory.chmod(0o711)
        process = DaemonProcess(directory, podman_socket, "socket_mode = 0o666\n" + config_toml)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        process.stop()
    shutil.rmtree(base, ignore_errors=True)
