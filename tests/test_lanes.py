"""Lanes against real Podman: the run cap holds, a full queue says Overloaded, queries are not starved.

The cap is checked from the containers' own clocks: each run prints the host's
uptime (``/proc/uptime`` is not namespaced) when it starts and when it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

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
        listed = conn.call("ps")
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
