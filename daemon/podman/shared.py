"""Reads that callers ask together share one Podman call: a group commit, not a cache.

Each list and each ping costs Podman CPU, and a peer may ask in a loop. In issue
18's fuzz storm (32 connections, a tenth of the frames ``ping``/``ps``/``images``)
Podman's share of the 2 CPUs rose from 12% with pings alone to 85%, and a steady
client's ``status`` p99 from 8 to 17-19 ms.

A caller never gets an answer older than its own request. One that arrives while a
call for the same key is under way waits for it to end, then shares the next call
with everyone else who arrived meanwhile. So any number of callers cost Podman at
most one call under way per key, and a ``ps`` asked right after a ``run`` replied
always includes that run's container.

A read too costly to repeat back to back (``info``, which runs ``dpkg-query``) can
also be spaced: its calls start at least ``spacing`` seconds apart, and whoever
asks meanwhile shares the next one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Round(Generic[T]):
    """One key's call under way, and the future of the callers who wait for the next."""

    __slots__ = ("fetch", "spacing", "started", "task", "following")

    def __init__(self, fetch: Callable[[], Awaitable[T]], spacing: float) -> None:
        self.fetch = fetch  # how the next call asks (every caller of a key asks alike)
        self.spacing = spacing  # seconds from one call's start to the next one's, at least
        self.started = 0.0  # loop time the last call began
        # The call under way. Held here because asyncio keeps only weak references to
        # tasks: a call that only callbacks referred to was collected mid-read.
        self.task: asyncio.Task[T] | None = None
        self.following: asyncio.Future[T] | None = None


class SharedReads:
    """Callers of the same read share one call; latecomers share the next (see the module)."""

    def __init__(self) -> None:
        self._rounds: dict[Hashable, _Round[Any]] = {}
        self._last_start: dict[Hashable, float] = {}  # of spaced keys only (a handful)

    @property
    def under_way(self) -> int:
        return len(self._rounds)

    async def read(self, key: Hashable, fetch: Callable[[], Awaitable[T]],
                   spacing: float = 0.0) -> T:
        """``fetch()``'s answer, shared; with ``spacing``, calls of ``key`` start at least
        that many seconds apart (a read too costly to repeat back to back)."""
        current = self._rounds.get(key)
        if current is None:  # nothing under way: ask now, or once the spacing allows
            self._rounds[key] = current = _Round(fetch, spacing)
            loop = asyncio.get_running_loop()
            delay = self._last_start.get(key, -spacing) + spacing - loop.time()
            if delay <= 0:
                answer: asyncio.Future[T] = self._start(key, current)
            else:
                current.following = answer = loop.create_future()
                loop.call_later(delay, self._next, key, current)
        else:  # its answer may predate this request: share the next call instead
            if current.following is None:
                current.following = asyncio.get_running_loop().create_future()
            answer = current.following
        return await asyncio.shield(answer)  # one caller's cancel is not the others'

    def _start(self, key: Hashable, current: _Round[T]) -> asyncio.Task[T]:
        current.started = asyncio.get_running_loop().time()
        if current.spacing:
            self._last_start[key] = current.started
        task = current.task = asyncio.ensure_future(current.fetch())
        task.add_done_callback(functools.partial(self._ended, key, current))
        return task

    def _ended(self, key: Hashable, current: _Round[T], task: asyncio.Task[T]) -> None:
        if not task.cancelled():
            task.exception()  # its callers have it; never "exception was never retrieved"
        current.task = None
        if current.following is None:
            del self._rounds[key]
            return
        loop = asyncio.get_running_loop()
        delay = current.started + current.spacing - loop.time()
        if delay > 0:  # those who come meanwhile join the same next call
            loop.call_later(delay, self._next, key, current)
        else:
            self._next(key, current)

    def _next(self, key: Hashable, current: _Round[T]) -> None:
        waiting, current.following = current.following, None
        assert waiting is not None
        self._start(key, current).add_done_callback(functools.partial(_settle, waiting))


def _settle(waiting: asyncio.Future[T], task: asyncio.Task[T]) -> None:
    if waiting.done():
        return
    if task.cancelled():
        waiting.cancel()
    elif (error := task.exception()) is not None:
        waiting.set_exception(error)
    else:
        waiting.set_result(task.result())

