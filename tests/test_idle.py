"""IdleTimer against a stand-in state: only the busy/idle bookkeeping, no Podman involved."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from podman_rpc.daemon.ops.idle import Activity, IdleTimer, busy_reason


def fake_state(**busy: object) -> SimpleNamespace:
    state = SimpleNamespace(connections=set(), active_containers=set(), background=set(),
                            draining=False, in_flight_count=0)
    state.in_flight = lambda: state.in_flight_count
    for key, value in busy.items():
        setattr(state, key, value)
    return state


@pytest.mark.parametrize("busy", [
    {"connections": {"c"}}, {"in_flight_count": 1}, {"active_containers": {"id"}},
    {"background": {"task"}},
])
def test_never_fires_while_busy(busy: dict[str, object]) -> None:
    state = fake_state(**busy)
    assert busy_reason(state) is not None  # type: ignore[arg-type]
    fired: list[bool] = []

    async def scenario() -> None:
        timer = IdleTimer(state, Activity(), 0.05, lambda: fired.append(True), poll=0.02)  # type: ignore[arg-type]
        timer.start()
        await asyncio.sleep(0.3)
        assert not fired
        for key in busy:  # the work ends without any activity callback
            setattr(state, key, 0 if key == "in_flight_count" else set())
        for _ in range(100):
            if fired:
                break
            await asyncio.sleep(0.02)
        timer.stop()

    asyncio.run(scenario())
    assert fired == [True]


def test_activity_restarts_the_idle_period() -> None:
    state = fake_state()
    fired: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        activity = Activity()
        timer = IdleTimer(state, activity, 0.2, lambda: fired.append(loop.time()))  # type: ignore[arg-type]
        timer.start()
        last = loop.time()
        for _ in range(5):  # activity every 0.1 s: never 0.2 s idle
            await asyncio.sleep(0.1)
            last = loop.time()
            activity.touch()
        assert not fired
        await asyncio.sleep(0.5)
        assert len(fired) == 1 and fired[0] >= last + 0.2
        timer.stop()

    asyncio.run(scenario())
