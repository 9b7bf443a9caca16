"""Socket activation, sd_notify and idle exit, with real daemons in front of the real Podman.

systemd is not PID 1 here: ``systemd-socket-activate`` plays the socket unit
(tests/rig/activation.py), a datagram socket plays NOTIFY_SOCKET.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rig.activation import Activator, SocketManager, daemon_env, serve_command, wait_for
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import PodmanService

pytestmark = pytest.mark.podman
_counter = itertools.count()


@pytest.fixture
def activator(rig_dir: Path,
              podman_service: PodmanService) -> Iterator[Callable[..., Activator]]:
    made: list[Activator] = []

    def make(**kwargs: object) -> Activator:
        directory = rig_dir / f"act{next(_counter)}"
        made.append(Activator(directory, podman_service.socket_path, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for item in made:
        item.stop()


@pytest.fixture
def manager(rig_dir: Path, podman_service: PodmanService) -> Iterator[Callable[..., SocketManager]]:
    made: list[SocketManager] = []

    def make(extra: list[str]) -> SocketManager:
        directory = rig_dir / f"mgr{next(_counter)}"
        made.append(SocketManager(directory, podman_service.socket_path, extra).start())
        return made[-1]

    yield make
    for item in made:
        item.stop()


def ask(path: Path, method: str, params: dict | None = None) -> object:
    with RawConnection(path) as conn:
        return conn.call(method, params)


def test_first_connection_starts_daemon_and_second_reuses_it(activator) -> None:  # type: ignore[no-untyped-def]
    act = activator().start()
    assert act.process is not None
    mode_before = act.socket_path.stat().st_mode
    with RawConnection(act.socket_path) as first:
        assert first.call("ping") == "Pong"
        instance = first.call("status")["instance_id"]
    # systemd-socket-activate execs the daemon: same pid, nothing in between.
    assert instance.split(".")[0] == str(act.process.pid)
    with RawConnection(act.socket_path) as second:
        assert second.call("status")["instance_id"] == instance
        assert second.call("ping") == "Pong"
    assert act.stop() == 0
    # A socket the daemon did not create is neither removed nor chmod-ed by it.
    assert act.socket_path.stat().st_mode == mode_before


def test_named_descriptor_is_chosen_among_several(activator) -> None:  # type: ignore[no-untyped-def]
    act = activator(names=["other.sock", "rpc.sock"],
                    activate_args=["--fdname=other:podman-rpc"]).start()
    assert ask(act.socket_path, "ping") == "Pong"


def test_activation_fd_that_is_not_a_listening_stream_socket_is_refused(
        tmp_path: Path, podman_service: PodmanService) -> None:
    command = serve_command(tmp_path, podman_service.socket_path, [])
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    connected, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    cases = [(None, "not a unix stream socket"), (dgram, "not a unix stream socket"),
             (connected, "not listening")]
    try:
        for passed, message in cases:
            script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"' + (" 3</dev/null" if passed is None else "")
            fd = passed.fileno() if passed is not None else -1
            result = subprocess.run(
                ["sh", "-c", script, "sh", *command], env=daemon_env(), capture_output=True,
                text=True, timeout=60, pass_fds=(3,) if passed is not None else (),
                preexec_fn=(lambda fd=fd: os.dup2(fd, 3)) if passed is not None else None)
            assert result.returncode == 1, result.stderr
            assert message in result.stderr
    finally:
        for sock in (dgram, connected, peer):
            sock.close()


def read_notifications(receiver: socket.socket, until: Callable[[list[str]], bool]) -> list[str]:
    messages: list[str] = []
    while not until(messages):
        messages.append(receiver.recv(65536).decode())
    return messages


def test_notify_ready_status_watchdog_then_stopping(tmp_path: Path,
                                                    make_daemon: Callable[..., DaemonProcess]) -> None:
    path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(30)
    try:
        daemon = make_daemon(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        assert daemon.process is not None
        seen = read_notifications(receiver, lambda m: sum("WATCHDOG=1" in x for x in m) >= 2)
        ready = [i for i, message in enumerate(seen) if "READY=1" in message.split("\n")]
        assert ready and ready[0] == 0, seen
        assert any(line.startswith("STATUS=") for message in seen for line in message.split("\n"))
        with daemon.connect() as conn:  # the watchdog keeps going while requests are served
            assert conn.call("ping") == "Pong"
        daemon.process.send_signal(15)
        rest = read_notifications(receiver, lambda m: any("STOPPING=1" in x for x in m))
        assert daemon.process.wait(60) == 0
        assert "READY=1" not in "\n".join(rest)
    finally:
        receiver.close()


def test_idle_exit_then_next_connection_starts_a_new_daemon(manager) -> None:  # type: ignore[no-untyped-def]
    mgr = manager(["--idle-timeout", "1"])
    first = ask(mgr.socket_path, "status")["instance_id"]  # type: ignore[index]
    assert wait_for(lambda: len(mgr.exits) == 1, 30), mgr.log()
    assert mgr.exits == [0]
    assert ask(mgr.socket_path, "ping") == "Pong"
    second = ask(mgr.socket_path, "status")["instance_id"]  # type: ignore[index]
    assert second != first


def test_no_request_lost_around_idle_exit(manager) -> None:  # type: ignore[no-untyped-def]
    """Connect just before, at and just after the moment the idle timer fires."""
    import time

    mgr = manager(["--idle-timeout", "0.5"])
    instances = set()
    for gap in (0.3, 0.45, 0.5, 0.52, 0.55, 0.6, 0.7, 1.5, 0.5, 0.51, 0.49):
        with RawConnection(mgr.socket_path) as conn:
            assert conn.call("ping") == "Pong"
            instances.add(conn.call("status")["instance_id"])
        time.sleep(gap)
    assert len(instances) >= 2  # the 1.5 s gap alone guarantees one idle exit
    assert set(mgr.exits) <= {0}, mgr.log()


def test_request_in_flight_when_idle_timer_would_fire_completes(manager, busybox: str) -> None:  # type: ignore[no-untyped-def]
    mgr = manager(["--idle-timeout", "1"])
    with RawConnection(mgr.socket_path) as conn:
        before = conn.call("status")["instance_id"]
        reply = conn.request("run", {"image": busybox, "command": ["sleep", "2"], "timeout": 30})
        assert "result" in reply, reply
        assert reply["result"]["exit_code"] == 0
        assert conn.call("status")["instance_id"] == before
    assert mgr.exits == []
    assert wait_for(lambda: len(mgr.exits) == 1, 30), mgr.log()
    assert mgr.exits == [0]


def test_own_running_container_keeps_daemon_alive(manager, busybox: str) -> None:  # type: ignore[no-untyped-def]
    import time

    mgr = manager(["--idle-timeout", "0.5"])
    with RawConnection(mgr.socket_path) as conn:
        before = conn.call("status")["instance_id"]
        reply = conn.request("run", {"image": busybox, "command": ["sleep", "3"], "detach": True,
                                     "timeout": 30})
        assert "result" in reply, reply
    time.sleep(1.5)  # three idle timeouts with no connection, while the container runs
    assert mgr.exits == [], mgr.log()
    assert ask(mgr.socket_path, "status")["instance_id"] == before  # type: ignore[index]


def test_idle_exit_called_off_when_work_arrives_keeps_serving(tmp_path: Path,
                                                              podman_service: PodmanService) -> None:
    """The race path: a connection accepted while the listener closes cancels the exit."""
    import asyncio

    from podman_rpc.daemon.config import load_config
    from podman_rpc.daemon.server import Server

    config = load_config(overrides={"socket_path": tmp_path / "rpc.sock",
                                    "podman_socket": podman_service.socket_path,
                                    "runtime_dir": tmp_path / "run", "embedded_podman": False,
                                    "idle_timeout": 3600.0})
    server = Server(config)

    async def scenario() -> tuple[bool, object, object]:
        serving = asyncio.get_running_loop().create_task(server.serve())
        while server.idle is None:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_unix_connection(str(config.socket_path))
        await asyncio.sleep(0.05)  # until connection_made has run
        await server._idle_exit()  # the timer fired, but a connection is open
        exited = server.should_exit.is_set()
        writer.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
        old = await reader.readline()
        reader2, writer2 = await asyncio.open_unix_connection(str(config.socket_path))
        writer2.write(b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n')
        new = await asyncio.wait_for(reader2.readline(), 30)
        for w in (writer, writer2):
            w.close()
        server.should_exit.set()
        await serving
        return exited, old, new

    import uvloop  # the loop the daemon runs on

    exited, old, new = uvloop.run(scenario())
    assert not exited
    assert b'"Pong"' in old and b'"Pong"' in new  # type: ignore[operator]


def test_the_readme_recipe_survives_idle_exit(rig_dir: Path,
                                              podman_service: PodmanService) -> None:
    """systemd/README.md's shell recipe (systemd-socket-activate in a loop) answers again
    after each idle exit, from a new daemon each time; without the loop the second call
    found the socket file with nobody listening (Connection refused)."""
    directory = rig_dir / f"recipe{next(_counter)}"
    directory.mkdir()
    path = directory / "rpc.sock"
    daemon = " ".join(serve_command(directory, podman_service.socket_path,
                                    ["--idle-timeout", "1"]))
    recipe = f"while :; do systemd-socket-activate -l {path} -- {daemon}; done"
    loop = subprocess.Popen(["sh", "-c", recipe], env=daemon_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(path.exists, 10)
        instances = []
        for _ in range(3):
            assert wait_for(lambda: _answers(path), 20)
            instances.append(ask(path, "status")["instance_id"])  # type: ignore[index]
            pid = int(instances[-1].split(".")[0])
            assert wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 20)  # idle exit
        assert len(set(instances)) == 3
    finally:
        os.killpg(loop.pid, 15)
        loop.wait(20)


def _answers(path: Path) -> bool:
    try:
        ask(path, "ping")
        return True
    except OSError:
        return False
