"""A private ``podman system service`` for machines where none is running.

Started only when the configured Podman socket does not answer and the
``podman`` binary exists; supervised (restarted if it dies) and stopped on exit.
Its socket and configuration live in a directory named after this daemon's own
socket (:func:`private_dir`), so two daemons on one host never share or replace
each other's Podman; its ``containers.conf`` fits the host (daemon/podman/conf.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import structlog

from podman_rpc.daemon.podman.conf import containers_conf, host_facts
from podman_rpc.daemon.podman.http import podman_answers

log = structlog.get_logger("podman_rpc.embedded")


def private_dir(daemon_socket: Path) -> Path:
    """The embedded Podman's directory: beside the daemon's socket, named after it."""
    return daemon_socket.with_name(daemon_socket.name + ".podman")


class EmbeddedPodman:
    """Owns one ``podman system service --time=0`` child process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket_path = directory / "podman.sock"
        self.conf_path: Path | None = None  # the containers.conf written for this host, if any
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @staticmethod
    def available() -> bool:
        return shutil.which("podman") is not None

    async def start(self, wait: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.conf_path = self._write_conf()
        await self._spawn()
        await self._wait_ready(wait)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _spawn(self) -> None:
        if self.socket_path.exists():
            self.socket_path.unlink()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        if self.conf_path is not None:
            env["CONTAINERS_CONF"] = str(self.conf_path)
        self._process = await asyncio.create_subprocess_exec(
            "podman", "system", "service", "--time=0", f"unix://{self.socket_path}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
        log.info("started embedded podman service", pid=self._process.pid,
                 socket=str(self.socket_path))

    def _write_conf(self) -> Path | None:
        """This host's containers.conf for the child, unless the operator set CONTAINERS_CONF."""
        if os.environ.get("CONTAINERS_CONF"):
            return None
        text = containers_conf(host_facts())
        if text is None:
            return None
        path = self.directory / "containers.conf"
        path.write_text(text)
        log.info("embedded podman configured for this host", conf=str(path),
                 settings=[line for line in text.splitlines() if line[:1] not in ("#", "[")])
        return path

    async def _wait_ready(self, wait: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while loop.time() < until:
            if await podman_answers(self.socket_path, 0.5):
                return
            if self._process is not None and self._process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"embedded podman service did not answer on {self.socket_path}")

    async def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            log.warning("embedded podman service exited; restarting", code=code)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            try:
                await self._spawn()
                await self._wait_ready(15.0)
                backoff = 0.5
            except (OSError, RuntimeError) as exc:
                log.error("embedded podman restart failed", error=str(exc))

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.info("stopped embedded podman service")
