"""WarmRunner: one ``run`` served by a claimed warm container, through its stdin launcher.

The claim attaches to the idle container (stdin, stdout, stderr) and writes the
run's one line (``warm.launcher``); the launcher execs the command, whose output
comes through the same reader and cap as the cold path's, and whose exit ends
the container: the exit code comes from the same race as the cold path's
(libpod's wait against conmon's exit file). The result, the errors
(``ContainerFailed``, ``Timeout``) and ``$/progress`` are the cold path's; only
``timing.warm`` tells them apart. Past ``timeout``, or on cancel, the container
is killed. Whatever happens, it serves no second run: ``WarmPools.release``
removes it off the critical path, and the pool refills.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from podman_rpc.daemon.handlers.output import OutputCapture
from podman_rpc.daemon.podman import lifecycle
from podman_rpc.daemon.podman.attach import AttachStream
from podman_rpc.daemon.podman.http import API_PREFIX
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.daemon.warm import launcher
from podman_rpc.daemon.warm.keys import ExecSpec
from podman_rpc.daemon.warm.pools import WarmContainer, WarmPools
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import ContainerFailed, RpcError, Timeout

TIMEOUT_GRACE = 0.5  # seconds the reader may still drain after an overrun's kill (as cold)
EXIT_TO_EOF = 2.0  # seconds the output may end after the exit code is known (as cold)
ATTACH = "attach?stream=true&stdin=true&stdout=true&stderr=true"
_KILLS: set[asyncio.Task[Any]] = set()  # kills under way: asyncio holds tasks only weakly


class WarmGone(Exception):
    """The claimed container is no longer usable (reaped, died): run cold instead."""


class WarmRunner:
    """Send one run's line to a claimed container, then hand the container back for removal."""

    def __init__(self, ctx: CallContext, params: m.Run, pools: WarmPools,
                 warm: WarmContainer, spec: ExecSpec) -> None:
        self.ctx = ctx
        self.params = params
        self.pools = pools
        self.warm = warm
        self.spec = spec
        self.nonce = secrets.token_hex(16)  # the launcher's word for "nothing ran"
        self.http = ctx.pool.http
        self.started = time.perf_counter()
        # The cold path's phases (issue 17), as durations; create_ms is 0: created ahead.
        self.timing: dict[str, Any] = {"warm": True, "create_ms": 0.0, "start_ms": 0.0,
                                       "run_ms": 0.0, "collect_ms": 0.0}
        self._mark = self.started
        # Fed on the event loop (the attach reader), so progress lines go out directly.
        self.capture = OutputCapture(ctx.config.output_cap_bytes,
                                     self._progress if ctx.want_progress else None)

    async def execute(self) -> dict[str, Any]:
        """The run's result; raises WarmGone before any of the command ran, else as cold."""
        warm = self.warm
        self.ctx.partial = {"container_id": warm.cid, "name": warm.name}
        try:
            try:  # reaped or dead meanwhile: nothing ran yet
                stream = await AttachStream.open(self.http, "POST",
                                                 f"{API_PREFIX}/containers/{warm.cid}/{ATTACH}")
            except RpcError as error:
                raise WarmGone(error.message) from None
            try:
                exit_code = await self._attached(stream)
            finally:
                stream.close()
            if exit_code == launcher.NOT_LAUNCHED and self.capture.snapshot() == {
                    "stdout": "", "stderr": self.nonce + "\n", "truncated": False}:
                raise WarmGone("no such command or workdir")  # cold says it as Podman does
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

    async def _attached(self, stream: AttachStream) -> int:
        """Write the line, then read the output and wait for the exit together."""
        loop = asyncio.get_running_loop()
        reader = loop.create_task(stream.pump(self.capture))
        waiter = loop.create_task(lifecycle.wait_exit(self.http, self.warm.cid))
        began = time.perf_counter()
        try:
            await stream.write(launcher.line(self.spec, self.nonce))
            self._phase("start_ms")
            exit_code = await self._exit_code(reader, waiter, began)
            exited = time.perf_counter()
            left = max(0.0, self.params.timeout - (exited - began))
            await asyncio.wait({reader}, timeout=min(EXIT_TO_EOF, left + TIMEOUT_GRACE))
            self._phase("run_ms")
            if reader.done():
                reader.result()  # a broken stream is Podman's error, not a short output
            self.capture.flush()
            self.timing["collect_ms"] = round((time.perf_counter() - exited) * 1000, 1)
            return exit_code
        except asyncio.CancelledError:
            await self._kill()
            raise
        finally:
            for task in (reader, waiter):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _exit_code(self, reader: asyncio.Task[None], waiter: asyncio.Task[int],
                         began: float) -> int:
        """The exit code by the cold path's race (``lifecycle.exit_code``)."""
        return await lifecycle.exit_code(reader, waiter, cid=self.warm.cid,
                                         exit_dir=self.ctx.config.podman_exit_dir,
                                         limit=self.params.timeout, began=began,
                                         overran=lambda: self._overran(reader, began))

    async def _overran(self, reader: asyncio.Task[None], began: float) -> NoReturn:
        """Kill; let the reader drain briefly; raise Timeout with what was captured."""
        warm, limit = self.warm, self.params.timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT_GRACE):
                await self._kill()
        await asyncio.wait({reader}, timeout=TIMEOUT_GRACE)
        self.capture.flush()
        self._phase("run_ms")
        raise Timeout(f"Container '{warm.name}' exceeded timeout of {limit:g}s and was killed",
                      {"container_id": warm.cid, "name": warm.name, **self.capture.snapshot()})

    async def _kill(self) -> None:
        """SIGKILL the container now (its removal follows in ``release``), even if cancelled."""
        task = asyncio.ensure_future(lifecycle.kill(self.http, self.warm.cid))
        _KILLS.add(task)  # if we are cancelled, nothing else refers to it
        task.add_done_callback(_KILLS.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass  # cancelled again: the kill finishes on its own
        except RpcError:
            pass  # removal follows anyway, and the reaper has the labels

    def _progress(self, stream: str, text: str) -> None:
        """``$/progress`` as cold, less the launcher's "nothing ran" (cold reports then)."""
        if not (stream == "stderr" and text == self.nonce):
            self.ctx.progress(stream, text)

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
    claimed = pools.claim(params, ctx.peer_uid)
    if claimed is not None:
        warm, spec = claimed
        try:
            return await WarmRunner(ctx, params, pools, warm, spec).execute()
        except WarmGone:
            pass  # nothing of the command ran: the cold path serves it
    try:
        result = await cold()
    except ContainerFailed:
        pools.sighted(params, ctx.peer_uid)
        raise
    pools.sighted(params, ctx.peer_uid)
    return result
