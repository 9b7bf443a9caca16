"""systemd integration without libsystemd: socket activation and sd_notify."""

from __future__ import annotations

import os
import socket
import stat

import structlog

log = structlog.get_logger("podman_rpc.systemd")

SD_LISTEN_FDS_START = 3


def activation_socket(environ: dict[str, str] | None = None) -> socket.socket | None:
    """The socket systemd passed us, or None when not socket-activated.

    Follows sd_listen_fds(3): only when LISTEN_PID is our pid; prefers the fd
    named ``podman-rpc`` in LISTEN_FDNAMES, else fd 3. The LISTEN_* variables are
    cleared so that children (the embedded Podman) do not inherit them.
    """
    env = os.environ if environ is None else environ
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return None
    names = env.get("LISTEN_FDNAMES", "").split(":")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if pid != os.getpid() or count < 1:
        return None
    index = names.index("podman-rpc") if "podman-rpc" in names[:count] else 0
    fd = SD_LISTEN_FDS_START + index
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise RuntimeError(f"activation fd {fd} is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise RuntimeError(f"activation fd {fd} is not a unix stream socket")
    for other in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        if other != fd:
            os.set_inheritable(other, False)
    sock.setblocking(False)
    return sock


class Notifier:
    """sd_notify(3) over the NOTIFY_SOCKET datagram socket; a no-op when unset."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", "")
        self.watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            self.watchdog_usec = 0
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify failed", error=str(exc))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
