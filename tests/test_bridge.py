"""``podman-rpc bridge`` and ``Client.bridge``: a local subprocess stands in for ssh."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from podman_rpc import AsyncClient, Client
from podman_rpc.protocol import errors
from tests.rig.daemon import REPO, DaemonProcess


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def bridge_argv(path: Path | str) -> list[str]:
    return [sys.executable, "-m", "podman_rpc.cli", "bridge", "--socket", str(path)]


def direct(path: Path, data: bytes) -> bytes:
    """What the daemon answers to ``data`` on a plain connection, half-closed after it."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(1 << 16):
            out += chunk
    return out


SESSION = (b'{"jsonrpc":"2.0","id":"a","method":"ping"}\n'
           b'this is not json\n'
           b'{"jsonrpc":"2.0","id":2,"method":"nope"}\n'
           b'{"jsonrpc":"2.0","method":"ping"}\n'
           b'[{"jsonrpc":"2.0","id":3,"method":"ping"},'
           b'{"jsonrpc":"2.0","id":4,"method":"version"}]\n'
           b'{"jsonrpc":"2.0","id":5,"method":"info","params":{"format":"'
           + b"x" * 200_000 + b'"}}\n')


def test_bridge_copies_bytes_exactly_and_exits_after_stdin_ends(daemon: DaemonProcess) -> None:
    bridged = subprocess.run(bridge_argv(daemon.socket_path), input=SESSION,
                             capture_output=True, timeout=60, cwd=REPO, env=_env())
    assert bridged.returncode == 0, bridged.stderr
    assert bridged.stderr == b""
    plain = direct(daemon.socket_path, SESSION)
    # Replies come in completion order, so compare them as sets of exact lines.
    assert sorted(bridged.stdout.splitlines()) == sorted(plain.splitlines())
    assert len(bridged.stdout.splitlines()) == 5  # the notification gets no reply
    big = next(orjson.loads(line) for line in bridged.stdout.splitlines() if b'"id":5' in line)
    assert big["result"] == "x" * 200_000


def test_bridge_reads_stdin_from_a_plain_file(daemon: DaemonProcess, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    with requests.open("rb") as stdin:
        out = subprocess.run(bridge_argv(daemon.socket_path), stdin=stdin, capture_output=True,
                             timeout=60, cwd=REPO, env=_env())
    assert (out.returncode, out.stdout) == (0, b'{"jsonrpc":"2.0","id":1,"result":"Pong"}\n')


def test_installed_script_as_an_ssh_forced_command(daemon: DaemonProcess) -> None:
    """sshd runs ``command="podman-rpc bridge ..."`` through the user's shell."""
    script = Path(sys.executable).parent / "podman-rpc"
    if not script.exists():
        pytest.fail(f"{script} is missing: install the project (pip install -e .)")
    out = subprocess.run(["sh", "-c", f"{script} bridge --socket {daemon.socket_path}"],
                         input=b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n',
                         capture_output=True, timeout=60, env=_env())
    assert out.stdout == b'{"jsonrpc":"2.0","id":1,"result":"Pong"}\n'
    assert out.returncode == 0


def test_client_bridge_calls_and_concurrency(make_daemon) -> None:
    daemon = make_daemon()
    with Client.bridge(bridge_argv(daemon.socket_path)) as client:
        assert client.ping() == "Pong"
        futures = [client.submit("ping") for _ in range(100)]
        assert [f.result(60) for f in futures] == ["Pong"] * 100
        with pytest.raises(errors.MethodNotFound):
            client.call("nope")
        status = client.status()
        assert status["connections"] == 1  # the bridge's one connection carries everything
        assert status["requests"]["served"]["ping"] == 101


def test_async_client_bridge(daemon: DaemonProcess) -> None:
    async def main() -> None:
        async with AsyncClient.bridge(bridge_argv(daemon.socket_path)) as client:
            results = await asyncio.gather(*(client.ping() for _ in range(50)))
            assert results == ["Pong"] * 50
            assert await client.info(format="{{.Host.Arch}}")

    asyncio.run(main())


def test_bridge_exits_when_the_daemon_closes(make_daemon) -> None:
    daemon = make_daemon()
    proc = subprocess.Popen(bridge_argv(daemon.socket_path), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=REPO, env=_env())
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    proc.stdin.flush()
    assert proc.stdout.readline() == b'{"jsonrpc":"2.0","id":1,"result":"Pong"}\n'
    daemon.stop()  # stdin stays open: only the daemon's close can end the bridge
    assert proc.wait(30) == 0
    proc.stdin.close()
    proc.stdout.close()


def test_client_bridge_reconnects_after_daemon_restart(make_daemon) -> None:
    daemon = make_daemon()
    client = Client.bridge(bridge_argv(daemon.socket_path))
    first = client.status()["instance_id"]
    daemon.stop()
    # The old bridge notices the close and exits; a request written into it before
    # then could be lost, so a real client sees this only when restarts race calls.
    until = time.monotonic() + 30
    while client.connected and time.monotonic() < until:
        time.sleep(0.02)
    assert not client.connected
    daemon.start()
    assert client.ping() == "Pong"  # a new bridge process, a new connection
    assert client.status()["instance_id"] != first
    client.close()


def test_bridge_to_a_missing_socket(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    out = subprocess.run(bridge_argv(missing), input=b"", capture_output=True, timeout=60,
                         cwd=REPO, env=_env())
    assert out.returncode == 2
    assert b"cannot reach the daemon" in out.stderr and out.stdout == b""
    with Client.bridge(bridge_argv(missing)) as client, pytest.raises(ConnectionError):
        client.ping()
