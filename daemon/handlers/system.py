"""System and daemon-local methods: ping, version, info, status, rpc.discover."""

from __future__ import annotations

import time
from typing import Any

import orjson

from daemon.context import DAEMON_VERSION, PROTOCOL_VERSION, CallContext, DaemonState
from daemon.handlers import implements
from daemon.handlers.templates import render
from protocol import methods as m
from protocol.registry import openrpc_document

_DISCOVER_CACHE: dict[str, orjson.Fragment] = {}


def podman_version(client: Any) -> str:
    """Podman's version string ("4.3.1"), as the old CLI printed it."""
    return str(client.version().get("Version", ""))


@implements(m.Discover)
def discover(state: DaemonState, params: m.Discover) -> orjson.Fragment:
    """The document never changes while the daemon runs: it is encoded once."""
    if "doc" not in _DISCOVER_CACHE:
        _DISCOVER_CACHE["doc"] = orjson.Fragment(orjson.dumps(openrpc_document(DAEMON_VERSION)))
    return _DISCOVER_CACHE["doc"]


def _status_view(state: DaemonState) -> dict[str, Any]:
    """The one status dict of a daemon; its counters are live views, its lanes encoded per change."""
    counters = state.counters
    return {
        "version": DAEMON_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "instance_id": state.instance_id,
        "uptime_s": 0.0,
        "podman": {"socket": state.pool.socket_name, "reachable": None, "version": None},
        "connections": 0,
        "lanes": state.lane_figures,
        "requests": {"served": counters.served, "failed": counters.failed},
        "containers_reaped": 0,
        "draining": False,
    }


@implements(m.Status)
def status(state: DaemonState, params: m.Status) -> dict[str, Any]:
    """Refreshes the daemon's one status dict in place and returns it.

    Safe because a local reply is encoded before anything else runs (see
    ``Dispatcher.local``); building a fresh dict per call was most of its cost.
    """
    view = state.status_view
    if view is None:
        view = state.status_view = _status_view(state)
    view["uptime_s"] = (time.monotonic_ns() - state.started_ns) // 1_000_000 / 1000  # to the ms
    podman = view["podman"]
    podman["reachable"] = state.pool.reachable
    podman["version"] = state.podman_version
    view["connections"] = len(state.connections)
    view["lanes"] = state.lane_figures
    view["containers_reaped"] = state.counters.reaped
    view["draining"] = state.draining
    return view


@implements(m.Ping)
async def ping(ctx: CallContext, params: m.Ping) -> str:
    await ctx.pool.ping()
    return "Pong"


@implements(m.Version)
async def version(ctx: CallContext, params: m.Version) -> str:
    found = await ctx.pool.call(podman_version)
    ctx.state.podman_version = found
    return found


@implements(m.Info)
async def info(ctx: CallContext, params: m.Info) -> Any:
    data = await ctx.pool.call(lambda client: client.info())
    return render(data, params.format) if params.format else data
