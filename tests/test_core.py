"""The daemon core against real Podman: JSON-RPC rules on the wire, lifecycle, Podman outages."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.rig.daemon import REPO, DaemonProcess, RawConnection
from tests.rig.podman import podman


def test_ping_version_info(conn: RawConnection) -> None:
    assert conn.call("ping") == "Pong"
    cli_version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    assert conn.call("version") == cli_version
    info = conn.call("info")
    assert info["host"]["arch"]
    assert conn.call("info", {"format": "{{.Host.Arch}}"}) == info["host"]["arch"]


def test_exact_bytes_of_success_and_id_echo(conn: RawConnection) -> None:
    for _rid, wire in [(7, b"7"), ("abc", b'"abc"'), (None, b"null"), (-1.5, b"-1.5")]:
        conn.send_bytes(b'{"jsonrpc":"2.0","id":' + wire + b',"method":"ping"}\n')
        assert conn.read_line() == b'{"jsonrpc":"2.0","id":' + wire + b',"result":"Pong"}'


def test_parse_error_then_valid_request_on_same_connection(conn: RawConnection) -> None:
    conn.send_bytes(b"\x00\xffgarbage{{{\n")
    assert conn.read_line() == (b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,'
                                b'"message":"Parse error: malformed JSON","data":{"kind":"ParseError"}}}')
    assert conn.call("ping") == "Pong"


def test_notifications_get_no_reply(conn: RawConnection) -> None:
    conn.send_bytes(b'{"jsonrpc":"2.0","method":"ping"}\n{"jsonrpc":"2.0","method":"nope"}\n'
                    b'{"jsonrpc":"2.0","id":"after","method":"status"}\n')
    reply = conn.read()
    assert reply["id"] == "after" and "result" in reply


def test_batch_replies_without_notifications(conn: RawConnection) -> None:
    conn.send_bytes(b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"ping"},'
                    b'{"jsonrpc":"2.0","id":2,"method":"nope"},5]\n')
    replies = conn.read()
    assert isinstance(replies, list) and len(replies) == 3
    by_id = {orjson.dumps(r["id"]): r for r in replies}
    assert by_id[b"1"]["result"] == "Pong"
    assert by_id[b"2"]["error"]["code"] == -32601
    assert by_id[b"null"]["error"]["code"] == -32600


def test_batch_of_only_notifications_gets_nothing(conn: RawConnection) -> None:
    conn.send_bytes(b'[{"jsonrpc":"2.0","method":"ping"}]\n{"jsonrpc":"2.0","id":"x","method":"status"}\n')
    assert conn.read()["id"] == "x"


def test_empty_batch_is_invalid_request(conn: RawConnection) -> None:
    conn.send_bytes(b"[]\n")
    assert conn.read_line() == (b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
                                b'"message":"Empty batch","data":{"kind":"InvalidRequest"}}}')


def test_unknown_method_and_bad_params(conn: RawConnection) -> None:
    reply = conn.request("no.such")
    assert reply["error"]["code"] == -32601 and reply["error"]["data"]["method"] == "no.such"
    reply = conn.request("info", {"format": 3})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"] == {"kind": "InvalidParams", "field": "format",
                                      "reason": "expected string or null"}
    reply = conn.request("ping", {"surprise": True})
    assert reply["error"]["data"]["field"] == "surprise"


def test_missing_jsonrpc_version_keeps_id(conn: RawConnection) -> None:
    conn.send_bytes(b'{"id":9,"method":"ping"}\n')
    reply = conn.read()
    assert reply["id"] == 9 and reply["error"]["code"] == -32600


def test_oversize_line_is_rejected_and_connection_survives(make_daemon) -> None:
    daemon = make_daemon("max_line_bytes = 4096\n")
    with daemon.connect() as conn:
        conn.send_bytes(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * 10000)
        conn.send_bytes(b'"}}\n')
        reply = conn.read()
        assert reply["id"] is None and reply["error"]["code"] == -32600
        assert reply["error"]["data"]["limit"] == 4096
        assert conn.call("ping") == "Pong"


def test_slow_request_does_not_block_fast_one(conn: RawConnection) -> None:
    conn.send({"jsonrpc": "2.0", "id": "slow", "method": "info"})
    conn.send({"jsonrpc": "2.0", "id": "fast", "method": "status"})
    first, second = conn.read(), conn.read()
    assert (first["id"], second["id"]) == ("fast", "slow")
    assert "result" in second


def test_many_in_flight_on_one_connection(conn: RawConnection) -> None:
    ids = list(range(200))
    conn.send_bytes(b"".join(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) + b"\n"
                             for i in ids))
    replies = [conn.read() for _ in ids]
    assert sorted(r["id"] for r in replies) == ids
    assert all(r["result"] == "Pong" for r in replies)


def test_abrupt_disconnect_does_not_disturb_others(daemon: DaemonProcess) -> None:
    with daemon.connect() as other:
        for _ in range(20):
            raw = socket.socket(socket.AF_UNIX)
            raw.connect(str(daemon.socket_path))
            raw.sendall(b'{"jsonrpc":"2.0","id":1,"method":"info"}\n{"jsonrpc"')
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()
        assert other.call("ping") == "Pong"
    assert daemon.process is not None and daemon.process.poll() is None


def test_socket_mode_is_0660(daemon: DaemonProcess) -> None:
    assert daemon.socket_path.stat().st_mode & 0o777 == 0o660


def test_rpc_discover_is_served(conn: RawConnection) -> None:
    doc = conn.call("rpc.discover")
    assert doc["openrpc"].startswith("1.")
    assert {"ping", "run", "status", "rpc.discover"} <= {m["name"] for m in doc["methods"]}


def _cli(*args: str, socket_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podman_rpc.cli", *args, "--socket", str(socket_path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_podman_rpc_call(daemon: DaemonProcess) -> None:
    ok = _cli("call", "ping", socket_path=daemon.socket_path)
    assert (ok.returncode, orjson.loads(ok.stdout), ok.stderr) == (0, "Pong", "")
    fmt = _cli("call", "info", '{"format": "{{.Host.Arch}}"}', socket_path=daemon.socket_path)
    assert fmt.returncode == 0 and orjson.loads(fmt.stdout)
    bad = _cli("call", "nope", socket_path=daemon.socket_path)
    assert bad.returncode == 1 and bad.stdout == ""
    assert orjson.loads(bad.stderr)["code"] == -32601


def test_socat_as_an_operator_would(daemon: DaemonProcess) -> None:
    out = subprocess.run(["socat", "-t", "10", "-", f"UNIX-CONNECT:{daemon.socket_path}"],
                         input=b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
                               b'{"jsonrpc":"2.0","id":2,"method":"version"}\n',
                         capture_output=True, timeout=30).stdout
    replies = {r["id"]: r for r in map(orjson.loads, out.splitlines())}
    assert replies[1]["result"] == "Pong" and isinstance(replies[2]["result"], str)


def test_refuses_to_start_over_a_live_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    clash = DaemonProcess(tmp_path / "clash", daemon.podman_socket)
    clash.socket_path = daemon.socket_path
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(clash.command(), capture_output=True, text=True, timeout=60,
                            env=env, cwd=REPO)
    assert result.returncode == 1
    assert "another daemon is already answering" in result.stderr
    assert daemon.process is not None and daemon.process.poll() is None


def test_replaces_a_stale_socket_and_exits_0_on_sigterm(make_daemon) -> None:
    daemon = make_daemon(start=False)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(daemon.socket_path))
    stale.close()  # the file stays, nobody listens
    daemon.start()
    with daemon.connect() as conn:
        assert conn.call("ping") == "Pong"
    assert daemon.terminate() == 0
    assert not daemon.socket_path.exists()


def test_podman_down_fails_fast_then_recovers(own_podman) -> None:
    daemon, own = own_podman
    with daemon.connect() as conn:
        assert conn.call("ping") == "Pong"
        own.kill()
        started = time.monotonic()
        reply = conn.request("ping")
        assert reply["error"]["code"] == -32010
        assert reply["error"]["data"]["kind"] == "PodmanUnavailable"
        assert time.monotonic() - started < 5  # fails fast, not at the deadline
        assert conn.call("status")["podman"]["reachable"] is False
        own.start()
        assert conn.call("ping") == "Pong"
        assert conn.call("status")["podman"]["reachable"] is True


def test_embedded_podman_when_none_answers(make_daemon, tmp_path: Path) -> None:
    daemon = make_daemon("embedded_podman = true\n", start=False)
    daemon.podman_socket = tmp_path / "nothing-here.sock"
    daemon.start(wait=60)
    with daemon.connect() as conn:
        assert conn.call("ping") == "Pong"
        status = conn.call("status")
    embedded_socket = Path(status["podman"]["socket"])
    assert embedded_socket != daemon.podman_socket and embedded_socket.is_relative_to(daemon.directory)
    daemon_pid = daemon.process.pid
    (service_pid,) = _pids_with_arg(f"unix://{embedded_socket}", parent=daemon_pid)
    os.kill(service_pid, signal.SIGKILL)  # the supervisor must bring it back
    with daemon.connect() as conn:
        until = time.monotonic() + 60
        while conn.request("ping").get("result") != "Pong":
            assert time.monotonic() < until, daemon.log()
            time.sleep(0.2)
    (restarted_pid,) = _pids_with_arg(f"unix://{embedded_socket}", parent=daemon_pid)
    assert restarted_pid != service_pid
    assert daemon.terminate() == 0
    assert _pids_with_arg(f"unix://{embedded_socket}") == []
    assert not embedded_socket.exists() or not _answers(embedded_socket)


def _pids_with_arg(arg: str, parent: int | None = None) -> list[int]:
    """Processes with ``arg`` on their command line (only ``parent``'s children, if given).

    Podman forks helpers (the OCI runtime, conmon), and until a fork execs, the child
    shows Podman's own command line: only the daemon's child is the supervised service.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and arg.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent is None or ppid == parent:
                    pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _answers(path: Path) -> bool:
    from podman_rpc.daemon.podman.http import podman_answers

    return asyncio.run(podman_answers(path))


def test_sigint_also_stops_cleanly(make_daemon) -> None:
    daemon = make_daemon()
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(30) == 0


def test_log_lines_name_method_and_never_params(make_daemon) -> None:
    daemon = make_daemon()
    with daemon.connect() as conn:
        conn.request("info", {"format": "SECRET-{{.Host.Arch}}"})
    daemon.terminate()
    lines = [orjson.loads(line) for line in daemon.log_path.read_text().splitlines()
             if line.startswith("{")]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert any(line["method"] == "info" and line["outcome"] == "ok" and "duration_ms" in line
               and line["uid"] == os.getuid() for line in request_lines)
    assert "SECRET" not in daemon.log_path.read_text()
