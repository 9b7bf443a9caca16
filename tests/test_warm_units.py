"""The warm pool's pure parts, without Podman: config, keys, exec argv, the reaper's verdict."""

from __future__ import annotations

import random
import subprocess
import time
from typing import Any

import pytest

from podman_rpc.daemon.config import load_config
from podman_rpc.daemon.guard.policy import PolicyConfig
from podman_rpc.daemon.ops.reaper import verdict
from podman_rpc.daemon.podman.labels import WARM_EXPIRES, container_labels
from podman_rpc.daemon.warm import launcher
from podman_rpc.daemon.warm.config import warm_from_mapping
from podman_rpc.daemon.warm.keys import ExecSpec, eligible, exec_spec, spec_of
from podman_rpc.protocol import methods as m

POLICY = PolicyConfig()


def params(**values: Any) -> m.Run:
    run = m.Run.rpc_spec.validate({"image": "localhost/busybox:latest", **values})
    assert isinstance(run, m.Run)
    return run


def test_config_reads_pools_and_refuses_what_it_does_not_know(tmp_path: Any) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[daemon.warm]\nthreshold = 3\nmemory_budget = "256m"\n'
                    '[[daemon.warm.pools]]\nimage = "busybox"\ncount = 2\ncpus = 0.25\n')
    warm = load_config(path).warm
    assert warm.threshold == 3 and warm.memory_budget == 256 << 20 and warm.enabled
    assert warm.pools[0].count == 2 and warm.pools[0].params is not None
    assert warm.pools[0].params.cpus == 0.25
    assert not load_config(None).warm.enabled  # off unless configured
    for bad in ({"colour": 1}, {"pools": [{"count": 1}]}, {"pools": [{"image": "b", "cpus": "x"}]},
                {"pools": [{"image": "b", "nope": 1}]}, {"min": 3, "max": 1},
                {"threshold": 1, "launcher_binary": "/nonexistent/busybox"},
                {"threshold": 1, "launcher_binary": "/bin/ls"},  # dynamic: needs the host's libc
                {"threshold": 1, "pause_binary": "/usr/libexec/podman/catatonit"}):  # gone
        with pytest.raises(ValueError):
            warm_from_mapping(bad)


def test_the_key_holds_create_time_fields_and_the_uid_not_per_call_ones() -> None:
    base = spec_of(params(command="echo a"), 0, POLICY)
    assert base is not None
    same = spec_of(params(command=["sh", "-c", "x"], env=["A=1"], workdir="/tmp",
                          entrypoint="sh", timeout=30), 0, POLICY)
    assert same is not None and same.key == base.key
    for other in (params(memory="30m", memory_swap="30m"), params(cpus=1),
                  params(pids_limit=10), params(network_mode="host"),
                  params(mounts=["/tmp:/x"]), params(image="localhost/other:latest")):
        spec = spec_of(other, 0, POLICY)
        assert spec is not None and spec.key != base.key
    peer = spec_of(params(), 65534, POLICY)
    assert peer is not None and peer.key != base.key  # another peer never matches
    assert spec_of(params(memory="lots"), 0, POLICY) is None  # the cold path says why


def test_only_single_use_runs_are_eligible() -> None:
    assert eligible(params(), 2.0, 60.0)
    for other in (params(detach=True), params(auto_remove=False), params(name="n"),
                  params(ports=["8080:80"]), params(timeout=59)):
        assert not eligible(other, 2.0, 60.0)


def test_exec_argv_composes_like_docker() -> None:
    image = (["/entry"], ["default"])
    assert exec_spec(params(), *image).argv == ["/entry", "default"]  # type: ignore[union-attr]
    assert exec_spec(params(command="a b"), *image).argv == ["/entry", "a", "b"]  # type: ignore[union-attr]
    assert exec_spec(params(entrypoint="sh"), *image).argv == ["sh"]  # type: ignore[union-attr]
    spec = exec_spec(params(entrypoint="sh", command=["-c", "x"], env=["A=1"], workdir="/w"),
                     None, ["sh"])
    assert spec is not None and spec.argv == ["sh", "-c", "x"]
    assert spec.env == ["A=1"] and spec.workdir == "/w"
    assert exec_spec(params(), None, None) is None


def _warm_attrs(instance: str, expires: float, cid: str = "c1") -> dict[str, Any]:
    labels = container_labels(instance, "warm", time.time() + 3600, True, 0)
    labels[WARM_EXPIRES] = f"{expires:.3f}"
    return {"Id": cid, "State": "running", "Labels": labels, "Names": ["prpc-warm-x"]}


def test_the_reaper_removes_idle_warm_containers_past_ttl_only() -> None:
    now = time.time()
    args: dict[str, Any] = {"now": now, "own_instance": "me", "alive": lambda _: True}
    assert verdict(_warm_attrs("me", now - 5), active=set(), **args) == "warm idle past ttl"
    assert verdict(_warm_attrs("me", now - 5), active={"c1"}, **args) is None  # claimed
    assert verdict(_warm_attrs("me", now + 5), active=set(), **args) is None
    assert verdict(_warm_attrs("other", now - 5), active=set(), **args) is None  # its daemon's
    assert verdict(_warm_attrs("other", now + 5), active=set(), now=now, own_instance="me",
                   alive=lambda _: False) == "instance gone"
    assert verdict(_warm_attrs("me", now + 5), active=set(), stopping=True,
                   **args) == "daemon stopping"


def test_the_launcher_line_carries_every_byte_on_one_ascii_line(tmp_path: Any) -> None:
    """Run by the launcher's own shell (the host's static busybox), as in a warm container."""
    rng = random.Random(20)
    words = ["a b", "it's", '"q"', "$HOME", "`id`", "$(id)", "x\ny\r\n", "\t\x10\x11\x1b\x7f",
             "é€😀", "", "\\n", "-n", "*", "a;b|c&d", "'", "$'\\012'", "}; exit 9; {"]
    words += ["".join(chr(rng.choice([rng.randint(1, 127), rng.randint(128, 0x10FFFF)]))
                      for _ in range(20)).encode("utf-8", "replace").decode("utf-8", "replace")
              .replace("\0", "") for _ in range(20)]
    words = [w for w in words if not any(0xD800 <= ord(c) <= 0xDFFF for c in w)]
    workdir = str(tmp_path / "new dir $x `y` 'z'")
    spec = ExecSpec(argv=["printf", "%s\\0", *words], env=["K=" + "|".join(words)],
                    workdir=workdir)
    assert launcher.launchable(spec)
    line = launcher.line(spec, "n0")
    assert line.isascii() and line.count(b"\n") == 1 and line.endswith(b"\n")
    assert b"\x10" not in line and b"\x11" not in line  # the attach's detach keys
    script = launcher.SCRIPT.replace(launcher.TARGET, "/bin/busybox")  # no bind mount here
    out = subprocess.run(["/bin/busybox", "sh", "-c", script], input=line, capture_output=True,
                         env={"PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.decode().split("\0")[:-1] == words
    env = subprocess.run(["/bin/busybox", "sh", "-c", script], capture_output=True, check=True,
                         input=launcher.line(ExecSpec(["sh", "-c", 'pwd; printf %s "$K"'],
                                                      spec.env, workdir), "n0"),
                         env={"PATH": "/usr/bin:/bin"}).stdout.decode()
    assert env == workdir + "\n" + "|".join(words)


def test_what_the_line_cannot_carry_is_not_launchable() -> None:
    assert not launcher.launchable(ExecSpec(["echo", "a\0b"], [], None))
    assert not launcher.launchable(ExecSpec(["echo"], ["A-B=1"], None))  # not a shell name
    assert not launcher.launchable(ExecSpec(["echo"], ["1A=1"], None))
    assert not launcher.launchable(ExecSpec(["echo", "\ud800"], [], None))
    assert not launcher.launchable(ExecSpec(["echo"], [], "relative/dir"))
    assert launcher.launchable(ExecSpec(["echo", "\n"], ["_A1=\n"], "/"))


def test_the_launcher_runs_the_command_found_in_path_not_a_busybox_applet(tmp_path: Any) -> None:
    """Debian's busybox prefers its applets; the launcher must exec what PATH finds."""
    script = launcher.SCRIPT.replace(launcher.TARGET, "/bin/busybox")
    found = subprocess.run(["/bin/busybox", "sh", "-c", script], capture_output=True,
                           input=launcher.line(ExecSpec(["ls", "--version"], [], None), "n0"),
                           env={"PATH": "/usr/bin:/bin"})
    assert found.returncode == 0 and b"GNU coreutils" in found.stdout  # /bin/ls, not busybox's
    missing = subprocess.run(["/bin/busybox", "sh", "-c", script], capture_output=True,
                             input=launcher.line(ExecSpec(["ls"], [], None), "n0"),
                             env={"PATH": str(tmp_path)})
    assert missing.returncode == launcher.NOT_LAUNCHED and missing.stderr == b"n0\n"
