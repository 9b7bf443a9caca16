"""Who is on the other end of a connection, and whether it is still there.

Identity is the kernel's (``SO_PEERCRED``), read once at accept. Whether a
half-closed client has gone entirely is asked of the socket itself (POLLHUP):
EOF alone cannot tell ``socat`` at end of input from a client that left.
"""

from __future__ import annotations

import select
import socket
import struct
from dataclasses import dataclass
from typing import Any

HANGUP_CHECK_SECONDS = 0.5  # how often a half-closed client is checked for being gone


@dataclass(frozen=True, slots=True)
class Peer:
    """The connecting process, from SO_PEERCRED."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket | None) -> Peer | None:
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return Peer(*struct.unpack("3i", raw))


def peer_hung_up(sock: Any) -> bool:
    """True once the peer closed both directions (POLLHUP), not merely its writing half."""
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))
