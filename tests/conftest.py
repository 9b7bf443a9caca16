"""Fixtures: one private Podman service and busybox image per session, real daemons on temp sockets.

Nothing here mocks Podman: daemons started by these fixtures talk to a real
``podman system service`` over its real socket.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig import peer
from tests.rig.daemon import SESSION_DAEMON_PIDS, DaemonProcess, RawConnection
from tests.rig.podman import PodmanService, ensure_busybox_image, owned_containers, podman

_counter = itertools.count()


@pytest.fixture(scope="session")
def rig_dir() -> Iterator[Path]:
    # Short path: unix socket paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="prpc-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_service(rig_dir: Path) -> Iterator[PodmanService]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run the README's test command (tests/run.sh)")
    service = PodmanService(rig_dir)
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def busybox(podman_service: PodmanService) -> str:
    return ensure_busybox_image()


@pytest.fixture(scope="session")
def daemon(rig_dir: Path, podman_service: PodmanService, busybox: str) -> Iterator[DaemonProcess]:
    """One shared daemon for tests that do not restart or reconfigure it."""
    process = DaemonProcess(rig_dir / "shared", podman_service.socket_path).start()
    yield process
    process.stop()


@pytest.fixture
def conn(daemon: DaemonProcess) -> Iterator[RawConnection]:
    with daemon.connect() as connection:
        yield connection


@pytest.fixture
def make_daemon(rig_dir: Path, podman_service: PodmanService,
                busybox: str) -> Iterator[Callable[..., DaemonProcess]]:
    """Factory for private daemons (own socket, own config); stopped after the test."""
    started: list[DaemonProcess] = []

    def make(config_text: str = "", extra_args: list[str] | None = None,
             env: dict[str, str] | None = None, start: bool = True) -> DaemonProcess:
        process = DaemonProcess(rig_dir / f"d{next(_counter)}", podman_service.socket_path,
                                config_text, extra_args, env)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def own_podman(make_daemon: Callable[..., DaemonProcess],
               tmp_path: Path) -> Iterator[tuple[DaemonProcess, PodmanService]]:
    """A daemon in front of a Podman service of its own, which the test may stop or kill."""
    own = PodmanService(tmp_path)
    own.start()
    try:
        daemon = make_daemon(start=False)
        daemon.podman_socket = own.socket_path
        daemon.start()
        yield daemon, own
    finally:
        own.stop()


@pytest.fixture
def tag() -> Iterator[str]:
    """A fresh image name, removed after the test whatever it built under it."""
    name = f"localhost/prpc-test-{uuid.uuid4().hex[:10]}:latest"
    yield name
    podman("rmi", "-f", name, check=False)


@pytest.fixture
def open_daemons(podman_service: PodmanService, busybox: str) -> Iterator[Any]:
    """Daemons an unprivileged peer can reach (``tests.rig.peer``); stopped after the test."""
    try:
        yield from peer.open_daemons(podman_service.socket_path)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session", autouse=True)
def no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the whole session, no container may carry the daemon's owner label."""
    yield
    if shutil.which("podman") is None:
        return
    left = owned_containers()
    if not os.environ.get("CI"):
        # Developers may run several sessions at once: judge only our own daemons'.
        left = [cid for cid, instance in left
                if instance.split(".")[0].isdigit()
                and int(instance.split(".")[0]) in SESSION_DAEMON_PIDS]
    else:
        left = [cid for cid, _ in left]
    if left:
        details = podman("ps", "-a", "--filter", "label=io.podman-rpc.owner=podman-rpc", "--format",
                         '{{.ID}} {{.Names}} {{.State}} {{.Labels}}', check=False).stdout
        podman("rm", "-f", "--ignore", *left, check=False)
        pytest.fail(f"containers left behind by the daemon: {left}\n{details}")
