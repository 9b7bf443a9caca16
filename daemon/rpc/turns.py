"""Which connection's lines start next, and how long the event loop spends on them at a time.

Each connection starts its lines a slice at a time (``daemon.rpc.session``). Bounded
slices alone did not bound a turn of the loop: under a 32-connection fuzz storm every
connection had a slice each turn, and a steady client's ``status`` waited behind all
of them (issue 18: p99 48-159 ms against a target of 20 ms). This scheduler, shared
by all connections and free of I/O (it is given ``call_soon`` and a clock), adds:

- **A time budget per turn** (:data:`TURN_SECONDS`). Slices run while it lasts; the
  connections left over wait for the next turn, after the loop has read its sockets
  and run the replies and timers that were due.
- **Sparse connections first** (after fq_codel's new-flow list). A connection that
  brings a few lines (a health check, an operator at ``socat``, the Dart backend's
  next call) and was not already waiting is served at the start of the next turn.
- **Round-robin for the rest**: a connection with more lines than one slice takes
  its slice, then goes to the back.

When the loop is idle a read starts its slice at once, in the same callback, so a
lone client pays nothing for any of this.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

TURN_SECONDS = 0.002
"""Slices started per turn stop once this much time has passed (one slice may overrun
it; a slice is bounded by ``daemon.rpc.session.SLICE_LINES``)."""

SPARSE_LINES = 4
"""A connection waiting with at most this many lines is sparse: served first."""


class Sliced(Protocol):
    """What the scheduler needs of a connection (``daemon.rpc.transport.Connection``)."""

    @property
    def closed(self) -> bool: ...

    @property
    def lines_waiting(self) -> int: ...

    def start_slice(self) -> bool:
        """Start one slice of lines; True if lines remain that only the slice held back."""
        ...


class Turns:
    """The daemon's one scheduler of slices: a time budget per turn, sparse first, then in turn."""

    __slots__ = ("call_soon", "clock", "turn_seconds", "sparse_lines", "_sparse", "_busy",
                 "_waiting", "_next", "_ends")

    def __init__(self, call_soon: Callable[[Callable[[], None]], Any],
                 clock: Callable[[], float], turn_seconds: float = TURN_SECONDS,
                 sparse_lines: int = SPARSE_LINES) -> None:
        self.call_soon = call_soon
        self.clock = clock
        self.turn_seconds = turn_seconds
        self.sparse_lines = sparse_lines
        self._sparse: deque[Sliced] = deque()
        self._busy: deque[Sliced] = deque()
        self._waiting: set[Sliced] = set()  # in one of the two queues
        self._next: Any = None  # the next turn's callback, while a turn is under way
        self._ends = 0.0  # when this turn's budget is spent

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def ready(self, conn: Sliced) -> bool:
        """``conn`` has lines to start; True if its slice ran now, False if it waits its turn."""
        if conn in self._waiting:
            return False
        now = self.clock()
        if self._next is None:  # the loop was idle: this read begins a turn
            self._ends = now + self.turn_seconds
            self._next = self.call_soon(self._turn)
        if now < self._ends:
            if conn.start_slice():
                self._wait(conn, self._busy)
            return True
        self._wait(conn, self._sparse if conn.lines_waiting <= self.sparse_lines else self._busy)
        return False

    def _wait(self, conn: Sliced, queue: deque[Sliced]) -> None:
        self._waiting.add(conn)
        queue.append(conn)
        if self._next is None:
            self._next = self.call_soon(self._turn)

    def _turn(self) -> None:
        """A new turn: serve the sparse, then the rest in turn, while the budget lasts."""
        self._next = None
        if not self._waiting:
            return  # idle again: the next read begins a turn
        clock, sparse, busy, waiting = self.clock, self._sparse, self._busy, self._waiting
        self._ends = ends = clock() + self.turn_seconds
        self._next = self.call_soon(self._turn)
        while waiting and clock() < ends:
            conn = sparse.popleft() if sparse else busy.popleft()
            waiting.discard(conn)
            if not conn.closed and conn.start_slice():
                waiting.add(conn)
                busy.append(conn)
