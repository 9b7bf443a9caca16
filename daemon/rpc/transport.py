"""One client connection: the asyncio side of a :class:`~podman_rpc.daemon.rpc.session.Session`.

The session decides (what starts, whether to read, when to close); this class
does the I/O those decisions need: the socket, tasks, timers and the log.

Replies are written whole on the event loop, so writes to a connection never
interleave; each is written when its own work ends, so a slow ``run`` never holds
up a ``ping`` behind it. Replies made while one slice of lines is handled
(daemon-local methods, errors, cancels) are corked and leave in one write, up to
:data:`CORK_BYTES` at a time: a pipelined burst costs one syscall, not one per line.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, cast

import structlog

from podman_rpc.daemon.rpc import lingering
from podman_rpc.daemon.rpc.dispatch import (
    CANCEL_CLIENT,
    CANCEL_DISCONNECT,
    Dispatcher,
    Prepared,
    cancel_calls,
    refuse,
)
from podman_rpc.daemon.rpc.logbudget import LogBudget
from podman_rpc.daemon.rpc.peer import HANGUP_CHECK_SECONDS, Peer, peer_credentials, peer_hung_up
from podman_rpc.daemon.rpc.session import Phase, Session, id_key
from podman_rpc.daemon.rpc.unfinished import UnfinishedLine
from podman_rpc.protocol.envelope import (
    BadRequest,
    Request,
    error_reply,
    frame_parser,
    result_line,
)
from podman_rpc.protocol.errors import InvalidParams, InvalidRequest
from podman_rpc.protocol.framing import embedded, encode

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.context import CallContext, DaemonState

log = structlog.get_logger("podman_rpc.connection")

CORK_BYTES = 64 << 10  # corked replies are flushed at this size, so flow control still sees them

InFlight = tuple[asyncio.Task[Any], "CallContext"]


class Connection(asyncio.Protocol):
    """The asyncio protocol for one accepted unix-socket connection."""

    def __init__(self, state: DaemonState, dispatcher: Dispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher
        self.config = config = state.config
        self.session: Session[InFlight] = Session(
            config.max_line_bytes, config.max_in_flight_per_connection,
            parse=frame_parser(max_depth=config.max_json_depth, max_batch=config.max_batch,
                               max_params_bytes=config.max_params_bytes))
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.unfinished = UnfinishedLine(config.partial_line_timeout,
                                         state.partial_budget, self.drop_partial)
        self._reading = True  # what the transport was last told
        self._timers: dict[str, asyncio.TimerHandle] = {}  # write stall, hang-up watch, linger
        self._cork: bytearray | None = None  # replies held while a slice is handled
        self.turns = state.turns  # when this connection's next slice starts
        self.log_budget = LogBudget(shared=state.log_budget)  # request log lines it may cause

    @property
    def in_flight_count(self) -> int:
        return self.session.running

    @property
    def closed(self) -> bool:
        return self.session.phase is Phase.CLOSED

    @property
    def lines_waiting(self) -> int:
        return len(self.session.backlog)

    # --- lifecycle ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # a unix stream server's transports are
        self.transport = stream
        self.peer = peer_credentials(stream.get_extra_info("socket"))
        refusal = self.state.admit(self)
        if refusal is not None:
            self.send(error_reply(None, refusal))
            self.session.close()
            linger = lingering.start(stream)
            if linger is not None:
                self._timers["linger"] = linger
            return
        self.state.connection_opened(self)
        stream.set_write_buffer_limits(high=self.config.write_buffer_high)
        self.state.on_activity()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timers.pop("linger", None) is not None:
            lingering.end()
        self.session.close()
        self.state.connection_closed(self)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.unfinished.release()
        if self.log_budget.suppressed:
            log.info("request log lines suppressed", count=self.log_budget.release_suppressed(),
                     uid=self.peer.uid if self.peer else None,
                     pid=self.peer.pid if self.peer else None)
        self.shutdown(CANCEL_DISCONNECT)
        self.state.on_activity()

    def shutdown(self, reason: str) -> list[asyncio.Task[Any]]:
        """Cancel every request in flight for ``reason`` (disconnect, shutdown); their tasks."""
        return cancel_calls(self.session.entries(), reason)

    def eof_received(self) -> bool:
        """The client half-closed (``socat`` at end of input): answer what is owed, then close."""
        if not self.session.receive_eof():
            return False  # nothing owed: let the transport close
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
        self._timers.pop("hangup", None)
        if self.closed or self.transport is None:
            return
        if self._hung_up():
            self.transport.abort()  # connection_lost cancels everything in flight
            return
        self._timers["hangup"] = asyncio.get_running_loop().call_later(
            HANGUP_CHECK_SECONDS, self._watch_hangup)

    # --- reading ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        finished_lines = self.session.receive(data)
        if self.closed:
            return  # a refused peer: what it sends is discarded unread
        if self.session.backlog and not self.turns.ready(self):
            self._apply()  # it waits its turn: stop reading meanwhile
        self.unfinished.after_read(bool(finished_lines), self.session.decoder.buffered,
                                   self.session.partial_on_clock)

    def start_slice(self) -> bool:
        """Start one slice of queued lines, as the session allows, then apply its decisions;
        True if lines remain that only the slice held back (``daemon.rpc.turns`` asks).

        Every request passes through this loop, so it is kept tight: a daemon-local
        call's reply is corked here, a Podman-bound call gets its task.
        """
        session = self.session
        session.new_slice()
        cork = self._cork  # the same object until _uncork, even if a send flushes it
        corking = cork is None
        if cork is None:
            cork = self._cork = bytearray()
        next_frame = session.next_frame
        entry, unknown = self.dispatcher.entries.get, self.dispatcher.unknown  # begin(), inlined
        try:
            while (item := next_frame()) is not None:
                if type(item) is Request:
                    begun = (entry(item.method) or unknown)(item, self)
                    if type(begun) is bytes:
                        cork += begun
                        if len(cork) >= CORK_BYTES:
                            self._flush_cork()  # may block writing, which ends the slice
                    elif begun is not None:
                        self._start_task(cast(Prepared, begun))
                elif type(item) is list:
                    self._start_batch(item)
                else:
                    refused = refuse(cast(BadRequest, item), self)
                    if refused is not None:  # None: a notification that broke a limit
                        cork += refused
        finally:
            if corking:
                self._uncork()
        self._apply()
        return session.slice_spent

    def _apply(self) -> None:
        """Do what the session now wants: close, read or not."""
        session = self.session
        if session.finished:
            self.close()
            return
        wants = session.wants_read
        if (wants != self._reading and session.phase is Phase.OPEN
                and self.transport is not None):
            self._reading = wants
            if wants:
                self.transport.resume_reading()
                self.unfinished.restart(session.partial_on_clock)  # its clock runs again
            else:
                self.transport.pause_reading()
                self.unfinished.stop()  # we stopped reading: not the client's stall

    def drop_partial(self, reason: str, message: str) -> None:
        """Close a connection over its unfinished line, with an error line first."""
        log.info("closing stalled connection", reason=reason,
                 uid=self.peer.uid if self.peer else None, buffered=self.unfinished.bytes)
        self.send(error_reply(None, InvalidRequest(message)))
        self.close()

    # --- tasks --------------------------------------------------------------------
    def _start_task(self, prepared: Prepared) -> None:
        task = asyncio.get_running_loop().create_task(self._run_one(prepared))
        key, entry = id_key(prepared.request.id), (task, prepared.ctx)
        self.session.started()
        self.session.track(key, entry)
        task.add_done_callback(functools.partial(self._task_done, key, entry, prepared))

    def _start_batch(self, items: list[Request | BadRequest]) -> None:
        """Each item takes the one request path now; only Podman-bound ones get tasks, and
        the replies leave together, in one line, once the last is answered."""
        begin = self.dispatcher.begin
        answers: list[bytes | None] = []
        calls: list[tuple[int, Prepared]] = []
        for item in items:
            begun = refuse(item, self) if type(item) is BadRequest else begin(
                cast(Request, item), self)
            if type(begun) is Prepared:
                calls.append((len(answers), begun))
                begun = None
            answers.append(cast("bytes | None", begun))
        if not calls:
            self._send_batch(answers)
            return
        task = asyncio.get_running_loop().create_task(self._run_batch(answers, calls))
        self.session.started()  # its requests are tracked one by one, inside it
        task.add_done_callback(functools.partial(self._task_done, None, None, None))

    async def _run_one(self, prepared: Prepared) -> None:
        reply = await self.dispatcher.run(prepared)
        if reply is not None:
            self.send_line(reply)

    async def _run_batch(self, answers: list[bytes | None],
                         calls: list[tuple[int, Prepared]]) -> None:
        session = self.session

        async def one(prepared: Prepared) -> bytes | None:
            task = asyncio.current_task()
            assert task is not None
            key, entry = id_key(prepared.request.id), (task, prepared.ctx)
            session.track(key, entry)
            try:
                return await self.dispatcher.run(prepared)
            finally:
                session.untrack(key, entry)

        lines = await asyncio.gather(*(asyncio.ensure_future(one(p)) for _, p in calls))
        for (index, _), line in zip(calls, lines, strict=True):
            answers[index] = line
        self._send_batch(answers)

    def _send_batch(self, answers: list[bytes | None]) -> None:
        answered = [embedded(line) for line in answers if line is not None]
        if answered:
            self.send(answered)

    def _task_done(self, key: tuple[str, Any] | None, entry: InFlight | None,
                   prepared: Prepared | None, task: asyncio.Task[Any]) -> None:
        session = self.session
        if key is not None and entry is not None:
            session.untrack(key, entry)
        session.ended()
        if task.cancelled():
            if prepared is not None:  # cancelled before its first step: run() never answered
                reply = self.dispatcher.answer_unstarted(prepared)
                if reply is not None:
                    self.send_line(reply)
        elif task.exception() is not None:
            log.error("connection task failed", error=repr(task.exception()))
        if not self.closed:
            self._resume()

    def _resume(self) -> None:
        """Room was made (a task ended, the client read): start what waits, then apply."""
        if not (self.session.backlog and self.turns.ready(self)):
            self._apply()

    def cancel(self, request: Request) -> bytes | None:
        """``$/cancelRequest``: cancel this connection's requests with the given id."""
        params = request.params  # {"id": N}, or [N] by position
        target = params.get("id", ...) if isinstance(params, dict) else (
            params[0] if len(params) == 1 else ...)
        if target is ... or isinstance(target, (bool, dict, list)):
            return None if request.notification else encode(error_reply(
                request.id, InvalidParams("id", "expected the id of a request in flight")))
        found = cancel_calls(self.session.entries_for(target), CANCEL_CLIENT)
        return None if request.notification else result_line(request.id,
                                                             {"cancelled": len(found)})

    # --- writing and flow control ----------------------------------------------------
    def send(self, message: Any) -> None:
        """Write one reply or notification as a single line (corked while a slice is handled)."""
        self.send_line(encode(message))

    def send_line(self, line: bytes) -> None:
        cork = self._cork
        if cork is not None:
            cork += line
            if len(cork) >= CORK_BYTES:
                self._flush_cork()  # may block writing, which ends the slice
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(line)

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
        self.session.write_blocked = True
        self._apply()
        self._timers["write"] = asyncio.get_running_loop().call_later(
            self.config.write_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self.session.write_blocked = False
        timer = self._timers.pop("write", None)
        if timer is not None:
            timer.cancel()
        if self._cork is None:  # not from inside a slice's own flush
            self._resume()

    def _write_stalled(self) -> None:
        log.warning("aborting connection", reason="client stopped reading",
                    uid=self.peer.uid if self.peer else None)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.session.close()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
