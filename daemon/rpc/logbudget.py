"""How many request log lines one connection may write: a token bucket.

Every request gets a log line (``dispatch.log_request``), which is right for a
client that behaves and a flood amplifier for one that does not: a fuzzing
connection sends thousands of bad lines a second, and each refusal would cost a
structlog render and a write (a fifth of the daemon's CPU in such a storm,
measured with py-spy). Past its budget a connection's lines are counted, not
written; the next line it may write carries ``suppressed=N``, and so does the
connection's close.

Each connection's bucket also draws on one daemon-wide bucket (:data:`DAEMON_RATE`),
so that 32 fuzzing connections cannot write 32 times as much: in such a storm the
per-connection budget alone still left log lines at 14% of the daemon's CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable

RATE = 100.0  # lines per second, refilled continuously
BURST = 500.0  # lines at once
DAEMON_RATE = 1000.0  # lines per second for all connections together
DAEMON_BURST = 2000.0


class LogBudget:
    """A token bucket of log lines; ``take`` says whether to write this one."""

    __slots__ = ("rate", "burst", "shared", "_clock", "_tokens", "_stamp", "suppressed")

    def __init__(self, rate: float = RATE, burst: float = BURST,
                 clock: Callable[[], float] = time.monotonic,
                 shared: LogBudget | None = None) -> None:
        self.rate = rate
        self.shared = shared  # the daemon-wide bucket this one also draws on
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self.suppressed = 0  # lines not written since the last one that was

    def take(self) -> bool:
        tokens = self._tokens
        if tokens < 1.0:  # refill only when empty: the common case costs one compare
            now = self._clock()
            tokens = min(self.burst, tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if tokens < 1.0:
                self._tokens = tokens
                self.suppressed += 1
                return False
        self._tokens = tokens - 1.0
        if self.shared is not None and not self.shared.take():
            self.suppressed += 1
            return False
        return True

    def release_suppressed(self) -> int:
        """How many lines were not written since the last report; the count starts again."""
        count, self.suppressed = self.suppressed, 0
        return count
