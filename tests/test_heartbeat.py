"""The watchdog pings come from the event loop itself: a blocked loop sends none."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from podman_rpc.daemon.ops.heartbeat import Heartbeat, summary


class RecordingNotifier:
    """Stands in for daemon.ops.systemd.Notifier; records when each datagram was sent."""

    enabled = True
    watchdog_interval = 0.05
    last_status: str | None = None

    def __init__(self) -> None:
        self.sent: list[tuple[float, tuple[str, ...]]] = []

    def notify(self, *fields: str) -> None:
        self.sent.append((time.monotonic(), fields))


def fake_state() -> SimpleNamespace:
    return SimpleNamespace(connections=set(), active_containers=set(), background=set(),
                           draining=False, in_flight=lambda: 0,
                           pool=SimpleNamespace(reachable=True, version="4.3.1"),
                           counters=SimpleNamespace(served={"ping": 3}))


def test_blocked_loop_sends_no_watchdog_ping() -> None:
    notifier = RecordingNotifier()
    state = fake_state()

    async def scenario() -> tuple[float, float]:
        beat = Heartbeat(state, notifier)  # type: ignore[arg-type]
        beat.start()
        await asyncio.sleep(0.3)
        blocked_from = time.monotonic()
        time.sleep(0.5)  # a handler blocking the loop
        blocked_to = time.monotonic()
        await asyncio.sleep(0.3)
        beat.stop()
        return blocked_from, blocked_to

    blocked_from, blocked_to = asyncio.run(scenario())
    pings = [at for at, fields in notifier.sent if "WATCHDOG=1" in fields]
    assert len([at for at in pings if at < blocked_from]) >= 2
    assert len([at for at in pings if at > blocked_to]) >= 2  # resumes once the loop runs again
    assert not [at for at in pings if blocked_from < at < blocked_to]
    statuses = [f for _, fields in notifier.sent for f in fields if f.startswith("STATUS=")]
    assert statuses == [f"STATUS={summary(state)}"]  # sent once, then only on change
    assert "idle" in statuses[0] and "3 request(s) served" in statuses[0]
