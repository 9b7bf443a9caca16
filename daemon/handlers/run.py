"""``run``: create, start and wait for a container within its timeout; return its output.

Fastest correct sequence measured here (bench/run_strategies.py): create, start,
libpod wait with a 10 ms interval, one logs read, force-remove. ``progress``
follows the logs while waiting instead. Every path that leaves this module
(success, failure, timeout, Podman error, cancellation) ends with the
container removed when ``auto_remove`` is set, and killed when it overran.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from podman_rpc.daemon.guard.policy import check_run_spec
from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.output import OutputCapture
from podman_rpc.daemon.handlers.owned import image_missing, visible_image
from podman_rpc.daemon.handlers.run_spec import create_body
from podman_rpc.daemon.podman import libpod
from podman_rpc.daemon.podman.labels import container_labels
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.daemon.warm.runner import run_maybe_warm
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import ContainerFailed, RpcError, Timeout

DETACH_POLL = 1.0  # seconds between state checks of a detached container


def format_seconds(seconds: float) -> str:
    """5 -> "5s", 0.5 -> "0.5s": as the old CLI printed its --timeout."""
    return f"{seconds:g}s"


class Runner:
    """One ``run`` call; holds the container id so every exit path can clean up."""

    def __init__(self, ctx: CallContext, params: m.Run) -> None:
        self.ctx = ctx
        self.params = params
        self.name = params.name or f"prpc-{uuid.uuid4().hex[:12]}"
        self.deadline_unix = time.time() + params.timeout + ctx.config.podman_kill_margin
        labels = container_labels(ctx.state.instance_id, ctx.request_id, self.deadline_unix,
                                  params.auto_remove, ctx.peer_uid)
        # Checked before anything exists in Podman: a bad param creates nothing.
        self.body = create_body(params, name=self.name, labels=labels,
                                kill_margin=ctx.config.podman_kill_margin,
                                policy=ctx.config.policy)
        if params.detach:
            self.body["remove"] = params.auto_remove  # Podman removes it on exit by itself
        self.cid: str | None = None
        self.cleaned = False
        self.started = time.perf_counter()
        loop = asyncio.get_running_loop()

        def forward(stream: str, line: str) -> None:
            loop.call_soon_threadsafe(ctx.progress, stream, line)

        self.capture = OutputCapture(ctx.config.output_cap_bytes,
                                     forward if ctx.want_progress else None)

    async def execute(self) -> dict[str, Any]:
        check_run_spec(self.body, self.ctx.config.policy)  # PolicyDenied before create
        if not self.ctx.is_admin and await visible_image(self.ctx, self.params.image) is None:
            raise image_missing(self.params.image)  # another peer's build is not there for it
        pool = self.ctx.pool
        creating = asyncio.ensure_future(pool.call(libpod.create, self.body, subject="image"))
        try:
            self.cid = await asyncio.shield(creating)
        except asyncio.CancelledError:
            await self._cleanup_shielded(self._cleanup_after_create(creating))
            raise
        self.ctx.state.active_containers.add(self.cid)
        self.ctx.partial = {"container_id": self.cid, "name": self.name}
        handed_off = False
        try:
            await pool.call(libpod.start, self.cid)
            if self.params.detach:
                self.ctx.state.spawn(self._watch_detached(self.cid))
                handed_off = True
                return self._result("running", None)
            exit_code = await self._wait()
        except asyncio.CancelledError:
            await self._cleanup_shielded(self._cleanup(kill=True))
            raise
        except BaseException:
            if not handed_off:
                await self._cleanup_shielded(self._cleanup(kill=True))
            raise
        await self._cleanup_shielded(self._cleanup(kill=False))
        if exit_code != 0:
            raise ContainerFailed(
                f"Container '{self.name}' exited with code {exit_code}",
                {"container_id": self.cid, "exit_code": exit_code, **self.capture.snapshot()})
        return self._result("exited", exit_code)

    async def _wait(self) -> int:
        """The exit code; on overrun kill, collect what was said, remove, raise Timeout."""
        assert self.cid is not None
        pool, cid = self.ctx.pool, self.cid
        limit = self.params.timeout
        http_timeout = limit + self.ctx.config.podman_kill_margin + 5
        follower = None
        if self.ctx.want_progress:
            follower = asyncio.ensure_future(
                pool.call(libpod.logs_into, cid, self.capture, True))
            follower.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        try:
            exit_code = await asyncio.wait_for(pool.call(libpod.wait_exit, cid, http_timeout),
                                               timeout=max(0.0, limit))
        except TimeoutError:
            await pool.call(libpod.kill_quietly, cid)
            try:
                await self._collect(follower)
            except RpcError:
                pass  # it vanished meanwhile (removed by someone else): report what we have
            await self._cleanup_shielded(self._cleanup(kill=False, force_remove=True))
            raise Timeout(f"Container '{self.name}' exceeded timeout of "
                          f"{format_seconds(limit)} and was killed",
                          {"container_id": cid, "name": self.name,
                           **self.capture.snapshot()}) from None
        await self._collect(follower)
        return exit_code

    async def _collect(self, follower: asyncio.Future[Any] | None) -> None:
        """Make the capture complete: the follower ends at exit, else read the logs once."""
        assert self.cid is not None
        if follower is not None:
            try:
                await asyncio.wait_for(follower, timeout=5)
                self.capture.flush()
                return
            except TimeoutError:  # the follow did not end: read the logs plainly instead
                self.capture = OutputCapture(self.capture.cap)
        await self.ctx.pool.call(libpod.logs_into, self.cid, self.capture)

    def _result(self, status: str, exit_code: int | None) -> dict[str, Any]:
        return {"container_id": self.cid, "name": self.name, "status": status,
                "exit_code": exit_code, "image": [self.params.image],
                "auto_remove": self.params.auto_remove,
                "duration_ms": round((time.perf_counter() - self.started) * 1000, 1),
                **self.capture.snapshot()}

    async def _cleanup(self, kill: bool, force_remove: bool = False) -> None:
        """Kill (if asked) and remove (if auto_remove or forced); always forget the id."""
        cid, pool = self.cid, self.ctx.pool
        assert cid is not None
        if self.cleaned:
            return
        self.cleaned = True
        try:
            if self.params.auto_remove or force_remove:
                await pool.call(libpod.remove_quietly, cid)
            elif kill:
                await pool.call(libpod.kill_quietly, cid)
        finally:
            self.ctx.state.active_containers.discard(cid)

    async def _cleanup_after_create(self, creating: asyncio.Future[str]) -> None:
        """Cancelled while creating: if the create went through anyway, undo it."""
        try:
            self.cid = await creating
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - nothing was created
            return
        self.ctx.state.active_containers.add(self.cid)
        await self._cleanup(kill=True)

    async def _cleanup_shielded(self, coro: Any) -> None:
        """Run cleanup as a daemon task, so a cancellation of this request cannot stop it."""
        task = self.ctx.state.spawn(coro)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass  # cancelled again while cleaning up: the task finishes on its own
        except RpcError:
            pass  # cleanup failed (Podman gone?): the reaper relies on the labels

    async def _watch_detached(self, cid: str) -> None:
        """Enforce a detached container's deadline: kill and remove it when it overruns."""
        pool = self.ctx.pool
        deadline = time.time() + self.params.timeout
        try:
            while True:
                left = deadline - time.time()
                if left <= 0:
                    await pool.call(libpod.remove_quietly, cid)
                    return
                await asyncio.sleep(min(DETACH_POLL, left))
                if self.ctx.state.draining:
                    return  # not to hold up shutdown: conmon's timeout and the reaper take over
                state = await pool.call(libpod.state_or_none, cid)
                if state is None:
                    return
                if state in ("exited", "stopped"):
                    if self.params.auto_remove:
                        await pool.call(libpod.remove_quietly, cid)
                    return
        except RpcError:
            return  # Podman unreachable: conmon's own timeout and the reaper remain
        finally:
            self.ctx.state.active_containers.discard(cid)


@implements(m.Run)
async def run(ctx: CallContext, params: m.Run) -> dict[str, Any]:
    return await run_maybe_warm(ctx, params, lambda: Runner(ctx, params).execute())
