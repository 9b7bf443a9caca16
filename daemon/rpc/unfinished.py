"""How long, and how much, a client's unfinished request line may hold (slow clients).

A line must be complete within ``partial_line_timeout`` of its first byte: more
bytes do not extend it, so a client trickling a byte a second cannot hold a
buffer forever. The unfinished lines of all connections share one daemon-wide
budget (``max_partial_bytes_total``): past it, the oldest unfinished line goes,
so many slow clients together cannot grow the daemon's memory without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

Drop = Callable[[str, str], None]
"""Closes a connection over its unfinished line: ``drop(reason for the log, message)``."""


class PartialBudget:
    """The daemon-wide budget for unfinished lines, and who holds what of it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.holders: set[UnfinishedLine] = set()

    def changed(self, line: UnfinishedLine, delta: int) -> None:
        self.total += delta
        if line.bytes:
            self.holders.add(line)
        else:
            self.holders.discard(line)
        while self.total > self.limit and self.holders:
            oldest = min(self.holders, key=lambda held: held.since)
            oldest.drop("partial line budget",
                        "Incomplete line dropped: the daemon's budget for unfinished lines is spent")


class UnfinishedLine:
    """One connection's unfinished line: its clock, and its bytes in the shared budget."""

    def __init__(self, timeout: float, budget: PartialBudget, drop: Drop) -> None:
        self.timeout = timeout
        self.budget = budget
        self._drop = drop
        self.timer: asyncio.TimerHandle | None = None
        self.bytes = 0
        self.since = 0.0  # loop time of the line's first byte

    def after_read(self, finished_lines: bool, buffered: int, watch: bool) -> None:
        """After a read: a line begun in it starts its clock; one going on keeps its own.

        ``watch`` is false while nothing should time the client (no partial line, or
        the daemon itself stopped reading).
        """
        if finished_lines or self.timer is None:
            self.restart(watch)
        if buffered != self.bytes:
            delta, self.bytes = buffered - self.bytes, buffered
            self.budget.changed(self, delta)

    def restart(self, watch: bool) -> None:
        """Give the line now held a full timeout (a new line, or reading resumed)."""
        self.stop()
        if watch:
            loop = asyncio.get_running_loop()
            self.since = loop.time()
            self.timer = loop.call_later(self.timeout, self.drop, "partial line timeout",
                                         "Incomplete line timed out")

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def release(self) -> None:
        """The connection is gone or dropped: its clock stops, its bytes leave the budget."""
        self.stop()
        held, self.bytes = self.bytes, 0
        if held:
            self.budget.changed(self, -held)

    def drop(self, reason: str, message: str) -> None:
        """Close the connection over this line (timed out, or the oldest over the budget)."""
        self._drop(reason, message)
        self.release()
