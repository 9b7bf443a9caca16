"""Dispatch one validated request: lane, deadline, handler, error mapping, the log line.

Every request ends here in exactly one of: a result, an RpcError, or (only when
the client is gone) no reply at all.

Daemon-local methods (``status``, ``rpc.discover``) are answered by their
:attr:`Dispatcher.local` call instead: they do no I/O, so they need no task,
deadline or lane, and their successes are logged at debug level (a health check
polled thousands of times a second must not flood the log; ``status`` counts
them). Their failures, and every Podman-bound request, are logged at info.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from podman_rpc.daemon.handlers import Handler, LocalHandler, is_local
from podman_rpc.daemon.rpc.context import CallContext, DaemonState
from podman_rpc.protocol.envelope import (
    BadRequest,
    Request,
    error_reply,
    result_line,
    result_reply,
)
from podman_rpc.protocol.errors import (
    InternalError,
    MethodNotFound,
    RequestCancelled,
    RpcError,
    ShuttingDown,
    Timeout,
)
from podman_rpc.protocol.framing import encode
from podman_rpc.protocol.registry import METHODS, Lane, MethodSpec

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.transport import Connection

log = structlog.get_logger("podman_rpc.request")

LocalCall = Callable[[Request, "Connection | None"], "bytes | None"]
"""A daemon-local method's whole call: its encoded reply line (None for a notification)."""

CANCEL_CLIENT = "cancelled by client"
CANCEL_DISCONNECT = "client disconnected"
CANCEL_SHUTDOWN = "daemon shutting down"


def cancel_calls(entries: list[tuple[asyncio.Task[Any], CallContext]],
                 reason: str) -> list[asyncio.Task[Any]]:
    """Cancel these calls; the first reason given sticks (a client's cancel stays one).

    The reason decides the reply (``Dispatcher.run``): RequestCancelled, ShuttingDown,
    or none for a client that went away.
    """
    for task, ctx in entries:
        if ctx.cancel_reason is None:
            ctx.cancel_reason = reason
        task.cancel()
    return [task for task, _ in entries]


class Dispatcher:
    """Turns a Request into its reply, under the method's lane and deadline."""

    def __init__(self, state: DaemonState, handlers: dict[str, Handler]) -> None:
        self.state = state
        self.handlers = handlers
        self._log_local = state.config.log_level.lower() == "debug"
        self.local: dict[str, LocalCall] = {
            name: self._bind_local(METHODS[name], handler) for name, handler in handlers.items()
            if is_local(handler)}
        """Each daemon-local method's whole call, by name: ``call(request, connection)``."""

    def _bind_local(self, spec: MethodSpec, handler: LocalHandler) -> LocalCall:
        """One daemon-local method's call, with all it touches bound once instead of per call.

        A health check may be polled thousands of times a second, and on this path each
        lookup is a measurable share of the cost (``python -m bench.profile_path``).
        The call answers with its reply already encoded: a result may be a live view
        of daemon state (``status``'s is, to save copies), and this way no later
        change can show through it.
        """
        state, name, validate, no_args = self.state, spec.name, spec.validate, spec.no_args()
        # A method every admitted peer may call needs no role check (daemon.guard.access).
        authorize = None if name in state.access.role_free else state.access.authorize
        served, failed, log_local = state.counters.served, state.counters.failed, self._log_local

        def call(request: Request, connection: Connection | None) -> bytes | None:
            started = time.perf_counter() if log_local else 0.0
            raw = request.params
            try:
                if authorize is not None:
                    authorize(connection, spec)
                result = handler(state, validate(raw) if raw or no_args is None else no_args)
            except RpcError as error:
                reply = reject(request, error, connection)
            except Exception:
                log.exception("handler crashed", method=name, id=request.id)
                failed[name] += 1
                reply = reject(request, InternalError(), connection)
            else:
                served[name] += 1
                if log_local:
                    log.debug("request", method=name, id=request.id, outcome="ok",
                              duration_ms=round((time.perf_counter() - started) * 1000, 3),
                              **_who(connection))
                # No on_activity(): a local call starts and ends inside its connection's
                # life, and the connection's close restarts the idle period.
                if request.notification:
                    return None
                return result_line(request.id, result)
            return None if reply is None else encode(reply)

        return call

    def prepare(self, request: Request,
                connection: Connection | None) -> tuple[CallContext, Any]:
        """Validate and build the context; raises RpcError for a request that cannot run."""
        spec = METHODS.get(request.method)
        if self.state.draining and (spec is None or spec.lane is not Lane.LOCAL):
            raise ShuttingDown()  # daemon-local methods still answer, so status shows draining
        if spec is None or spec.name not in self.handlers:
            raise MethodNotFound(f"Method not found: {request.method}",
                                 {"method": request.method[:200]})
        self.state.access.authorize(connection, spec)  # role check (daemon.guard.access), before params
        params = spec.validate(request.params)
        lane_config = self.state.config.lane(spec.lane)
        seconds = spec.deadline(params, allowance=self.state.config.run_allowance,
                                maximum=lane_config.max_deadline)
        loop = asyncio.get_running_loop()
        ctx = CallContext(self.state, spec, request.id, loop.time() + seconds, seconds,
                          connection, want_progress=bool(getattr(params, "progress", False)))
        return ctx, params

    async def run(self, ctx: CallContext, params: Any,
                  request: Request) -> dict[str, Any] | None:
        """Run a prepared call and build its reply (None for notifications)."""
        started = time.perf_counter()
        spec = ctx.spec
        try:
            try:
                async with asyncio.timeout_at(ctx.deadline):
                    async with self.state.lanes[spec.lane.value].slot(ctx.connection):
                        result = await self.handlers[spec.name](ctx, params)
            except TimeoutError:
                if ctx.cancel_reason is not None:
                    raise asyncio.CancelledError() from None
                raise Timeout(f"{spec.name} exceeded its deadline of "
                              f"{ctx.seconds:.3g}s",
                              {"partial": ctx.partial} if ctx.partial else None) from None
        except asyncio.CancelledError:
            if ctx.cancel_reason == CANCEL_CLIENT:
                error: RpcError = RequestCancelled()
            elif ctx.cancel_reason == CANCEL_SHUTDOWN:
                error = ShuttingDown("Request cancelled: daemon shutting down")
            else:
                self.state.counters.disconnected[spec.name] += 1
                self._finish(ctx, request, started, "disconnected")
                raise
            return self._error(ctx, request, started, error)
        except RpcError as error:
            return self._error(ctx, request, started, error)
        except Exception:
            log.exception("handler crashed", method=spec.name, id=request.id)
            return self._error(ctx, request, started, InternalError())
        self.state.counters.served[spec.name] += 1
        self._finish(ctx, request, started, "ok")
        return None if request.notification else result_reply(request.id, result)

    def _error(self, ctx: CallContext, request: Request, started: float,
               error: RpcError) -> dict[str, Any] | None:
        self.state.counters.failed[ctx.spec.name] += 1
        self._finish(ctx, request, started, error.kind, code=error.code)
        return None if request.notification else error_reply(request.id, error)

    def _finish(self, ctx: CallContext, request: Request, started: float, outcome: str,
                **extra: Any) -> None:
        log.info("request", method=ctx.spec.name, id=request.id, outcome=outcome,
                 duration_ms=round((time.perf_counter() - started) * 1000, 3),
                 **_who(ctx.connection), **extra)
        self.state.on_activity()


def _who(connection: Connection | None) -> dict[str, int | None]:
    """The peer's uid and pid for a request log line (None for an in-process call)."""
    peer = connection.peer if connection is not None else None
    return {"uid": peer.uid if peer else None, "pid": peer.pid if peer else None}


def reject(request: Request, error: RpcError, connection: Connection | None) -> dict[str, Any] | None:
    """The reply for a request refused before it ran (unknown method, bad params...)."""
    log.info("request", method=request.method[:100], id=request.id, outcome=error.kind,
             code=error.code, **_who(connection))
    return None if request.notification else error_reply(request.id, error)


def refuse(item: BadRequest, connection: Connection | None) -> dict[str, Any] | None:
    """The reply for a line that never became a request (not JSON, not a Request object,
    over a limit), logged like any failed request; None for a notification (``silent``)."""
    log.info("request", method=None, id=item.id, outcome=item.error.kind, code=item.error.code,
             reason=item.error.message[:200], **_who(connection))
    return None if item.silent else error_reply(item.id, item.error)


__all__ = ["Dispatcher", "LocalCall", "cancel_calls", "reject", "refuse", "CANCEL_CLIENT",
           "CANCEL_DISCONNECT", "CANCEL_SHUTDOWN"]
