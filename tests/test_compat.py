"""The drop-in for the old ``podman_client.py``, command by command, against the seed's shapes.

Each test runs the compat command as the Dart ``PodmanPyRuntime`` would: a new
process with the old arguments (``--socket`` naming Podman's socket first), the
daemon found through ``PODMAN_RPC_SOCKET``, real Podman behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.rig.daemon import REPO, DaemonProcess
from tests.rig.podman import podman


def compat(daemon_socket: Path | str, *args: str, podman_socket: str = "/run/podman/podman.sock",
           cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PODMAN_RPC_SOCKET"] = str(daemon_socket)
    return subprocess.run([sys.executable, "-m", "podman_rpc.compat", "--socket", podman_socket,
                           *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env)


def ok(daemon: DaemonProcess, *args: str, **kw: Any) -> Any:
    """Run a command that must succeed; return its ``data``."""
    out = compat(daemon.socket_path, *args, **kw)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    body = json.loads(out.stdout)
    assert list(body) == ["success", "data"] and body["success"] is True
    # The old CLI printed with json.dumps' defaults: the same bytes, not just the same JSON.
    assert out.stdout == json.dumps(body) + "\n"
    return body["data"]


def failed(daemon: DaemonProcess, *args: str, **kw: Any) -> dict[str, Any]:
    """Run a command that must fail the old way; return the error object."""
    out = compat(daemon.socket_path, *args, **kw)
    assert (out.returncode, out.stdout) == (1, "")
    body = json.loads(out.stderr)
    assert list(body) == ["success", "error", "exit_code"] and body["success"] is False
    assert out.stderr == json.dumps(body) + "\n"
    return body


def test_ping_exact_bytes(daemon: DaemonProcess) -> None:
    out = compat(daemon.socket_path, "ping")
    assert out.stdout == '{"success": true, "data": "Pong"}\n'
    assert (out.returncode, out.stderr) == (0, "")


def test_version_and_info(daemon: DaemonProcess) -> None:
    version = podman("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert ok(daemon, "version") == version
    info = ok(daemon, "info")
    assert isinstance(info, dict) and info
    arch = podman("info", "--format", "{{.Host.Arch}}").stdout.strip()
    assert ok(daemon, "info", "--format", "{{.Host.Arch}}") == arch


def test_old_socket_option_is_ignored_and_daemon_socket_comes_from_env(daemon: DaemonProcess,
                                                                       tmp_path: Path) -> None:
    assert ok(daemon, "ping", podman_socket=str(tmp_path / "not-a-socket")) == "Pong"
    out = compat(tmp_path / "no-daemon.sock", "ping")
    assert (out.returncode, out.stdout) == (1, "")
    body = json.loads(out.stderr)
    assert body["success"] is False and body["exit_code"] == 1
    assert body["error"].startswith("Failed to connect to the podman-rpc daemon")


def test_bad_arguments_are_argparse_errors(daemon: DaemonProcess) -> None:
    out = compat(daemon.socket_path, "run")
    assert out.returncode == 2 and "usage:" in out.stderr and out.stdout == ""
    out = compat(daemon.socket_path, "frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_images_exists_inspect(daemon: DaemonProcess, busybox: str) -> None:
    images = ok(daemon, "images")
    assert images and all(set(i) == {"id", "tags", "size", "created", "digest"} for i in images)
    assert any(busybox in i["tags"] for i in images)
    assert len(ok(daemon, "images", "--all")) >= len(images)
    assert ok(daemon, "exists", busybox) is True
    assert ok(daemon, "exists", "localhost/never-built:nope") is False
    inspected = ok(daemon, "inspect", busybox)
    expected_id = podman("image", "inspect", busybox, "--format", "{{.Id}}").stdout.strip()
    assert inspected["Id"].removeprefix("sha256:") == expected_id.removeprefix("sha256:")
    size = podman("image", "inspect", busybox, "--format", "{{.Size}}").stdout.strip()
    assert ok(daemon, "inspect", busybox, "--format", "{{.Size}}") == size
    missing = failed(daemon, "inspect", "localhost/never-built:nope")
    assert missing["exit_code"] == 1 and "never-built" in missing["error"]


def test_run_shapes(daemon: DaemonProcess, busybox: str) -> None:
    name = f"compat-{uuid.uuid4().hex[:8]}"
    data = ok(daemon, "run", busybox, "--name", name, "--run-command",
              'echo \'{"statusCode": 200, "body": {"result": "success"}}\'',
              "--memory", "20m", "--cpus", "0.5", "--timeout", "10", "--env", "A=1")
    assert data["container_id"] and data["name"] == name
    assert (data["status"], data["exit_code"], data["auto_remove"]) == ("exited", 0, True)
    assert data["image"] == [busybox]  # the old CLI's list
    assert data["stdout"] == {"statusCode": 200, "body": {"result": "success"}}
    assert _gone(name)  # auto-removed, just after the reply

    fail = failed(daemon, "run", busybox, "-c", "sh -c 'echo out; exit 3'")
    assert fail["exit_code"] == 3
    late = failed(daemon, "run", busybox, "--name", f"{name}-t", "-c", "sleep 30",
                  "--timeout", "1")
    assert late["error"] == f"Container '{name}-t' exceeded timeout of 1s and was killed"
    assert _gone(f"{name}-t")


def _gone(name: str, within: float = 5.0) -> bool:
    """The daemon removes an auto-remove container just after its reply (issue 17)."""
    until = time.monotonic() + within
    while podman("container", "exists", name, check=False).returncode == 0:
        if time.monotonic() > until:
            return False
        time.sleep(0.05)
    return True


def test_ps_kill_rm(daemon: DaemonProcess, busybox: str) -> None:
    name = f"compat-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, busybox, "sleep", "60")
    try:
        running = ok(daemon, "ps")
        assert all(set(c) == {"id", "name", "status", "image", "created"} for c in running)
        mine = next(c for c in running if c["name"] == name)
        assert isinstance(mine["image"], list) and mine["status"] == "running"
        killed = ok(daemon, "kill", name)
        assert killed == {"container_id": name, "message": "Container killed with signal SIGKILL"}
        assert any(c["name"] == name for c in ok(daemon, "ps", "--all"))
        assert all(c["name"] != name for c in ok(daemon, "ps"))
        removed = ok(daemon, "rm", name)
        assert removed == {"container_id": name, "message": "Container deleted successfully"}
        assert podman("container", "exists", name, check=False).returncode == 1
        gone = failed(daemon, "rm", name)
        assert gone["exit_code"] == 1
    finally:
        podman("rm", "-f", name, check=False)


def test_build_and_rmi(daemon: DaemonProcess, busybox: str, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile.compat").write_text(
        f"FROM {busybox}\nARG GREETING\nRUN echo $GREETING > /greeting\n")
    tag = f"localhost/compat-build-{uuid.uuid4().hex[:8]}:latest"
    try:
        # A relative context, resolved against the caller's directory as the old CLI did.
        data = ok(daemon, "build", "ctx", "--tag", tag, "--file", "Containerfile.compat",
                  "--build-arg", "GREETING=hi", cwd=tmp_path, timeout=300)
        assert {"image_id", "tags", "platform", "logs"} <= set(data)
        assert tag in data["tags"] and data["logs"]
        assert ok(daemon, "exists", tag) is True
        removed = ok(daemon, "rmi", tag)
        assert removed == {"image": tag, "message": "Image deleted successfully"}
        assert ok(daemon, "exists", tag) is False
    finally:
        podman("rmi", "-f", tag, check=False)


@pytest.mark.parametrize("argv, method, params", [
    (["version"], "version", {}),
    (["info", "--format", "{{.Host.Arch}}"], "info", {"format": "{{.Host.Arch}}"}),
    (["images", "--all"], "images", {"all": True}),
    (["exists", "x"], "exists", {"name": "x"}),
    (["inspect", "x", "--format", "{{.Size}}"], "inspect", {"name": "x", "format": "{{.Size}}"}),
    (["rmi", "x", "--force"], "rmi", {"name": "x", "force": True}),
    (["prune"], "prune", {}),
    (["ps"], "ps", {"all": False}),
    (["kill", "x", "--signal", "SIGTERM"], "kill", {"name": "x", "signal": "SIGTERM"}),
    (["rm", "x"], "rm", {"name": "x", "force": False}),
    (["build", "/ctx", "-t", "a:b", "-f", "F", "--build-arg", "A=1", "--build-arg", "B=2",
      "--platform", "linux/amd64", "--no-cache", "--force"], "build",
     {"context": "/ctx", "tag": "a:b", "file": "F", "build_args": ["A=1", "B=2"],
      "platform": "linux/amd64", "no_cache": True, "force": True}),
    (["run", "img", "--name", "n", "--entrypoint", "/bin/sh", "-d", "-p", "8080:80",
      "-e", "A=1", "-v", "/h:/c", "-m", "/s:/t:Z,rshared", "-c", "echo hi",
      "--no-auto-remove", "--network-mode", "bridge", "--memory", "30m",
      "--memory-swap", "40m", "--cpus", "1.5", "--timeout", "7", "-w", "/app"], "run",
     {"image": "img", "name": "n", "entrypoint": "/bin/sh", "command": "echo hi",
      "ports": ["8080:80"], "env": ["A=1"], "volumes": ["/h:/c"], "mounts": ["/s:/t:Z,rshared"],
      "auto_remove": False, "network_mode": "bridge", "memory": "30m", "memory_swap": "40m",
      "cpus": 1.5, "timeout": 7.0, "workdir": "/app"}),
])
def test_every_old_option_maps_to_a_valid_param(argv: list[str], method: str,
                                                 params: dict[str, Any]) -> None:
    from podman_rpc.compat import build_parser, to_request
    from podman_rpc.protocol.registry import METHODS

    got_method, got_params = to_request(build_parser().parse_args(["--socket", "/x", *argv]))
    assert (got_method, got_params) == (method, params)
    METHODS[method].validate(got_params)  # the daemon will accept every one of them


def test_through_the_main_cli_and_console_script(daemon: DaemonProcess) -> None:
    env = dict(os.environ, PODMAN_RPC_SOCKET=str(daemon.socket_path))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    via_cli = subprocess.run([sys.executable, "-m", "podman_rpc.cli", "compat", "--socket",
                              "/run/podman/podman.sock", "ping"], capture_output=True, text=True,
                             timeout=60, cwd=REPO, env=env)
    assert via_cli.stdout == '{"success": true, "data": "Pong"}\n'
    script = Path(sys.executable).parent / "podman-rpc-compat"
    if not script.exists():
        pytest.fail(f"{script} is missing: reinstall the project (pip install -e .)")
    via_script = subprocess.run([str(script), "--socket", "/run/podman/podman.sock", "ping"],
                                capture_output=True, text=True, timeout=60, env=env)
    assert via_script.stdout == '{"success": true, "data": "Pong"}\n'
    # As PodmanPyRuntime runs it: `python <client path> --socket ... <command>`.
    as_dart_runs_it = subprocess.run([sys.executable, str(script), "--socket",
                                      "/run/podman/podman.sock", "exists", "nope:none"],
                                     capture_output=True, text=True, timeout=60, env=env)
    assert as_dart_runs_it.stdout == '{"success": true, "data": false}\n'
