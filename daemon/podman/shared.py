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
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Round(Generic[T]):
    """One key's call under way, and the future of the callers who wait for the next."""

    __slots__ = ("fetch", "task", "following")

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self.fetch = fetch  # how the next call asks (every caller of a key asks alike)
        # The call under way. Held here because asyncio keeps only weak references to
        # tasks: a call that only callbacks referred to was collected mid-read.
        self.task: asyncio.Task[T] | None = None
        self.following: asyncio.Future[T] | None = None


class SharedReads:
    """Callers of the same read share one call; latecomers share the next (see the module)."""

    def __init__(self) -> None:
        self._rounds: dict[Hashable, _Round[Any]] = {}

    @property
    def under_way(self) -> int:
        return len(self._rounds)

    async def read(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        current = self._rounds.get(key)
        if current is None:  # nothing under way: ask now
            self._rounds[key] = current = _Round(fetch)
            answer: asyncio.Future[T] = self._start(key, current)
        else:  # its answer may predate this request: share the next call instead
            if current.following is None:
                current.following = asyncio.get_running_loop().create_future()
            answer = current.following
        return await asyncio.shield(answer)  # one caller's cancel is not the others'

    def _start(self, key: Hashable, current: _Round[T]) -> asyncio.Task[T]:
        task = current.task = asyncio.ensure_future(current.fetch())
        task.add_done_callback(functools.partial(self._ended, key, current))
        return task

    def _ended(self, key: Hashable, current: _Round[T], task: asyncio.Task[T]) -> None:
        if not task.cancelled():
            task.exception()  # its callers have it; never "exception was never retrieved"
        waiting, current.following = current.following, None
        if waiting is None:
            del self._rounds[key]
            return
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

