"""``run``: create, attach, start; collect output and exit together; reply, then remove.

Why this order (issue 17, bench/RESULTS.md): the output comes from libpod's
attach stream, opened before start (``daemon.podman.attach``), so its cost is
per byte, not per log line, and ``progress`` lines come from the same reader.
The exit code comes from libpod's wait, concurrently. The reply leaves as soon
as both are known; the removal of an auto-remove container follows off the
critical path (``state.spawn``), and stays guaranteed by the labels: the reaper
of this daemon (its container is then no longer active) or of the next one
(instance gone, or deadline passed) removes what a removal did not.
``state.pending_removal`` holds those containers meanwhile, and ``ps`` hides them.

Past ``timeout`` the container is killed, and the reply is ``Timeout`` with what
was captured, within ``timeout`` + ``TIMEOUT_GRACE`` + a kill's round trip. Every
container gets a bounded log (``log_configuration``): ``none`` for an attached
auto-remove run, whose output nobody can ask for later; a k8s-file of at most
``LOG_FILE_CAPS`` x the output cap for the others, which ``logs`` may read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, NoReturn

from podman_rpc.daemon.guard.policy import check_run_spec
from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.output import OutputCapture
from podman_rpc.daemon.handlers.owned import image_missing, visible_image
from podman_rpc.daemon.handlers.run_spec import create_body
from podman_rpc.daemon.podman import lifecycle
from podman_rpc.daemon.podman.attach import AttachStream
from podman_rpc.daemon.podman.http import API_PREFIX
from podman_rpc.daemon.podman.labels import container_labels
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.daemon.warm.runner import run_maybe_warm
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import ContainerFailed, RpcError, Timeout

DETACH_POLL = 1.0  # seconds between state checks of a detached container
TIMEOUT_GRACE = 0.5  # seconds the reader may still drain after an overrun's kill
EXIT_TO_EOF = 2.0  # seconds the output may end after the exit code is known
LOG_FILE_CAPS = 2  # a kept container's k8s-file log holds at most this many output caps


def format_seconds(seconds: float) -> str:
    """5 -> "5s", 0.5 -> "0.5s": as the old CLI printed its --timeout."""
    return f"{seconds:g}s"


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


class Runner:
    """One ``run`` call; holds the container id so every exit path can clean up."""

    def __init__(self, ctx: CallContext, params: m.Run) -> None:
        self.ctx = ctx
        self.params = params
        self.http = ctx.pool.http
        self.name = params.name or f"prpc-{uuid.uuid4().hex[:12]}"
        self.deadline_unix = time.time() + params.timeout + ctx.config.podman_kill_margin
        labels = container_labels(ctx.state.instance_id, ctx.request_id, self.deadline_unix,
                                  params.auto_remove, ctx.peer_uid)
        # Checked before anything exists in Podman: a bad param creates nothing.
        self.body = create_body(params, name=self.name, labels=labels,
                                kill_margin=ctx.config.podman_kill_margin,
                                policy=ctx.config.policy)
        cap = ctx.config.output_cap_bytes
        unread = params.auto_remove and not params.detach
        self.body["log_configuration"] = (
            {"driver": "none"} if unread else {"driver": "k8s-file", "size": LOG_FILE_CAPS * cap})
        if params.detach:
            self.body["remove"] = params.auto_remove  # Podman removes it on exit by itself
        self.cid: str | None = None
        self.cleaned = False
        self.started = time.perf_counter()
        self.timing: dict[str, float] = {}
        self.capture = OutputCapture(cap, ctx.progress if ctx.want_progress else None)

    async def execute(self) -> dict[str, Any]:
        check_run_spec(self.body, self.ctx.config.policy)  # PolicyDenied before create
        if not self.ctx.is_admin and await visible_image(self.ctx, self.params.image) is None:
            raise image_missing(self.params.image)  # another peer's build is not there for it
        began = time.perf_counter()
        creating = asyncio.ensure_future(lifecycle.create(self.http, self.body))
        try:
            self.cid = await asyncio.shield(creating)
        except asyncio.CancelledError:
            await self._cleanup_shielded(self._cleanup_after_create(creating))
            raise
        self.timing["create_ms"] = _ms(began)
        self.ctx.state.active_containers.add(self.cid)
        self.ctx.partial = {"container_id": self.cid, "name": self.name}
        try:
            if self.params.detach:
                await self._start()
                self.ctx.state.spawn(self._watch_detached(self.cid))
                return self._result("running", None)
            exit_code = await self._attached()
        except BaseException:
            await self._cleanup_shielded(self._cleanup())
            raise
        self._remove_after_reply()
        if exit_code != 0:
            raise ContainerFailed(
                f"Container '{self.name}' exited with code {exit_code}",
                {"container_id": self.cid, "exit_code": exit_code, **self.capture.snapshot()})
        return self._result("exited", exit_code)

    async def _start(self) -> None:
        assert self.cid is not None
        began = time.perf_counter()
        await lifecycle.start(self.http, self.cid)
        self.timing["start_ms"] = _ms(began)

    async def _attached(self) -> int:
        """Attach, start, then read output and wait for the exit together; the exit code."""
        assert self.cid is not None
        opened = time.perf_counter()  # libpod prepares the container (runc create) at attach
        stream = await AttachStream.open(
            self.http, "POST",
            f"{API_PREFIX}/containers/{self.cid}/attach?stream=true&stdout=true&stderr=true")
        reader: asyncio.Task[None] | None = None
        waiter: asyncio.Task[int] | None = None
        try:
            await self._start()
            self.timing["start_ms"] = _ms(opened)
            began = time.perf_counter()
            loop = asyncio.get_running_loop()
            reader = loop.create_task(stream.pump(self.capture))
            waiter = loop.create_task(lifecycle.wait_exit(self.http, self.cid))
            limit = self.params.timeout
            exit_code = await self._exit_code(reader, waiter, began)
            exited = time.perf_counter()
            left = max(0.0, limit - (exited - began))
            await asyncio.wait({reader}, timeout=min(EXIT_TO_EOF, left + TIMEOUT_GRACE))
            self.timing["run_ms"] = _ms(began)
            self.timing["collect_ms"] = _ms(exited)
            if reader.done():
                reader.result()  # a broken stream is Podman's error, not a short output
            self.capture.flush()
            return exit_code
        finally:
            for task in (reader, waiter):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            stream.close()

    async def _exit_code(self, reader: asyncio.Task[None], waiter: asyncio.Task[int],
                         began: float) -> int:
        """The exit code by the race in ``lifecycle.exit_code``."""
        assert self.cid is not None
        # A kept container (auto_remove false) is the caller's to inspect next: reply
        # only once libpod has recorded the exit, so it reads "exited", not "stopped".
        exit_dir = self.ctx.config.podman_exit_dir if self.params.auto_remove else ""
        return await lifecycle.exit_code(reader, waiter, cid=self.cid, exit_dir=exit_dir,
                                         limit=self.params.timeout, began=began,
                                         overran=lambda: self._overran(reader, began))

    async def _overran(self, reader: asyncio.Task[None], began: float) -> NoReturn:
        """Kill; let the reader drain briefly; raise Timeout with what was captured.

        The removal follows the reply, like a finished run's, so the reply is not
        held up by it: within ``timeout`` + 2 x ``TIMEOUT_GRACE``.
        """
        assert self.cid is not None
        limit = self.params.timeout
        with contextlib.suppress(RpcError, TimeoutError):  # gone meanwhile: report what we have
            async with asyncio.timeout(TIMEOUT_GRACE):
                await lifecycle.kill(self.http, self.cid)
        await asyncio.wait({reader}, timeout=TIMEOUT_GRACE)
        self.capture.flush()
        self.timing["run_ms"] = _ms(began)
        self.cleaned = True
        self._remove_after_reply(force=True)
        raise Timeout(f"Container '{self.name}' exceeded timeout of "
                      f"{format_seconds(limit)} and was killed",
                      {"container_id": self.cid, "name": self.name, **self.capture.snapshot()})

    def _result(self, status: str, exit_code: int | None) -> dict[str, Any]:
        return {"container_id": self.cid, "name": self.name, "status": status,
                "exit_code": exit_code, "image": [self.params.image],
                "auto_remove": self.params.auto_remove,
                "duration_ms": _ms(self.started), "timing": self.timing,
                **self.capture.snapshot()}

    def _remove_after_reply(self, force: bool = False) -> None:
        """Remove an auto-remove (or overrun) container after the reply; forget a kept one."""
        cid, state = self.cid, self.ctx.state
        assert cid is not None
        if not (self.params.auto_remove or force):
            state.active_containers.discard(cid)
            return
        state.pending_removal[cid] = state.spawn(self._remove_later(cid))

    async def _remove_later(self, cid: str) -> None:
        state = self.ctx.state
        try:
            await lifecycle.kill_and_remove(self.http, cid, running=False)
        except RpcError:
            pass  # Podman gone? the labels remain: the reaper removes it
        finally:
            state.active_containers.discard(cid)
            state.pending_removal.pop(cid, None)

    async def _cleanup(self) -> None:
        """Kill and (when auto_remove) remove; always forget the id. Once."""
        cid = self.cid
        assert cid is not None
        if self.cleaned:
            self.ctx.state.active_containers.discard(cid)
            return
        self.cleaned = True
        try:
            if self.params.auto_remove:
                await lifecycle.kill_and_remove(self.http, cid, running=True)
            else:
                with contextlib.suppress(RpcError):
                    await lifecycle.kill(self.http, cid)
        finally:
            self.ctx.state.active_containers.discard(cid)

    async def _cleanup_after_create(self, creating: asyncio.Future[str]) -> None:
        """Cancelled while creating: if the create went through anyway, undo it."""
        try:
            self.cid = await creating
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - nothing was created
            return
        self.ctx.state.active_containers.add(self.cid)
        await self._cleanup()

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
        deadline = time.time() + self.params.timeout
        try:
            while True:
                left = deadline - time.time()
                if left <= 0:
                    await lifecycle.kill_and_remove(self.http, cid)
                    return
                await asyncio.sleep(min(DETACH_POLL, left))
                if self.ctx.state.draining:
                    return  # not to hold up shutdown: conmon's timeout and the reaper take over
                state = await lifecycle.state_or_none(self.http, cid)
                if state is None:
                    return
                if state in ("exited", "stopped"):
                    if self.params.auto_remove:
                        await lifecycle.kill_and_remove(self.http, cid, running=False)
                    return
        except RpcError:
            return  # Podman unreachable: conmon's own timeout and the reaper remain
        finally:
            self.ctx.state.active_containers.discard(cid)


@implements(m.Run)
async def run(ctx: CallContext, params: m.Run) -> dict[str, Any]:
    return await run_maybe_warm(ctx, params, lambda: Runner(ctx, params).execute())
