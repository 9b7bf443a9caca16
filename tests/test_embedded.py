"""The daemon's own Podman (issue 19): private to each daemon, configured for the host.

And ``status.podman.reachable`` says whether Podman answers now, not whether
it answered the last call.
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from podman_rpc.daemon.podman.conf import PODMAN_RLIMIT, HostFacts, containers_conf, host_facts
from tests.rig.daemon import DaemonProcess, RawConnection

STOCK = HostFacts(unified_cgroup=True, crun=True, runc=True,
                  hard_limits={"nofile": -1, "nproc": -1}, pid_max=4194304)


def _conf(**changes: Any) -> dict[str, Any] | None:
    text = containers_conf(dataclasses.replace(STOCK, **changes))
    return None if text is None else tomllib.loads(text)


def test_a_host_where_podmans_defaults_work_gets_no_conf() -> None:
    assert _conf() is None
    assert _conf(hard_limits={"nofile": PODMAN_RLIMIT, "nproc": -1}) is None


def test_the_conf_fits_cgroups_runtimes_and_hard_limits() -> None:
    assert _conf(unified_cgroup=False) == {"engine": {"runtime": "runc"}}
    assert _conf(crun=False) == {"engine": {"runtime": "runc"}}
    assert _conf(unified_cgroup=False, runc=False) is None  # nothing better to offer
    low = _conf(hard_limits={"nofile": 20000, "nproc": 96362}, pid_max=32768)
    assert low == {"containers": {"default_ulimits": ["nofile=20000:20000",
                                                      "nproc=32768:32768"]}}
    assert _conf(hard_limits={"nofile": -1, "nproc": 5000}, pid_max=-1) == {
        "containers": {"default_ulimits": ["nproc=5000:5000"]}}


def _embedded(make_daemon: Callable[..., DaemonProcess], tmp_path: Path,
              env: dict[str, str] | None = None) -> DaemonProcess:
    daemon = make_daemon("embedded_podman = true\n", start=False, env=env)
    daemon.podman_socket = tmp_path / "nothing-here.sock"
    return daemon.start(wait=60)


@pytest.mark.podman
@pytest.mark.slow
def test_two_daemons_never_share_an_embedded_podman(make_daemon, tmp_path: Path,
                                                    busybox: str) -> None:
    first = _embedded(make_daemon, tmp_path)
    # No CONTAINERS_CONF: this one runs containers with the conf it writes for this host.
    second = _embedded(make_daemon, tmp_path, env={"CONTAINERS_CONF": ""})
    sockets = []
    for daemon in (first, second):
        with daemon.connect() as conn:
            sockets.append(Path(conn.call("status")["podman"]["socket"]))
        assert sockets[-1] == Path(f"{daemon.socket_path}.podman") / "podman.sock"
    written = sockets[1].parent / "containers.conf"
    assert written.exists() == (containers_conf(host_facts()) is not None)
    assert not (sockets[0].parent / "containers.conf").exists()  # CONTAINERS_CONF was set
    assert first.terminate() == 0
    with second.connect(timeout=90) as conn:
        assert conn.call("ping") == "Pong"
        out = conn.call("run", {"image": busybox, "command": ["sh", "-c", "echo ok; ulimit -n"],
                                "timeout": 60})
        assert out["exit_code"] == 0 and out["stdout"].startswith("ok\n"), out
        assert conn.call("status")["podman"]["reachable"] is True


def _reachable_becomes(conn: RawConnection, expected: bool, within: float = 10.0) -> None:
    """Only ``status`` is called: the daemon must find out by itself."""
    until = time.monotonic() + within
    while conn.call("status")["podman"]["reachable"] is not expected:
        assert time.monotonic() < until, f"status never said reachable: {expected}"
        time.sleep(0.2)


@pytest.mark.podman
def test_status_says_whether_podman_answers_now(own_podman) -> None:
    daemon, own = own_podman
    with daemon.connect() as conn:
        assert conn.call("ping") == "Pong"
        _reachable_becomes(conn, True)
        own.stop()
        _reachable_becomes(conn, False)
        own.start()
        _reachable_becomes(conn, True)
