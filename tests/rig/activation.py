"""Socket activation for the tests, with the real ``systemd-socket-activate``.

PID 1 here is not systemd, so two stand-ins play its part:

* :class:`Activator`: ``systemd-socket-activate -l SOCKET -- podman-rpc serve ...``,
  which binds the socket, waits for the first connection and execs the daemon
  (one activation only, like ``Accept=no`` for a single run).
* :class:`SocketManager`: holds the listening socket itself, as systemd's
  ``.socket`` unit does, and hands it to a fresh ``systemd-socket-activate`` each
  time the previous daemon has exited, so connections made while no daemon runs
  wait in the socket's backlog and start the next one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.rig.daemon import REPO
from tests.rig.podman import podman_env


def serve_command(directory: Path, podman_socket: Path, extra: list[str]) -> list[str]:
    """The installed console script (as a unit's ExecStart runs it), else ``python -m podman_rpc.daemon``."""
    script = Path(sys.executable).with_name("podman-rpcd")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "podman_rpc.daemon"]
    config = directory / "daemon.toml"
    if not config.exists():
        config.write_text(f'[daemon]\nruntime_dir = "{directory / "run"}"\n'
                          "embedded_podman = false\n")
    return [*base, "--podman-socket", str(podman_socket), "--config", str(config), *extra]


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = podman_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    return env | (extra or {})


def wait_for(predicate, timeout: float = 20.0, step: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class Activator:
    """One ``systemd-socket-activate -l`` run; the daemon replaces it on the first connection."""

    def __init__(self, directory: Path, podman_socket: Path, extra: list[str] | None = None,
                 names: list[str] | None = None, activate_args: list[str] | None = None) -> None:
        """``names``: socket files to listen on, in fd order; the daemon's is ``rpc.sock``."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = directory / "rpc.sock"
        self.listen = [str(directory / name) for name in names or ["rpc.sock"]]
        self.command = ["systemd-socket-activate", *[f"-l{p}" for p in self.listen],
                        *(activate_args or []), "--",
                        *serve_command(directory, podman_socket, extra or [])]
        self.log_path = directory / "activate.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Activator:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, env=daemon_env(env), stdout=log,
                                            stderr=log, cwd=REPO)
        # "Listening on" is logged after listen(); a socket file exists from bind() on, and
        # a connect between the two is refused.
        if not wait_for(lambda: self.log().count("Listening on") >= len(self.listen), 10):
            raise RuntimeError(f"systemd-socket-activate did not listen: {self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class SocketManager:
    """Holds the socket across daemon restarts, the way a ``.socket`` unit does."""

    def __init__(self, directory: Path, podman_socket: Path, extra: list[str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = directory / "rpc.sock"
        self.command = ["systemd-socket-activate", "--",
                        *serve_command(directory, podman_socket, extra or [])]
        self.log_path = directory / "manager.log"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.socket_path))
        self.sock.listen(128)
        self.exits: list[int] = []  # exit codes of the daemons that ended
        self.pids: list[int] = []
        self.current: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self) -> SocketManager:
        self._thread.start()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        # sh sets LISTEN_PID to its own pid, which exec keeps for systemd-socket-activate.
        command = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *self.command]
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(command, env=daemon_env(), stdout=log, stderr=log, cwd=REPO,
                                    pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))

    def _supervise(self) -> None:
        while not self._stopping:
            process = self._spawn()
            self.current = process
            self.pids.append(process.pid)
            code = process.wait()
            if not self._stopping:
                self.exits.append(code)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """Stop supervising; SIGTERM whichever child is current (it may be spawning right now)."""
        self._stopping = True
        until = time.monotonic() + 60
        while self._thread.is_alive() and time.monotonic() < until:
            process = self.current
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
            self._thread.join(0.2)
        process = self.current
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self.sock.close()
