"""daemon.podman.shared.SharedReads: callers asking together share a call, never an old answer.

No Podman here: the reads are coroutines the test releases by hand. That ``ps`` and
``images`` answer as Podman lists is checked against the real service in
test_containers.py and test_images.py.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from podman_rpc.daemon.podman.shared import SharedReads


class Source:
    """A read whose every call is numbered at its start and ends when the test says."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()
        self.failing: set[int] = set()  # the numbers of the calls that fail

    async def fetch(self) -> int:
        self.started += 1
        number = self.started
        await self.release.wait()
        if number in self.failing:
            raise RuntimeError(f"call {number} failed")
        return number


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_callers_during_a_call_share_the_next_one() -> None:
    async def go() -> tuple[list[int], int]:
        shared, source = SharedReads(), Source()
        first = asyncio.ensure_future(shared.read("ps", source.fetch))
        await _settle()  # call 1 is under way
        later = [asyncio.ensure_future(shared.read("ps", source.fetch)) for _ in range(9)]
        await _settle()
        source.release.set()
        answers = [await first] + [await f for f in later]
        return answers, source.started

    answers, calls = asyncio.run(go())
    assert answers == [1] + [2] * 9  # nobody who asked after call 1 began got its answer
    assert calls == 2


def test_different_keys_do_not_share() -> None:
    async def go() -> list[int]:
        shared, source = SharedReads(), Source()
        calls = [asyncio.ensure_future(shared.read(key, source.fetch)) for key in ("a", "b")]
        await _settle()
        source.release.set()
        return sorted([await c for c in calls])

    assert asyncio.run(go()) == [1, 2]


def test_after_the_rounds_end_a_new_call_is_made() -> None:
    async def go() -> tuple[list[int], int]:
        shared, source = SharedReads(), Source()
        source.release.set()
        answers = [await shared.read("ps", source.fetch) for _ in range(3)]
        return answers, shared.under_way

    assert asyncio.run(go()) == ([1, 2, 3], 0)


def test_an_error_reaches_its_round_only() -> None:
    async def go() -> tuple[str, int]:
        shared, source = SharedReads(), Source()
        source.failing = {1}
        first = asyncio.ensure_future(shared.read("ps", source.fetch))
        await _settle()
        second = asyncio.ensure_future(shared.read("ps", source.fetch))
        await _settle()
        source.release.set()
        with pytest.raises(RuntimeError) as failed:
            await first
        return str(failed.value), await second

    assert asyncio.run(go()) == ("call 1 failed", 2)


def test_a_cancelled_caller_leaves_the_others_their_answer() -> None:
    async def go() -> tuple[bool, list[int]]:
        shared, source = SharedReads(), Source()
        first = asyncio.ensure_future(shared.read("ps", source.fetch))
        await _settle()
        a = asyncio.ensure_future(shared.read("ps", source.fetch))
        b = asyncio.ensure_future(shared.read("ps", source.fetch))
        await _settle()
        first.cancel()
        a.cancel()
        await _settle()
        source.release.set()
        return first.cancelled() and a.cancelled(), [await b]

    assert asyncio.run(go()) == (True, [2])


def test_a_call_no_caller_holds_survives_the_garbage_collector() -> None:
    """The next round's task is referred to by no caller, only by its own callbacks: asyncio
    keeps weak references to tasks, so without SharedReads holding it, a collection
    destroyed it mid-read (found with the daemon's kept-alive ``_ping``, whose socket
    reader asyncio also holds weakly)."""
    async def go() -> list[int]:
        shared = SharedReads()
        pending: list[weakref.ref[asyncio.Future[int]]] = []
        count = [0]

        async def fetch() -> int:
            count[0] += 1
            answer = asyncio.get_running_loop().create_future()
            pending.append(weakref.ref(answer))  # only the call itself holds it
            return await answer

        first = asyncio.ensure_future(shared.read("ps", fetch))
        await _settle()
        later = [asyncio.ensure_future(shared.read("ps", fetch)) for _ in range(3)]
        await _settle()
        _answer(pending[0], 1)
        await _settle()  # round 2 is under way, held by nobody but the scheduler
        gc.collect()
        _answer(pending[1], 2)
        return [await first] + [await f for f in later]

    assert asyncio.run(go()) == [1, 2, 2, 2]


def _answer(ref: weakref.ref[asyncio.Future[int]], value: int) -> None:
    future = ref()
    assert future is not None, "the call under way was collected"
    future.set_result(value)


def test_spaced_calls_start_that_far_apart_and_latecomers_join_the_wait() -> None:
    async def go() -> tuple[list[int], list[float], int]:
        shared, starts = SharedReads(), []
        loop = asyncio.get_running_loop()

        async def fetch() -> int:
            starts.append(loop.time())
            return len(starts)

        first = await shared.read("info", fetch, spacing=0.3)  # never asked: at once
        a = asyncio.ensure_future(shared.read("info", fetch, spacing=0.3))  # right after
        await asyncio.sleep(0)
        b = asyncio.ensure_future(shared.read("info", fetch, spacing=0.3))  # during the wait
        answers = [first, await a, await b]
        return answers, starts, shared.under_way

    answers, starts, under_way = asyncio.run(go())
    assert answers == [1, 2, 2]
    assert starts[1] - starts[0] >= 0.29  # loop time: a timer never fires early by more
    assert under_way == 0
