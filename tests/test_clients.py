"""The Python clients (Client, AsyncClient) against a real daemon and Podman."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from podman_rpc import AsyncClient, Client, ConnectionLost, Progress
from podman_rpc.protocol import errors
from podman_rpc.protocol.registry import METHODS
from tests.rig.daemon import REPO, DaemonProcess
from tests.rig.podman import podman


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


# --- typed methods -------------------------------------------------------------------

@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_registry_method_is_a_typed_method(cls: type) -> None:
    for spec in METHODS.values():
        fn = getattr(cls, spec.name.replace(".", "_"))
        params = inspect.signature(fn).parameters
        declared = {p.name: (p.required, p.default) for p in spec.params}
        got = {name: (p.default is inspect.Parameter.empty,
                      None if p.default is inspect.Parameter.empty else p.default)
               for name, p in params.items() if name not in ("self", "on_progress")}
        assert got == declared, spec.name
        assert ("on_progress" in params) == ("progress" in declared), spec.name
        assert fn.__doc__.strip() == spec.doc.strip()


def test_sync_client_typed_calls(daemon: DaemonProcess, busybox: str) -> None:
    arch = podman("info", "--format", "{{.Host.Arch}}").stdout.strip()
    version = podman("version", "--format", "{{.Server.Version}}").stdout.strip()
    with Client(daemon.socket_path) as client:
        assert client.ping() == "Pong"
        assert client.version() == version
        assert client.info(format="{{.Host.Arch}}") == arch
        assert client.status()["podman"]["reachable"] is True
        names = {m["name"] for m in client.rpc_discover()["methods"]}
        assert names == set(METHODS)
        assert client.call("ping") == "Pong"


def test_params_are_validated_before_anything_is_sent(tmp_path: Path) -> None:
    # No daemon listens here: a connection attempt would raise OSError instead.
    client = Client(tmp_path / "absent.sock")
    with pytest.raises(errors.InvalidParams) as bad_type:
        client.info(format=3)
    assert bad_type.value.data == {"kind": "InvalidParams", "field": "format",
                                   "reason": "expected string or null"}
    with pytest.raises(errors.InvalidParams) as unknown:
        client.ping(colour="red")
    assert unknown.value.data["field"] == "colour"
    with pytest.raises(errors.InvalidParams) as missing:
        client.exists()
    assert missing.value.data["field"] == "name"
    with pytest.raises(TypeError):
        client.ping(on_progress=print)  # ping has no progress to give
    with pytest.raises(OSError):
        client.ping()


def test_daemon_errors_raise_protocol_classes_with_data(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        with pytest.raises(errors.MethodNotFound) as nope:
            client.call("no.such.method")
        assert nope.value.code == -32601 and nope.value.data["method"] == "no.such.method"
        # The generic call does not validate: the daemon's own InvalidParams comes back.
        with pytest.raises(errors.InvalidParams) as bad:
            client.request("info", {"format": 3})
        assert bad.value.data["field"] == "format"
        assert client.ping() == "Pong"  # the connection survived both


def test_batch_and_notification(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        client.notify("ping")  # no reply may arrive for it, and none may confuse the next call
        results = client.batch([("ping", None), ("nope", None), ("info", {"format": "x"})])
        assert results[0] == "Pong"
        assert isinstance(results[1], errors.MethodNotFound)
        assert results[2] == "x"
        assert client.ping() == "Pong"


# --- concurrency on one connection ---------------------------------------------------

def test_sync_client_threads_share_one_connection(make_daemon) -> None:
    daemon = make_daemon()
    client = Client(daemon.socket_path)
    results: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            value = client.ping()
            with lock:
                results.append(value)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    pipelined = [client.submit("ping") for _ in range(100)]
    assert [f.result(60) for f in pipelined] == ["Pong"] * 100
    assert results == ["Pong"] * 200
    assert client.status()["connections"] == 1
    client.close()


def test_async_client_many_in_flight_on_one_connection(make_daemon) -> None:
    daemon = make_daemon()

    async def main() -> None:
        async with AsyncClient(daemon.socket_path) as client:
            calls = [client.ping() if i % 2 else client.status() for i in range(200)]
            results = await asyncio.gather(*calls)
            assert results[1::2] == ["Pong"] * 100
            assert all(r["version"] for r in results[0::2])
            status = await client.status()
            assert status["connections"] == 1
            assert status["requests"]["served"]["ping"] == 100

    asyncio.run(main())


# --- reconnect ---------------------------------------------------------------------

def test_sync_client_reconnects_after_daemon_restart(make_daemon) -> None:
    daemon = make_daemon()
    client = Client(daemon.socket_path)
    first = client.status()["instance_id"]
    daemon.stop()
    with pytest.raises(OSError):  # ConnectionLost or refused: nobody listens
        client.ping()
    daemon.start()
    assert client.ping() == "Pong"
    assert client.status()["instance_id"] != first
    client.close()


def test_async_client_reconnects_after_daemon_restart(make_daemon) -> None:
    daemon = make_daemon()

    async def main() -> None:
        client = AsyncClient(daemon.socket_path)
        first = (await client.status())["instance_id"]
        await asyncio.to_thread(daemon.stop)
        await asyncio.to_thread(daemon.start)
        assert await client.ping() == "Pong"
        assert (await client.status())["instance_id"] != first
        await client.close()

    asyncio.run(main())


def test_async_client_survives_a_new_event_loop(daemon: DaemonProcess) -> None:
    client = AsyncClient(daemon.socket_path)
    assert asyncio.run(client.ping()) == "Pong"
    assert asyncio.run(client.ping()) == "Pong"  # the first loop (and its connection) is gone


def test_pending_call_fails_with_connection_lost_when_daemon_dies(make_daemon) -> None:
    daemon = make_daemon()
    client = Client(daemon.socket_path)
    assert client.ping() == "Pong"
    daemon.kill()
    with pytest.raises(ConnectionError):
        client.ping()
    daemon.start()
    assert client.ping() == "Pong"
    assert issubclass(ConnectionLost, ConnectionError)
    client.close()


def test_a_refused_connection_raises_the_daemons_reason(make_daemon) -> None:
    daemon = make_daemon(config_text="max_connections = 1\n")
    with Client(daemon.socket_path) as holder:
        assert holder.ping() == "Pong"  # holds the one allowed connection
        with pytest.raises(errors.Overloaded) as sync_refused:
            Client(daemon.socket_path).ping()
        assert sync_refused.value.data["limit"] == 1

        async def main() -> None:
            # asyncio closes a transport whose write fails without reading what is
            # buffered, so when the first write races the refusal only the reset is seen.
            with pytest.raises((errors.Overloaded, ConnectionError)):
                await AsyncClient(daemon.socket_path).ping()

        asyncio.run(main())
        assert holder.ping() == "Pong"


# --- cancellation, on the wire -------------------------------------------------------

def test_cancelling_an_async_call_sends_cancel_request(tmp_path: Path) -> None:
    """Client-side wire behaviour: a recording server that never answers."""
    path = tmp_path / "rec.sock"
    received: list[bytes] = []

    async def main() -> None:
        got_cancel = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                received.append(line)
                if b"$/cancelRequest" in line:
                    got_cancel.set()

        server = await asyncio.start_unix_server(handle, str(path))
        async with AsyncClient(path) as client:
            task = asyncio.create_task(client.call("run", image="x"))
            while not received:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(TimeoutError):
                await client.request("ping", timeout=0.05)
            await asyncio.wait_for(got_cancel.wait(), 10)
            while len(received) < 4:
                await asyncio.sleep(0.01)
        server.close()

    asyncio.run(main())
    assert received == [
        b'{"jsonrpc":"2.0","id":1,"method":"run","params":{"image":"x"}}\n',
        b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}\n',
        b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":2}}\n',
    ]


# --- progress and cancellation against real runs ------------------------------------

def _wait_until(predicate, seconds: float = 30.0) -> bool:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def test_sync_progress_callback_gets_every_line_before_the_reply(daemon: DaemonProcess,
                                                                 busybox: str) -> None:
    seen: list[Progress] = []
    with Client(daemon.socket_path) as client:
        script = "for i in 1 2 3; do echo out$i; done; echo err >&2"
        result = client.run(image=busybox, command=["sh", "-c", script], on_progress=seen.append)
        # Progress precedes the reply, so the callback has had everything by now.
        assert [p.line for p in seen if p.stream == "stdout"] == ["out1", "out2", "out3"]
        assert [p.line for p in seen if p.stream == "stderr"] == ["err"]
        assert {p.id for p in seen} == {1}
        assert result["stdout"] == "out1\nout2\nout3\n" and result["stderr"] == "err\n"


def test_async_stream_iterates_progress_then_gives_the_result(daemon: DaemonProcess,
                                                              busybox: str) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.socket_path) as client:
            call = client.stream("run", image=busybox, command=["sh", "-c", "echo one; echo two"])
            lines = [(p.stream, p.line) async for p in call]
            result = await call
            assert lines == [("stdout", "one"), ("stdout", "two")]
            assert result["exit_code"] == 0 and result["stdout"] == "one\ntwo\n"
            with pytest.raises(TypeError):
                client.stream("ping")

    asyncio.run(main())


def test_cancelling_an_async_run_kills_and_removes_its_container(make_daemon,
                                                                  busybox: str) -> None:
    daemon = make_daemon()
    name = f"clients-cancel-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with AsyncClient(daemon.socket_path) as client:
            task = asyncio.create_task(client.run(image=busybox, name=name,
                                                  command="sleep 60", timeout=120))
            assert await asyncio.to_thread(_wait_until, lambda: _exists(name))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(_wait_until, lambda: not _exists(name))
            # The daemon answered the cancelled request with RequestCancelled (counted).
            for _ in range(200):
                if (await client.status())["requests"]["failed"].get("run") == 1:
                    break
                await asyncio.sleep(0.05)
            assert (await client.status())["requests"]["failed"].get("run") == 1
            assert await client.ping() == "Pong"  # the connection is still good

    asyncio.run(main())


def test_sync_client_timeout_cancels_the_run(daemon: DaemonProcess, busybox: str) -> None:
    name = f"clients-timeout-{uuid.uuid4().hex[:8]}"
    with Client(daemon.socket_path) as client:
        future = client.submit("run", {"image": busybox, "name": name, "command": "sleep 60",
                                       "timeout": 120})
        assert _wait_until(lambda: _exists(name))
        client.cancel(future)
        with pytest.raises(TimeoutError):
            future.result(5)
        assert _wait_until(lambda: not _exists(name))
        assert client.ping() == "Pong"


def test_run_errors_carry_data(daemon: DaemonProcess, busybox: str) -> None:
    with Client(daemon.socket_path) as client:
        with pytest.raises(errors.ContainerFailed) as failed:
            client.run(image=busybox, command=["sh", "-c", "echo bad; exit 4"])
        assert failed.value.data["exit_code"] == 4 and failed.value.data["stdout"] == "bad\n"
        with pytest.raises(errors.NotFound) as missing:
            client.inspect(name="localhost/never-built:nope")
        assert missing.value.code == -32011


# --- importable without the daemon's dependencies ------------------------------------

def test_clients_import_and_call_without_daemon_dependencies(daemon: DaemonProcess) -> None:
    program = textwrap.dedent(f"""
        import sys
        BLOCKED = ("uvloop", "podman", "structlog", "daemon", "requests")

        def blocked(name):
            return name.split(".")[0] in BLOCKED or name.startswith("podman_rpc.daemon")

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if blocked(name):
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Blocker())
        import asyncio
        from podman_rpc import AsyncClient, Client
        from podman_rpc import cli, compat
        path = {str(daemon.socket_path)!r}
        assert Client(path).ping() == "Pong"

        async def main():
            async with AsyncClient(path) as client:
                return await client.version()
        assert asyncio.run(main())
        assert cli.main(["call", "ping", "--socket", path]) == 0
        loaded = sorted(m for m in sys.modules if blocked(m))
        assert not loaded, loaded
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=60, cwd=REPO, env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "ok"
