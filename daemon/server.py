"""The server lifecycle, after uvicorn's ``Server``: choose the socket, start, notify, drain, stop."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import stat
import sys
import threading
from contextlib import AsyncExitStack
from pathlib import Path
from typing import NoReturn

import structlog

from podman_rpc.daemon.config import Config
from podman_rpc.daemon.guard.access import AccessControl, socket_group
from podman_rpc.daemon.guard.confine import subid_problem
from podman_rpc.daemon.handlers import load_handlers
from podman_rpc.daemon.ops.heap import HeapTrimmer
from podman_rpc.daemon.ops.heartbeat import Heartbeat
from podman_rpc.daemon.ops.idle import Activity, IdleTimer, busy_reason
from podman_rpc.daemon.ops.reaper import Reaper
from podman_rpc.daemon.ops.systemd import Notifier, activation_socket
from podman_rpc.daemon.podman.embedded import EmbeddedPodman, private_dir
from podman_rpc.daemon.podman.http import podman_answers
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.rpc.context import DAEMON_VERSION, DaemonState
from podman_rpc.daemon.rpc.dispatch import CANCEL_SHUTDOWN, Dispatcher
from podman_rpc.daemon.rpc.transport import Connection
from podman_rpc.daemon.warm.pools import WarmPools

log = structlog.get_logger("podman_rpc.server")
PODMAN_WATCH_SECONDS = 2.0


SHUTDOWN_MARGIN = 5.0
"""Seconds past ``drain_grace`` by which a SIGTERM'd daemon has exited, whatever is stuck."""


def hard_exit(code: int) -> NoReturn:
    """Leave now, logs flushed: ThreadPoolExecutor joins its threads at interpreter exit,
    so a worker stuck in a Podman call would otherwise hold the process for minutes."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


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


def _listening_path(listener: socket.socket, config: Config) -> Path:
    """The path this daemon answers on (a socket-activated one's too), else the configured one."""
    name = listener.getsockname() if listener.family == socket.AF_UNIX else ""
    return Path(name) if isinstance(name, str) and name.startswith("/") else config.socket_path


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
        self._stop_deadline: float | None = None  # loop time by which shutdown must be over
        self._exit_timer: threading.Timer | None = None
        # What startup has acquired, torn down in reverse by shutdown: each step pushes its
        # own undo as it succeeds, so a startup that fails halfway undoes only what it did.
        self._teardown = AsyncExitStack()

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
            loop.add_signal_handler(sig, self.handle_signal, sig)
        try:
            await self.startup()
            await self.should_exit.wait()
        finally:
            await self.shutdown()
        return 0

    def handle_signal(self, sig: signal.Signals) -> None:
        """The first SIGTERM/SIGINT drains, bounded; a second one exits at once (as uvicorn)."""
        if self._exit_timer is not None:
            log.warning("second signal: exiting now", signal=sig.name)
            hard_exit(1)
        bound = self.config.drain_grace + SHUTDOWN_MARGIN
        log.info("signal received: shutting down", signal=sig.name, bound_s=bound)
        self._stop_deadline = asyncio.get_running_loop().time() + bound - 1.0
        # A thread, not the loop: it fires even if the loop is stuck.
        self._exit_timer = threading.Timer(bound, self._overran)
        self._exit_timer.daemon = True
        self._exit_timer.start()
        self.should_exit.set()

    @staticmethod
    def _overran() -> None:
        log.error("shutdown overran its bound: exiting now")
        hard_exit(1)

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

    async def choose_podman(self, listener: socket.socket) -> Path:
        configured = self.config.podman_socket
        if await podman_answers(configured):
            return configured
        if self.config.embedded_podman and EmbeddedPodman.available():
            log.info("no podman service answers; starting an embedded one",
                     configured=str(configured))
            self.embedded = EmbeddedPodman(private_dir(_listening_path(listener, self.config)))
            self._teardown.push_async_callback(self.embedded.stop)  # even if start fails midway
            await self.embedded.start()
            return self.embedded.socket_path
        log.warning("podman service not reachable; requests fail until it is",
                    socket=str(configured))
        return configured

    async def startup(self) -> None:
        """Acquire in order, pushing each undo onto ``_teardown``; shutdown pops them.

        The pushes are ordered so the teardown runs: idle timer, version fetch, stop
        accepting and drain, reaper (its final pass), heartbeat (it keeps the watchdog
        fed through the drain), pool, embedded Podman, socket file.
        """
        undo = self._teardown
        problem = subid_problem(self.config.policy)  # else container root would be host root
        if problem is not None:
            raise StartupError(problem)
        listener = self.choose_socket()
        if self._owned_socket is not None:
            undo.callback(self._owned_socket.unlink, missing_ok=True)
        podman_socket = await self.choose_podman(listener)
        workers = sum(lane.cap for lane in self.config.lanes.values()) + 4
        pool = PodmanPool(podman_socket, workers, self.config.podman_call_timeout)
        undo.callback(pool.close)
        pool.warm_up()
        pool.watch(PODMAN_WATCH_SECONDS)  # status.podman.reachable as it is, not as it was
        gate = AccessControl(self.config.access, socket_group(listener))  # who, and their role
        # The idle timer's clock: DaemonState touches it, the timer (built below) reads it.
        activity = Activity() if self.config.idle_timeout is not None else None
        self.state = state = DaemonState(self.config, pool, gate,
                                         on_activity=activity.touch if activity else None)
        dispatcher = Dispatcher(state, load_handlers())
        self.heartbeat = Heartbeat(state, self.notifier)  # started once READY=1 is sent
        undo.callback(self.heartbeat.stop)
        self.reaper = reaper = Reaper(state)
        undo.push_async_callback(self._reap_last, reaper)
        await reaper.startup_pass()  # leftovers of a crashed daemon go before we serve
        state.warm = WarmPools(self.config, pool, state.instance_id, state.active_containers,
                               state.pending_removal, state.status.warm)
        state.warm.start()  # fills in the background
        undo.push_async_callback(self._stop_warm, state.warm)  # after the drain, before the last reap
        self._factory = lambda: Connection(state, dispatcher)
        if self.config.idle_timeout is not None:
            self._spare_listener = os.dup(listener.fileno())
            undo.callback(self._close_spare_listener)
        self._server = await asyncio.get_running_loop().create_unix_server(
            self._factory, sock=listener, backlog=1024)
        undo.push_async_callback(self._close_and_drain, state)
        # Podman has been asked already (choose_podman's _ping, the reaper's pass). Its
        # /version takes ~1 s (it runs the OCI runtime), so it must not hold READY=1 back.
        self._version_task = asyncio.get_running_loop().create_task(self._fetch_podman_version())
        undo.callback(self._version_task.cancel)
        if self.config.reap_interval > 0:
            reaper.start()
        log.info("serving", socket=str(self._owned_socket or "socket-activated"),
                 podman=str(podman_socket), podman_version=pool.version,
                 version=DAEMON_VERSION, instance=state.instance_id)
        answering = "answering" if pool.reachable else "unreachable"
        self.notifier.notify("READY=1", f"STATUS=serving; podman {answering}")
        self.heartbeat.start()
        trimmer = HeapTrimmer()  # free heap a burst left goes back to the kernel
        undo.callback(trimmer.stop)
        trimmer.start()
        if activity is not None and self.config.idle_timeout is not None:
            self.idle = IdleTimer(state, activity, self.config.idle_timeout, self._on_idle)
            undo.callback(self.idle.stop)
            self.idle.start()

    async def _fetch_podman_version(self) -> None:
        assert self.state is not None
        try:
            pool = self.state.pool
            await pool.podman_version()
            log.info("podman version", podman_version=pool.version)
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
        """Refuse new work, then undo what startup did (``_teardown``), within the bound."""
        state = self.state
        self.notifier.notify("STOPPING=1", "STATUS=draining")
        if state is not None:
            state.draining = True
            log.info("draining", in_flight=state.in_flight(), grace_s=self.config.drain_grace,
                     connections=len(state.connections))
        try:
            await self._teardown.aclose()  # every step runs, even after one raised
        finally:
            self.notifier.close()
            if self._exit_timer is not None:
                self._exit_timer.cancel()  # done in time; main() still leaves without stuck workers
            log.info("stopped")

    async def _reap_last(self, reaper: Reaper) -> None:
        """Stop the periodic reaper, then remove what this instance still owns (bounded)."""
        await reaper.stop()
        try:
            await asyncio.wait_for(reaper.final_pass(), self._left(60))
        except TimeoutError:
            log.warning("final reap cut short by the shutdown bound")

    async def _stop_warm(self, warm: WarmPools) -> None:
        """Remove the warm containers (bounded); the final reap pass catches the rest."""
        await warm.stop(self._left(10))

    def _close_spare_listener(self) -> None:
        if self._spare_listener is not None:
            os.close(self._spare_listener)
            self._spare_listener = None

    def _left(self, default: float) -> float:
        """Seconds a shutdown step may wait: ``default``, or what the signal's bound leaves."""
        if self._stop_deadline is None:
            return default
        return max(0.1, min(default, self._stop_deadline - asyncio.get_running_loop().time()))

    async def _close_and_drain(self, state: DaemonState) -> None:
        """Stop accepting; let requests finish for ``drain_grace``, then cancel the rest."""
        if self._server is not None:
            self._server.close()  # the one serving now: an idle exit called off makes a new one
        loop = asyncio.get_running_loop()
        until = loop.time() + self.config.drain_grace
        while state.in_flight() and loop.time() < until:
            await asyncio.sleep(0.05)
        pending = [task for conn in list(state.connections)
                   for task in conn.shutdown(CANCEL_SHUTDOWN)]
        if pending:
            log.warning("cancelled requests at end of grace period", count=len(pending))
            await asyncio.wait(pending, timeout=self._left(30))
        settle = loop.time() + self._left(30)
        while state.in_flight() and loop.time() < settle:
            await asyncio.sleep(0.02)
        if state.background:
            await asyncio.wait(list(state.background), timeout=self._left(30))
        for conn in list(state.connections):
            conn.close()
        await asyncio.sleep(0)
