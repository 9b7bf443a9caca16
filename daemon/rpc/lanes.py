"""Concurrency lanes: a cap on calls running at once and a bounded queue behind it.

A full queue answers at once with Overloaded (and a retry hint) instead of
letting waiters pile up; time spent queued counts against the call's deadline
because the caller's deadline scope already encloses :meth:`LaneLimiter.slot`.

The queue is shared fairly between the connections waiting in it (the ``key`` of
:meth:`LaneLimiter.slot`): each gets ``max(1, queue_limit // waiting connections)``
places, so one connection's flood fills its own share and not the lane. A request
that finds its own share full is refused; one that finds the lane full while its
share is not takes the newest place of the connection furthest over its share, and
that request is refused instead. Freed slots go round-robin by connection, so a
connection with one request queued waits for one turn, not behind another's flood.

Each lane keeps its figures in :attr:`LaneLimiter.stats`, a dict updated in place on
every change, and calls ``on_change`` after each update: ``status`` is polled far
more often than lanes change, so the daemon encodes the figures once per change
(see ``StatusView.lanes_changed``) instead of once per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager as AsyncContextManager

from podman_rpc.daemon.config import LaneConfig
from podman_rpc.protocol.errors import Overloaded

_NO_SLOT: AsyncContextManager[None] = contextlib.nullcontext()

# What a waiter's future is resolved with: a slot handed over, or its place taken.
_GRANTED = True
_EVICTED = False


class LaneLimiter:
    """One lane's slots and, per connection, a FIFO of waiters served round-robin."""

    def __init__(self, name: str, config: LaneConfig,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.on_change = on_change
        self.cap = config.cap
        self.queue_limit = config.queue
        self.in_flight = 0
        # Waiters by key, in round-robin order: the first key is served next, and a key
        # that still has waiters goes to the back (dicts keep insertion order).
        self._queues: dict[Hashable, deque[asyncio.Future[bool]]] = {}
        self._queued = 0
        self._recent_seconds = 1.0  # moving average of a call's duration, for retry hints
        self.stats = {"in_flight": 0, "queued": 0, "cap": self.cap,
                      "queue_limit": self.queue_limit}

    @property
    def queued(self) -> int:
        return self._queued

    def queued_for(self, key: Hashable) -> int:
        """How many of ``key``'s requests wait in this lane."""
        queue = self._queues.get(key)
        return len(queue) if queue else 0

    def share(self, key: Hashable) -> int:
        """The places in the queue ``key`` may hold now, counting it among the waiters."""
        waiting = len(self._queues) + (key not in self._queues)
        return max(1, self.queue_limit // waiting)

    def _publish(self) -> None:
        self.stats["in_flight"] = self.in_flight
        self.stats["queued"] = self._queued
        self.on_change()

    def _retry_after_ms(self, ahead: int) -> int:
        rounds = (ahead + self.in_flight) / max(self.cap, 1)
        return max(10, int(rounds * self._recent_seconds * 1000))

    def _refusal(self, message: str, ahead: int) -> Overloaded:
        return Overloaded(message, {"lane": self.name,
                                    "retry_after_ms": self._retry_after_ms(ahead)})

    def slot(self, key: Hashable = None) -> AsyncContextManager[None]:
        """Hold one of the lane's slots for the duration of the block.

        ``key`` names who is asking (the connection): the queue is shared fairly
        between keys. An unlimited lane (daemon-local methods) gets a no-op context:
        building an async generator context manager per call cost ~2.7 us on the hot path.
        """
        return _NO_SLOT if self.cap <= 0 else self._capped_slot(key)

    def refusal(self, key: Hashable) -> Overloaded | None:
        """The Overloaded a request of ``key`` would get now because its own share is full.

        Asked before a request's task is made (``Dispatcher``): a flooding connection's
        request is refused in the line's own slice instead of in a task of its own, which
        cost the event loop more than the refusal (issue 18's fuzz storm).
        """
        if self.cap <= 0 or (self.in_flight < self.cap and not self._queued):
            return None
        own = self.queued_for(key)
        share = self.share(key)
        if own < share:
            return None
        # Retry once the waiters ahead of it in the round-robin have had their turns.
        return self._refusal(f"Lane {self.name!r} is full for this connection "
                             f"({own} of its {share} places queued)",
                             own * (len(self._queues) or 1))

    def _admit_waiter(self, key: Hashable) -> asyncio.Future[bool]:
        """Queue a waiter for ``key`` within its share, or raise Overloaded."""
        refused = self.refusal(key)
        if refused is not None:
            raise refused
        share = self.share(key)
        if self._queued >= self.queue_limit and not self._evict_over_share(share):
            raise self._refusal(f"Lane {self.name!r} is full", self._queued)
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(waiter)
        self._queued += 1
        self._publish()
        return waiter

    def _evict_over_share(self, share: int) -> bool:
        """Refuse the newest waiter of the key furthest over ``share``; False if none is over."""
        victim_key, victim = None, None
        for key, queue in self._queues.items():
            if len(queue) > share and (victim is None or len(queue) > len(victim)):
                victim_key, victim = key, queue
        if victim is None:
            return False
        waiter = victim.pop()
        if not victim:
            del self._queues[victim_key]
        self._queued -= 1
        if not waiter.done():
            waiter.set_result(_EVICTED)
        return True

    def _forget(self, key: Hashable, waiter: asyncio.Future[bool]) -> None:
        """Take a waiter that gave up (cancelled, timed out) out of its queue, if still there."""
        queue = self._queues.get(key)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        if not queue:
            del self._queues[key]
        self._queued -= 1
        self._publish()

    @contextlib.asynccontextmanager
    async def _capped_slot(self, key: Hashable) -> AsyncIterator[None]:
        if self.in_flight >= self.cap or self._queued:
            waiter = self._admit_waiter(key)
            try:
                granted = await waiter  # the releaser hands its slot over, in_flight unchanged
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.result() is _GRANTED:
                    self._release()  # we were handed a slot but will not use it
                else:
                    self._forget(key, waiter)
                raise
            if granted is not _GRANTED:
                raise self._refusal(f"Lane {self.name!r} is full: its place went to "
                                    f"another connection's request", self._queued)
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
        """Hand the slot to the first waiter of the next key in turn, or free it."""
        queues = self._queues
        while queues:
            key = next(iter(queues))
            queue = queues.pop(key)
            waiter = queue.popleft()
            self._queued -= 1
            if queue:
                queues[key] = queue  # to the back of the round
            if not waiter.done():
                waiter.set_result(_GRANTED)
                self._publish()
                return
        self.in_flight -= 1
        self._publish()
