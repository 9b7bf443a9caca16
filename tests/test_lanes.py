"""Lanes: fair shares and round-robin on the limiter itself, then against real Podman: the
run cap holds, a full queue says Overloaded, queries are not starved, a flood does not
refuse another connection's pings.

The cap is checked from the containers' own clocks: each run prints the host's
uptime (``/proc/uptime`` is not namespaced) when it starts and when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from podman_rpc.daemon.config import LaneConfig
from podman_rpc.daemon.rpc.lanes import LaneLimiter
from podman_rpc.protocol.errors import Overloaded
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import BUSYBOX_IMAGE
from tests.test_reaper import instance_containers, wait_until

RUN_CAP = 2
CONFIG = f"lanes = {{ run = {{ cap = {RUN_CAP}, queue = 50 }} }}\n"
STAMP = "cut -d' ' -f1 /proc/uptime"


def run_request(request_id: Any, script: str, timeout: float = 30, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "run",
            "params": {"image": BUSYBOX_IMAGE, "command": ["sh", "-c", script],
                       "timeout": timeout, **extra}}


def read_replies(conn: RawConnection, count: int) -> dict[Any, dict[str, Any]]:
    """Read ``count`` replies (skipping notifications); no id may be answered twice."""
    replies: dict[Any, dict[str, Any]] = {}
    while len(replies) < count:
        message = conn.read()
        if "method" in message:
            continue
        assert message["id"] not in replies, f"two replies for {message['id']}"
        replies[message["id"]] = message
    return replies


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant; an end and a start at the same tick do not overlap."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


# --- the limiter alone: fair shares and round-robin, no sockets ----------------------

class LaneDriver:
    """Requests against one LaneLimiter; each holds its slot until :meth:`drain` ends it."""

    def __init__(self, cap: int, queue: int) -> None:
        self.lane = LaneLimiter("query", LaneConfig(cap=cap, queue=queue, max_deadline=60))
        self.started: list[str] = []
        self.refused: dict[str, Overloaded] = {}
        self.done: set[str] = set()
        self._release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def request(self, key: str, label: str) -> None:
        release = self._release[label] = asyncio.Event()

        async def call() -> None:
            try:
                async with self.lane.slot(key):
                    self.started.append(label)
                    await release.wait()
            except Overloaded as error:
                self.refused[label] = error
            else:
                self.done.add(label)

        self.tasks[label] = asyncio.get_running_loop().create_task(call())

    @staticmethod
    async def settle() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    async def drain(self) -> None:
        """Let the running requests end, one round at a time, until none is left."""
        while True:
            await self.settle()
            running = [label for label in self.started if not self._release[label].is_set()]
            if not running:
                break
            for label in running:
                self._release[label].set()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


def test_the_refusal_asked_before_a_task_matches_what_the_slot_would_do() -> None:
    """``refusal`` (the dispatcher asks it before making a task) says Overloaded exactly
    when the connection's own share is full, and never for an idle or uncapped lane."""
    async def scenario() -> list[object]:
        lanes = LaneDriver(cap=1, queue=4)
        seen: list[object] = [lanes.lane.refusal("flood")]  # idle
        lanes.request("flood", "running")
        for i in range(4):
            lanes.request("flood", f"f{i}")
        await lanes.settle()
        refused = lanes.lane.refusal("flood")  # its 4 places are taken
        seen += [type(refused).__name__, refused.data["lane"] if refused and refused.data else None,
                 lanes.lane.refusal("steady")]  # a newcomer still has 2 places
        lanes.request("flood", "f-more")
        await lanes.settle()
        seen.append("f-more" in lanes.refused)  # and the slot agrees
        uncapped = LaneLimiter("local", LaneConfig(cap=0, queue=0, max_deadline=60))
        seen.append(uncapped.refusal("anyone"))
        await lanes.drain()
        return seen

    assert asyncio.run(scenario()) == [None, "Overloaded", "query", None, True, None]


def test_a_flood_fills_its_own_share_and_the_other_connection_keeps_its_places() -> None:
    async def scenario() -> LaneDriver:
        lanes = LaneDriver(cap=1, queue=8)
        lanes.request("flood", "running")  # holds the only slot
        for i in range(12):
            lanes.request("flood", f"f{i}")
        await lanes.settle()
        # Alone, the flood may use the whole queue; past it, it is refused.
        assert lanes.lane.queued == 8 and set(lanes.refused) == {f"f{i}" for i in range(8, 12)}
        for i in range(4):
            lanes.request("steady", f"s{i}")
        await lanes.settle()
        # Two connections waiting: 4 places each. The steady one got its 4 from the flood's
        # newest, which were refused; none of its own was.
        assert lanes.lane.queued_for("steady") == 4 and lanes.lane.queued_for("flood") == 4
        assert set(lanes.refused) == {f"f{i}" for i in range(4, 12)}
        lanes.request("flood", "f-more")
        lanes.request("steady", "s-more")
        await lanes.settle()
        assert {"f-more", "s-more"} <= set(lanes.refused)  # each share is full now
        for error in lanes.refused.values():
            assert error.data is not None and error.data["lane"] == "query"
            assert isinstance(error.data["retry_after_ms"], int)
            assert error.data["retry_after_ms"] > 0
        await lanes.drain()
        return lanes

    lanes = asyncio.run(scenario())
    assert {f"s{i}" for i in range(4)} <= lanes.done
    assert lanes.done == {"running", *(f"f{i}" for i in range(4)), *(f"s{i}" for i in range(4))}
    assert lanes.lane.stats["in_flight"] == 0 and lanes.lane.stats["queued"] == 0


def test_queued_requests_start_round_robin_by_connection() -> None:
    async def scenario() -> LaneDriver:
        lanes = LaneDriver(cap=1, queue=100)
        lanes.request("a", "hold")
        for key, label in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2"),
                           ("c", "c1"), ("d", "d1")]:
            lanes.request(key, label)
        await lanes.settle()
        assert lanes.lane.queued == 7
        lanes.tasks["d1"].cancel()  # a waiter that gives up leaves neither place nor turn
        await lanes.settle()
        assert lanes.lane.queued == 6 and lanes.lane.queued_for("d") == 0
        await lanes.drain()
        return lanes

    lanes = asyncio.run(scenario())
    assert lanes.started == ["hold", "a1", "b1", "c1", "a2", "b2", "a3"]
    assert lanes.lane.stats == {"in_flight": 0, "queued": 0, "cap": 1, "queue_limit": 100}


@pytest.mark.parametrize("connections, share", [(1, 8), (2, 4), (3, 2), (9, 1), (20, 1)])
def test_share_is_the_queue_split_between_waiting_connections(connections: int,
                                                              share: int) -> None:
    async def scenario() -> LaneDriver:
        lanes = LaneDriver(cap=1, queue=8)
        lanes.request("hold", "hold")
        for index in range(connections - 1):
            lanes.request(f"k{index}", f"w{index}")
        await lanes.settle()
        assert lanes.lane.share("newcomer") == share
        await lanes.drain()
        return lanes

    asyncio.run(scenario())


def test_running_containers_never_exceed_the_run_cap(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(CONFIG)
    runs = 6
    samples: list[dict[str, int]] = []
    with daemon.connect() as conn, daemon.connect() as watcher:
        conn.send_bytes(b"".join(orjson.dumps(run_request(i, f"{STAMP}; sleep 0.4; {STAMP}"))
                                 + b"\n" for i in range(runs)))
        done = threading.Event()
        replies: dict[Any, dict[str, Any]] = {}

        def reader() -> None:
            replies.update(read_replies(conn, runs))
            done.set()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        while not done.is_set():
            samples.append(watcher.call("status")["lanes"]["run"])
            time.sleep(0.02)
        thread.join()
    intervals = []
    for reply in replies.values():
        assert "result" in reply, reply
        start, end = (float(x) for x in str(reply["result"]["stdout"]).split())
        intervals.append((start, end))
    assert len(intervals) == runs
    assert max_overlap(intervals) <= RUN_CAP, intervals
    assert max(s["in_flight"] for s in samples) == RUN_CAP  # the cap was reached, never passed
    assert max(s["queued"] for s in samples) >= 1
    assert all(s["cap"] == RUN_CAP for s in samples)


def test_full_queue_answers_overloaded_at_once(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("lanes = { run = { cap = 1, queue = 2 } }\n")
    runs = 6
    with daemon.connect() as conn:
        conn.send_bytes(b"".join(orjson.dumps(run_request(i, "sleep 1.5")) + b"\n"
                                 for i in range(runs)))
        order: list[Any] = []
        replies: dict[Any, dict[str, Any]] = {}
        while len(replies) < runs:
            message = conn.read()
            assert message["id"] not in replies
            replies[message["id"]] = message
            order.append(message["id"])
    overloaded = [i for i in order if replies[i].get("error", {}).get("code") == -32000]
    succeeded = [i for i in order if "result" in replies[i]]
    # One runs, two wait, the other three are refused without waiting for anything.
    assert len(overloaded) == runs - 3 and len(succeeded) == 3, (replies, daemon.log())
    assert order[:len(overloaded)] == overloaded
    for i in overloaded:
        data = replies[i]["error"]["data"]
        assert data["kind"] == "Overloaded" and data["lane"] == "run"
        assert isinstance(data["retry_after_ms"], int) and data["retry_after_ms"] > 0


def test_quick_query_answers_while_run_lane_is_saturated(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """The issue's picture, with the default lanes: 8 functions run, 50 more wait, ``ps`` answers."""
    daemon = make_daemon()
    cap, queued = 8, 50
    with daemon.connect() as runner, daemon.connect() as conn:
        runner.send_bytes(b"".join(orjson.dumps(run_request(i, "sleep 60", timeout=90)) + b"\n"
                                   for i in range(cap + queued)))
        until = time.monotonic() + 60
        while (lane := conn.call("status")["lanes"]["run"])["in_flight"] < cap:
            assert time.monotonic() < until, lane
            time.sleep(0.05)
        assert lane["cap"] == cap and lane["queued"] == queued
        instance = conn.call("status")["instance_id"]
        assert wait_until(lambda: len(instance_containers(instance)) == cap, limit=60)
        listed = conn.call("ps", {"all": True})  # as instance_containers: created ones too
        assert {c["id"][:12] for c in listed} >= set(instance_containers(instance))
        assert conn.call("images") and conn.call("ping") == "Pong"
        # The runs are all still pending: the queries did not wait for them.
        assert conn.call("status")["lanes"]["run"] == {
            "in_flight": cap, "queued": queued, "cap": cap, "queue_limit": 256}
    # Closing ``runner`` cancelled its runs; none of their containers may remain.
    assert wait_until(lambda: not instance_containers(instance), limit=30), daemon.log()


def test_time_queued_counts_against_the_deadline(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("run_allowance = 1\nlanes = { run = { cap = 1, queue = 10 } }\n")
    with daemon.connect() as conn:
        conn.send(run_request("blocker", "sleep 60", timeout=60))
        assert wait_until(lambda: conn.call("status")["lanes"]["run"]["in_flight"] == 1)
        # Deadline 1 s + 1 s allowance, all of it spent waiting behind the blocker.
        conn.send(run_request("queued", "echo never", timeout=1, name="lanetest-never-created"))
        reply = read_replies(conn, 1)["queued"]
        assert reply["error"]["code"] == -32001, reply
        assert conn.call("status")["lanes"]["run"] == {
            "in_flight": 1, "queued": 0, "cap": 1, "queue_limit": 10}
        instance = conn.call("status")["instance_id"]
        assert len(instance_containers(instance)) == 1  # the queued one never got a container
    assert wait_until(lambda: not instance_containers(instance), limit=15), daemon.log()


def test_a_flooding_connection_does_not_refuse_another_connections_pings(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """One connection keeps the query lane (1 slot, 8 places) over-full with pings; a second
    connection's pings all wait their turn in its own share, none is refused."""
    daemon = make_daemon("lanes = { query = { cap = 1, queue = 8 } }\n")
    stop = threading.Event()
    flood_outcomes: dict[str, int] = {"ok": 0, "overloaded": 0, "other": 0}
    burst = b"".join(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) + b"\n"
                     for i in range(200))

    with daemon.connect() as flooder, daemon.connect() as steady:
        def write() -> None:
            with contextlib.suppress(OSError):  # ends at the shutdown below
                while not stop.is_set():
                    flooder.send_bytes(burst)

        def read() -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    tally(flooder.read())

        def tally(reply: dict[str, Any]) -> None:
            if "result" in reply:
                flood_outcomes["ok"] += 1
            elif reply.get("error", {}).get("code") == -32000:
                flood_outcomes["overloaded"] += 1
            else:
                flood_outcomes["other"] += 1

        threads = [threading.Thread(target=target, daemon=True) for target in (write, read)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: flood_outcomes["overloaded"] > 0, limit=30), flood_outcomes
        steady_replies = []
        for _ in range(40):
            steady_replies.append(steady.request("ping"))
            time.sleep(0.03)
        lane = steady.call("status")["lanes"]["query"]
        stop.set()
        flooder.sock.shutdown(2)  # unblocks the flood's threads
        for thread in threads:
            thread.join(10)
    refused = [reply for reply in steady_replies if "error" in reply]
    assert refused == [], refused
    assert all(reply["result"] == "Pong" for reply in steady_replies)
    # The lane was over-full all along: the flood kept being refused while the steady pinged.
    assert lane["queued"] >= 1 and flood_outcomes["overloaded"] > 40, (lane, flood_outcomes)
