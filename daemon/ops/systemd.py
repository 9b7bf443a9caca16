"""systemd integration without libsystemd: socket activation and sd_notify.

Both follow the documented environment protocols (sd_listen_fds(3),
sd_notify(3)), so the daemon needs no C library and works the same under
systemd, ``systemd-socket-activate`` or any manager that speaks them.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import MutableMapping

import structlog

log = structlog.get_logger("podman_rpc.systemd")

SD_LISTEN_FDS_START = 3
# FileDescriptorName= defaults to the socket unit's name, suffix included.
FD_NAMES = ("podman-rpc", "podman-rpc.socket")


def _check_listener(fd: int) -> None:
    """Raise RuntimeError unless ``fd`` is a listening unix stream socket."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise RuntimeError(f"activation fd {fd} is not a unix stream socket")
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise RuntimeError(f"activation fd {fd} is not usable: {exc}") from exc
    try:
        if probe.family != socket.AF_UNIX or probe.type != socket.SOCK_STREAM:
            raise RuntimeError(f"activation fd {fd} is not a unix stream socket")
        if not probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise RuntimeError(f"activation fd {fd} is not listening (Accept=yes is not supported)")
    finally:
        probe.close()


def activation_socket(environ: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The listening socket systemd passed us, or None when not socket-activated.

    Only when LISTEN_PID is our pid (the variables may have leaked from a parent).
    Prefers the fd named ``podman-rpc``/``podman-rpc.socket`` in LISTEN_FDNAMES,
    else the first passed fd. The LISTEN_* variables are always cleared so that
    children (the embedded Podman) do not inherit them; other passed fds are made
    close-on-exec for the same reason. Raises RuntimeError if the chosen fd is not
    a listening unix stream socket: serving JSON lines on anything else would be wrong.
    """
    env = os.environ if environ is None else environ
    raw_pid, raw_count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "").split(":")
    try:
        pid, count = int(raw_pid), int(raw_count)
    except ValueError:
        return None
    if pid != os.getpid() or count < 1:
        return None
    named = [i for i, name in enumerate(names[:count]) if name in FD_NAMES]
    fd = SD_LISTEN_FDS_START + (named[0] if named else 0)
    _check_listener(fd)
    for other in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        if other != fd:
            try:
                os.set_inheritable(other, False)
            except OSError:
                pass
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


class Notifier:
    """sd_notify(3) over the NOTIFY_SOCKET datagram socket; a no-op when unset.

    NOTIFY_SOCKET and WATCHDOG_* are removed from the environment so that the
    embedded Podman service never reports to systemd in our name.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", "")
        raw_usec = env.pop("WATCHDOG_USEC", "")
        watchdog_pid = env.pop("WATCHDOG_PID", "")
        try:
            self.watchdog_usec = max(0, int(raw_usec or 0))
        except ValueError:
            self.watchdog_usec = 0
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            self.watchdog_usec = 0  # the watchdog is meant for another process
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises."""
        if not self.enabled or self.watchdog_usec <= 0:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *fields: str) -> None:
        """Send one datagram of newline-separated ``KEY=VALUE`` fields; never raises."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify failed", error=str(exc))

    def status(self, line: str) -> None:
        """``STATUS=`` with a one-line summary, sent only when it changed."""
        line = " ".join(line.split())
        if line != self.last_status:
            self.last_status = line
            self.notify(f"STATUS={line}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
