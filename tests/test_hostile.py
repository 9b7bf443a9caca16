"""Every hostile-input limit, proven against a real daemon with small configured values.

Each limit must produce a clear JSON-RPC error (or a documented close) and leave
the daemon serving; a reader that never reads must not make it buffer without bound.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.peer import GROUP_ACCESS, SYSTEM_PYTHON, setpriv_args

pytestmark = pytest.mark.podman

LIMITS = """max_line_bytes = 8192
max_json_depth = 10
max_batch = 5
max_params_bytes = 1024
max_connections_per_uid = 4
max_connections_per_pid = 4
partial_line_timeout = 0.5
write_timeout = 1.0
write_buffer_high = 65536
"""
MakeDaemon = Callable[..., DaemonProcess]


def _req(method: str, rid: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def _closed_by_daemon(conn: RawConnection) -> bool:
    """True once the daemon has closed the connection (EOF or reset)."""
    try:
        conn.read_line()
    except (ConnectionError, OSError):
        return True
    return False


@pytest.fixture
def limited(make_daemon: MakeDaemon) -> DaemonProcess:
    return make_daemon(LIMITS)


def test_default_line_limit_is_one_mebibyte(daemon: DaemonProcess) -> None:
    with daemon.connect() as conn:
        padded = b" " * ((1 << 20) - 100) + orjson.dumps(_req("status", "under"))
        conn.send_bytes(padded + b"\n")
        assert conn.read()["id"] == "under"
        conn.send_bytes(b" " * (1 << 20) + b"x\n")
        reply = conn.read()
        assert reply["error"]["code"] == -32600 and reply["error"]["data"]["limit"] == 1 << 20
        assert conn.call("status")["draining"] is False


def test_line_limit_configured_and_split_across_writes(limited: DaemonProcess) -> None:
    with limited.connect() as conn:
        for _ in range(20):  # one 20 KiB line, in 1 KiB pieces
            conn.send_bytes(b"a" * 1024)
        conn.send_bytes(b"\n")
        reply = conn.read()
        assert reply["id"] is None and reply["error"]["data"] == {"kind": "InvalidRequest",
                                                                  "limit": 8192}
        assert conn.call("status")["draining"] is False


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"n": value}
    return value


def test_json_depth(limited: DaemonProcess) -> None:
    with limited.connect() as conn:
        shallow = conn.request("status", {"x": _nested(3)})
        assert shallow["error"]["code"] == -32602  # parsed fine; then "x" is no param of status
        deep = conn.request("status", {"x": _nested(20)})
        assert deep["error"]["code"] == -32600 and deep["error"]["data"]["limit"] == 10
        conn.send_bytes(b"[" * 3000 + b"]" * 3000 + b"\n")  # past orjson's own limit (1024)
        reply = conn.read()
        assert reply["error"]["code"] == -32700 and "too deep" in reply["error"]["message"]
        assert conn.call("status")["draining"] is False


def test_batch_size(limited: DaemonProcess) -> None:
    with limited.connect() as conn:
        conn.send([_req("status", i) for i in range(5)])
        assert sorted(r["id"] for r in conn.read()) == [0, 1, 2, 3, 4]
        conn.send([_req("status", i) for i in range(6)])
        reply = conn.read()
        assert isinstance(reply, dict) and reply["error"]["code"] == -32600
        assert reply["error"]["data"]["limit"] == 5


def test_params_size(limited: DaemonProcess) -> None:
    with limited.connect() as conn:
        small = conn.request("info", {"format": "{{.Host.Arch}}" + " " * 900}, "small")
        assert small["result"].strip()
        big = conn.request("info", {"format": "x" * 2000}, "big")
        assert big["id"] == "big" and big["error"]["code"] == -32602
        assert big["error"]["data"]["field"] == "params"


@pytest.mark.parametrize("line", [
    b"\x00\x00\x00", b"\xff\xfe{}", b'{"jsonrpc":"2.0","id":1,"method":"status"}\r',
    b'{"jsonrpc":"2.0","id":"\\ud800","method":"status"}', b"1e999",
    b'{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"status"}',
    b'{"jsonrpc":"2.0","id":1,"method":"status","params":[1,2]}',
    b'{"jsonrpc":"2.0","id":1,"method":"status","jsonrpc":"1.0"}',
], ids=["nul", "bad-utf8", "crlf", "lone-surrogate", "inf", "huge-id", "positional", "dup-key"])
def test_odd_bytes_get_one_reply_each(daemon: DaemonProcess, line: bytes) -> None:
    with daemon.connect() as conn:
        conn.send_bytes(line + b"\n" + orjson.dumps(_req("status", "after")) + b"\n")
        first, second = conn.read(), conn.read()
        assert first["jsonrpc"] == "2.0" and ("result" in first) != ("error" in first)
        assert second["id"] == "after" and "result" in second


def test_connections_per_uid(limited: DaemonProcess) -> None:
    held = [limited.connect() for _ in range(4)]
    try:
        for conn in held:
            assert conn.call("status")["connections"] >= 1
        with limited.connect() as extra:
            extra.send(_req("status", "too-many"))  # written before reading: no reset
            refusal = extra.read()
            assert refusal["error"]["code"] == -32000
            assert refusal["error"]["data"]["limit"] == 4
            assert _closed_by_daemon(extra)
        held.pop().close()
        for _ in range(200):  # the daemon notices the close asynchronously
            with limited.connect() as again:
                again.send(_req("status", "again"))
                reply = again.read()
                if reply["id"] == "again":
                    break
            time.sleep(0.02)
        assert reply["id"] == "again" and "result" in reply
    finally:
        for conn in held:
            conn.close()


HOLDER = r"""
import json, socket, sys
held, refusals = [], []
for _ in range(int(sys.argv[2])):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(sys.argv[1])
    sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    reply = json.loads(data.split(b"\n")[0])
    if "result" in reply:
        held.append(sock)
    else:
        refusals.append(reply["error"])
        sock.close()
print(json.dumps({"held": len(held), "refusals": refusals}), flush=True)
sys.stdin.read()  # hold the connections until the test closes our stdin
"""


def _holder(socket_path: Path, tries: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A process of uid 65534 that opens ``tries`` connections and holds those admitted."""
    process = subprocess.Popen([*setpriv_args(), SYSTEM_PYTHON, "-c", HOLDER, str(socket_path),
                                str(tries)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, cwd="/")
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def test_one_process_cannot_take_all_of_its_uids_connections(open_daemons: Any) -> None:
    """Per uid 4, so per process 2 (half, the default): a process holding all it may hold
    leaves room for another process of the same uid; past the uid's 4, a third is refused."""
    daemon = open_daemons("max_connections_per_uid = 4\n" + GROUP_ACCESS)
    processes = []
    try:
        first, got = _holder(daemon.socket_path, 6)
        processes.append(first)
        assert got["held"] == 2 and len(got["refusals"]) == 4, got
        for refusal in got["refusals"]:
            assert refusal["code"] == -32000 and refusal["data"]["scope"] == "pid"
            assert refusal["data"]["limit"] == 2
        second, got = _holder(daemon.socket_path, 2)  # same uid, another process: admitted
        processes.append(second)
        assert got == {"held": 2, "refusals": []}, got
        third, got = _holder(daemon.socket_path, 1)
        processes.append(third)
        assert got["held"] == 0 and got["refusals"][0]["data"]["scope"] == "uid", got
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(10)
    with daemon.connect() as conn:  # root, another uid: never counted against 65534
        assert conn.call("status")["draining"] is False


def test_total_connections(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon("max_connections = 3\n")
    held = [daemon.connect() for _ in range(3)]
    try:
        for conn in held:
            conn.call("status")
        with daemon.connect() as extra:
            refusal = extra.read()
            assert refusal["error"]["data"]["kind"] == "Overloaded"
            assert refusal["error"]["data"]["limit"] == 3 and _closed_by_daemon(extra)
    finally:
        for conn in held:
            conn.close()


def test_half_a_line_then_silence_is_closed(limited: DaemonProcess) -> None:
    with limited.connect() as idle, limited.connect() as stalled:
        idle.call("status")
        stalled.send_bytes(b'{"jsonrpc":"2.0","id":1,"meth')
        reply = stalled.read()  # arrives once partial_line_timeout (0.5 s) has passed
        assert reply["error"]["code"] == -32600 and "timed out" in reply["error"]["message"]
        assert _closed_by_daemon(stalled)
        # A connection with no partial line is not idle-closed: it still answers.
        assert idle.call("status")["draining"] is False


def test_a_line_trickled_byte_by_byte_is_cut_off_by_its_first_bytes_clock(
        limited: DaemonProcess) -> None:
    """More bytes do not extend a partial line's time: it must end within the timeout of its
    first byte (0.5 s here). A slow-loris client sending a byte every 0.1 s is closed."""
    with limited.connect() as slow, limited.connect() as steady:
        started = time.monotonic()
        closed_after = None
        for byte in b'{"jsonrpc":"2.0","id":1,"method":"status"' + b" " * 200:
            try:
                slow.send_bytes(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
            if time.monotonic() - started > 10:
                break
        if closed_after is None:  # the writes may all fit in buffers: read what it said
            reply = slow.read()
            closed_after = time.monotonic() - started
            assert "timed out" in reply["error"]["message"]
        assert closed_after < 5, closed_after  # with the clock re-armed per byte: never
        assert steady.call("status")["draining"] is False


def test_unfinished_lines_share_one_budget_and_the_oldest_goes_first(
        make_daemon: MakeDaemon) -> None:
    """Past max_partial_bytes_total, the connection holding the oldest partial line is closed
    with an error line; the others keep theirs and are served."""
    daemon = make_daemon("max_partial_bytes_total = 1048576\n")
    with daemon.connect() as first, daemon.connect() as second, daemon.connect() as third:
        first.send_bytes(b" " * 600_000)
        # A status round trip after the first's bytes were sent: the daemon has read them by
        # its reply. The third connection may be admitted a moment after connect() returns.
        until = time.monotonic() + 5
        while second.call("status")["connections"] != 3:
            assert time.monotonic() < until, "the third connection was never admitted"
            time.sleep(0.01)
        second.send_bytes(b" " * 600_000)  # 1.2 MB unfinished in all: over the budget
        reply = first.read()
        assert reply["error"]["code"] == -32600 and "budget" in reply["error"]["message"]
        assert _closed_by_daemon(first)
        second.send_bytes(orjson.dumps(_req("status", "kept")) + b"\n")
        assert second.read()["id"] == "kept"  # its 600 KB of spaces were kept, then parsed
        assert third.call("status")["draining"] is False


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_reader_that_never_reads_is_dropped_with_bounded_memory(limited: DaemonProcess) -> None:
    assert limited.process is not None
    pid = limited.process.pid
    with limited.connect() as watcher:
        watcher.call("status")
        peak_before = _vm_kib(pid, "VmHWM")
        hog = socket.socket(socket.AF_UNIX)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(str(limited.socket_path))
        requests = 3000  # ~19 KB of rpc.discover each: ~56 MB if the daemon buffered it all
        flood = b"".join(orjson.dumps(_req("rpc.discover", i)) + b"\n" for i in range(requests))
        send_error: list[BaseException] = []

        def push() -> None:
            try:
                hog.sendall(flood)
            except OSError as exc:  # reset by the daemon once it gives up on us
                send_error.append(exc)

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        # connect() returns before the daemon accepts: see the hog admitted first
        admitted = any(watcher.call("status")["connections"] == 2 or time.sleep(0.02)
                       for _ in range(250))
        assert admitted, "the hog's connection was never accepted"
        dropped = False
        for _ in range(600):  # bounded wait: the write timeout is 1 s
            if watcher.call("status")["connections"] == 1:
                dropped = True
                break
            time.sleep(0.05)
        peak_after = _vm_kib(pid, "VmHWM")
        hog.close()
        pusher.join(10)
        print(f"peak RSS {peak_before} KiB -> {peak_after} KiB for {requests} unread replies")
        assert dropped, "the daemon kept a connection whose reader never reads"
        assert (peak_after - peak_before) < 32 * 1024, (peak_before, peak_after)
        assert "client stopped reading" in limited.log_path.read_text()
        assert watcher.call("status")["draining"] is False


def test_a_flood_of_bad_lines_cannot_flood_the_log(limited: DaemonProcess) -> None:
    """Every bad line is answered, but past the connection's log budget it is only counted."""
    bad = 3000
    with limited.connect() as conn:
        conn.send_bytes(b"not json\n" * bad)
        for _ in range(bad):
            assert orjson.loads(conn.read_line())["error"]["code"] == -32700
        assert conn.call("status")["requests"] is not None  # still served
    records = []
    for _ in range(100):  # the close's summary is written after the socket closes
        records = [orjson.loads(line) for line in limited.log_path.read_text().splitlines()
                   if line.startswith("{")]
        if any(r.get("event") == "request log lines suppressed" for r in records):
            break
        time.sleep(0.05)
    parse_errors = [r for r in records if r.get("event") == "request"
                    and r.get("outcome") == "ParseError"]
    summaries = [r for r in records if r.get("event") == "request log lines suppressed"]
    written = len(parse_errors)
    suppressed = sum(r.get("suppressed", 0) for r in parse_errors)
    suppressed += sum(r["count"] for r in summaries)
    assert written < bad // 2, written  # the budget held: burst 500 plus its 100/s refill
    assert written + suppressed == bad  # and every line is accounted for
    assert summaries and summaries[-1]["pid"] == os.getpid()
