"""``run``'s output from the attach stream (issue 17), through a real daemon and real Podman:
exact bytes, the cap, timeouts with huge output, the bounded log file, removal after the reply."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pytest

from podman_rpc.daemon.handlers.run import LOG_FILE_CAPS
from tests.rig.daemon import DaemonProcess
from tests.rig.podman import BUSYBOX_IMAGE, podman

pytestmark = pytest.mark.podman

CAP = 65536


def unique() -> str:
    return f"t17-{uuid.uuid4().hex[:10]}"


def exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def gone_within(name: str, seconds: float) -> bool:
    until = time.monotonic() + seconds
    while exists(name):
        if time.monotonic() > until:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def capped(rig_dir: Any, podman_service: Any, busybox: str) -> Any:
    process = DaemonProcess(rig_dir / "t17-capped", podman_service.socket_path,
                            f"output_cap_bytes = {CAP}\n").start()
    yield process
    process.stop()


def run(daemon: DaemonProcess, **params: Any) -> dict[str, Any]:
    with daemon.connect(timeout=60) as conn:
        return conn.request("run", {"image": BUSYBOX_IMAGE, **params})


def test_many_short_lines_arrive_byte_for_byte(daemon: DaemonProcess) -> None:
    result = run(daemon, command=["seq", "100000"], timeout=30)["result"]
    assert result["stdout"] == "".join(f"{i}\n" for i in range(1, 100001))
    assert result["truncated"] is False and result["stderr"] == ""
    assert set(result["timing"]) == {"create_ms", "start_ms", "run_ms", "collect_ms"}


@pytest.mark.parametrize("size", [CAP - 1, CAP, CAP + 1, 5 * CAP])
def test_one_long_line_below_at_and_above_the_cap(capped: DaemonProcess, size: int) -> None:
    script = f"head -c {size} /dev/zero | tr '\\0' a; head -c {size} /dev/zero | tr '\\0' b >&2"
    result = run(capped, command=["sh", "-c", script], timeout=30)["result"]
    assert result["stdout"] == "a" * min(size, CAP)
    assert result["stderr"] == "b" * min(size, CAP)
    assert result["truncated"] is (size > CAP)


def test_timeout_with_endless_output_answers_on_time(capped: DaemonProcess) -> None:
    name = unique()
    began = time.monotonic()
    error = run(capped, name=name, command=["yes"], timeout=2)["error"]
    elapsed = time.monotonic() - began
    assert error["data"]["kind"] == "Timeout", error
    assert elapsed < 2 + 3, elapsed  # a generous bound: the target is timeout + 1 s
    assert error["data"]["truncated"] is True
    assert error["data"]["stdout"] == "y\n" * (CAP // 2)
    assert gone_within(name, 10)


def test_container_failed_carries_the_output(capped: DaemonProcess) -> None:
    error = run(capped, command=["sh", "-c", "seq 3000; echo boom >&2; exit 7"])["error"]
    assert error["data"]["kind"] == "ContainerFailed" and error["data"]["exit_code"] == 7
    assert error["data"]["stdout"] == "".join(f"{i}\n" for i in range(1, 3001))
    assert error["data"]["stderr"] == "boom\n"


def test_progress_lines_come_from_the_same_reader(capped: DaemonProcess) -> None:
    with capped.connect(timeout=60) as conn:
        conn.send({"jsonrpc": "2.0", "id": 1, "method": "run", "params": {
            "image": BUSYBOX_IMAGE, "progress": True,
            "command": ["sh", "-c", "seq 2000; echo warn >&2"]}})
        lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        while (message := conn.read()).get("method") == "$/progress":
            lines[message["params"]["stream"]].append(message["params"]["line"])
    assert lines["stdout"] == [str(i) for i in range(1, 2001)]
    assert lines["stderr"] == ["warn"]
    assert message["result"]["stdout"] == "".join(f"{i}\n" for i in range(1, 2001))


def _log_config(name: str) -> dict[str, Any]:
    return json.loads(podman("container", "inspect", name).stdout)[0]["HostConfig"]["LogConfig"]


def test_a_kept_containers_log_file_is_bounded_on_disk(capped: DaemonProcess) -> None:
    name = unique()
    try:
        result = run(capped, name=name, auto_remove=False, timeout=60,
                     command=["sh", "-c", "yes | head -c 30000000; echo end"])["result"]
        assert result["truncated"] is True
        config = _log_config(name)
        assert config["Type"] == "k8s-file"
        on_disk = os.stat(config["Path"]).st_size
        # 30 MB of output (15 M lines) written through conmon: the file stays within its size
        assert on_disk <= LOG_FILE_CAPS * CAP, on_disk
    finally:
        podman("rm", "-f", name, check=False)


def test_an_auto_remove_run_writes_no_log_file(capped: DaemonProcess) -> None:
    name = unique()
    with capped.connect(timeout=60) as conn:
        conn.send({"jsonrpc": "2.0", "id": 1, "method": "run", "params": {
            "image": BUSYBOX_IMAGE, "name": name, "command": ["sleep", "2"]}})
        until = time.monotonic() + 10
        while not exists(name) and time.monotonic() < until:
            time.sleep(0.05)
        assert _log_config(name)["Type"] == "none"
        assert conn.read()["result"]["exit_code"] == 0


def test_removal_follows_the_reply_even_if_the_daemon_is_sigkilled(
        make_daemon: Any) -> None:
    first = make_daemon()
    name = unique()
    with first.connect() as conn:
        result = conn.request("run", {"image": BUSYBOX_IMAGE, "name": name,
                                      "command": ["echo", "hi"]})["result"]
        first.kill()  # right after the reply: the removal may not have happened
    assert result["stdout"] == "hi\n"
    make_daemon()  # its startup pass reaps what the dead instance left
    assert gone_within(name, 5)


def test_ps_hides_nothing_of_a_kept_container(daemon: DaemonProcess) -> None:
    name = unique()
    try:
        with daemon.connect() as conn:
            conn.request("run", {"image": BUSYBOX_IMAGE, "name": name, "auto_remove": False,
                                 "command": ["true"]})
            listed = conn.call("ps", {"all": True})
        assert name in [c["name"] for c in listed]
    finally:
        podman("rm", "-f", name, check=False)


def test_output_closed_before_exit_still_waits_for_the_exit(capped: DaemonProcess) -> None:
    """EOF on the attach stream is not the exit: the code is the one given after it."""
    error = run(capped, command=["sh", "-c", "echo early; exec >&- 2>&-; sleep 1; exit 5"],
                timeout=10)["error"]
    assert error["data"]["kind"] == "ContainerFailed" and error["data"]["exit_code"] == 5
    assert error["data"]["stdout"] == "early\n"
