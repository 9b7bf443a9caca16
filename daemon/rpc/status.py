"""What ``status`` reports: the figures, gathered in one place and read when asked.

``status`` is a health check, polled far more often than any of its figures
changes, so its reply must stay cheap. Each figure lives with its owner and is
read here only when ``status`` is asked: the connection count is the live set's
length, Podman's reachability and version are the pool's attributes, draining
is the state's, the request counters are live dicts. The one figure that costs
something to encode, the lanes' (20 numbers), is encoded once per change, and
lazily: a slot change only marks it stale, and the next ``status`` encodes it.

No figure is kept only inside a reply: :meth:`StatusView.reply` copies each one
in from its owner on every call. The reply dict itself is reused (a fresh one
cost ~0.3 us more per call, a fifth of the whole local call), which is safe
because the dispatcher encodes it before anything else runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from podman_rpc.protocol.envelope import PROTOCOL_VERSION
from podman_rpc.protocol.version import VERSION

if TYPE_CHECKING:
    from podman_rpc.daemon.podman.pool import PodmanPool
    from podman_rpc.daemon.rpc.lanes import LaneLimiter


@dataclass
class Counters:
    """Requests by method and outcome, as ``status`` shows them (live dicts).

    ``disconnected``: ended because their client went away, so neither served nor failed.
    """

    served: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    disconnected: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class StatusView:
    """The ``status`` reply, built from figures read where they live."""

    __slots__ = ("instance_id", "started_ns", "containers_reaped", "_pool", "_connections",
                 "_lane_stats", "_lanes", "_reply", "_podman", "warm")

    def __init__(self, instance_id: str, pool: PodmanPool, counters: Counters,
                 connections: Sized) -> None:
        self.instance_id = instance_id
        self.started_ns = time.monotonic_ns()  # uptime in whole nanoseconds: no float rounding
        self.containers_reaped = 0  # the view owns it: nothing else reads it
        self._pool = pool
        self._connections = connections  # the daemon's live set of connections
        self._lane_stats: dict[str, dict[str, int]] = {}  # each lane's live stats dict
        self._lanes: orjson.Fragment | None = None  # their encoding; None when stale
        self.warm: dict[str, Any] = {}  # one live dict per warm pool, kept by daemon.warm.pools
        self._podman: dict[str, Any] = {"socket": pool.socket_name, "reachable": None,
                                        "version": None}
        # The reply's shape, in the order clients see it; reply() fills in the figures.
        self._reply: dict[str, Any] = {
            "version": VERSION,
            "protocol_version": PROTOCOL_VERSION,
            "instance_id": instance_id,
            "uptime_s": 0.0,
            "podman": self._podman,
            "connections": 0,
            "lanes": None,
            "requests": {"served": counters.served, "failed": counters.failed,  # live dicts
                         "disconnected": counters.disconnected},
            "containers_reaped": 0,
            "warm": self.warm,
            "draining": False,
        }

    def add_lane(self, lane: LaneLimiter) -> LaneLimiter:
        """Show ``lane``'s figures; build it with ``on_change=view.lanes_changed``."""
        self._lane_stats[lane.name] = lane.stats
        self._lanes = None
        return lane

    def lanes_changed(self) -> None:
        """A slot was taken, queued for or released: the encoded lanes are stale.

        Runs twice per Podman-bound call, so it only drops the cache; encoding
        here cost every call ~0.5 us for a reply that is asked for far less often.
        """
        self._lanes = None

    def lanes(self) -> orjson.Fragment:
        """Every lane's figures, encoded at most once per change."""
        encoded = self._lanes
        if encoded is None:
            encoded = self._lanes = orjson.Fragment(orjson.dumps(self._lane_stats))
        return encoded

    def reply(self, draining: bool) -> dict[str, Any]:
        """The ``status`` result, valid until the next call; ``draining`` is the state's flag.

        Inlined rather than split into helpers: each call here costs ~50 ns on the
        daemon's most polled path (``python -m bench.profile_path``).
        """
        reply, pool, podman = self._reply, self._pool, self._podman
        reply["uptime_s"] = (time.monotonic_ns() - self.started_ns) // 1_000_000 / 1000  # ms
        podman["reachable"] = pool.reachable
        podman["version"] = pool.version
        reply["connections"] = len(self._connections)
        lanes = self._lanes
        if lanes is None:
            lanes = self._lanes = orjson.Fragment(orjson.dumps(self._lane_stats))
        reply["lanes"] = lanes
        reply["containers_reaped"] = self.containers_reaped
        reply["draining"] = draining
        return reply
