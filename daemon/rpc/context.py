"""Shared daemon state and the per-call context handed to every handler."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from podman_rpc.daemon.config import Config
from podman_rpc.daemon.guard.access import AccessControl, OpenAccess
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.rpc.lanes import LaneLimiter
from podman_rpc.daemon.rpc.unfinished import PartialBudget
from podman_rpc.protocol.envelope import PROTOCOL_VERSION
from podman_rpc.protocol.errors import Overloaded, RpcError, ShuttingDown
from podman_rpc.protocol.registry import Lane, MethodSpec, Role
from podman_rpc.protocol.version import VERSION

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.transport import Connection
    from podman_rpc.daemon.warm.pools import WarmPools

DAEMON_VERSION = VERSION


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


@dataclass
class Counters:
    """Requests by method and outcome (containers reaped: ``DaemonState.status_view``).

    ``disconnected``: ended because their client went away, so neither served nor failed.
    """

    served: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    disconnected: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class DaemonState:
    """What every handler may read: config, the Podman pool, lanes and counters."""

    def __init__(self, config: Config, pool: PodmanPool,
                 access: AccessControl | OpenAccess | None = None) -> None:
        self.config = config
        self.pool = pool
        self.instance_id = make_instance_id()
        self.started_ns = time.monotonic_ns()  # uptime in whole nanoseconds: no float rounding
        self.lanes = {lane.value: LaneLimiter(lane.value, config.lane(lane), self._lanes_changed)
                      for lane in Lane}
        self.lane_stats = {name: lane.stats for name, lane in self.lanes.items()}  # live views
        self.counters = Counters()
        self.connections: set[Connection] = set()
        self.partial_budget = PartialBudget(config.max_partial_bytes_total)
        self.status_view = self._status_view()
        self.active_containers: set[str] = set()
        # Auto-remove containers whose run has replied and whose removal follows (their
        # removal tasks): ps hides them, rmi and prune wait for them.
        self.pending_removal: dict[str, asyncio.Task[Any]] = {}
        self.warm: WarmPools | None = None  # set by the server when it starts the warm pools
        self.background: set[asyncio.Task[Any]] = set()
        self.on_activity: Callable[[], None] = lambda: None
        # Who may connect and what each peer may call (daemon.guard.access); without it, everyone
        # is admitted as admin.
        self.access: AccessControl | OpenAccess = access if access is not None else OpenAccess()

    # --- what ``status`` reports --------------------------------------------------------
    # status is polled far more often than any of its figures changes, so each figure
    # is written into status_view where it changes, and status stamps only the uptime.
    def _status_view(self) -> dict[str, Any]:
        counters = self.counters
        return {
            "version": DAEMON_VERSION,
            "protocol_version": PROTOCOL_VERSION,
            "instance_id": self.instance_id,
            "uptime_s": 0.0,
            "podman": self.pool.figures,  # socket, reachable, version: the pool keeps them
            "connections": 0,
            "lanes": self._encoded_lanes(),
            "requests": {"served": counters.served, "failed": counters.failed,  # live dicts
                         "disconnected": counters.disconnected},
            "containers_reaped": 0,
            "warm": {},  # one live dict per warm pool, kept by daemon.warm.pools.WarmPools
            "draining": False,
        }

    def _encoded_lanes(self) -> orjson.Fragment:
        """Every lane's figures, 20 numbers encoded once per change instead of per call."""
        return orjson.Fragment(orjson.dumps(self.lane_stats))

    def _lanes_changed(self) -> None:
        self.status_view["lanes"] = self._encoded_lanes()

    @property
    def draining(self) -> bool:
        """Shutting down: new connections and Podman-bound calls are refused."""
        return bool(self.status_view["draining"])

    @draining.setter
    def draining(self, value: bool) -> None:
        self.status_view["draining"] = value

    @property
    def podman_version(self) -> str | None:
        version: str | None = self.pool.figures["version"]
        return version

    @podman_version.setter
    def podman_version(self, version: str | None) -> None:
        self.pool.figures["version"] = version

    def connection_opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.status_view["connections"] = len(self.connections)

    def connection_closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.status_view["connections"] = len(self.connections)

    def container_reaped(self) -> None:
        self.status_view["containers_reaped"] += 1

    def admit(self, connection: Connection) -> RpcError | None:
        """Why a new connection must be refused, or None to accept it."""
        if self.draining:
            return ShuttingDown()
        if len(self.connections) >= self.config.max_connections:
            return Overloaded("Too many connections", {"limit": self.config.max_connections,
                                                        "retry_after_ms": 1000})
        peer = connection.peer
        if peer is not None:
            same_uid = sum(1 for c in self.connections if c.peer and c.peer.uid == peer.uid)
            if same_uid >= self.config.max_connections_per_uid:
                return Overloaded("Too many connections for this uid",
                                  {"limit": self.config.max_connections_per_uid,
                                   "retry_after_ms": 1000})
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

    def remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    def progress(self, stream: str, line: Any) -> None:
        """Send a ``$/progress`` notification, if the caller asked for them."""
        if self.want_progress and self.connection is not None:
            self.connection.send({"jsonrpc": "2.0", "method": "$/progress",
                                  "params": {"id": self.request_id, "stream": stream,
                                             "line": line}})


__all__ = ["CallContext", "DaemonState", "DAEMON_VERSION", "PROTOCOL_VERSION"]
