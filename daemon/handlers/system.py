"""System and daemon-local methods: ping, version, info, status, rpc.discover."""

from __future__ import annotations

from typing import Any

import orjson

from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.templates import render
from podman_rpc.daemon.rpc.context import DAEMON_VERSION, CallContext, DaemonState
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.registry import openrpc_document

_DISCOVER_CACHE: dict[str, orjson.Fragment] = {}


@implements(m.Discover)
def discover(state: DaemonState, params: m.Discover) -> orjson.Fragment:
    """The document never changes while the daemon runs: it is encoded once."""
    if "doc" not in _DISCOVER_CACHE:
        _DISCOVER_CACHE["doc"] = orjson.Fragment(orjson.dumps(openrpc_document(DAEMON_VERSION)))
    return _DISCOVER_CACHE["doc"]


@implements(m.Status)
def status(state: DaemonState, params: m.Status) -> dict[str, Any]:
    """The daemon's figures, read where they live (``daemon.rpc.status.StatusView``)."""
    return state.status.reply(state.draining)


@implements(m.Ping)
async def ping(ctx: CallContext, params: m.Ping) -> str:
    await ctx.pool.ping()
    return "Pong"


@implements(m.Version)
async def version(ctx: CallContext, params: m.Version) -> str:
    return await ctx.pool.podman_version()


@implements(m.Info)
async def info(ctx: CallContext, params: m.Info) -> Any:
    data = await ctx.pool.call(lambda client: client.info())
    return render(data, params.format) if params.format else data
