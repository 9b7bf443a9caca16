"""Concurrency lanes: a cap on calls running at once and a bounded queue behind it.

A full queue answers at once with Overloaded (and a retry hint) instead of
letting waiters pile up; time spent queued counts against the call's deadline
because the caller's deadline scope already encloses :meth:`LaneLimiter.slot`.

Each lane keeps its figures in :attr:`LaneLimiter.stats`, a dict updated in place on
every change, and calls ``on_change`` after each update: ``status`` is polled far
more often than lanes change, so the daemon encodes the figures once per change
(see ``StatusView.lanes_changed``) instead of once per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager

from podman_rpc.daemon.config import LaneConfig
from podman_rpc.protocol.errors import Overloaded

_NO_SLOT: AsyncContextManager[None] = contextlib.nullcontext()


class LaneLimiter:
    """One lane's slots and its FIFO of waiters."""

    def __init__(self, name: str, config: LaneConfig,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.on_change = on_change
        self.cap = config.cap
        self.queue_limit = config.queue
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._recent_seconds = 1.0  # moving average of a call's duration, for retry hints
        self.stats = {"in_flight": 0, "queued": 0, "cap": self.cap,
                      "queue_limit": self.queue_limit}

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _publish(self) -> None:
        self.stats["in_flight"] = self.in_flight
        self.stats["queued"] = len(self._waiters)
        self.on_change()

    def _retry_after_ms(self) -> int:
        rounds = (self.queued + self.in_flight) / max(self.cap, 1)
        return max(10, int(rounds * self._recent_seconds * 1000))

    def slot(self) -> AsyncContextManager[None]:
        """Hold one of the lane's slots for the duration of the block.

        An unlimited lane (daemon-local methods) gets a no-op context: building an
        async generator context manager per call cost ~2.7 us on the hot path.
        """
        return _NO_SLOT if self.cap <= 0 else self._capped_slot()

    @contextlib.asynccontextmanager
    async def _capped_slot(self) -> AsyncIterator[None]:
        if self.in_flight >= self.cap or self._waiters:
            if len(self._waiters) >= self.queue_limit:
                raise Overloaded(f"Lane {self.name!r} is full",
                                 {"lane": self.name, "retry_after_ms": self._retry_after_ms()})
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._publish()
            try:
                await waiter  # the releaser hands its slot over, in_flight unchanged
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # we were handed a slot but will not use it
                elif waiter in self._waiters:  # a release may have popped it already
                    self._waiters.remove(waiter)
                    self._publish()
                raise
        else:
            self.in_flight += 1
            self._publish()
        started = asyncio.get_running_loop().time()
        try:
            yield
        finally:
            elapsed = asyncio.get_running_loop().time() - started
            self._recent_seconds = 0.8 * self._recent_seconds + 0.2 * elapsed
            self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._publish()
                return
        self.in_flight -= 1
        self._publish()
