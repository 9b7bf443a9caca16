"""One client connection: framing, in-flight tracking, backpressure, cancellation.

Replies are written whole on the event loop, so writes to a connection never
interleave; each is written when its own work ends, so a slow ``run`` never holds
up a ``ping`` behind it. Replies made while one read is handled (daemon-local
methods, errors, cancels) are corked and leave in one write, up to
:data:`CORK_BYTES` at a time: a pipelined burst costs one syscall, not one per line.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import orjson
import structlog

from podman_rpc.daemon.rpc import lingering
from podman_rpc.daemon.rpc.dispatch import (
    CANCEL_CLIENT,
    CANCEL_DISCONNECT,
    CANCEL_SHUTDOWN,
    Dispatcher,
    cancel_calls,
    refuse,
    reject,
)
from podman_rpc.daemon.rpc.peer import HANGUP_CHECK_SECONDS, Peer, peer_credentials, peer_hung_up
from podman_rpc.daemon.rpc.unfinished import UnfinishedLine
from podman_rpc.protocol.envelope import (
    BadRequest,
    Request,
    error_reply,
    frame_parser,
    result_reply,
)
from podman_rpc.protocol.errors import (
    InvalidParams,
    InvalidRequest,
    RequestCancelled,
    RpcError,
    ShuttingDown,
)
from podman_rpc.protocol.framing import OVERSIZE, LineDecoder, embedded, encode

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.context import CallContext, DaemonState

log = structlog.get_logger("podman_rpc.connection")

CANCEL_METHOD = "$/cancelRequest"
CORK_BYTES = 64 << 10  # corked replies are flushed at this size, so flow control still sees them


def _id_key(request_id: Any) -> tuple[str, Any]:
    return (type(request_id).__name__ if not isinstance(request_id, float) else "int", request_id)


class Connection(asyncio.Protocol):
    """The asyncio protocol for one accepted unix-socket connection."""


    def __init__(self, state: DaemonState, dispatcher: Dispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher
        self.config = state.config
        self.decoder = LineDecoder(state.config.max_line_bytes)
        self._parse = frame_parser(max_depth=state.config.max_json_depth,
                                   max_batch=state.config.max_batch,
                                   max_params_bytes=state.config.max_params_bytes)
        self._local = dispatcher.local
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.in_flight: dict[tuple[str, Any], list[tuple[asyncio.Task[Any], CallContext]]] = {}
        self.in_flight_count = 0
        self._reading_paused = False
        self._writing_paused = False
        self.unfinished = UnfinishedLine(state.config.partial_line_timeout,
                                         state.partial_budget, self.drop_partial)
        self._write_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self._eof = False
        self._hangup_timer: asyncio.TimerHandle | None = None
        # Lines read but not yet started: one read can hold thousands of requests, and
        # they start only while in-flight and write buffer are under their limits.
        self._backlog: deque[Any] = deque()
        self._lingers = False
        self._cork: bytearray | None = None  # replies held while a read is handled

    # --- lifecycle ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # a unix stream server's transports are
        self.transport = stream
        self.peer = peer_credentials(stream.get_extra_info("socket"))
        refusal = self.state.admit(self)
        if refusal is not None:
            self.send(error_reply(None, refusal))
            self.closed = True
            self._refuse(stream)
            return
        self.state.connection_opened(self)
        stream.set_write_buffer_limits(high=self.config.write_buffer_high)
        self.state.on_activity()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._hangup_timer = lingering.start(transport)
        self._lingers = self._hangup_timer is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingers:
            lingering.end()
            self._lingers = False
        self.closed = True
        self.state.connection_closed(self)
        for timer in (self._write_timer, self._hangup_timer):
            if timer is not None:
                timer.cancel()
        self.unfinished.release()
        self.shutdown(CANCEL_DISCONNECT)
        self.state.on_activity()

    def shutdown(self, reason: str) -> list[asyncio.Task[Any]]:
        """Cancel every request in flight for ``reason`` (disconnect, shutdown); their tasks."""
        return cancel_calls([e for entries in self.in_flight.values() for e in entries],
                               reason)

    def eof_received(self) -> bool:
        """The client half-closed (``socat`` at end of input): answer what is in flight, then close."""
        self._eof = True
        if self.in_flight_count == 0 and not self._backlog:
            return False  # nothing pending: let the transport close
        if self._hung_up():
            return False  # gone, not half-closed: closing cancels what it had in flight
        self._watch_hangup()
        return True

    def _hung_up(self) -> bool:
        """A client that closed both halves is a disconnect; EOF alone cannot tell."""
        return self.transport is not None and peer_hung_up(
            self.transport.get_extra_info("socket"))

    def _watch_hangup(self) -> None:
        """While answering a half-closed client, notice if it goes away entirely."""
        self._hangup_timer = None
        if self.closed or self.transport is None:
            return
        if self._hung_up():
            self.transport.abort()  # connection_lost cancels everything in flight
            return
        self._hangup_timer = asyncio.get_running_loop().call_later(
            HANGUP_CHECK_SECONDS, self._watch_hangup)

    # --- reading ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # a refused peer: what it sends is discarded unread
        lines = self.decoder.feed(data)
        self._backlog.extend(lines)
        self._start_backlog()
        self.unfinished.after_read(bool(lines), self.decoder.buffered, self._watch_partial())

    def _start_backlog(self) -> None:
        """Start queued lines while the in-flight count and write buffer allow it.

        Every request passes through this loop, so the commonest work is done in it:
        a daemon-local call is answered here, a Podman-bound one gets its task.
        """
        cork = self._cork  # the same object until _uncork, even if a send flushes it
        corking = cork is None
        if cork is None:
            cork = self._cork = bytearray()
        backlog, parse, local_calls, send = self._backlog, self._parse, self._local, self.send
        limit = self.config.max_in_flight_per_connection
        try:
            while backlog and not self.closed:
                if self.in_flight_count >= limit or self._writing_paused:
                    self._pause_reading()
                    break
                line = backlog.popleft()
                if line is OVERSIZE:
                    send(error_reply(None, InvalidRequest(
                        f"Line exceeds {self.config.max_line_bytes} bytes",
                        {"limit": self.config.max_line_bytes})))
                    continue
                item = parse(line)
                if type(item) is Request:
                    call = local_calls.get(item.method)
                    if call is not None:
                        reply = call(item, self)  # already encoded: corked as send() would
                        if reply is not None:
                            cork += reply
                            if len(cork) >= CORK_BYTES:
                                self._flush_cork()
                    else:
                        self._start_request(item)
                elif type(item) is list:
                    self._start(self._run_batch(item), None)
                elif line.strip():  # a BadRequest; a blank line is skipped, unanswered
                    refused = refuse(cast(BadRequest, item), self)
                    if refused is not None:  # None: a notification that broke a limit
                        send(refused)
        finally:
            if corking:
                self._uncork()
        if self._eof and self.in_flight_count == 0 and not self._backlog:
            self.close()  # half-closed, and the last queued lines needed no task

    def _watch_partial(self) -> bool:
        """Whether the client's unfinished line is on the clock: not while we stopped reading."""
        return self.decoder.has_partial and not self.closed and not self._reading_paused

    def drop_partial(self, reason: str, message: str) -> None:
        """Close a connection over its unfinished line, with an error line first."""
        log.info("closing stalled connection", reason=reason,
                 uid=self.peer.uid if self.peer else None, buffered=self.unfinished.bytes)
        self.send(error_reply(None, InvalidRequest(message)))
        self.close()

    def _start_request(self, request: Request) -> None:
        """A request that is not daemon-local: a cancel, or a Podman-bound call's task."""
        if request.method == CANCEL_METHOD:
            self._cancel(request)
            return
        prepared = self._prepare(request)
        if prepared is not None:
            ctx, params = prepared
            self._start(self._run_one(ctx, params, request), (request, ctx))

    def _prepare(self, request: Request) -> tuple[CallContext, Any] | None:
        try:
            return self.dispatcher.prepare(request, self)
        except RpcError as error:
            reply = reject(request, error, self)
            if reply is not None:
                self.send(reply)
            return None

    def _start(self, coro: Any, tracked: tuple[Request, CallContext] | None) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.in_flight_count += 1
        if tracked is not None:
            request, ctx = tracked
            key = _id_key(request.id)
            self.in_flight.setdefault(key, []).append((task, ctx))
            task.add_done_callback(functools.partial(self._untrack, key))
            task.add_done_callback(functools.partial(self._answer_unstarted, request=request,
                                                     ctx=ctx))
        task.add_done_callback(self._done)
        if self.in_flight_count >= self.config.max_in_flight_per_connection:
            self._pause_reading()

    def _untrack(self, key: tuple[str, Any], task: asyncio.Task[Any]) -> None:
        entries = self.in_flight.get(key)
        if entries:
            entries[:] = [e for e in entries if e[0] is not task]
            if not entries:
                del self.in_flight[key]

    def _answer_unstarted(self, task: asyncio.Task[Any], request: Request,
                          ctx: CallContext) -> None:
        """A task cancelled before its first step never reached Dispatcher.run: answer here.

        (A cancel in the same read as its target does this; Dispatcher.run turns every
        later client or shutdown cancel into a reply itself, so the task is not cancelled.)
        """
        if task.cancelled() and ctx.cancel_reason in (CANCEL_CLIENT, CANCEL_SHUTDOWN):
            error = RequestCancelled() if ctx.cancel_reason == CANCEL_CLIENT else ShuttingDown(
                "Request cancelled: daemon shutting down")
            reply = reject(request, error, self)
            if reply is not None:
                self.send(reply)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.in_flight_count -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", error=repr(task.exception()))
        if self._eof and self.in_flight_count == 0 and not self._backlog:
            self.close()
        elif self.in_flight_count < self.config.max_in_flight_per_connection:
            self._resume_reading()

    async def _run_one(self, ctx: CallContext, params: Any, request: Request) -> None:
        reply = await self.dispatcher.run(ctx, params, request)
        if reply is not None:
            self.send(reply)

    async def _run_batch(self, items: list[Request | BadRequest]) -> None:
        async def one(item: Request | BadRequest) -> dict[str, Any] | orjson.Fragment | None:
            if isinstance(item, BadRequest):
                return refuse(item, self)
            if item.method == CANCEL_METHOD:
                return self._cancel(item, send=False)
            call = self._local.get(item.method)
            if call is not None:
                line = call(item, self)
                return None if line is None else embedded(line)
            prepared = self._prepare_quiet(item)
            if isinstance(prepared, dict) or prepared is None:
                return prepared
            ctx, params = prepared
            key = _id_key(item.id)
            task = asyncio.current_task()
            assert task is not None
            self.in_flight.setdefault(key, []).append((task, ctx))
            try:
                return await self.dispatcher.run(ctx, params, item)
            finally:
                self._untrack(key, task)

        replies = await asyncio.gather(*(asyncio.ensure_future(one(i)) for i in items))
        answered = [r for r in replies if r is not None]
        if answered:
            self.send(answered)

    def _prepare_quiet(self, request: Request) -> tuple[CallContext, Any] | dict[str, Any] | None:
        try:
            return self.dispatcher.prepare(request, self)
        except RpcError as error:
            return reject(request, error, self)

    def _cancel(self, request: Request, send: bool = True) -> dict[str, Any] | None:
        params = request.params  # {"id": N}, or [N] by position
        target = params.get("id", ...) if isinstance(params, dict) else (
            params[0] if len(params) == 1 else ...)
        if target is ... or isinstance(target, (bool, dict, list)):
            reply = None if request.notification else error_reply(
                request.id, InvalidParams("id", "expected the id of a request in flight"))
        else:
            found = cancel_calls(self.in_flight.get(_id_key(target), []), CANCEL_CLIENT)
            reply = None if request.notification else result_reply(
                request.id, {"cancelled": len(found)})
        if send and reply is not None:
            self.send(reply)
            return None
        return reply

    # --- writing and flow control ----------------------------------------------------
    def send(self, message: Any) -> None:
        """Write one reply or notification as a single line (corked while a read is handled)."""
        cork = self._cork
        if cork is not None:
            cork += encode(message)
            if len(cork) >= CORK_BYTES:
                self._flush_cork()  # may pause writing, which stops the backlog loop
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def _flush_cork(self) -> None:
        cork = self._cork
        if cork:
            data = bytes(cork)  # the transport may keep what it cannot send yet
            cork.clear()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    def _uncork(self) -> None:
        self._flush_cork()
        self._cork = None

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()
        self._write_timer = asyncio.get_running_loop().call_later(
            self.config.write_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._resume_reading()

    def _write_stalled(self) -> None:
        log.warning("aborting connection", reason="client stopped reading",
                    uid=self.peer.uid if self.peer else None)
        if self.transport is not None:
            self.transport.abort()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()
            self.unfinished.stop()  # we stopped reading: not the client's stall

    def _resume_reading(self) -> None:
        self._start_backlog()
        if (self._reading_paused and not self._backlog and not self._writing_paused
                and not self.closed
                and self.in_flight_count < self.config.max_in_flight_per_connection
                and self.transport is not None):
            self._reading_paused = False
            self.transport.resume_reading()
            self.unfinished.restart(self._watch_partial())  # its clock runs while we read

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
