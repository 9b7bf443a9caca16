"""Warm containers get the guarantees of every container: ttl, reaping, policy, ownership.

Checked in Podman itself through the labels (``tests.test_warm.warm_ids``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rig.daemon import DaemonProcess
from tests.rig.peer import GROUP_ACCESS, PEER_UID, as_peer, request
from tests.rig.podman import BUSYBOX_IMAGE
from tests.test_warm import (
    is_warm,
    pool_config,
    ready,
    run,
    wait_for,
    warm_ids,
    warm_status,
)

pytestmark = pytest.mark.podman


def test_an_idle_warm_container_expires_after_ttl_and_is_replaced(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1, ttl=2))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 1)
        first = warm_ids(instance)
        assert len(first) == 1
        # Gone after its ttl (the pool's expiry, else the reaper's), and a fresh one ready.
        wait_for(lambda: (ids := warm_ids(instance)) and len(ids) == 1 and ids != first, 10)
        ready(conn, 1)


def _two_warm(make_daemon: Callable[..., DaemonProcess]) -> tuple[DaemonProcess, str]:
    """A daemon (reap_interval 1 s) with a static pool of two containers ready; its instance."""
    daemon = make_daemon("reap_interval = 1\n" + pool_config(2))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 2)
    assert len(warm_ids(instance)) == 2
    return daemon, instance


def test_sigkill_then_restart_leaves_no_warm_container(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon, old = _two_warm(make_daemon)
    # As systemd kills a unit's whole cgroup: the sentinel child first, then the daemon.
    assert daemon.process is not None
    children = Path(f"/proc/{daemon.process.pid}/task/{daemon.process.pid}/children")
    for pid in children.read_text().split():
        if b"warm/sentinel.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(int(pid), signal.SIGKILL)
    daemon.kill()  # SIGKILL: no final pass. (Not asserted: that they are all still there. Any
    # other daemon's reaper on this host, e.g. another test session's, may reap them at once.)
    started = time.monotonic()
    daemon.start()
    wait_for(lambda: not warm_ids(old), 1 + 5 - (time.monotonic() - started) + 0.5)
    assert time.monotonic() - started <= 1 + 5 + 0.5  # reap_interval + 5 s (+ polling)


def test_shutdown_removes_every_warm_container(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(2))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 2)
    assert daemon.terminate() == 0
    assert not warm_ids(instance)


def test_a_pool_the_policy_denies_is_never_created(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    # 2g of memory is over the default policy's max_memory (1g): the cold path denies it too.
    daemon = make_daemon(pool_config(2, pool='memory = "2g"\nmemory_swap = "2g"\n'))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        denied = run(conn, command=["true"], memory="2g", memory_swap="2g")["error"]
        assert denied["data"]["kind"] == "PolicyDenied"
        time.sleep(2)  # a fill would have started by now
        assert warm_status(conn) == {}
        assert not warm_ids(instance)
    assert "warm pool denied by the policy" in daemon.log()


def test_another_peers_warm_container_is_never_claimed(
        open_daemons: Callable[..., DaemonProcess]) -> None:
    # One pool for root (uid 0), one for the peer: the peer's run may only take its own.
    daemon = open_daemons(GROUP_ACCESS + pool_config(1) + (
        f'[[daemon.warm.pools]]\nimage = "{BUSYBOX_IMAGE}"\ncount = 1\nuid = {PEER_UID}\n'
        'cpus = 0.25\n'))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        wait_for(lambda: [p for p in warm_status(conn).values() if p["ready"] == 1] == list(
            warm_status(conn).values()) and len(warm_status(conn)) == 2)
        roots = {k for k, p in warm_status(conn).items() if p["uid"] == 0}
        before = warm_ids(instance)
    # The root pool's spec, run by the peer: cold, and root's container is left alone.
    reply, = as_peer(daemon.socket_path, [request("run", {"image": BUSYBOX_IMAGE,
                                                          "command": ["echo", "peer"]})])
    result = reply["result"]
    assert result["stdout"] == "peer\n" and not is_warm(result)
    assert result["container_id"] not in before
    # The peer's own pool's spec: warm, from the peer's own pool.
    reply, = as_peer(daemon.socket_path, [request("run", {"image": BUSYBOX_IMAGE, "cpus": 0.25,
                                                          "command": ["id", "-u"]})])
    assert is_warm(reply["result"])
    assert reply["result"]["container_id"] in before
    with daemon.connect() as conn:
        figures = warm_status(conn)
        assert all(figures[k]["claimed"] == 0 for k in roots)
        assert sum(p["claimed"] for p in figures.values()) == 1


def test_sigkill_without_restart_leaves_no_warm_container(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """Nobody restarts it: the sentinel, not a next daemon's reaper, removes them."""
    daemon, old = _two_warm(make_daemon)
    daemon.kill()
    started = time.monotonic()
    wait_for(lambda: not warm_ids(old), 1 + 5)
    assert time.monotonic() - started <= 1 + 5 + 0.5  # reap_interval + 5 s (+ polling)
    # The sentinel did it (another test session's reaper might have beaten it to some).
    wait_for(lambda: f"warm sentinel: daemon {old} ended" in daemon.log(), 5)


def test_a_reactive_pool_unused_for_its_ttl_goes(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("[daemon.warm]\nthreshold = 2\nttl = 2\n")
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        for _ in range(2):
            run(conn, command=["true"])
        ready(conn, 1)
        assert len(warm_ids(instance)) == 1
        wait_for(lambda: warm_status(conn) == {}, 10)  # the pool, and its container
        wait_for(lambda: not warm_ids(instance), 5)
