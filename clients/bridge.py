"""``podman-rpc bridge``: stdin to the daemon socket and the socket to stdout, byte for byte.

This is what ``ssh host podman-rpc bridge`` runs on the far side, as
``varlink bridge`` did: the daemon's socket stays local to its host and ssh
does the authentication. When stdin ends, the socket's write side is shut
down, the daemon answers what is in flight and closes, and the bridge exits.
When the daemon closes first, the bridge exits at once.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

CHUNK = 1 << 16


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pump_stdin(stdin_fd: int, sock: socket.socket) -> None:
    """stdin to the socket, then half-close. A thread, since stdin may be a plain file
    (``podman-rpc bridge < requests.jsonl``), which epoll refuses."""
    try:
        while data := os.read(stdin_fd, CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # let the daemon answer what is in flight
    except OSError:
        pass  # the daemon side closed: the main loop sees it and ends


def bridge(path: str, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Copy until either side closes; 0 on a clean end, 2 if the daemon cannot be reached."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        print(f"podman-rpc bridge: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return 2
    threading.Thread(target=_pump_stdin, args=(stdin_fd, sock), daemon=True).start()
    try:
        while data := sock.recv(CHUNK):
            _write_all(stdout_fd, data)
        return 0  # the daemon closed: we are done, whatever stdin still holds
    except BrokenPipeError:
        return 0  # our reader (ssh, the client) went away
    except OSError as exc:
        print(f"podman-rpc bridge: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()
