"""StatusView without sockets: each figure read from its owner, lanes encoded once per change."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from podman_rpc.daemon.config import LaneConfig
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.rpc.lanes import LaneLimiter
from podman_rpc.daemon.rpc.status import Counters, StatusView
from podman_rpc.protocol.envelope import PROTOCOL_VERSION
from podman_rpc.protocol.version import VERSION

NOWHERE = Path("/nonexistent/podman.sock")


def _view() -> tuple[StatusView, PodmanPool, Counters, set[object]]:
    pool, counters, connections = PodmanPool(NOWHERE, 1, 1.0), Counters(), set()
    return StatusView("1.2.3", pool, counters, connections), pool, counters, connections


def _decoded(reply: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(reply))  # type: ignore[no-any-return]


def test_reply_has_the_fields_of_status_in_order() -> None:
    view, pool, _, _ = _view()
    try:
        view.add_lane(LaneLimiter("run", LaneConfig(cap=2, queue=3, max_deadline=1.0)))
        reply = _decoded(view.reply(False))
    finally:
        pool.close()
    assert list(reply) == ["version", "protocol_version", "instance_id", "uptime_s", "podman",
                           "connections", "lanes", "requests", "containers_reaped", "warm", "draining"]
    assert (reply["version"], reply["protocol_version"]) == (VERSION, PROTOCOL_VERSION)
    assert reply["podman"] == {"socket": str(NOWHERE), "reachable": None, "version": None}
    assert reply["lanes"] == {"run": {"in_flight": 0, "queued": 0, "cap": 2, "queue_limit": 3}}
    assert reply["requests"] == {"served": {}, "failed": {}, "disconnected": {}}
    assert (reply["instance_id"], reply["connections"], reply["containers_reaped"],
            reply["draining"]) == ("1.2.3", 0, 0, False)


def test_each_figure_is_read_from_its_owner_when_asked() -> None:
    view, pool, counters, connections = _view()
    try:
        first = _decoded(view.reply(False))
        connections.update({"a", "b"})
        pool.reachable, pool.version = False, "4.3.1"
        counters.served["status"] += 2
        counters.disconnected["run"] += 1
        view.containers_reaped += 1
        second = _decoded(view.reply(True))
    finally:
        pool.close()
    assert (first["connections"], second["connections"]) == (0, 2)
    assert second["podman"] == {"socket": str(NOWHERE), "reachable": False, "version": "4.3.1"}
    assert second["requests"] == {"served": {"status": 2}, "failed": {},
                                  "disconnected": {"run": 1}}
    assert (first["containers_reaped"], second["containers_reaped"]) == (0, 1)
    assert (first["draining"], second["draining"]) == (False, True)


def test_lanes_are_encoded_when_asked_after_a_change_not_on_each_change() -> None:
    view, pool, _, _ = _view()
    lane = view.add_lane(LaneLimiter("run", LaneConfig(cap=1, queue=4, max_deadline=1.0),
                                     view.lanes_changed))

    async def hold_and_queue() -> list[dict[str, Any]]:
        seen = [_decoded(view.reply(False))["lanes"]["run"]]
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with lane.slot():
                holding.set()
                await release.wait()

        async def wait_turn() -> None:
            async with lane.slot():
                pass

        holder = asyncio.ensure_future(hold())
        await holding.wait()
        waiters = [asyncio.ensure_future(wait_turn()) for _ in range(3)]
        await asyncio.sleep(0)
        seen.append(_decoded(view.reply(False))["lanes"]["run"])
        release.set()
        await asyncio.gather(holder, *waiters)
        seen.append(_decoded(view.reply(False))["lanes"]["run"])
        return seen

    try:
        before = view.lanes()
        assert view.lanes() is before  # nothing changed: the same encoding, not a new one
        for _ in range(3):
            view.lanes_changed()
        assert view._lanes is None  # changes only mark it stale: nothing encoded yet
        assert view.lanes() is not before and bytes(orjson.dumps(view.lanes())) == bytes(
            orjson.dumps(before))
        before = view.lanes()
        seen = asyncio.run(hold_and_queue())
        after = view.lanes()
        assert view.lanes() is after and after is not before
    finally:
        pool.close()
    assert [(s["in_flight"], s["queued"]) for s in seen] == [(0, 0), (1, 3), (0, 0)]


def test_uptime_counts_up_in_milliseconds() -> None:
    view, pool, _, _ = _view()
    try:
        first = view.reply(False)["uptime_s"]
        view.started_ns -= 1_234_567_890  # as if started 1.23 s earlier
        later = view.reply(False)["uptime_s"]
    finally:
        pool.close()
    assert 1.234 <= later - first < 1.3
    assert later == round(later, 3)
