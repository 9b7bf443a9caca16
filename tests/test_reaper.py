"""The container reaper against real Podman: what it removes, what it must never touch.

Containers are made with the podman CLI and the daemon's labels, so these tests
do not depend on ``run``; the last one is the issue's end-to-end scenario
(10 long ``run``s, SIGKILL the daemon, restart).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from podman_rpc.daemon.ops import leftovers
from podman_rpc.daemon.ops.leftovers import ProcessTable, conmon_container
from podman_rpc.daemon.ops.reaper import DEADLINE_GRACE, verdict
from podman_rpc.daemon.podman.labels import (
    AUTO_REMOVE,
    DEADLINE,
    DETACHED,
    INSTANCE,
    OWNER,
    OWNER_VALUE,
    REQUEST,
)
from podman_rpc.daemon.rpc.context import process_start_ticks
from tests.rig.daemon import DaemonProcess
from tests.rig.podkill import instance_containers, kill_podman_under_runs
from tests.rig.podman import BUSYBOX_IMAGE, PodmanService, podman

FAST_REAPER = "reap_interval = 0.3\n"


def wait_until(predicate: Callable[[], Any], limit: float = 10.0, step: float = 0.1) -> Any:
    """Poll ``predicate`` until truthy; returns its last value (falsy if the limit passed)."""
    until = time.monotonic() + limit
    while True:
        value = predicate()
        if value or time.monotonic() > until:
            return value
        time.sleep(step)


def live_instance() -> str:
    """An instance id whose process (this test run) is alive."""
    return f"{os.getpid()}.{process_start_ticks(os.getpid())}.test{uuid.uuid4().hex[:4]}"


def dead_instance() -> str:
    """An instance id whose pid exists but with another start time: that daemon is gone."""
    return f"{os.getpid()}.1.dead{uuid.uuid4().hex[:4]}"


def labelled(instance: str, *, deadline: float, auto_remove: bool = True,
             command: tuple[str, ...] = ("sleep", "60"), owner: str = OWNER_VALUE,
             wait_exit: bool = False, detached: bool = False) -> str:
    """Start a container carrying the daemon's labels; returns its name."""
    name = f"reaptest-{uuid.uuid4().hex[:10]}"
    labels = {OWNER: owner, INSTANCE: instance, REQUEST: "t", DEADLINE: f"{deadline:.3f}",
              AUTO_REMOVE: "true" if auto_remove else "false"}
    if detached:
        labels[DETACHED] = "true"
    flags = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    podman("run", "-d", "--name", name, *flags, BUSYBOX_IMAGE, *command)
    if wait_exit:
        podman("wait", name, timeout=30, check=False)  # another daemon may reap it first
    return name


def unlabelled() -> str:
    name = f"reaptest-free-{uuid.uuid4().hex[:10]}"
    podman("run", "-d", "--name", name, "--label", "io.example.other=1", BUSYBOX_IMAGE,
           "sleep", "60")
    return name


def exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def remove(*names: str) -> None:
    if names:
        # --ignore: else one missing name stops the rest
        podman("rm", "-f", "--ignore", "-t", "0", *names, check=False)


# --- the decision, without Podman ------------------------------------------------------

def _attrs(instance: str, *, deadline: float, state: str = "running", auto_remove: bool = True,
           owner: str = OWNER_VALUE, name: str = "c1", created: Any = None,
           detached: bool = False) -> dict[str, Any]:
    labels = {OWNER: owner, INSTANCE: instance, DEADLINE: str(deadline),
              AUTO_REMOVE: "true" if auto_remove else "false"}
    if detached:
        labels[DETACHED] = "true"
    attrs = {"Id": "id-" + name, "Names": [name], "State": state, "Labels": labels}
    if created is not None:
        attrs["Created"] = created
    return attrs


@pytest.mark.parametrize("attrs, active, expected", [
    (_attrs("me", deadline=50), set(), "deadline passed"),
    (_attrs("other-live", deadline=50), set(), "deadline passed"),
    (_attrs("me", deadline=50, owner="someone-else"), set(), None),
    ({"Id": "x", "State": "exited", "Labels": {}}, set(), None),
    (_attrs("gone", deadline=500), set(), "instance gone"),
    (_attrs("other-live", deadline=500, state="exited"), set(), None),
    (_attrs("me", deadline=500, state="running"), set(), None),
    (_attrs("me", deadline=500, state="exited"), set(), "exited, uncollected"),
    (_attrs("me", deadline=500, state="exited"), {"c1"}, None),
    (_attrs("me", deadline=500, state="exited"), {"id-c1"}, None),
    (_attrs("me", deadline=500, state="exited", auto_remove=False), set(), None),
    (_attrs("me", deadline=50, state="exited", auto_remove=False), set(), None),
    (_attrs("gone", deadline=500, state="exited", auto_remove=False), set(), None),
    (_attrs("gone", deadline=500, state="exited"), set(), "instance gone"),
    (_attrs("me", deadline=50, state="running", auto_remove=False), set(), "deadline passed"),
    (_attrs("gone", deadline=500, state="created", auto_remove=False), set(), "instance gone"),
    # Unfinished, of this instance, nobody supervising it, older than the grace: an orphan
    # (its request gave up while Podman was away), whatever state Podman recorded.
    (_attrs("me", deadline=500, created=90.0), set(), "orphaned"),
    (_attrs("me", deadline=500, state="created", created="1970-01-01T00:01:30.5Z"), set(),
     "orphaned"),
    (_attrs("me", deadline=500, state="configured", auto_remove=False, created=90), set(),
     "orphaned"),
    (_attrs("me", deadline=500, created=99.0), set(), None),  # just created: its request
    (_attrs("me", deadline=500, created=90.0), {"c1"}, None),  # ...or supervised
    (_attrs("me", deadline=500, created=90.0, detached=True), set(), None),  # detached: kept
    (_attrs("me", deadline=50, created=90.0, detached=True), set(), "deadline passed"),
    (_attrs("other-live", deadline=500, created=90.0), set(), None),  # another daemon's
])
def test_verdict(attrs: dict[str, Any], active: set[str], expected: str | None) -> None:
    assert verdict(attrs, now=100.0, own_instance="me", active=active,
                   alive=lambda instance: instance != "gone") == expected


# --- real Podman, containers made by hand ----------------------------------------------

def test_startup_pass_reaps_dead_instances_and_expired_deadlines(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    future, past = time.time() + 600, time.time() - 60
    doomed = [labelled(dead_instance(), deadline=future),  # its daemon was SIGKILLed
              labelled(dead_instance(), deadline=future, command=("true",), wait_exit=True),
              labelled(live_instance(), deadline=past)]  # a live daemon, but past deadline
    spared = [labelled(live_instance(), deadline=future),  # another live daemon's work
              labelled(dead_instance(), deadline=past, owner="not-podman-rpc"),
              unlabelled()]
    try:
        daemon = make_daemon("reap_interval = 0\n")  # startup pass only
        # The startup pass runs before the daemon serves, so by now it is done.
        left = [name for name in doomed if exists(name)]
        assert left == [], f"startup pass left {left}: {daemon.log()}"
        assert [name for name in spared if not exists(name)] == []
    finally:
        remove(*doomed, *spared)


def test_periodic_pass_removes_only_uncollected_results_and_orphans_of_its_own_instance(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(FAST_REAPER)
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        assert conn.call("status")["containers_reaped"] == 0
        future = time.time() + 600
        uncollected = [labelled(instance, deadline=future, command=("true",), wait_exit=True)
                       for _ in range(2)]
        soon = time.time() + 1.0
        kept = [labelled(instance, deadline=future, command=("true",), wait_exit=True,
                         auto_remove=False),  # the caller asked to keep it
                labelled(instance, deadline=soon, command=("true",), wait_exit=True,
                         auto_remove=False),  # ...even once its deadline has passed
                labelled(instance, deadline=future, detached=True),  # a detached run
                unlabelled()]
        # Running, of this instance, and no request of its supervising it: an orphan.
        orphan = labelled(instance, deadline=future)
        uncollected.append(orphan)
        try:
            assert wait_until(lambda: not any(exists(n) for n in uncollected), limit=20), (
                daemon.log())
            # Only this daemon may reap these (its instance is alive, deadlines far away);
            # it may also reap leftovers of other sessions' dead daemons on this host.
            assert wait_until(lambda: conn.call("status")["containers_reaped"] >= 3), daemon.log()
            assert '"reason":"orphaned"' in daemon.log_path.read_text()
            time.sleep(max(0.0, soon + DEADLINE_GRACE + 1.0 - time.time()))  # a pass after it
            assert [name for name in kept if not exists(name)] == [], daemon.log()
        finally:
            remove(*uncollected, *kept)


def test_periodic_pass_kills_any_instance_past_its_deadline(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(FAST_REAPER)
    soon = labelled(live_instance(), deadline=time.time() + 1.0)
    later = labelled(live_instance(), deadline=time.time() + 600)
    try:
        assert exists(soon)
        assert wait_until(lambda: not exists(soon), limit=15), daemon.log()
        assert exists(later)
    finally:
        remove(soon, later)


# --- the scenario: SIGKILL mid-run, restart --------------------------------------

def test_sigkilled_daemon_leaves_no_containers_after_restart(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    config = "lanes = { run = { cap = 10, queue = 10 } }\n"
    first = make_daemon(config)
    with first.connect() as conn:
        instance = conn.call("status")["instance_id"]
    connections = [first.connect() for _ in range(10)]
    try:
        for index, connection in enumerate(connections):
            connection.send({"jsonrpc": "2.0", "id": index, "method": "run",
                             "params": {"image": BUSYBOX_IMAGE, "command": ["sleep", "120"],
                                        "timeout": 120}})
        running = wait_until(lambda: len(instance_containers(instance)) == 10, limit=60)
        assert running, f"runs did not start: {instance_containers(instance)} {first.log()}"
        first.kill()  # SIGKILL: no cleanup of any kind
    finally:
        for connection in connections:
            connection.close()
    # (Any other daemon on this host may now reap them too: the instance is gone.)
    started = time.monotonic()
    second = make_daemon(config)
    left = wait_until(lambda: not instance_containers(instance),
                      limit=max(0.0, 10 - (time.monotonic() - started)))
    remaining = instance_containers(instance)
    remove(*remaining)
    assert left and not remaining, f"left behind: {remaining}: {second.log()}"


# --- Podman SIGKILLed under runs, restarted: no process and no container may remain ---------

def test_podman_sigkilled_mid_runs_leaves_no_process_or_container(
        make_daemon: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    """30 runs in flight on the daemon's own Podman; Podman SIGKILLed, restarted 2 s later.
    Within reap_interval + 5 s no conmon naming a run, no process in a run's cgroup and no
    container of the daemon's instance may remain."""
    reap_interval, runs = 1.0, 30
    own = PodmanService(tmp_path)
    own.start()
    daemon = make_daemon(f"reap_interval = {reap_interval}\n"
                         f"lanes = {{ run = {{ cap = {runs}, queue = {runs} }} }}\n", start=False)
    daemon.podman_socket = own.socket_path
    daemon.start()
    instance = ""
    try:
        with daemon.connect() as conn:
            instance = conn.call("status")["instance_id"]
        outcome = kill_podman_under_runs(daemon.socket_path, own, instance, runs,
                                         limit=reap_interval + 5)
        sweeps = daemon.log_path.read_text().count("killed leftover processes")
        print(f"{outcome.seen} conmons seen; clean {outcome.took} s after Podman restarted; "
              f"left {outcome.left}; {sweeps} containers' leftover processes killed")
        # Killed while some runs were up and others were still being created or started.
        assert outcome.seen >= runs // 3, (outcome, daemon.log())
        assert outcome.took is not None, f"left: {outcome.left}\n{daemon.log()}"
    finally:
        daemon.stop()
        if instance:
            remove(*instance_containers(instance))
        own.stop()


# --- the /proc side, without Podman ---------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["/usr/bin/conmon", "--api-version", "1", "-c", "abc", "-u", "abc", "-n", "x"], "abc"),
    (["conmon", "--cid", "def", "-n", "x"], "def"),
    (["conmon", "--cid=ghi"], "ghi"),
    (["conmon", "-n", "x", "-c"], None),  # cut short: names nothing
    (["conmon", "--version"], None),
])
def test_conmon_command_lines_name_their_container(argv: list[str], expected: str | None) -> None:
    assert conmon_container(argv) == expected


def test_a_pid_that_now_belongs_to_another_process_is_never_signalled() -> None:
    """Our own pid, recorded with a start time it does not have."""
    me = os.getpid()
    table = ProcessTable(conmons={"c": [me]}, inside={"c": [me]}, started={me: -1})
    assert leftovers._kill(table, [me]) == []


def test_a_container_id_no_process_names_kills_nothing() -> None:
    killed, lingering = leftovers.kill_leftovers(["0" * 64])
    assert killed == {} and lingering == set()
