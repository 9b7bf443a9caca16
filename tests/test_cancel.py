"""Deadlines, ``$/cancelRequest`` and disconnects against real Podman: each kills and removes.

Every container here gets a known name, so "it is gone" is checked in Podman
itself, not from the daemon's word.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, podman
from tests.test_lanes import read_replies, run_request
from tests.test_reaper import wait_until


def new_name() -> str:
    return f"canceltest-{uuid.uuid4().hex[:10]}"


def state_of(name: str) -> str | None:
    """The container's state ("running", "exited"...), or None if there is no such container."""
    found = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    return found.stdout.strip() or None if found.returncode == 0 else None


def start_long_run(conn: RawConnection, request_id: Any, name: str,
                   timeout: float = 60) -> None:
    """Send a long ``run`` and wait until its container is really running."""
    conn.send(run_request(request_id, "sleep 60", timeout=timeout, name=name))
    assert wait_until(lambda: state_of(name) == "running", limit=30), state_of(name)


def assert_gone(name: str) -> None:
    assert wait_until(lambda: state_of(name) is None, limit=10), f"{name}: {state_of(name)}"


def test_timeout_kills_and_removes(daemon: DaemonProcess) -> None:
    name = new_name()
    with daemon.connect() as conn:
        reply = conn.request("run", {"image": BUSYBOX_IMAGE, "command": ["sleep", "60"],
                                     "timeout": 1, "name": name})
    assert reply["error"]["code"] == -32001, reply
    assert reply["error"]["data"]["kind"] == "Timeout"
    assert_gone(name)


def test_configured_maximum_caps_the_deadline(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("run_allowance = 1\nlanes = { run = { max_deadline = 2 } }\n")
    name = new_name()
    with daemon.connect() as conn:
        reply = conn.request("run", {"image": BUSYBOX_IMAGE, "command": ["sleep", "60"],
                                     "timeout": 50, "name": name})
    # Uncapped, this would take 50 s and the connection's 30 s read timeout would fail it.
    assert reply["error"]["code"] == -32001, reply
    assert_gone(name)


def test_cancel_request_kills_and_replies_request_cancelled(daemon: DaemonProcess) -> None:
    name = new_name()
    with daemon.connect() as conn:
        start_long_run(conn, "long-1", name)
        conn.send({"jsonrpc": "2.0", "id": "cancel-1", "method": "$/cancelRequest",
                   "params": {"id": "long-1"}})
        replies = read_replies(conn, 2)
        # Nothing else may arrive for either id: a ping round-trip flushes the line.
        assert conn.call("ping") == "Pong"
    assert replies["cancel-1"]["result"] == {"cancelled": 1}
    error = replies["long-1"]["error"]
    assert error["code"] == -32800 and error["data"]["kind"] == "RequestCancelled"
    assert_gone(name)


def test_cancel_notification_and_unknown_ids(daemon: DaemonProcess) -> None:
    name = new_name()
    with daemon.connect() as conn:
        start_long_run(conn, 7, name)
        assert conn.call("$/cancelRequest", {"id": "no-such-request"}) == {"cancelled": 0}
        assert state_of(name) == "running"  # another id cancels nothing
        bad = conn.request("$/cancelRequest", {})
        assert bad["error"]["code"] == -32602
        conn.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 7}})
        reply = read_replies(conn, 1)[7]
    assert reply["error"]["code"] == -32800
    assert_gone(name)


def test_cancel_while_queued_never_creates_the_container(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("lanes = { run = { cap = 1, queue = 10 } }\n")
    first, second = new_name(), new_name()
    with daemon.connect() as conn:
        start_long_run(conn, "a", first)
        conn.send(run_request("b", "sleep 60", timeout=60, name=second))
        assert wait_until(lambda: conn.call("status")["lanes"]["run"]["queued"] == 1)
        conn.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "b"}})
        assert read_replies(conn, 1)["b"]["error"]["code"] == -32800
        assert conn.call("status")["lanes"]["run"]["queued"] == 0
        assert state_of(second) is None and state_of(first) == "running"
        conn.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "a"}})
        assert read_replies(conn, 1)["a"]["error"]["code"] == -32800
    assert_gone(first)


def test_disconnect_mid_run_leaves_nothing_behind(daemon: DaemonProcess) -> None:
    names = [new_name() for _ in range(3)]
    conn = daemon.connect()
    for index, name in enumerate(names):
        start_long_run(conn, index, name)
    conn.close()
    for name in names:
        assert_gone(name)
    with daemon.connect() as other:
        status = other.call("status")
    assert status["lanes"]["run"]["in_flight"] == 0
