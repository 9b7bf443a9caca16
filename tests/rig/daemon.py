"""Start real daemons on temporary sockets and talk to them with raw lines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.rig.podman import podman_env

REPO = Path(__file__).resolve().parents[2]
SESSION_DAEMON_PIDS: set[int] = set()
"""Pids of daemons this test session started (the leftover check is scoped to them)."""


class RawConnection:
    """A plain unix-socket connection that sends and reads whole lines."""

    def __init__(self, path: Path | str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buffer = b""
        self._next_id = 0

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: Any) -> None:
        self.sock.sendall(orjson.dumps(message) + b"\n")

    def read_line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed by daemon")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def read(self) -> Any:
        return orjson.loads(self.read_line())

    def request(self, method: str, params: dict[str, Any] | None = None,
                request_id: Any = None) -> dict[str, Any]:
        """Send one request and return its reply (skipping notifications)."""
        if request_id is None:
            self._next_id += 1
            request_id = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        while True:
            reply = self.read()
            if isinstance(reply, dict) and "method" not in reply and reply.get("id") == request_id:
                return reply

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The result, or AssertionError carrying the error object."""
        reply = self.request(method, params)
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaemonProcess:
    """``podman-rpc serve`` as a child process on a temporary socket."""

    def __init__(self, directory: Path, podman_socket: Path, config_text: str = "",
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = directory / "rpc.sock"
        self.podman_socket = podman_socket
        self.config_path = directory / "daemon.toml"
        embedded = "" if "embedded_podman" in config_text else "embedded_podman = false\n"
        self.config_path.write_text(
            f'[daemon]\nruntime_dir = "{directory / "run"}"\n{embedded}' + config_text)
        self.extra_args = extra_args or []
        self.env = env
        self.log_path = directory / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "podman_rpc.daemon", "--socket", str(self.socket_path),
                "--podman-socket", str(self.podman_socket), "--config", str(self.config_path),
                *self.extra_args]

    def start(self, wait: float = 20.0) -> DaemonProcess:
        env = podman_env() | (self.env or {})
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=log,
                                        cwd=REPO)
        SESSION_DAEMON_PIDS.add(self.process.pid)
        until = time.monotonic() + wait
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}: {self.log()}")
            try:
                with RawConnection(self.socket_path, timeout=5) as conn:
                    conn.call("status")
                return self
            except (OSError, ConnectionError):
                time.sleep(0.05)
        raise RuntimeError(f"daemon did not answer: {self.log()}")

    def connect(self, timeout: float = 30.0) -> RawConnection:
        return RawConnection(self.socket_path, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate(60)
            except subprocess.TimeoutExpired:
                self.kill()
