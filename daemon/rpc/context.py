"""Shared daemon state and the per-call context handed to every handler."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podman_rpc.daemon.config import Config
from podman_rpc.daemon.guard.access import AccessControl, OpenAccess
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.rpc.lanes import LaneLimiter
from podman_rpc.daemon.rpc.logbudget import DAEMON_BURST, DAEMON_RATE, LogBudget
from podman_rpc.daemon.rpc.status import Counters, StatusView
from podman_rpc.daemon.rpc.turns import Turns
from podman_rpc.daemon.rpc.unfinished import PartialBudget
from podman_rpc.protocol.envelope import PROGRESS_METHOD, notification
from podman_rpc.protocol.errors import Overloaded, RpcError, ShuttingDown
from podman_rpc.protocol.registry import Lane, MethodSpec, Role
from podman_rpc.protocol.version import VERSION

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.transport import Connection
    from podman_rpc.daemon.warm.pools import WarmPools

DAEMON_VERSION = VERSION


def _loop_call_soon(callback: Callable[[], None]) -> asyncio.Handle:
    return asyncio.get_running_loop().call_soon(callback)


def _nothing() -> None:
    pass


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return int(raw[raw.rindex(b")") + 2:].split()[19])


def make_instance_id() -> str:
    """``PID.STARTTICKS.RANDOM``: lets a later daemon tell whether this one still lives."""
    pid = os.getpid()
    return f"{pid}.{process_start_ticks(pid)}.{uuid.uuid4().hex[:8]}"


def instance_alive(instance_id: str) -> bool:
    """True if the daemon that made ``instance_id`` is still running on this host."""
    try:
        pid_text, ticks_text, _ = instance_id.split(".")
        pid, ticks = int(pid_text), int(ticks_text)
    except ValueError:
        return False
    return process_start_ticks(pid) == ticks


def _drop(counts: Counter[Any], key: Any) -> None:
    """One fewer for ``key``; an entry at zero goes, so the counters never grow with churn."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class DaemonState:
    """What every handler may read: config, the Podman pool, lanes, counters, status.

    Its collaborators come in through the constructor: ``access`` decides who may
    connect and call what; ``on_activity`` is called when a connection opens or
    closes and when a request finishes (the idle timer's clock, daemon.ops.idle).
    """

    def __init__(self, config: Config, pool: PodmanPool,
                 access: AccessControl | OpenAccess | None = None,
                 on_activity: Callable[[], None] | None = None,
                 turns: Turns | None = None) -> None:
        self.config = config
        self.pool = pool
        self.instance_id = make_instance_id()
        self.draining = False  # shutting down: new connections and Podman-bound calls refused
        self.counters = Counters()
        self.connections: set[Connection] = set()
        self.status = StatusView(self.instance_id, pool, self.counters, self.connections)
        self.lanes = {lane.value: self.status.add_lane(
            LaneLimiter(lane.value, config.lane(lane), self.status.lanes_changed)) for lane in Lane}
        # Open connections by uid and by (uid, pid), for the admission caps.
        self._per_uid: Counter[int] = Counter()
        self._per_process: Counter[tuple[int, int]] = Counter()
        self.partial_budget = PartialBudget(config.max_partial_bytes_total)
        self.log_budget = LogBudget(DAEMON_RATE, DAEMON_BURST)  # shared by every connection
        self.turns = turns if turns is not None else Turns(_loop_call_soon, time.perf_counter)
        self.active_containers: set[str] = set()
        # Auto-remove containers whose run has replied and whose removal follows (their
        # removal tasks): ps hides them, rmi and prune wait for them.
        self.pending_removal: dict[str, asyncio.Task[Any]] = {}
        self.warm: WarmPools | None = None  # set by the server when it starts the warm pools
        self.background: set[asyncio.Task[Any]] = set()
        self.on_activity: Callable[[], None] = on_activity or _nothing
        # Who may connect and what each peer may call (daemon.guard.access); without it, everyone
        # is admitted as admin.
        self.access: AccessControl | OpenAccess = access if access is not None else OpenAccess()

    def connection_opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        peer = connection.peer
        if peer is not None:
            self._per_uid[peer.uid] += 1
            self._per_process[(peer.uid, peer.pid)] += 1

    def connection_closed(self, connection: Connection) -> None:
        if connection not in self.connections:
            return  # refused at admission: never counted
        self.connections.discard(connection)
        peer = connection.peer
        if peer is not None:
            _drop(self._per_uid, peer.uid)
            _drop(self._per_process, (peer.uid, peer.pid))

    def container_reaped(self) -> None:
        self.status.containers_reaped += 1

    def admit(self, connection: Connection) -> RpcError | None:
        """Why a new connection must be refused, or None to accept it.

        Past the per-uid cap a uid is refused; past the per-process cap (half the
        per-uid one by default) a process is, so one process holding connections
        cannot lock out the other processes of its uid.
        """
        if self.draining:
            return ShuttingDown()
        config = self.config
        if len(self.connections) >= config.max_connections:
            return Overloaded("Too many connections", {"limit": config.max_connections,
                                                        "retry_after_ms": 1000})
        peer = connection.peer
        if peer is not None:
            if self._per_uid.get(peer.uid, 0) >= config.max_connections_per_uid:
                return Overloaded("Too many connections for this uid",
                                  {"limit": config.max_connections_per_uid, "scope": "uid",
                                   "retry_after_ms": 1000})
            per_pid = config.connections_per_pid
            if peer.pid > 0 and self._per_process.get((peer.uid, peer.pid), 0) >= per_pid:
                return Overloaded("Too many connections for this process",
                                  {"limit": per_pid, "scope": "pid", "retry_after_ms": 1000})
        return self.access.check(peer)

    def in_flight(self) -> int:
        return sum(c.in_flight_count for c in self.connections)

    async def removals_settled(self, bound: float = 10.0) -> None:
        """Wait (bounded) for the removals that follow run replies: an image they use is busy."""
        if self.pending_removal:
            await asyncio.wait(list(self.pending_removal.values()), timeout=bound)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run cleanup work that must finish even if its request is cancelled."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task


@dataclass(slots=True)
class CallContext:
    """One request as its handler sees it."""

    state: DaemonState
    spec: MethodSpec
    request_id: Any
    deadline: float  # loop.time() by which the call must end
    seconds: float  # the deadline's length, for messages
    connection: Connection | None = None
    want_progress: bool = False
    cancel_reason: str | None = None
    partial: dict[str, Any] = field(default_factory=dict)

    @property
    def pool(self) -> PodmanPool:
        return self.state.pool

    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def peer_uid(self) -> int:
        """The uid that owns what this call creates (0 for an in-process call)."""
        connection = self.connection
        peer = connection.peer if connection is not None else None
        return peer.uid if peer is not None else 0

    @property
    def role(self) -> Role:
        return self.state.access.connection_role(self.connection)

    @property
    def is_admin(self) -> bool:
        """Trusted: sees and acts on every container and image, whoever created it."""
        return self.role is Role.ADMIN

    def progress(self, stream: str, line: Any) -> None:
        """Send a ``$/progress`` notification, if the caller asked for them."""
        if self.want_progress and self.connection is not None:
            self.connection.send(notification(PROGRESS_METHOD, {
                "id": self.request_id, "stream": stream, "line": line}))


__all__ = ["CallContext", "Counters", "DaemonState", "DAEMON_VERSION"]
