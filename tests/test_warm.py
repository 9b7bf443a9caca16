"""The warm pool (issue 20) through a real daemon against real Podman: claim, run, destroy.

Warm containers are found in Podman itself by their labels (``warm_ids``), so
"claimed", "removed" and "refilled" are checked there, not from the daemon's word.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from podman_rpc.daemon.podman.labels import INSTANCE, WARM_EXPIRES
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, podman

pytestmark = pytest.mark.podman


def pool_config(count: int, *, ttl: float = 60, extra: str = "", pool: str = "") -> str:
    return (f"[daemon.warm]\nttl = {ttl}\n{extra}"
            f'[[daemon.warm.pools]]\nimage = "{BUSYBOX_IMAGE}"\ncount = {count}\n{pool}')


def warm_ids(instance: str) -> set[str]:
    """Ids of the warm containers of one daemon instance, as Podman lists them (any state)."""
    out = podman("ps", "-a", "--no-trunc", "--filter", f"label={INSTANCE}={instance}",
                 "--format", "{{.ID}} {{.Labels}}").stdout
    return {line.split()[0] for line in out.splitlines() if WARM_EXPIRES in line}


def warm_status(conn: RawConnection) -> dict[str, dict[str, Any]]:
    return conn.call("status")["warm"]  # type: ignore[no-any-return]


def wait_for(what: Callable[[], Any], seconds: float = 30.0) -> Any:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what}")


def ready(conn: RawConnection, count: int) -> dict[str, Any]:
    """Wait until the daemon's one pool has ``count`` ready; its figures."""
    def check() -> dict[str, Any] | None:
        pools = list(warm_status(conn).values())
        return pools[0] if pools and pools[0]["ready"] >= count else None
    return wait_for(check)  # type: ignore[no-any-return]


def is_warm(result: dict[str, Any]) -> bool:
    """Served from a warm container (a cold result may carry ``timing`` too, without it)."""
    return bool((result.get("timing") or {}).get("warm"))


def run(conn: RawConnection, **params: Any) -> dict[str, Any]:
    return conn.request("run", {"image": BUSYBOX_IMAGE, **params})


def test_claim_then_refill(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 1)
        before = warm_ids(instance)
        assert len(before) == 1
        result = run(conn, entrypoint="sh", command=["-c", "pwd; echo $GREETING; echo e >&2"],
                     workdir="/bin", env=["GREETING=hi there"])["result"]
        assert is_warm(result) and result["container_id"] in before
        assert set(result["timing"]) >= {"create_ms", "start_ms", "run_ms", "collect_ms"}
        assert result["stdout"] == "/bin\nhi there\n" and result["stderr"] == "e\n"
        assert result["exit_code"] == 0 and result["status"] == "exited"
        assert result["truncated"] is False and result["image"] == [BUSYBOX_IMAGE]
        figures = ready(conn, 1)  # refilled in the background
        assert figures["claimed"] == 1 and figures["missed"] == 0
        wait_for(lambda: list(warm_status(conn).values())[0]["removing"] == 0)
        after = wait_for(lambda: (ids := warm_ids(instance)) and before.isdisjoint(ids) and ids)
        assert len(after) == 1  # the used one is gone, a fresh one took its place
        # The image's own command when the call names none: busybox's is sh, which exits.
        assert run(conn, command=["echo", "image cmd"])["result"]["stdout"] == "image cmd\n"
        claimed = ready(conn, 1)["claimed"]
        # No command, and the image has none: the cold path's answer; no container claimed.
        assert "no command" in run(conn)["error"]["message"]
        assert ready(conn, 1)["claimed"] == claimed


def test_a_spec_mismatch_takes_the_cold_path(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 1)
        before = warm_ids(instance)
        for other in ({"memory": "30m", "memory_swap": "30m"}, {"cpus": 0.25},
                      {"name": "prpc-warm-mismatch-named"}, {"auto_remove": True, "detach": True}):
            reply = run(conn, command=["echo", "cold"], **other)
            result = reply["result"]
            assert not is_warm(result)
            assert result["container_id"] not in before
        figures = list(warm_status(conn).values())[0]
        assert figures["claimed"] == 0 and figures["ready"] == 1
        assert warm_ids(instance) == before  # untouched


def test_concurrent_claims_never_share_a_container(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(2))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 2)
        before = warm_ids(instance)
    results: list[dict[str, Any]] = []

    def one(index: int) -> None:
        with daemon.connect() as own:
            results.append(run(own, command=["sh", "-c", f"sleep 0.3; echo n{index}"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 5
    warm = [r["result"]["container_id"] for r in results
            if is_warm(r["result"])]
    assert len(warm) == len(set(warm)) and set(warm) <= before
    assert sorted(r["result"]["stdout"] for r in results) == [f"n{i}\n" for i in range(5)]
    with daemon.connect() as conn:
        figures = list(warm_status(conn).values())[0]
        assert figures["claimed"] == len(warm) and figures["claimed"] + figures["missed"] == 5


def test_nonzero_exit_timeout_and_cancel_on_the_warm_path(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 1)
        used = warm_ids(instance)
        error = run(conn, command=["sh", "-c", "echo '[1]'; echo bad >&2; exit 3"])["error"]
        assert error["data"]["kind"] == "ContainerFailed"
        assert error["data"]["exit_code"] == 3 and error["data"]["container_id"] in used
        assert error["data"]["stdout"] == [1] and error["data"]["stderr"] == "bad\n"

        ready(conn, 1)
        used = warm_ids(instance) - used
        started = time.monotonic()
        error = run(conn, command=["sh", "-c", "echo before; sleep 30"], timeout=1)["error"]
        assert time.monotonic() - started < 10
        assert error["data"]["kind"] == "Timeout" and "exceeded timeout of 1s" in error["message"]
        assert error["data"]["container_id"] in used and error["data"]["stdout"] == "before\n"
        wait_for(lambda: not (warm_ids(instance) & used), 15)

        ready(conn, 1)
        used = warm_ids(instance)
        conn.send({"jsonrpc": "2.0", "id": "long", "method": "run",
                   "params": {"image": BUSYBOX_IMAGE, "command": ["sleep", "30"],
                              "timeout": 30}})
        time.sleep(0.5)
        conn.send({"jsonrpc": "2.0", "id": "c", "method": "$/cancelRequest",
                   "params": {"id": "long"}})
        replies = {}
        while len(replies) < 2:
            reply = conn.read()
            replies[reply.get("id")] = reply
        assert replies["long"]["error"]["code"] == -32800
        figures = list(warm_status(conn).values())[0]
        assert figures["claimed"] == 3
        wait_for(lambda: not (warm_ids(instance) & used), 15)  # the claimed one is removed


def test_progress_on_the_warm_path(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1))
    with daemon.connect() as conn:
        ready(conn, 1)
        conn.send({"jsonrpc": "2.0", "id": 1, "method": "run",
                   "params": {"image": BUSYBOX_IMAGE, "progress": True,
                              "command": ["sh", "-c", "echo one; echo two >&2"]}})
        lines = []
        while True:
            message = conn.read()
            if message.get("method") == "$/progress":
                lines.append((message["params"]["stream"], message["params"]["line"]))
            elif message.get("id") == 1:
                break
        assert is_warm(message["result"])
        assert sorted(lines) == [("stderr", "two"), ("stdout", "one")]
        ready(conn, 1)  # not found: the cold path's error, and no line from the launcher
        conn.send({"jsonrpc": "2.0", "id": 2, "method": "run",
                   "params": {"image": BUSYBOX_IMAGE, "progress": True,
                              "command": ["no-such-command"]}})
        message = conn.read()
        assert message.get("id") == 2, message
        assert "executable file not found" in message["error"]["message"]


def test_a_reactive_pool_forms_after_threshold_sightings(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("[daemon.warm]\nthreshold = 2\nmin = 1\nmax = 2\nttl = 60\n")
    with daemon.connect() as conn:
        spec = {"command": ["echo", "x"], "memory": "24m", "memory_swap": "24m"}
        for _ in range(2):
            assert not is_warm(run(conn, **spec)["result"])
        figures = ready(conn, 1)
        assert figures["static"] is False and figures["target"] == 1
        assert is_warm(run(conn, **spec)["result"])
        run(conn, **spec)  # a miss, unless the refill was quicker than this call
        figures = list(warm_status(conn).values())[0]
        assert figures["target"] == min(2, 1 + figures["missed"])  # each miss grows it, to max


def test_max_warm_total_and_the_memory_budget_bound_every_pool(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    # Four wanted; 20m each against a 50m budget leaves room for two, max_warm_total for three.
    daemon = make_daemon(pool_config(4, extra='max_warm_total = 3\nmemory_budget = "50m"\n'))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 2)
        time.sleep(2)  # time enough for a third to start, were it allowed
        figures = list(warm_status(conn).values())[0]
        assert figures["ready"] + figures["starting"] == 2 and figures["target"] == 4
        assert len(warm_ids(instance)) == 2


def test_the_output_cap_holds_on_the_warm_path(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon("output_cap_bytes = 1000\n" + pool_config(1))
    with daemon.connect() as conn:
        ready(conn, 1)
        result = run(conn, command=["sh", "-c", "yes abcd | head -c 300000; echo tail >&2"],
                     timeout=20)["result"]
        assert is_warm(result) and result["truncated"] is True
        assert result["stdout"] == "abcd\n" * 200 and result["stderr"] == "tail\n"


def test_a_warm_container_gone_behind_the_pools_back_falls_back_to_cold(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1))
    with daemon.connect() as conn:
        instance = conn.call("status")["instance_id"]
        ready(conn, 1)
        (gone,) = warm_ids(instance)
        removed = podman("rm", "-f", "-t", "0", gone, check=False)  # by someone else (rm, ...)
        # Podman 4.3 with a user namespace may say EBUSY after it dropped the container.
        assert removed.returncode == 0 or "busy" in removed.stderr, removed.stderr
        assert podman("container", "exists", gone, check=False).returncode == 1
        result = run(conn, command=["echo", "still served"])["result"]
        assert result["stdout"] == "still served\n" and not is_warm(result)
        assert result["container_id"] != gone
        figures = ready(conn, 1)  # and the pool refills
        assert figures["claimed"] == 1
        assert gone not in warm_ids(instance)


ODD = ["a b", "it's", '"q"', "$HOME", "`id`", "$(id)", "x\ny", "\t\x10\x11", "é€", "", "\\n", "-n",
       "*", "a;b|c&d"]


def test_argv_env_and_workdir_reach_the_command_exactly(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """The launcher's line carries every byte as given: spaces, quotes, $, backticks, newlines."""
    daemon = make_daemon(pool_config(1))
    workdir = "/tmp/a dir/it's $x `y`"
    with daemon.connect() as conn:
        ready(conn, 1)
        result = run(conn, command=["printf", "%s|", *ODD], workdir=workdir,
                     env=[f"ODD{i}={v}" for i, v in enumerate(ODD)])["result"]
        assert is_warm(result)
        assert result["stdout"] == "".join(f"{v}|" for v in ODD)
        ready(conn, 1)
        script = 'pwd; for i in $(seq 0 13); do eval "printf %s\\| \\"\\$ODD$i\\""; done'
        result = run(conn, command=["sh", "-c", script], workdir=workdir,
                     env=[f"ODD{i}={v}" for i, v in enumerate(ODD)])["result"]
        assert is_warm(result)
        assert result["stdout"] == workdir + "\n" + "".join(f"{v}|" for v in ODD)


def test_the_command_sees_what_the_cold_path_gives_it(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """Same env, PID 1, the image's own binaries, /dev/null stdin, caps and user as cold."""
    daemon = make_daemon(pool_config(1))
    script = ("env | grep -v ^HOSTNAME= | sort; echo pid $$; readlink /proc/self/exe; cat; "
              "grep -E '^(Cap|NoNewPrivs|Uid|Gid)' /proc/self/status; ls /; cat /proc/1/cmdline")
    with daemon.connect() as conn:
        ready(conn, 1)
        warm = run(conn, command=["sh", "-c", script], env=["K=v"])["result"]
        cold = run(conn, command=["sh", "-c", script], env=["K=v"],
                   name=f"prpc-cold-{time.monotonic_ns()}")["result"]
    assert is_warm(warm) and not is_warm(cold)
    assert "pid 1\n" in warm["stdout"] and "K=v\n" in warm["stdout"]
    assert warm["stdout"] == cold["stdout"]  # ls hides the launcher's /.podman-rpc


def test_a_command_not_found_answers_as_on_the_cold_path(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(pool_config(1))
    with daemon.connect() as conn:
        ready(conn, 1)
        warm = run(conn, command=["no-such-command", "x"])["error"]
        cold = run(conn, command=["no-such-command", "x"],
                   name=f"prpc-cold-{time.monotonic_ns()}")["error"]
        assert warm["code"] == cold["code"] and warm["data"]["kind"] == cold["data"]["kind"]
        assert "executable file not found" in warm["message"]
        figures = ready(conn, 1)  # the claimed container went, as after any claim
        assert figures["claimed"] == 1
