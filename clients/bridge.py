"""``podman-rpc bridge``: stdin to the daemon socket and the socket to stdout, byte for byte.

This is what ``ssh host podman-rpc bridge`` runs on the far side, as
``varlink bridge`` did: the daemon's socket stays local to its host and ssh
does the authentication. When stdin ends, the socket's write side is shut
down, the daemon answers what is in flight and closes, and the bridge exits.
When the daemon closes first, the bridge exits at once.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

CHUNK = 1 << 16


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def bridge(path: str, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Copy until either side closes; 0 on a clean end, 2 if the daemon cannot be reached."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        print(f"podman-rpc bridge: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return 2
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(stdin_fd, selectors.EVENT_READ)
    stdin_open = True
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is sock:
                    data = sock.recv(CHUNK)
                    if not data:
                        return 0  # the daemon closed: we are done
                    _write_all(stdout_fd, data)
                else:
                    data = os.read(stdin_fd, CHUNK)
                    if data:
                        sock.sendall(data)
                    elif stdin_open:
                        stdin_open = False
                        selector.unregister(stdin_fd)
                        sock.shutdown(socket.SHUT_WR)  # let in-flight replies drain
    except BrokenPipeError:
        return 0  # our reader (ssh, the client) went away
    except (ConnectionResetError, OSError) as exc:
        print(f"podman-rpc bridge: {exc}", file=sys.stderr)
        return 1
    finally:
        selector.close()
        sock.close()
