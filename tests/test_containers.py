"""ps, kill, rm, logs, stop and wait against real Podman through a real daemon."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.rig.daemon import RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, podman


def container_exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def state(name: str) -> str:
    return podman("container", "inspect", "--format", "{{.State.Status}}", name).stdout.strip()


@pytest.fixture
def running(conn: RawConnection) -> Iterator[str]:
    """A detached container that prints two lines and sleeps; removed after the test."""
    name = f"t3ctr-{uuid.uuid4().hex[:10]}"
    result = conn.call("run", {"image": BUSYBOX_IMAGE, "name": name, "detach": True,
                               "timeout": 60, "auto_remove": False,
                               "command": ["sh", "-c", "echo one; echo two; echo warn >&2; "
                                                       "exec sleep 60"]})
    assert result["status"] == "running"
    yield name
    podman("rm", "-f", "-t", "0", name, check=False)


def error_of(conn: RawConnection, method: str, params: dict[str, Any]) -> dict[str, Any]:
    reply = conn.request(method, params)
    assert "error" in reply, reply
    return reply["error"]


def test_ps_lists_running_and_all_lists_exited(conn: RawConnection, running: str) -> None:
    listed = {c["name"]: c for c in conn.call("ps")}
    assert running in listed
    entry = listed[running]
    assert entry["status"] == "running" and entry["image"] == [BUSYBOX_IMAGE]
    assert len(entry["id"]) == 64 and entry["created"].endswith("Z")
    conn.call("kill", {"name": running})
    conn.call("wait", {"name": running, "timeout": 10})
    assert running not in {c["name"] for c in conn.call("ps")}
    assert {c["name"]: c for c in conn.call("ps", {"all": True})}[running]["status"] == "exited"


def test_kill_defaults_to_sigkill(conn: RawConnection, running: str) -> None:
    result = conn.call("kill", {"name": running})
    assert result == {"container_id": running, "message": "Container killed with signal SIGKILL"}
    assert conn.call("wait", {"name": running, "timeout": 10})["exit_code"] == 137


def test_kill_with_signal(conn: RawConnection, running: str) -> None:
    result = conn.call("kill", {"name": running, "signal": "SIGTERM"})
    assert result["message"] == "Container killed with signal SIGTERM"
    # sleep as PID 1 ignores SIGTERM, so it is still running
    assert state(running) == "running"


def test_kill_bad_signal(conn: RawConnection, running: str) -> None:
    error = error_of(conn, "kill", {"name": running, "signal": "SIGNOPE"})
    assert error["code"] == -32602 and error["data"]["field"] == "signal"
    assert state(running) == "running"


def test_kill_stopped_container_is_conflict(conn: RawConnection, running: str) -> None:
    conn.call("kill", {"name": running})
    conn.call("wait", {"name": running, "timeout": 10})
    error = error_of(conn, "kill", {"name": running})
    assert error["code"] == -32012 and error["data"]["kind"] == "Conflict"


@pytest.mark.parametrize("method, extra", [
    ("kill", {}), ("rm", {}), ("rm", {"force": True}), ("logs", {}), ("stop", {}),
    ("wait", {"timeout": 5}),
])
def test_unknown_container(conn: RawConnection, method: str, extra: dict[str, Any]) -> None:
    error = error_of(conn, method, {"name": f"t3-missing-{uuid.uuid4().hex[:8]}", **extra})
    assert error["code"] == -32011 and error["data"]["kind"] == "ContainerNotFound"


def test_rm_running_needs_force(conn: RawConnection, running: str) -> None:
    error = error_of(conn, "rm", {"name": running})
    assert error["code"] == -32012 and error["data"]["kind"] == "Conflict"
    assert container_exists(running)
    result = conn.call("rm", {"name": running, "force": True})
    assert result == {"container_id": running, "message": "Container deleted successfully"}
    assert not container_exists(running)


def test_logs_and_tail(conn: RawConnection, running: str) -> None:
    conn.call("kill", {"name": running})
    conn.call("wait", {"name": running, "timeout": 10})
    full = conn.call("logs", {"name": running})
    assert full == {"container_id": running, "stdout": "one\ntwo\n", "stderr": "warn\n"}
    # tail counts lines across both streams, in the order they were written
    assert conn.call("logs", {"name": running, "tail": 2}) == {
        "container_id": running, "stdout": "two\n", "stderr": "warn\n"}


def test_stop(conn: RawConnection, running: str) -> None:
    result = conn.call("stop", {"name": running, "timeout": 0})
    assert result == {"container_id": running, "message": "Container stopped"}
    assert state(running) == "exited"
    # stopping a stopped container is not an error
    assert conn.call("stop", {"name": running, "timeout": 0})["message"] == "Container stopped"


def test_wait_timeout_then_exit_code(conn: RawConnection, running: str) -> None:
    error = error_of(conn, "wait", {"name": running, "timeout": 0.5})
    assert error["code"] == -32001 and error["data"]["kind"] == "Timeout"
    assert running in error["message"]
    conn.call("kill", {"name": running})
    assert conn.call("wait", {"name": running}) == {"container_id": running, "exit_code": 137}
