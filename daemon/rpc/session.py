"""One connection's protocol state, with no I/O (after h11's ``_state.py``).

The transport (:mod:`podman_rpc.daemon.rpc.transport`) feeds it what happened
(bytes read, EOF, a blocked or drained write buffer, a request started or
ended) and asks it what to do: which request to start next (a ``Request``, a
batch, or a ``BadRequest`` to answer with its error), whether to read, and
whether to close. Every rule about a connection's flow lives here, once, and is
tested without sockets (``tests/test_session.py``):

- A line starts only while the connection is open or half-closed, fewer than
  ``max_in_flight`` requests run, and the client reads its replies.
- Lines are started in slices of at most ``slice_lines``: a client that pipelines
  thousands of requests in one read gets a slice, then waits its turn
  (``daemon.rpc.turns`` decides whose slice starts next).
- Reading stops while lines wait to start, so a flood waits in the client's
  socket buffer, not in the daemon's memory.
- A client that half-closes (``socat`` at end of input) gets every answer, then
  the close: :attr:`finished`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from podman_rpc.protocol.envelope import BadRequest, Frame, frame_parser
from podman_rpc.protocol.errors import InvalidRequest
from podman_rpc.protocol.framing import OVERSIZE, LineDecoder

T = TypeVar("T")  # what the transport tracks per request in flight (its task and context)

SLICE_LINES = 256
"""Lines started per slice: large enough that a pipelined burst still
costs few writes (``python -m bench --only throughput`` measures it), small enough
that one flooding connection holds the loop for about a millisecond at a time."""


LINE_UNIT_SHIFT = 8
"""A line counts as one more slice unit per 256 bytes, so a slice is bounded in bytes
too (about 64 KiB): one connection sending long lines cannot hold the loop longer."""


class Phase(enum.Enum):
    OPEN = "open"  # reading and answering
    HALF_CLOSED = "half-closed"  # the client sent EOF: answer what it sent, then close
    CLOSED = "closed"  # refused, closing, or gone: nothing more starts


def id_key(request_id: Any) -> tuple[str, Any]:
    """A request id as a dict key: ``1`` and ``"1"`` differ, ``1`` and ``1.0`` do not."""
    return (type(request_id).__name__ if not isinstance(request_id, float) else "int", request_id)


class Session(Generic[T]):
    """The state of one connection: framing, backlog, in-flight table, flow decisions."""

    __slots__ = ("decoder", "parse", "max_in_flight", "slice_lines", "phase", "backlog",
                 "in_flight", "running", "_write_blocked", "_held", "_slice_left", "_oversize")

    def __init__(self, max_line_bytes: int, max_in_flight: int, slice_lines: int = SLICE_LINES,
                 parse: Callable[[bytes], Frame] | None = None) -> None:
        self.decoder = LineDecoder(max_line_bytes)
        self.parse = parse or frame_parser()
        self._oversize = BadRequest(InvalidRequest(f"Line exceeds {max_line_bytes} bytes",
                                                   {"limit": max_line_bytes}))
        self.max_in_flight = max_in_flight
        self.slice_lines = slice_lines
        self.phase = Phase.OPEN
        self.backlog: deque[Any] = deque()  # lines read, not yet started
        self.in_flight: dict[tuple[str, Any], list[T]] = {}  # by request id, for cancels
        self.running = 0  # tasks in flight (a batch is one)
        self._write_blocked = False
        self._held = False  # at the in-flight limit or write-blocked: start nothing now
        self._slice_left = slice_lines

    # --- what happened ---------------------------------------------------------------
    def receive(self, data: bytes) -> int:
        """Bytes read: queue the lines they finish; how many there were."""
        if self.phase is Phase.CLOSED:
            return 0  # a refused or closing peer: discarded unread
        lines = self.decoder.feed(data)
        self.backlog.extend(lines)
        return len(lines)

    def receive_eof(self) -> bool:
        """The client half-closed; True while answers are still owed (keep the socket)."""
        if self.phase is Phase.OPEN:
            self.phase = Phase.HALF_CLOSED
        return not self.finished

    def close(self) -> None:
        """Refused, closing or gone: start nothing more."""
        self.phase = Phase.CLOSED
        self.backlog.clear()
        self.decoder.clear()

    @property
    def write_blocked(self) -> bool:
        """The client is not reading its replies fast enough (the transport's buffer is full)."""
        return self._write_blocked

    @write_blocked.setter
    def write_blocked(self, blocked: bool) -> None:
        self._write_blocked = blocked
        self._hold()

    def _hold(self) -> None:
        """The two limits, folded into one flag for the per-line check."""
        self._held = self.running >= self.max_in_flight or self._write_blocked

    def started(self) -> None:
        """A task began (a request's, or a whole batch's)."""
        self.running += 1
        self._hold()

    def ended(self) -> None:
        self.running -= 1
        self._hold()

    def track(self, key: tuple[str, Any], entry: T) -> None:
        """A request in flight, made cancellable by its id."""
        self.in_flight.setdefault(key, []).append(entry)

    def untrack(self, key: tuple[str, Any], entry: T) -> None:
        entries = self.in_flight.get(key)
        if entries and entry in entries:
            entries.remove(entry)
            if not entries:
                del self.in_flight[key]

    # --- what to do ------------------------------------------------------------------
    def new_slice(self) -> None:
        """A new turn of the event loop: a full slice of lines may start."""
        self._slice_left = self.slice_lines

    def next_line(self) -> Any:
        """The next line to start, or None: nothing queued, a limit reached, slice spent."""
        if (not self.backlog or self._slice_left <= 0 or self.phase is Phase.CLOSED
                or self.running >= self.max_in_flight or self.write_blocked):
            return None
        self._slice_left -= 1
        return self.backlog.popleft()

    def next_frame(self) -> Frame | None:
        """The next request, batch or BadRequest to act on, or None (see :meth:`next_line`).

        A blank line is skipped unanswered; a line over the limit is a BadRequest.
        The per-line loop of the daemon, so its checks are few: a closed session has
        no backlog (``close`` empties it, ``receive`` adds nothing), and the two
        limits are one flag.
        """
        backlog, parse = self.backlog, self.parse
        while backlog and self._slice_left > 0 and not self._held:
            line = backlog.popleft()
            if line is OVERSIZE:
                self._slice_left -= 1
                return self._oversize
            self._slice_left -= 1 + (len(line) >> LINE_UNIT_SHIFT)  # long lines cost more
            frame = parse(line)
            if type(frame) is not BadRequest or line.strip():
                return frame
        return None

    @property
    def slice_spent(self) -> bool:
        """Lines wait only because this turn's slice is used up: continue on the next turn."""
        return (bool(self.backlog) and self._slice_left <= 0 and self.phase is not Phase.CLOSED
                and self.running < self.max_in_flight and not self.write_blocked)

    @property
    def wants_read(self) -> bool:
        """Read more only when everything read so far has started and limits allow."""
        return (self.phase is Phase.OPEN and not self.backlog and not self.write_blocked
                and self.running < self.max_in_flight)

    @property
    def partial_on_clock(self) -> bool:
        """The client owes the rest of a line: timed, unless we are the ones not reading."""
        return self.decoder.has_partial and self.wants_read

    @property
    def finished(self) -> bool:
        """Half-closed with nothing queued or running: close now."""
        return self.phase is Phase.HALF_CLOSED and self.running == 0 and not self.backlog

    def entries(self) -> list[T]:
        """Every tracked request in flight (for a shutdown or a disconnect)."""
        return [entry for entries in self.in_flight.values() for entry in entries]

    def entries_for(self, request_id: Any) -> list[T]:
        return list(self.in_flight.get(id_key(request_id), ()))
