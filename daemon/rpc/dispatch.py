"""Dispatch: every request takes one path, :meth:`Dispatcher.begin`, then maybe a task.

``begin`` looks the method up once in :attr:`Dispatcher.entries`, each entry
built once from the method's declaration, and answers in one of three ways:

- the encoded reply line, for anything that needs no I/O: a daemon-local method
  (``status``, ``rpc.discover``), a cancel, or a request refused before it ran
  (unknown method, bad params, wrong role, draining);
- ``None``, for a notification that needs no answer;
- a :class:`Prepared` call, validated and authorised, that the caller runs as a task
  (or inside its batch's task) through :meth:`Dispatcher.run`.

Every request ends in exactly one of: a result, an RpcError, or (only when the
client is gone) no reply at all; and in one log line, from :func:`log_request`.
Successes of daemon-local methods are logged at debug level: a health check
polled thousands of times a second must not flood the log (``status`` counts them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from podman_rpc.daemon.handlers import Handler, LocalHandler, is_local
from podman_rpc.daemon.rpc.context import CallContext, DaemonState
from podman_rpc.protocol.envelope import (
    CANCEL_METHOD,
    BadRequest,
    Request,
    error_reply,
    result_line,
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
from podman_rpc.protocol.registry import METHODS, MethodSpec

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.transport import Connection

log = structlog.get_logger("podman_rpc.request")

CANCEL_CLIENT = "cancelled by client"
CANCEL_DISCONNECT = "client disconnected"
CANCEL_SHUTDOWN = "daemon shutting down"


class Prepared(NamedTuple):
    """A request that passed every check and now needs a task: :meth:`Dispatcher.run`."""

    ctx: CallContext
    params: Any
    request: Request


Begun = bytes | Prepared | None
Entry = Callable[[Request, "Connection | None"], Begun]
"""One method's whole synchronous part: ``entry(request, connection)``."""


def cancel_error(reason: str | None) -> RpcError | None:
    """The error a cancelled request answers with; None when its client is gone."""
    if reason == CANCEL_CLIENT:
        return RequestCancelled()
    if reason == CANCEL_SHUTDOWN:
        return ShuttingDown("Request cancelled: daemon shutting down")
    return None


def cancel_calls(entries: list[tuple[asyncio.Task[Any], CallContext]],
                 reason: str) -> list[asyncio.Task[Any]]:
    """Cancel these calls; the first reason given sticks (a client's cancel stays one)."""
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
        self.entries: dict[str, Entry] = {
            name: (self._bind_local(METHODS[name], handler) if is_local(handler)
                   else self._bind_task(METHODS[name]))
            for name, handler in handlers.items() if name in METHODS}
        """Each method's entry by name; anything else is :meth:`unknown`."""
        self.entries[CANCEL_METHOD] = _cancel

    def begin(self, request: Request, connection: Connection | None) -> Begun:
        """The one request path: see the module docstring."""
        return self.entries.get(request.method, self.unknown)(request, connection)

    def _bind_local(self, spec: MethodSpec, handler: LocalHandler) -> Entry:
        """A daemon-local method's entry, with all it touches bound once, not per call.

        A health check may be polled thousands of times a second, and on this path each
        lookup is a measurable share of the cost (``python -m bench.profile_path``).
        The reply is encoded at once: a result may be a live view of daemon state
        (``status``'s is, to save copies), and this way no later change shows through.
        """
        state, name, validate, no_args = self.state, spec.name, spec.validate, spec.no_args()
        # A method every admitted peer may call needs no role check (daemon.guard.access).
        authorize = None if name in state.access.role_free else state.access.authorize
        served, failed, log_local = state.counters.served, state.counters.failed, self._log_local

        def entry(request: Request, connection: Connection | None) -> bytes | None:
            started = time.perf_counter() if log_local else 0.0
            raw = request.params
            try:
                if authorize is not None:
                    authorize(connection, spec)
                result = handler(state, validate(raw) if raw or no_args is None else no_args)
            except RpcError as error:
                return reject(request, error, connection)
            except Exception:
                log.exception("handler crashed", method=name, id=request.id)
                failed[name] += 1
                return reject(request, InternalError(), connection)
            served[name] += 1
            if log_local:
                log_request(connection, name, request.id, "ok", started=started, debug=True)
            # No on_activity(): a local call starts and ends inside its connection's
            # life, and the connection's close restarts the idle period.
            return None if request.notification else result_line(request.id, result)

        return entry

    def _bind_task(self, spec: MethodSpec) -> Entry:
        """A Podman-bound method's entry: checks now, the work in a task (:meth:`run`)."""
        state, validate = self.state, spec.validate
        lane_config = state.config.lane(spec.lane)
        lane = state.lanes[spec.lane.value]
        allowance = state.config.run_allowance

        def entry(request: Request, connection: Connection | None) -> Begun:
            try:
                if state.draining:
                    raise ShuttingDown()  # local methods still answer: status shows draining
                state.access.authorize(connection, spec)  # the role, before the params
                params = validate(request.params)
            except RpcError as error:
                return reject(request, error, connection)
            refused = lane.refusal(connection)  # its share is full: no task for it
            if refused is not None:  # (returned, not raised: a traceback makes a cycle)
                state.counters.failed[spec.name] += 1
                return reject(request, refused, connection)
            seconds = spec.deadline(params, allowance=allowance,
                                    maximum=lane_config.max_deadline)
            deadline = asyncio.get_running_loop().time() + seconds
            ctx = CallContext(state, spec, request.id, deadline, seconds, connection,
                              want_progress=bool(getattr(params, "progress", False)))
            return Prepared(ctx, params, request)

        return entry

    def unknown(self, request: Request, connection: Connection | None) -> bytes | None:
        """The entry of every name that is not a method (or of all, while draining)."""
        error: RpcError = ShuttingDown() if self.state.draining else MethodNotFound(
            f"Method not found: {request.method}", {"method": request.method[:200]})
        return reject(request, error, connection)

    async def run(self, prepared: Prepared) -> bytes | None:
        """Run a prepared call under its lane and deadline; its reply line (None: no reply)."""
        ctx, params, request = prepared
        started = time.perf_counter()
        spec = ctx.spec
        lane = self.state.lanes[spec.lane.value]
        refused = lane.refusal(ctx.connection)  # as at begin(), now that earlier ones queued
        if refused is not None:
            return self._error(ctx, request, started, refused)
        try:
            try:
                async with asyncio.timeout_at(ctx.deadline):
                    async with lane.slot(ctx.connection):
                        result = await self.handlers[spec.name](ctx, params)
            except TimeoutError:
                if ctx.cancel_reason is not None:
                    raise asyncio.CancelledError() from None
                raise Timeout(f"{spec.name} exceeded its deadline of {ctx.seconds:.3g}s",
                              {"partial": ctx.partial} if ctx.partial else None) from None
        except asyncio.CancelledError:
            error = cancel_error(ctx.cancel_reason)
            if error is None:
                self.state.counters.disconnected[spec.name] += 1
                self._finish(ctx, started, "disconnected")
                raise
            return self._error(ctx, request, started, error)
        except RpcError as error:
            return self._error(ctx, request, started, error)
        except Exception:
            log.exception("handler crashed", method=spec.name, id=request.id)
            return self._error(ctx, request, started, InternalError())
        self.state.counters.served[spec.name] += 1
        self._finish(ctx, started, "ok")
        return None if request.notification else result_line(request.id, result)

    def answer_unstarted(self, prepared: Prepared) -> bytes | None:
        """A task cancelled before its first step never reached :meth:`run`: its reply.

        (A cancel in the same read as its target does this; ``run`` answers every
        later client or shutdown cancel itself.)
        """
        error = cancel_error(prepared.ctx.cancel_reason)
        return None if error is None else self._error(prepared.ctx, prepared.request,
                                                      time.perf_counter(), error)

    def _error(self, ctx: CallContext, request: Request, started: float,
               error: RpcError) -> bytes | None:
        self.state.counters.failed[ctx.spec.name] += 1
        self._finish(ctx, started, error.kind, code=error.code)
        return None if request.notification else encode(error_reply(request.id, error))

    def _finish(self, ctx: CallContext, started: float, outcome: str, **extra: Any) -> None:
        log_request(ctx.connection, ctx.spec.name, ctx.request_id, outcome, started=started,
                    **extra)
        self.state.on_activity()


def _cancel(request: Request, connection: Connection | None) -> bytes | None:
    """``$/cancelRequest``: the connection owns what is in flight."""
    return None if connection is None else connection.cancel(request)


def log_request(connection: Connection | None, method: str | None, request_id: Any,
                outcome: str, *, started: float | None = None, debug: bool = False,
                **extra: Any) -> None:
    """The one log line every request gets, with its peer's uid and pid, within the
    connection's log budget (``daemon.rpc.logbudget``): past it, counted, not written."""
    peer = None
    if connection is not None:
        budget = connection.log_budget
        if not budget.take():
            return
        if budget.suppressed:
            extra["suppressed"] = budget.release_suppressed()
        peer = connection.peer
    if started is not None:
        extra["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    (log.debug if debug else log.info)(
        "request", method=method, id=request_id, outcome=outcome,
        uid=peer.uid if peer else None, pid=peer.pid if peer else None, **extra)


def reject(request: Request, error: RpcError, connection: Connection | None) -> bytes | None:
    """The reply line for a request refused before it ran (unknown method, bad params...)."""
    log_request(connection, request.method[:100], request.id, error.kind, code=error.code)
    return None if request.notification else encode(error_reply(request.id, error))


def refuse(item: BadRequest, connection: Connection | None) -> bytes | None:
    """The reply line for a line that never became a request (not JSON, over a limit...);
    None for a notification (``silent``)."""
    log_request(connection, None, item.id, item.error.kind, code=item.error.code,
                reason=item.error.message[:200])
    return None if item.silent else encode(error_reply(item.id, item.error))
