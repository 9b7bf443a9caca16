"""``run`` against real Podman through a real daemon: output, failures, timeouts, limits, cleanup."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from podman_rpc.daemon.handlers.run import format_seconds
from podman_rpc.daemon.podman.labels import (
    AUTO_REMOVE,
    DEADLINE,
    INSTANCE,
    OWNER,
    OWNER_VALUE,
    REQUEST,
)
from tests.rig.daemon import RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, podman


def unique(prefix: str = "t3run") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def container_exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def gone_within(name: str, seconds: float) -> bool:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if not container_exists(name):
            return True
        time.sleep(0.1)
    return not container_exists(name)


def inspect(name: str) -> dict[str, Any]:
    return json.loads(podman("container", "inspect", name).stdout)[0]


def run(conn: RawConnection, **params: Any) -> dict[str, Any]:
    return conn.request("run", {"image": BUSYBOX_IMAGE, **params})


def test_json_stdout_is_parsed_and_nothing_is_left(conn: RawConnection) -> None:
    name = unique()
    reply = run(conn, name=name, command="""echo '{"statusCode": 200, "body": {"n": [1, 2]}}'""")
    result = reply["result"]
    assert result["stdout"] == {"statusCode": 200, "body": {"n": [1, 2]}}
    assert result["status"] == "exited" and result["exit_code"] == 0
    assert result["name"] == name and len(result["container_id"]) == 64
    assert result["image"] == [BUSYBOX_IMAGE] and result["auto_remove"] is True
    assert result["stderr"] == "" and result["truncated"] is False
    assert result["duration_ms"] > 0
    assert gone_within(name, 5)  # removed after the reply


def test_text_stdout_is_kept_and_stderr_separate(conn: RawConnection) -> None:
    result = run(conn, command=["sh", "-c", "echo hello world; echo oops >&2"])["result"]
    assert result["stdout"] == "hello world\n"
    assert result["stderr"] == "oops\n"
    assert result["name"].startswith("prpc-")  # generated when not given
    assert gone_within(result["name"], 5)  # removed after the reply


def test_entrypoint_workdir_and_env(conn: RawConnection) -> None:
    result = run(conn, entrypoint="sh", command=["-c", "pwd; echo $GREETING"],
                 workdir="/bin", env=["GREETING=hi there"])["result"]
    assert result["stdout"] == "/bin\nhi there\n"


def test_nonzero_exit_is_container_failed(conn: RawConnection) -> None:
    name = unique()
    reply = run(conn, name=name, command=["sh", "-c", "echo '[1]'; echo bad >&2; exit 3"])
    error = reply["error"]
    assert error["code"] == -32013 and error["data"]["kind"] == "ContainerFailed"
    assert error["data"]["exit_code"] == 3
    assert error["data"]["stdout"] == [1] and error["data"]["stderr"] == "bad\n"
    assert len(error["data"]["container_id"]) == 64
    assert gone_within(name, 5)  # removed after the reply


def test_timeout_kills_removes_and_keeps_output(conn: RawConnection) -> None:
    name = unique()
    reply = run(conn, name=name, command=["sh", "-c", "echo started; sleep 30"], timeout=1.5)
    error = reply["error"]
    assert error["code"] == -32001 and error["data"]["kind"] == "Timeout", error
    assert error["message"] == f"Container '{name}' exceeded timeout of 1.5s and was killed"
    assert error["data"]["stdout"] == "started\n"
    assert gone_within(name, 5)  # removed after the reply


def test_timeout_message_formats_seconds_like_the_cli() -> None:
    assert format_seconds(5) == "5s"
    assert format_seconds(5.0) == "5s"
    assert format_seconds(0.5) == "0.5s"


def test_output_over_the_cap_is_truncated(make_daemon: Any) -> None:
    daemon = make_daemon(config_text="output_cap_bytes = 1000\n")
    with daemon.connect() as conn:
        script = "head -c 5000 /dev/zero | tr '\\0' a; head -c 3000 /dev/zero | tr '\\0' b >&2"
        result = run(conn, command=["sh", "-c", script])["result"]
        assert result["truncated"] is True
        assert result["stdout"] == "a" * 1000
        assert result["stderr"] == "b" * 1000
        small = run(conn, command="echo small")["result"]
        assert small["truncated"] is False and small["stdout"] == "small\n"
        # progress lines stop at the cap as well
        conn.send({"jsonrpc": "2.0", "id": "cap", "method": "run",
                   "params": {"image": BUSYBOX_IMAGE, "progress": True, "command": [
                       "sh", "-c", "for i in $(seq 50); do echo line-$i-$(head -c 90 /dev/zero "
                                   "| tr '\\0' x); done"]}})
        lines = []
        while (message := conn.read()).get("method") == "$/progress":
            lines.append(message["params"]["line"])
        assert message["result"]["truncated"] is True
        assert lines[0].startswith("line-1-") and 9 <= len(lines) <= 11
        assert sum(len(line) for line in lines) + len(lines) - 1 <= 1000  # newlines between


def test_limits_and_labels_are_what_podman_applies(conn: RawConnection) -> None:
    name = unique()
    result = run(conn, name=name, command="sleep 30", detach=True, timeout=20,
                 memory="32m", memory_swap="64m", cpus=0.25, pids_limit=50)["result"]
    try:
        assert result["status"] == "running" and result["exit_code"] is None
        info = inspect(name)
        host = info["HostConfig"]
        assert host["Memory"] == 32 << 20
        assert host["MemorySwap"] == 64 << 20
        assert host["CpuQuota"] == 25_000 and host["CpuPeriod"] == 100_000
        assert host["PidsLimit"] == 50
        assert host["NetworkMode"] == "none"
        assert info["Config"]["Timeout"] >= 20  # conmon's own kill, a little over ours
        labels = info["Config"]["Labels"]
        assert labels[OWNER] == OWNER_VALUE and labels[AUTO_REMOVE] == "true"
        assert labels[INSTANCE] and labels[REQUEST]
        assert time.time() + 15 < float(labels[DEADLINE]) < time.time() + 30
    finally:
        conn.call("rm", {"name": name, "force": True})


def test_default_limits(conn: RawConnection) -> None:
    name = unique()
    run(conn, name=name, command="sleep 30", detach=True)
    try:
        host = inspect(name)["HostConfig"]
        assert host["Memory"] == 20 << 20 and host["MemorySwap"] == 20 << 20
        assert host["CpuQuota"] == 50_000 and host["CpuPeriod"] == 100_000
        assert host["PidsLimit"] == 64
        assert host["NetworkMode"] == "none"
        assert inspect(name)["Config"]["Timeout"] == 7  # default 5 s + the 2 s kill margin
    finally:
        conn.call("rm", {"name": name, "force": True})


def test_detach_deadline_is_still_enforced(conn: RawConnection) -> None:
    name = unique()
    result = run(conn, name=name, command="sleep 30", detach=True, timeout=1)["result"]
    assert result["status"] == "running"
    assert name in [c["name"] for c in conn.call("ps")]
    assert gone_within(name, 10)


def test_detach_auto_remove_after_natural_exit(conn: RawConnection) -> None:
    name = unique()
    result = run(conn, name=name, command="true", detach=True, timeout=30)["result"]
    assert result["status"] == "running"
    assert gone_within(name, 10)


def test_no_auto_remove_keeps_the_container(conn: RawConnection) -> None:
    name = unique()
    result = run(conn, name=name, command=["sh", "-c", "echo kept"], auto_remove=False)["result"]
    assert result["auto_remove"] is False and result["stdout"] == "kept\n"
    try:
        assert inspect(name)["State"]["Status"] == "exited"
        assert conn.call("logs", {"name": name})["stdout"] == "kept\n"
    finally:
        assert conn.call("rm", {"name": name})["message"] == "Container deleted successfully"
    assert not container_exists(name)


@pytest.mark.parametrize("mount, reason", [
    ("no-colon", "expected source:target"),
    ("/tmp:relative", "absolute path"),
    ("/tmp:/data:Z,bogus", "unknown mount option"),
])
def test_invalid_mounts_create_nothing(conn: RawConnection, mount: str, reason: str) -> None:
    name = unique()
    error = run(conn, name=name, command="true", mounts=[mount])["error"]
    assert error["code"] == -32602 and error["data"]["field"] == "mounts"
    assert reason in error["data"]["reason"]
    assert not container_exists(name)


def test_valid_mount_is_used(make_daemon: Any, tmp_path: Any) -> None:
    # Container root is not host root (userns=auto): it reads and writes a host directory
    # only as "others" may, so this one is open to all (pytest makes it 0700).
    tmp_path.chmod(0o777)
    (tmp_path / "input.txt").write_text("from host")
    (tmp_path / "input.txt").chmod(0o644)
    daemon = make_daemon(config_text=f'[daemon.policy]\nmount_roots = ["{tmp_path}"]\n')
    with daemon.connect() as conn:
        reply = run(conn, command="cat /data/input.txt", mounts=[f"{tmp_path}:/data:rprivate"])
        assert reply["result"]["stdout"] == "from host"
        ro = run(conn, command=["sh", "-c", "echo x > /data/new"],
                 volumes=[f"{tmp_path}:/data:ro"])["error"]
        assert ro["data"]["kind"] == "ContainerFailed" and "Read-only" in ro["data"]["stderr"]
        assert run(conn, command=["sh", "-c", "echo x > /data/new"],
                   volumes=[f"{tmp_path}:/data"])["result"]["exit_code"] == 0
        assert (tmp_path / "new").stat().st_uid != 0  # written by container root, not host root


@pytest.mark.parametrize("params, field", [
    ({"memory": "lots"}, "memory"),
    ({"memory": "64m", "memory_swap": "32m"}, "memory_swap"),
    ({"env": ["NOEQUALS"]}, "env"),
    ({"ports": ["80"]}, "ports"),
    ({"command": "echo 'unterminated"}, "command"),
    ({"pids_limit": 0}, "pids_limit"),
])
def test_bad_params(conn: RawConnection, params: dict[str, Any], field: str) -> None:
    error = run(conn, **params)["error"]
    assert error["code"] == -32602 and error["data"]["field"] == field


def test_unknown_image(conn: RawConnection) -> None:
    error = conn.request("run", {"image": f"localhost/{unique('missing')}:latest"})["error"]
    assert error["code"] == -32011 and error["data"]["kind"] == "ImageNotFound"


def test_progress_streams_output_lines_before_the_reply(conn: RawConnection) -> None:
    conn.send({"jsonrpc": "2.0", "id": "p1", "method": "run",
               "params": {"image": BUSYBOX_IMAGE, "progress": True,
                          "command": ["sh", "-c", "echo one; echo two >&2; echo three"]}})
    notes: list[dict[str, Any]] = []
    while True:
        message = conn.read()
        if message.get("method") == "$/progress":
            notes.append(message["params"])
            continue
        assert message["id"] == "p1"
        break
    assert message["result"]["stdout"] == "one\nthree\n"
    assert all(n["id"] == "p1" for n in notes)
    assert [n["line"] for n in notes if n["stream"] == "stdout"] == ["one", "three"]
    assert [n["line"] for n in notes if n["stream"] == "stderr"] == ["two"]


def _wait_until_exists(name: str, seconds: float = 10) -> None:
    until = time.monotonic() + seconds
    while not container_exists(name):
        assert time.monotonic() < until, f"{name} never appeared"
        time.sleep(0.05)


def test_cancel_kills_and_removes(conn: RawConnection) -> None:
    name = unique()
    conn.send({"jsonrpc": "2.0", "id": "c1", "method": "run",
               "params": {"image": BUSYBOX_IMAGE, "name": name, "command": "sleep 30",
                          "timeout": 30}})
    _wait_until_exists(name)
    conn.send({"jsonrpc": "2.0", "id": "c2", "method": "$/cancelRequest", "params": {"id": "c1"}})
    replies = {r["id"]: r for r in (conn.read(), conn.read())}
    assert replies["c1"]["error"]["code"] == -32800
    assert gone_within(name, 10)


def test_disconnect_kills_and_removes(daemon: Any) -> None:
    name = unique()
    with daemon.connect() as conn:
        conn.send({"jsonrpc": "2.0", "id": 1, "method": "run",
                   "params": {"image": BUSYBOX_IMAGE, "name": name, "command": "sleep 30",
                              "timeout": 30}})
        _wait_until_exists(name)
    assert gone_within(name, 10)


def test_name_in_use_is_conflict_and_the_other_container_survives(conn: RawConnection) -> None:
    name = unique()
    run(conn, name=name, command="sleep 30", detach=True, timeout=20)
    try:
        error = run(conn, name=name, command="true")["error"]
        assert error["code"] in (-32012, -32014)  # libpod answers 409 or 500 for a taken name
        assert inspect(name)["State"]["Status"] == "running"
    finally:
        conn.call("rm", {"name": name, "force": True})


def test_podman_error_half_way_leaves_nothing(conn: RawConnection) -> None:
    name = unique()  # created fine, then start fails: the container must still go
    error = run(conn, name=name, entrypoint="/no/such/binary", command="x")["error"]
    assert error["code"] == -32014 and error["data"]["kind"] == "PodmanError"
    assert "/no/such/binary" in error["message"]
    assert not container_exists(name)


def test_create_body_maps_every_param() -> None:
    """The libpod body as Podman will read it (pure: the live tests above check Podman's view)."""
    from podman_rpc.daemon.guard.policy import PolicyConfig
    from podman_rpc.daemon.handlers.run_spec import create_body
    from podman_rpc.protocol.methods import Run

    params = Run(image="img", command="sh -c 'echo a b'", entrypoint=["/bin/env"],
                 env=["A=1", "B=x=y"], memory="64m", memory_swap="-1", cpus=1.5,
                 pids_limit=10, timeout=2.5, workdir="/w", network_mode="container:abc",
                 mounts=["/src:/dst:Z,rshared", "data:/vol:size=10m"],
                 volumes=["/h:/c:ro"], ports=["127.0.0.1:8080:80/udp"])
    body = create_body(params, name="n", labels={"l": "v"}, kill_margin=2.0,
                       policy=PolicyConfig(capabilities=("NET_BIND_SERVICE",)))
    assert body["command"] == ["sh", "-c", "echo a b"] and body["entrypoint"] == ["/bin/env"]
    assert body["env"] == {"A": "1", "B": "x=y"}
    assert body["resource_limits"] == {"memory": {"limit": 64 << 20, "swap": -1},
                                       "cpu": {"quota": 150_000, "period": 100_000},
                                       "pids": {"limit": 10}}
    assert body["timeout"] == 5  # ceil(2.5 + 2.0)
    assert body["netns"] == {"nsmode": "container", "value": "abc"}
    assert body["mounts"] == [
        {"type": "bind", "source": "/src", "destination": "/dst",
         "options": ["Z", "rshared", "nosuid", "nodev"]},
        {"type": "bind", "source": "/h", "destination": "/c", "options": ["ro", "nosuid", "nodev"]}]
    assert body["volumes"] == [{"Name": "data", "Dest": "/vol", "Options": ["size=10m"]}]
    assert body["portmappings"] == [{"host_ip": "127.0.0.1", "host_port": 8080,
                                     "container_port": 80, "protocol": "udp"}]
    assert body["work_dir"] == "/w" and body["labels"] == {"l": "v"} and body["name"] == "n"
    # what the container gets of the host: the policy's capabilities only, its own userns
    assert body["no_new_privileges"] is True and body["userns"] == {"nsmode": "auto"}
    assert body["idmappings"] == {"AutoUserNs": True, "AutoUserNsOpts": {"Size": 65536}}
    assert body["cap_drop"] == ["ALL"] and body["cap_add"] == ["NET_BIND_SERVICE"]
    host = create_body(params, name="n", labels={}, kill_margin=2.0,
                       policy=PolicyConfig(userns="host"))
    assert "userns" not in host and "idmappings" not in host and "cap_add" not in host
    assert host["cap_drop"] == ["ALL"]
