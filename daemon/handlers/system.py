"""System and daemon-local methods: ping, version, info, status, rpc.discover."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.templates import render
from podman_rpc.daemon.rpc.context import DAEMON_VERSION, CallContext, DaemonState
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.registry import openrpc_document

_DISCOVER_CACHE: dict[str, orjson.Fragment] = {}

INFO_SPACING = 1.0
"""Podman's ``/info`` runs ``dpkg-query`` too (0.28-0.35 s of CPU here): callers share
calls (``daemon.podman.shared``), started at least this many seconds apart, so a peer
asking in a loop keeps Podman at most a third busy, not a whole core."""


def _podman_info(client: Any) -> Any:
    return client.info()


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
    data = await ctx.pool.shared.read("info", functools.partial(ctx.pool.call, _podman_info),
                                      spacing=INFO_SPACING)
    return render(data, params.format) if params.format else data
