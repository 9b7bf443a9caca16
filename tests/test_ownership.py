"""Ownership: a peer below admin sees and touches only what it created.

Each test connects as a real unprivileged uid (``setpriv``) admitted through
the socket's group, and checks Podman afterwards (not only the reply): root's
container still runs, root's image is still there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.rig.daemon import DaemonProcess
from tests.rig.peer import GROUP_ACCESS, PEER_UID, as_peer, request
from tests.rig.podman import podman

pytestmark = pytest.mark.podman

CONTAINER_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("logs", {}), ("inspect", {"kind": "container"}),
    ("kill", {"signal": "SIGSTOP"}), ("kill", {"signal": "SIGCONT"}),
    ("stop", {"timeout": 0}), ("wait", {"timeout": 1}), ("rm", {"force": True}),
]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _error_without(reply: dict[str, Any], name: str) -> dict[str, Any]:
    """The error object with the asked-for name blanked, to compare two names' answers."""
    error = dict(reply["error"])
    error["message"] = error["message"].replace(name, "NAME")
    return error


def _state(name: str) -> str:
    return podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


@pytest.fixture
def group_daemon(open_daemons: Callable[..., DaemonProcess]) -> DaemonProcess:
    return open_daemons(GROUP_ACCESS)


def _root_container(daemon: DaemonProcess, busybox: str) -> tuple[str, str]:
    """A container root started through the daemon, running for a minute: (name, id)."""
    name = _unique("prpc-own-root")
    with daemon.connect() as conn:
        result = conn.call("run", {"image": busybox, "command": ["sleep", "60"], "name": name,
                                   "detach": True, "timeout": 60})
    return name, result["container_id"]


def test_another_peers_container_answers_not_found_and_is_untouched(
        group_daemon: DaemonProcess, busybox: str) -> None:
    name, cid = _root_container(group_daemon, busybox)
    try:
        missing = _unique("prpc-own-none")
        requests: list[Any] = [request("ps", {"all": True}, 0)]
        for index, (method, extra) in enumerate(CONTAINER_ACTIONS):
            for offset, target in enumerate((name, cid, missing)):
                requests.append(request(method, {"name": target, **extra}, 10 * index + offset + 1))
        replies = as_peer(group_daemon.socket_path, requests)
        listed = {c["name"] for c in replies[0]["result"]}
        assert name not in listed and not any(c["id"] == cid for c in replies[0]["result"])
        for reply, sent in zip(replies[1:], requests[1:], strict=True):
            target = sent["params"]["name"]
            assert reply["error"]["data"]["kind"] == "ContainerNotFound", (sent, reply)
            # exactly as if it did not exist: same code, kind and words as a missing name
            missing_reply = next(r for r, s in zip(replies[1:], requests[1:], strict=True)
                                 if s["method"] == sent["method"]
                                 and s["params"] == {**sent["params"], "name": missing})
            assert _error_without(reply, target) == _error_without(missing_reply, missing)
        assert _state(name) == "running"  # not stopped, paused, killed or removed
        with group_daemon.connect() as conn:  # admin still sees and reads it
            assert any(c["name"] == name for c in conn.call("ps", {"all": True}))
            assert conn.call("logs", {"name": name})["container_id"] == name
    finally:
        podman("rm", "-f", "-t", "0", cid, check=False)


def test_a_peer_manages_its_own_containers(group_daemon: DaemonProcess, busybox: str) -> None:
    name = _unique("prpc-own-peer")
    replies = as_peer(group_daemon.socket_path, [
        request("run", {"image": busybox, "command": ["sh", "-c", "echo mine; sleep 60"],
                        "name": name, "detach": True, "timeout": 60}, 1),
        request("ps", {}, 2),
        request("kill", {"name": name, "signal": "SIGSTOP"}, 3),
        request("kill", {"name": name, "signal": "SIGCONT"}, 4),
        request("logs", {"name": name}, 5),
        request("inspect", {"name": name, "kind": "container"}, 6),
        request("rm", {"name": name, "force": True}, 7),
        request("ps", {"all": True}, 8),
    ])
    run, ps, stopped, resumed, logs, inspect, rm, after = replies
    assert run["result"]["status"] == "running", run
    assert [c["name"] for c in ps["result"]] == [name]  # its own, and nothing else
    assert "result" in stopped and "result" in resumed
    assert logs["result"]["stdout"] == "mine\n"
    assert inspect["result"]["Id"] == run["result"]["container_id"]
    assert "result" in rm and after["result"] == []
    assert podman("ps", "-a", "-q", "--filter", f"name=^{name}$").stdout.strip() == ""


def test_read_peer_cannot_read_another_peers_logs(open_daemons: Callable[..., DaemonProcess],
                                                  busybox: str) -> None:
    daemon = open_daemons(GROUP_ACCESS + f'[daemon.access.uid_roles]\n{PEER_UID} = "read"\n')
    name, cid = _root_container(daemon, busybox)
    try:
        logs, ps = as_peer(daemon.socket_path, [request("logs", {"name": name}, 1),
                                                request("ps", {"all": True}, 2)])
        assert logs["error"]["data"]["kind"] == "ContainerNotFound"
        assert ps["result"] == []
    finally:
        podman("rm", "-f", "-t", "0", cid, check=False)


def _root_image(daemon: DaemonProcess, busybox: str, tmp_path: Path) -> str:
    """An image root built through the daemon (so labelled with uid 0)."""
    tag = f"localhost/{_unique('prpc-own-img')}:v1"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo root > /made-by\n")
    with daemon.connect() as conn:
        built = conn.call("build", {"context": str(context), "tag": tag})
    assert built["built"] is True
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", tag).stdout
    assert '"io.podman-rpc.uid":"0"' in labels
    return tag


def test_another_peers_image_is_invisible_and_stays(group_daemon: DaemonProcess, busybox: str,
                                                    tmp_path: Path) -> None:
    tag = _root_image(group_daemon, busybox, tmp_path)
    base = f"localhost/{_unique('prpc-own-base')}:v1"
    podman("tag", busybox, base)  # a base image the operator put there: shared, not owned
    try:
        missing = f"localhost/{_unique('prpc-own-none')}:v1"
        replies = as_peer(group_daemon.socket_path, [
            request("rmi", {"name": tag}, 1), request("rmi", {"name": missing}, 2),
            request("rmi", {"name": base}, 3), request("rmi", {"name": tag, "force": True}, 4),
            request("inspect", {"name": tag}, 5), request("inspect", {"name": missing}, 6),
            request("exists", {"name": tag}, 7), request("images", {}, 8),
            request("run", {"image": tag, "command": ["cat", "/made-by"]}, 9),
            request("run", {"image": base, "command": ["true"]}, 10),
            request("prune", {}, 11),
        ])
        (rmi, rmi_missing, rmi_base, rmi_force, inspect, inspect_missing, exists, images,
         run, run_base, prune) = replies
        for reply in (rmi, rmi_base, rmi_force):
            assert _error_without(reply, tag if reply is not rmi_base else base) == \
                _error_without(rmi_missing, missing), reply
        assert _error_without(inspect, tag) == _error_without(inspect_missing, missing)
        assert exists["result"] is False
        tags = {t for image in images["result"] for t in image["tags"]}
        assert tag not in tags and base in tags
        assert run["error"]["data"]["kind"] == "ImageNotFound"
        assert "result" in run_base  # base images are shared
        assert prune["error"]["data"] == {"kind": "PolicyDenied", "rule": "role", "role": "run",
                                          "method": "prune", "needs": "admin"}
        for still in (tag, base):
            assert podman("image", "exists", still, check=False).returncode == 0
    finally:
        podman("rmi", "-f", tag, base, check=False)
