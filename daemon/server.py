"""The server lifecycle, after uvicorn's ``Server``: choose the socket, start, notify, drain, stop."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import stat
from pathlib import Path

import structlog

from daemon import access
from daemon.config import Config
from daemon.confine import subid_problem
from daemon.context import DAEMON_VERSION, DaemonState
from daemon.dispatch import CANCEL_SHUTDOWN, Dispatcher
from daemon.embedded import EmbeddedPodman, podman_answers
from daemon.handlers import load_handlers
from daemon.heartbeat import Heartbeat
from daemon.idle import IdleTimer, busy_reason
from daemon.podman_pool import PodmanPool
from daemon.reaper import Reaper
from daemon.systemd import Notifier, activation_socket
from daemon.transport import Connection

log = structlog.get_logger("podman_rpc.server")


class StartupError(Exception):
    """A reason the daemon cannot start; printed without a traceback, exit code 1."""


def _bind_socket(path: Path, mode: int) -> socket.socket:
    """Bind our own socket: create the directory, replace a stale file, refuse a live one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise StartupError(f"cannot probe existing socket {path}: {exc}") from exc
            path.unlink(missing_ok=True)  # stale: nobody is answering
        else:
            raise StartupError(f"another daemon is already answering on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Server:
    """One daemon run. ``run()`` returns the process exit code."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = asyncio.Event()
        self.notifier = Notifier()
        self.embedded: EmbeddedPodman | None = None
        self.state: DaemonState | None = None
        self._server: asyncio.AbstractServer | None = None
        self._owned_socket: Path | None = None
        self.heartbeat: Heartbeat | None = None
        self.idle: IdleTimer | None = None
        self._spare_listener: int | None = None  # dup of the listener, to resume after a called-off idle exit
        self._idle_task: asyncio.Task[None] | None = None
        self._version_task: asyncio.Task[None] | None = None
        self.reaper: Reaper | None = None

    def run(self) -> int:
        import uvloop

        try:
            return uvloop.run(self.serve())
        except StartupError as exc:
            log.error("cannot start", reason=str(exc))
            return 1

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.should_exit.set)
        try:
            await self.startup()
            await self.should_exit.wait()
        finally:
            await self.shutdown()
        return 0

    # --- start -------------------------------------------------------------------------
    def choose_socket(self) -> socket.socket:
        try:
            passed = activation_socket()
        except RuntimeError as exc:
            raise StartupError(str(exc)) from exc
        if passed is not None:
            log.info("using socket-activated listener", fd=passed.fileno())
            return passed
        sock = _bind_socket(self.config.socket_path, self.config.socket_mode)
        self._owned_socket = self.config.socket_path
        return sock

    async def choose_podman(self) -> Path:
        configured = self.config.podman_socket
        if await asyncio.to_thread(podman_answers, configured):
            return configured
        if self.config.embedded_podman and EmbeddedPodman.available():
            log.info("no podman service answers; starting an embedded one",
                     configured=str(configured))
            self.embedded = EmbeddedPodman(self.config.runtime_dir)
            await self.embedded.start()
            return self.embedded.socket_path
        log.warning("podman service not reachable; requests fail until it is",
                    socket=str(configured))
        return configured

    async def startup(self) -> None:
        problem = subid_problem(self.config.policy)  # else container root would be host root
        if problem is not None:
            raise StartupError(problem)
        listener = self.choose_socket()
        podman_socket = await self.choose_podman()
        workers = sum(lane.cap for lane in self.config.lanes.values()) + 4
        pool = PodmanPool(podman_socket, workers, self.config.podman_call_timeout)
        pool.warm_up()
        self.state = state = DaemonState(self.config, pool)
        dispatcher = Dispatcher(state, load_handlers())
        access.install(state, self.config.access, listener)  # who may connect, and their role
        self.reaper = Reaper(state)
        await self.reaper.startup_pass()  # leftovers of a crashed daemon go before we serve
        self._factory = lambda: Connection(state, dispatcher)
        if self.config.idle_timeout is not None:
            self._spare_listener = os.dup(listener.fileno())
        self._server = await asyncio.get_running_loop().create_unix_server(
            self._factory, sock=listener, backlog=1024)
        # Podman has been asked already (choose_podman's _ping, the reaper's pass). Its
        # /version takes ~1 s (it runs the OCI runtime), so it must not hold READY=1 back.
        self._version_task = asyncio.get_running_loop().create_task(self._fetch_podman_version())
        if self.config.reap_interval > 0:
            self.reaper.start()
        log.info("serving", socket=str(self._owned_socket or "socket-activated"),
                 podman=str(podman_socket), podman_version=state.podman_version,
                 version=DAEMON_VERSION, instance=state.instance_id)
        self.notifier.notify("READY=1", f"STATUS=serving; podman {'answering' if pool.reachable else 'unreachable'}")
        self.heartbeat = Heartbeat(state, self.notifier)
        self.heartbeat.start()
        if self.config.idle_timeout is not None:
            self.idle = IdleTimer(state, self.config.idle_timeout, self._on_idle)
            state.on_activity = self.idle.touch
            self.idle.start()

    async def _fetch_podman_version(self) -> None:
        assert self.state is not None
        try:
            from daemon.handlers.system import podman_version

            self.state.podman_version = await self.state.pool.call(podman_version)
            log.info("podman version", podman_version=self.state.podman_version)
        except Exception as exc:  # noqa: BLE001 - startup goes on; requests will report it
            log.warning("podman did not answer at start", error=str(exc))

    def _on_idle(self) -> None:
        # Not state.spawn: that task would count as background work and keep us busy.
        self._idle_task = asyncio.get_running_loop().create_task(self._idle_exit())

    async def _idle_exit(self) -> None:
        """Stop accepting, then exit, unless a connection slipped in while we stopped.

        Under socket activation, connections not yet accepted stay queued on the
        socket systemd holds, and the next activation serves them: none is lost.
        """
        assert self.state is not None and self.idle is not None and self._server is not None
        self._server.close()
        for _ in range(3):  # let accepts already under way reach connection_made
            await asyncio.sleep(0.01)
        if self.should_exit.is_set():
            return
        if busy_reason(self.state) is None:
            self.notifier.status("idle: exiting")
            self.should_exit.set()
            return
        log.info("idle exit called off: work arrived")
        if self._spare_listener is not None:
            sock = socket.socket(fileno=os.dup(self._spare_listener))
            sock.setblocking(False)
            self._server = await asyncio.get_running_loop().create_unix_server(
                self._factory, sock=sock, backlog=1024)
        self.idle.rearm()

    # --- drain and stop ------------------------------------------------------------------
    async def shutdown(self) -> None:
        state = self.state
        self.notifier.notify("STOPPING=1", "STATUS=draining")
        if self.idle is not None:
            self.idle.stop()
        if self._version_task is not None:
            self._version_task.cancel()
        if state is not None:
            state.draining = True
        if self._server is not None:
            self._server.close()
        if state is not None:
            await self._drain(state)
        if self.reaper is not None:
            await self.reaper.stop()
            await self.reaper.final_pass()
        if self.embedded is not None:
            await self.embedded.stop()
        if state is not None:
            state.pool.close()
        if self._owned_socket is not None:
            self._owned_socket.unlink(missing_ok=True)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._spare_listener is not None:
            os.close(self._spare_listener)
            self._spare_listener = None
        self.notifier.close()
        log.info("stopped")

    async def _drain(self, state: DaemonState) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.config.drain_grace
        while state.in_flight() and loop.time() < until:
            await asyncio.sleep(0.05)
        pending = []
        for conn in list(state.connections):
            for entries in conn.in_flight.values():
                for task, ctx in entries:
                    ctx.cancel_reason = ctx.cancel_reason or CANCEL_SHUTDOWN
                    task.cancel()
                    pending.append(task)
        if pending:
            log.warning("cancelled requests at end of grace period", count=len(pending))
            await asyncio.wait(pending, timeout=30)
        while state.in_flight() and loop.time() < until + 30:
            await asyncio.sleep(0.02)
        if state.background:
            await asyncio.wait(list(state.background), timeout=30)
        for conn in list(state.connections):
            conn.close()
        await asyncio.sleep(0)
