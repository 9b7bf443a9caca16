"""SIGTERM drains: in-flight work finishes (or is cancelled after the grace period), exit 0.

Each test reads its connection to the end, so "no request gets two replies and
none gets none" is checked on everything the daemon ever wrote.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import PodmanService
from tests.test_cancel import assert_gone, new_name, start_long_run, state_of
from tests.test_lanes import run_request
from tests.test_reaper import wait_until


def refuses_connections(daemon: DaemonProcess) -> bool:
    """True once the daemon no longer accepts: it has started draining."""
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        probe.connect(str(daemon.socket_path))
    except OSError:
        return True
    probe.close()
    return False


def read_to_end(conn: RawConnection) -> list[dict[str, Any]]:
    """Every message until the daemon closes the connection."""
    messages = []
    while True:
        try:
            messages.append(conn.read())
        except ConnectionError:
            return messages


def replies_by_id(messages: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    replies: dict[Any, dict[str, Any]] = {}
    for message in messages:
        if "method" in message:
            continue
        assert message["id"] not in replies, f"two replies for {message['id']}"
        replies[message["id"]] = message
    return replies


def sigterm_and_wait_for_draining(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: refuses_connections(daemon), limit=10)


def test_sigterm_lets_in_flight_run_finish(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("drain_grace = 30\n")
    name = new_name()
    with daemon.connect() as conn:
        conn.send(run_request("work", "sleep 3; echo finished", timeout=30, name=name))
        assert wait_until(lambda: state_of(name) == "running", limit=30)
        sigterm_and_wait_for_draining(daemon)
        conn.send({"jsonrpc": "2.0", "id": "late", "method": "ping"})
        conn.send({"jsonrpc": "2.0", "id": "late-run", "method": "run",
                   "params": {"image": "localhost/busybox:latest", "command": ["true"]}})
        conn.send({"jsonrpc": "2.0", "id": "late-status", "method": "status"})
        messages = read_to_end(conn)
    assert daemon.process is not None and daemon.process.wait(30) == 0
    replies = replies_by_id(messages)
    assert set(replies) == {"work", "late", "late-run", "late-status"}, messages
    assert replies["late-status"]["result"]["draining"] is True  # local methods still answer
    assert "finished" in str(replies["work"].get("result", {}).get("stdout")), (replies, daemon.log())
    for late in ("late", "late-run"):
        assert replies[late]["error"]["code"] == -32002
        assert replies[late]["error"]["data"]["kind"] == "ShuttingDown"
    assert_gone(name)


def test_grace_period_over_cancels_and_removes(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("drain_grace = 1\n")
    names = [new_name(), new_name()]
    with daemon.connect() as conn:
        for index, name in enumerate(names):
            start_long_run(conn, index, name)
        sigterm_and_wait_for_draining(daemon)
        messages = read_to_end(conn)
    assert daemon.process is not None and daemon.process.wait(30) == 0
    replies = replies_by_id(messages)
    assert set(replies) == {0, 1}
    for reply in replies.values():
        assert reply["error"]["code"] == -32002, reply
    for name in names:
        # The daemon waited for its cleanup before exiting: nothing to wait for here.
        assert state_of(name) is None


def test_idle_daemon_exits_0_and_unlinks_its_socket(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    with daemon.connect() as conn:
        assert conn.call("status")["draining"] is False
        assert daemon.terminate(30) == 0
        assert read_to_end(conn) == []
    assert not daemon.socket_path.exists()


def test_status_reports_what_the_issue_lists(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    with daemon.connect() as conn, daemon.connect():
        podman_version = conn.call("version")
        conn.call("ping")
        conn.request("inspect", {"name": "localhost/no-such-image:latest"})
        status = conn.call("status")
    assert status["uptime_s"] > 0
    assert status["podman"]["reachable"] is True and status["podman"]["version"] == podman_version
    assert status["connections"] == 2
    for lane in ("local", "query", "run", "build"):
        assert set(status["lanes"][lane]) >= {"in_flight", "queued", "cap"}
    assert status["lanes"]["run"]["cap"] == 8 and status["lanes"]["build"]["cap"] == 1
    assert status["lanes"]["query"]["cap"] == 16
    assert status["requests"]["served"]["ping"] == 1 and status["requests"]["served"]["version"] == 1
    assert status["requests"]["failed"]["inspect"] == 1
    assert isinstance(status["containers_reaped"], int)
    assert status["version"] and status["protocol_version"]


def test_sigterm_removes_own_detached_containers(make_daemon: Callable[..., DaemonProcess]) -> None:
    """A detached run would outlive the daemon unsupervised: the last reaper pass removes it."""
    daemon = make_daemon("drain_grace = 1\n")
    name = new_name()
    with daemon.connect() as conn:
        reply = conn.request("run", {"image": "localhost/busybox:latest", "name": name,
                                     "command": ["sleep", "60"], "detach": True, "timeout": 60})
        assert reply["result"]["status"] == "running", reply
        assert state_of(name) == "running"
    assert daemon.terminate() == 0
    assert state_of(name) is None, daemon.log()
    log = daemon.log()
    assert "final reap pass" in log
    assert "signal received: shutting down" in log and '"event":"draining"' in log


@pytest.mark.parametrize("a_step_fails", [False, True])
def test_shutdown_undoes_every_startup_step(tmp_path: Path, podman_service: PodmanService,
                                            a_step_fails: bool) -> None:
    """In process: once serve() returns, all that startup acquired is released, in the
    teardown stack's order; a step that raises does not keep the later ones from running."""
    import asyncio

    import uvloop

    from podman_rpc.daemon.config import load_config
    from podman_rpc.daemon.server import Server

    config = load_config(overrides={"socket_path": tmp_path / "rpc.sock",
                                    "podman_socket": podman_service.socket_path,
                                    "embedded_podman": False, "idle_timeout": 3600.0})
    server = Server(config)

    def fail() -> None:
        raise RuntimeError("a teardown step failed")

    async def scenario() -> tuple[bytes, bytes]:
        serving = asyncio.get_running_loop().create_task(server.serve())
        while server.idle is None:
            await asyncio.sleep(0.01)
        if a_step_fails:
            server._teardown.callback(fail)  # runs first: pushed after every startup step
        reader, writer = await asyncio.open_unix_connection(str(config.socket_path))
        writer.write(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
        answer = await reader.readline()
        server.should_exit.set()
        try:
            await serving
        finally:
            rest = await asyncio.wait_for(reader.read(), 10)  # the drain closed it
            writer.close()
        return answer, rest

    if a_step_fails:
        with pytest.raises(RuntimeError, match="a teardown step failed"):
            uvloop.run(scenario())
    else:
        answer, rest = uvloop.run(scenario())
        assert b'"draining":false' in answer and rest == b""
    state = server.state
    assert state is not None and state.draining and not state.connections
    assert server._server is not None and not server._server.is_serving()
    assert server._version_task is not None and server._version_task.done()
    assert server._spare_listener is None  # the dup kept for a called-off idle exit
    assert not config.socket_path.exists()  # ours, so removed
    with pytest.raises(RuntimeError):  # the pool's workers are gone
        asyncio.run(state.pool.call(lambda client: None))
