"""WarmRunner: one ``run`` served by a claimed warm container, by exec.

The result, the errors (``ContainerFailed``, ``Timeout``) and ``$/progress`` are
the cold path's; only ``timing.warm`` tells them apart. Past ``timeout`` the
whole container is killed (as the cold path kills its container), which also
ends the exec's stream. Whatever happens, the container serves no second run:
``WarmPools.release`` removes it off the critical path, and the pool refills.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from podman_rpc.daemon.handlers.output import OutputCapture
from podman_rpc.daemon.podman import execs, lifecycle
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.daemon.warm.keys import exec_spec
from podman_rpc.daemon.warm.pools import WarmContainer, WarmPools
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import ContainerFailed, RpcError, Timeout

EXIT_POLLS = 50  # exec inspect may say "running" for a moment after its stream ended
EXIT_POLL_SECONDS = 0.01


class WarmGone(Exception):
    """The claimed container is no longer usable (reaped, died): run cold instead."""


class WarmRunner:
    """Exec one run's command in a claimed container, then hand the container back for removal."""

    def __init__(self, ctx: CallContext, params: m.Run, pools: WarmPools,
                 warm: WarmContainer) -> None:
        self.ctx = ctx
        self.params = params
        self.pools = pools
        self.warm = warm
        self.started = time.perf_counter()
        # The cold path's phases (issue 17), as durations; start_ms is 0: started ahead of time.
        self.timing: dict[str, Any] = {"warm": True, "create_ms": 0.0, "start_ms": 0.0,
                                       "run_ms": 0.0, "collect_ms": 0.0}
        self._mark = self.started
        # Fed on the event loop (the attach reader), so progress lines go out directly.
        self.capture = OutputCapture(ctx.config.output_cap_bytes,
                                     ctx.progress if ctx.want_progress else None)

    async def execute(self) -> dict[str, Any]:
        """The run's result; raises WarmGone before any of the command ran, else as cold."""
        warm, http = self.warm, self.ctx.pool.http
        self.ctx.partial = {"container_id": warm.cid, "name": warm.name}
        try:
            image_command = warm.pool.image_command or (None, None)
            spec = exec_spec(self.params, *image_command)
            if spec is None:
                raise WarmGone("nothing to run")
            try:
                exec_id = await execs.exec_create(http, warm.cid, spec.argv, spec.env,
                                                  spec.workdir)
            except RpcError as error:  # reaped or dead meanwhile: nothing ran yet
                raise WarmGone(error.message) from None
            self._phase("create_ms")
            exit_code = await self._attached(exec_id)
        finally:
            self.pools.release(warm)  # never a second run; removal is off this reply's path
        if exit_code != 0:
            raise ContainerFailed(
                f"Container '{warm.name}' exited with code {exit_code}",
                {"container_id": warm.cid, "exit_code": exit_code, **self.capture.snapshot()})
        return {"container_id": warm.cid, "name": warm.name, "status": "exited",
                "exit_code": exit_code, "image": [self.params.image],
                "auto_remove": True, "duration_ms": self._ms(),
                **self.capture.snapshot(), "timing": self.timing}

    async def _attached(self, exec_id: str) -> int:
        """Start the exec attached, within ``timeout``; its exit code."""
        warm, http = self.warm, self.ctx.pool.http
        limit = self.params.timeout
        try:
            await asyncio.wait_for(execs.exec_run(http, exec_id, self.capture),
                                   timeout=max(0.0, limit))
        except TimeoutError:
            await self._kill()
            raise Timeout(f"Container '{warm.name}' exceeded timeout of {limit:g}s "
                          "and was killed",
                          {"container_id": warm.cid, "name": warm.name,
                           **self.capture.snapshot()}) from None
        except asyncio.CancelledError:
            await self._kill()
            raise
        except RpcError as error:  # refused before it started (the stream ends without one)
            raise WarmGone(error.message) from None
        self.capture.flush()
        self._phase("run_ms")
        try:
            return await self._exit_code(exec_id)
        finally:
            self._phase("collect_ms")

    async def _exit_code(self, exec_id: str) -> int:
        http = self.ctx.pool.http
        for _ in range(EXIT_POLLS):
            code = await execs.exec_exit_code(http, exec_id)
            if code is not None:
                return code
            await asyncio.sleep(EXIT_POLL_SECONDS)
        return -1

    async def _kill(self) -> None:
        """SIGKILL the container now (its removal follows in ``release``), even if cancelled."""
        task = asyncio.ensure_future(lifecycle.kill(self.ctx.pool.http, self.warm.cid))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass  # cancelled again: the kill finishes on its own
        except RpcError:
            pass  # removal follows anyway, and the reaper has the labels

    def _phase(self, name: str) -> None:
        now = time.perf_counter()
        self.timing[name] = round((now - self._mark) * 1000, 1)
        self._mark = now

    def _ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)


async def run_maybe_warm(ctx: CallContext, params: m.Run,
                         cold: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Serve the run from a warm container when one matches, else by ``cold()`` (and count it)."""
    pools = ctx.state.warm
    if pools is None or not pools.warm.enabled:
        return await cold()
    warm = pools.claim(params, ctx.peer_uid)
    if warm is not None:
        try:
            return await WarmRunner(ctx, params, pools, warm).execute()
        except WarmGone:
            pass  # nothing of the command ran: the cold path serves it
    try:
        result = await cold()
    except ContainerFailed:
        pools.sighted(params, ctx.peer_uid)
        raise
    pools.sighted(params, ctx.peer_uid)
    return result
