"""Container methods other than ``run``: ps, kill, rm, logs, stop, wait.

Each acts only on the caller's own containers unless it is admin (``owned``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers import run as _run  # noqa: F401 - registers ``run``
from podman_rpc.daemon.handlers.output import OutputCapture
from podman_rpc.daemon.handlers.owned import owned_container, owner_filter
from podman_rpc.daemon.podman import libpod, lifecycle
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import Timeout


@implements(m.Ps)
async def ps(ctx: CallContext, params: m.Ps) -> list[dict[str, Any]]:
    """A run's auto-remove container whose removal follows its reply is not listed: for
    its caller it is gone (the reply said so), and it will be in milliseconds."""
    found = await ctx.pool.listings.containers(params.all, owner_filter(ctx))
    pending = ctx.state.pending_removal
    return [c for c in found if c["id"] not in pending] if pending else found


@implements(m.Kill)
async def kill(ctx: CallContext, params: m.Kill) -> dict[str, str]:
    cid = await owned_container(ctx, params.name)
    await ctx.pool.call(libpod.kill, cid, params.signal)
    return {"container_id": params.name,
            "message": f"Container killed with signal {params.signal}"}


@implements(m.Rm)
async def rm(ctx: CallContext, params: m.Rm) -> dict[str, str]:
    cid = await owned_container(ctx, params.name)
    await ctx.pool.call(libpod.remove, cid, params.force)
    return {"container_id": params.name, "message": "Container deleted successfully"}


@implements(m.Logs)
async def logs(ctx: CallContext, params: m.Logs) -> dict[str, str]:
    capture = OutputCapture(ctx.config.output_cap_bytes)
    cid = await owned_container(ctx, params.name)
    await ctx.pool.call(libpod.logs_into, cid, capture, False, params.tail)
    return {"container_id": params.name, "stdout": capture.text("stdout"),
            "stderr": capture.text("stderr")}


@implements(m.Stop)
async def stop(ctx: CallContext, params: m.Stop) -> dict[str, str]:
    cid = await owned_container(ctx, params.name)
    await ctx.pool.call(libpod.stop, cid, params.timeout, params.timeout + 30)
    return {"container_id": params.name, "message": "Container stopped"}


@implements(m.Wait)
async def wait(ctx: CallContext, params: m.Wait) -> dict[str, Any]:
    cid = await owned_container(ctx, params.name)
    try:
        code = await asyncio.wait_for(
            lifecycle.wait_exit(ctx.pool.http, cid),
            timeout=params.timeout)
    except TimeoutError:
        raise Timeout(f"Container '{params.name}' did not exit within "
                      f"{params.timeout:g}s", {"container_id": params.name}) from None
    return {"container_id": params.name, "exit_code": code}
