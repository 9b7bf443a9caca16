"""The slow-client bounds of daemon/rpc/unfinished.py without sockets: one clock per line,
running from its first byte, and one budget shared by every connection."""

from __future__ import annotations

import asyncio

from podman_rpc.daemon.rpc.unfinished import PartialBudget, UnfinishedLine


def test_more_bytes_do_not_extend_a_line_and_the_oldest_goes_over_budget() -> None:
    async def scenario() -> tuple[list[tuple[str, str]], int, set[str]]:
        dropped: list[tuple[str, str]] = []
        budget = PartialBudget(limit=100)
        lines = {name: UnfinishedLine(0.2, budget, lambda r, m, n=name: dropped.append((n, r)))
                 for name in ("old", "new", "quiet")}
        lines["old"].after_read(False, 10, watch=True)
        first_timer = lines["old"].timer
        await asyncio.sleep(0.05)
        lines["old"].after_read(False, 60, watch=True)  # more of the same line
        assert lines["old"].timer is first_timer  # its clock was not re-armed
        lines["new"].after_read(False, 30, watch=True)
        lines["new"].after_read(False, 50, watch=True)  # 60 + 50 > 100: the oldest goes
        assert dropped == [("old", "partial line budget")] and budget.total == 50
        await asyncio.sleep(0.25)  # "new" outlives its timeout from its first byte
        lines["quiet"].after_read(True, 0, watch=False)  # finished lines, nothing held
        return dropped, budget.total, {n for n, line in lines.items() if line.timer}

    dropped, total, timed = asyncio.run(scenario())
    assert dropped == [("old", "partial line budget"), ("new", "partial line timeout")]
    assert total == 0 and timed == set()
