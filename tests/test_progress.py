"""``$/progress`` notifications: in order, tagged with their request's id, all before its reply."""

from __future__ import annotations

from typing import Any

from tests.rig.daemon import DaemonProcess, RawConnection
from tests.test_lanes import run_request

LINES = 6
SCRIPT = (f"i=1; while [ $i -le {LINES} ]; do echo out$i; sleep 0.05; i=$((i+1)); done; "
          "echo oops >&2")


def until_reply(conn: RawConnection, request_id: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Everything read up to the reply for ``request_id``: (notifications, reply)."""
    notes: list[dict[str, Any]] = []
    while True:
        message = conn.read()
        if message.get("method") == "$/progress":
            notes.append(message["params"])
        elif message.get("id") == request_id:
            return notes, message
        else:
            raise AssertionError(f"unexpected message {message}")


def flush_after_reply(conn: RawConnection) -> list[dict[str, Any]]:
    """What arrives after a reply, up to a ping's answer: must hold no late progress."""
    conn.send({"jsonrpc": "2.0", "id": "flush", "method": "ping"})
    late, reply = until_reply(conn, "flush")
    assert reply["result"] == "Pong"
    return late


def test_progress_lines_arrive_in_order_before_the_reply(conn: RawConnection) -> None:
    conn.send(run_request("p1", SCRIPT, progress=True))
    notes, reply = until_reply(conn, "p1")
    assert "result" in reply, reply
    assert {n["id"] for n in notes} == {"p1"}
    stdout = [n["line"] for n in notes if n["stream"] == "stdout"]
    stderr = [n["line"] for n in notes if n["stream"] == "stderr"]
    assert [line.rstrip("\n") for line in stdout] == [f"out{i}" for i in range(1, LINES + 1)]
    assert [line.rstrip("\n") for line in stderr] == ["oops"]
    assert flush_after_reply(conn) == []


def test_no_progress_unless_asked(conn: RawConnection) -> None:
    conn.send(run_request("p2", SCRIPT))
    notes, reply = until_reply(conn, "p2")
    assert notes == [] and "result" in reply
    assert "out1" in str(reply["result"]["stdout"])


def test_concurrent_runs_keep_their_own_progress(daemon: DaemonProcess) -> None:
    with daemon.connect() as conn:
        for request_id in ("a", "b"):
            conn.send(run_request(request_id, SCRIPT.replace("out", f"{request_id}-"),
                                  progress=True))
        seen: dict[str, list[str]] = {"a": [], "b": []}
        replied: list[str] = []
        while len(replied) < 2:
            message = conn.read()
            if message.get("method") == "$/progress":
                params = message["params"]
                assert params["id"] not in replied, "progress after its reply"
                if params["stream"] == "stdout":
                    seen[params["id"]].append(params["line"].rstrip("\n"))
            else:
                assert message["id"] not in replied and "result" in message, message
                replied.append(message["id"])
        assert flush_after_reply(conn) == []
    for request_id, lines in seen.items():
        assert lines == [f"{request_id}-{i}" for i in range(1, LINES + 1)]
