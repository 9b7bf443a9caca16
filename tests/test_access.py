"""Who may connect and what each role may call: unit checks, then a real unprivileged peer.

The live tests run a client as uid 65534 with ``setpriv`` against a real daemon
whose socket is reachable by that uid, so the kernel's SO_PEERCRED is what decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from podman_rpc.daemon.guard.access import (
    ADMIN,
    READ,
    RUN,
    AccessConfig,
    AccessControl,
    access_from_mapping,
    peer_groups,
)
from podman_rpc.daemon.rpc.peer import Peer
from podman_rpc.protocol.errors import PolicyDenied
from podman_rpc.protocol.registry import METHODS
from tests.rig.peer import as_peer, request

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

# --- unit: admission and roles -------------------------------------------------------------


def test_default_admits_root_and_the_socket_group_only() -> None:
    control = AccessControl(AccessConfig(), socket_gid=4242)
    assert control.check(Peer(pid=1, uid=0, gid=0)) is None
    assert control.check(Peer(pid=2 ** 22 + 7, uid=1000, gid=4242)) is None
    refusal = control.check(Peer(pid=2 ** 22 + 7, uid=1000, gid=1000))
    assert isinstance(refusal, PolicyDenied)
    assert refusal.data == {"kind": "PolicyDenied", "rule": "connect", "uid": 1000}
    assert isinstance(control.check(None), PolicyDenied)


def test_supplementary_groups_come_from_proc_only_for_the_same_uid() -> None:
    me = os.getpid()
    mine = set(os.getgroups())
    assert set(peer_groups(Peer(pid=me, uid=os.getuid(), gid=12345))) == mine | {12345}
    # A pid whose real uid is not the peer's lends no groups (pid reuse).
    assert peer_groups(Peer(pid=me, uid=os.getuid() + 1, gid=12345)) == {12345}


def test_roles_uid_first_then_strongest_group_then_default() -> None:
    config = AccessConfig(allow_uids=(0, 10, 11), uid_roles={10: READ},
                          group_roles={500: READ, 501: RUN}, default_role=READ)
    control = AccessControl(config, socket_gid=None)
    dead_pid = 2 ** 22 + 11  # no /proc entry: only the primary gid counts
    assert control.role_of(Peer(dead_pid, 10, 501)) == READ
    assert control.role_of(Peer(dead_pid, 11, 501)) == RUN
    assert control.role_of(Peer(dead_pid, 11, 500)) == READ
    assert control.role_of(Peer(dead_pid, 12, 7)) == READ


class _FakeConnection:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer


def _allowed(control: AccessControl, connection: _FakeConnection) -> set[str]:
    """The methods ``control`` lets this connection call; every refusal names its rule."""
    allowed = set()
    for name, spec in METHODS.items():
        try:
            control.authorize(connection, spec)  # type: ignore[arg-type]
            allowed.add(name)
        except PolicyDenied as denied:
            assert denied.data["rule"] == "role" and denied.data["method"] == name
    return allowed


def test_read_role_may_call_exactly_the_read_methods() -> None:
    control = AccessControl(AccessConfig(default_role=READ), socket_gid=None)
    connection = _FakeConnection(Peer(2 ** 22 + 3, 1000, 1000))
    assert _allowed(control, connection) == {"ping", "version", "info", "images", "exists",
                                             "inspect", "ps", "logs", "status", "rpc.discover"}


def test_each_role_may_call_what_the_declarations_give_it() -> None:
    """read < run < admin, and each method's role is its declaration's, nothing kept by hand."""
    dead_pid = 2 ** 22 + 5
    control = AccessControl(AccessConfig(allow_uids=(0, 10, 11), uid_roles={10: READ}),
                            socket_gid=None)
    by_role = {READ: _FakeConnection(Peer(dead_pid, 10, 10)),
               RUN: _FakeConnection(Peer(dead_pid, 11, 11)),
               ADMIN: _FakeConnection(Peer(dead_pid, 0, 0))}
    for role, connection in by_role.items():
        assert control.connection_role(connection) is role  # type: ignore[arg-type]
        expected = {name for name, spec in METHODS.items() if role.allows(spec.role)}
        assert _allowed(control, connection) == expected
    assert "prune" not in _allowed(control, by_role[RUN])
    assert {"run", "build", "rm", "kill"} <= _allowed(control, by_role[RUN])
    assert _allowed(control, by_role[ADMIN]) == set(METHODS)
    assert control.connection_role(None) is ADMIN  # an in-process call is the daemon's own
    demoted = AccessControl(AccessConfig(uid_roles={0: RUN}), socket_gid=None)
    assert demoted.role_of(Peer(dead_pid, 0, 0)) is RUN  # uid 0 is admin unless configured


def test_role_free_methods_are_exactly_what_the_weakest_role_may_call() -> None:
    """Callers skip the role check for ``role_free``: that must never let a call by."""
    control = AccessControl(AccessConfig(default_role=READ), socket_gid=None)
    weakest = _FakeConnection(Peer(2 ** 22 + 3, 1000, 1000))
    assert control.role_free == _allowed(control, weakest)


def test_config_resolves_names_and_rejects_bad_values() -> None:
    config = access_from_mapping({"allow_uids": ["nobody", 0, "1000"],
                                  "allow_groups": ["nogroup"],
                                  "uid_roles": {"nobody": "read"}, "group_roles": {"100": "run"}})
    assert config.allow_uids == (NOBODY, 0, 1000) and config.allow_groups == (65534,)
    assert config.uid_roles == {NOBODY: READ} and config.group_roles == {100: RUN}
    for bad in ({"allow_uids": ["no-such-user-xyz"]}, {"uid_roles": {"0": "root"}},
                {"roles": {}}):
        with pytest.raises(ValueError):
            access_from_mapping(bad)


# --- live: a real unprivileged peer -------------------------------------------------------

def as_nobody(socket_path: Path, requests: list[Any], groups: str | None = None) -> list[Any]:
    """Run the rig's client as uid/gid 65534 (and only ``groups``); None meaning EOF."""
    return as_peer(socket_path, requests, uid=NOBODY, groups=groups)


_request = request


@pytest.mark.podman
def test_unprivileged_uid_is_refused_by_default(open_daemons: Any) -> None:
    daemon = open_daemons()
    replies = as_nobody(daemon.socket_path, [])
    assert len(replies) == 2 and replies[1] is None  # one error line, then the close
    error = replies[0]["error"]
    assert replies[0]["id"] is None and error["code"] == -32003
    assert error["data"] == {"kind": "PolicyDenied", "rule": "connect", "uid": NOBODY}
    for _ in range(3):  # a client that writes before it reads still gets the reason
        written_first = as_nobody(daemon.socket_path, [_request("status"), _request("ps")])
        assert written_first[0]["error"]["data"]["rule"] == "connect"
        assert written_first[1] is None  # then EOF, not a reset
    with daemon.connect() as conn:  # root still gets in
        assert conn.call("status")["draining"] is False
    assert f'"uid":{NOBODY}' in daemon.log()


@pytest.mark.podman
def test_read_role_lists_but_cannot_run(open_daemons: Any, busybox: str) -> None:
    daemon = open_daemons('[daemon.access]\nallow_uids = [0, "nobody"]\n'
                          '[daemon.access.uid_roles]\nnobody = "read"\n')
    replies = as_nobody(daemon.socket_path, [
        _request("ps", {"all": True}, 1),
        _request("run", {"image": busybox, "command": ["true"], "name": "prpc-acc-denied"}, 2),
        _request("rm", {"name": "prpc-acc-denied", "force": True}, 3),
        [_request("status", rid=4), _request("kill", {"name": "x"}, 5)],  # type: ignore[list-item]
        _request("status", rid=6),
    ])
    ps, run, rm, batch, status = replies
    assert isinstance(ps["result"], list)
    for denied, method in ((run, "run"), (rm, "rm")):
        assert denied["error"]["code"] == -32003, denied
        assert denied["error"]["data"] == {"kind": "PolicyDenied", "rule": "role", "role": "read",
                                           "method": method, "needs": "run"}
    by_id = {reply["id"]: reply for reply in batch}
    assert "result" in by_id[4] and by_id[5]["error"]["data"]["rule"] == "role"
    assert status["result"]["connections"] >= 1  # the connection stayed open throughout
    request_lines = [orjson.loads(line) for line in daemon.log_path.read_text().splitlines()
                     if line.startswith("{") and '"event":"request"' in line]
    ps_line = next(line for line in request_lines if line["method"] == "ps")
    assert ps_line["uid"] == NOBODY and ps_line["pid"] > 0
    from tests.rig.podman import podman

    assert podman("ps", "-a", "--filter", "name=prpc-acc-denied", "-q").stdout.strip() == ""


@pytest.mark.podman
def test_supplementary_group_admits_with_its_role(open_daemons: Any) -> None:
    daemon = open_daemons('[daemon.access]\nallow_uids = [0]\nallow_groups = ["users"]\n'
                          '[daemon.access.group_roles]\nusers = "read"\n')
    refused = as_nobody(daemon.socket_path, [])
    assert refused[0]["error"]["data"]["rule"] == "connect"
    images, build = as_nobody(daemon.socket_path, [
        _request("images", rid=1), _request("prune", rid=2)], groups="100")
    assert isinstance(images["result"], list)
    assert build["error"]["data"]["rule"] == "role"


@pytest.mark.podman
@pytest.mark.parametrize("role", [READ, RUN])
def test_every_method_answers_a_live_peer_as_its_declaration_says(open_daemons: Any,
                                                                  role: Any) -> None:
    """Each declared method, called by a real peer of ``role``: refused with rule ``role``
    exactly when the declaration needs more (checked before params, so ``{}`` suffices)."""
    daemon = open_daemons(f'[daemon.access]\nallow_uids = [0, {NOBODY}]\n'
                          f'[daemon.access.uid_roles]\n{NOBODY} = "{role.value}"\n')
    names = list(METHODS)
    replies = as_nobody(daemon.socket_path,
                        [_request(name, {}, rid) for rid, name in enumerate(names)])
    for name, reply in zip(names, replies, strict=True):
        refused = "error" in reply and reply["error"]["data"].get("rule") == "role"
        assert refused == (not role.allows(METHODS[name].role)), (name, reply)
        if refused:
            assert reply["error"]["data"]["needs"] == METHODS[name].role.value
