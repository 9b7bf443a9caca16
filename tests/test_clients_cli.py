"""The ``podman-rpc`` client commands (call, --follow, methods, describe) against a real daemon."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from podman_rpc import Progress
from podman_rpc.follow import Follower
from podman_rpc.protocol.registry import METHODS
from tests.rig.daemon import REPO, DaemonProcess
from tests.rig.podman import podman


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "podman_rpc.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


# --- the command line ------------------------------------------------------------------

def test_cli_call_prints_result_or_error(daemon: DaemonProcess) -> None:
    ok = cli("call", "info", '{"format": "{{.Host.Arch}}"}', "--socket", str(daemon.socket_path))
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout) == podman("info", "--format", "{{.Host.Arch}}").stdout.strip()
    bad = cli("call", "exists", '{"nam": "x"}', "--socket", str(daemon.socket_path))
    assert (bad.returncode, bad.stdout) == (1, "")
    assert orjson.loads(bad.stderr)["data"]["field"] == "nam"
    notjson = cli("call", "ping", "{", "--socket", str(daemon.socket_path))
    assert notjson.returncode == 2 and "not valid JSON" in notjson.stderr
    follow = cli("call", "ping", "--follow", "--socket", str(daemon.socket_path))
    assert (follow.returncode, orjson.loads(follow.stdout)) == (0, "Pong")


def test_cli_call_follow_prints_progress_on_stderr(daemon: DaemonProcess, busybox: str) -> None:
    params = orjson.dumps({"image": busybox,
                           "command": ["sh", "-c", "echo hello; echo oops >&2"]}).decode()
    out = cli("call", "run", params, "--follow", "--socket", str(daemon.socket_path))
    assert out.returncode == 0, out.stderr
    assert sorted(out.stderr.splitlines()) == ["stderr: oops", "stdout: hello"]
    assert orjson.loads(out.stdout)["stdout"] == "hello\n"  # stdout holds the result alone


def test_cli_unreachable_daemon(tmp_path: Path) -> None:
    out = cli("call", "ping", "--socket", str(tmp_path / "none.sock"))
    assert out.returncode == 2 and "cannot reach the daemon" in out.stderr


def test_cli_methods_lists_every_method_with_params_and_docs(daemon: DaemonProcess) -> None:
    out = cli("methods", "--socket", str(daemon.socket_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    heads = [line for line in lines if not line.startswith(" ")]
    assert [h.split("(")[0] for h in heads] == list(METHODS)
    run_line = next(h for h in heads if h.startswith("run("))
    assert "image: string" in run_line and "timeout: number = 5.0" in run_line
    summary = lines[lines.index(run_line) + 1].strip()
    assert summary == METHODS["run"].summary
    as_json = cli("methods", "--json", "--socket", str(daemon.socket_path))
    assert [m["name"] for m in orjson.loads(as_json.stdout)] == list(METHODS)


def test_cli_describe(daemon: DaemonProcess) -> None:
    out = cli("describe", "exists", "--socket", str(daemon.socket_path))
    assert out.returncode == 0, out.stderr
    assert "name: string (required)" in out.stdout
    assert METHODS["exists"].params[0].meta.doc in out.stdout
    assert "result: boolean" in out.stdout
    raw = cli("describe", "run", "--json", "--socket", str(daemon.socket_path))
    assert orjson.loads(raw.stdout) == orjson.loads(orjson.dumps(METHODS["run"].describe()))
    missing = cli("describe", "nope", "--socket", str(daemon.socket_path))
    assert missing.returncode == 1 and "no method 'nope'" in missing.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_follow_build_display_on_a_terminal() -> None:
    screen = _Terminal()
    follower = Follower("build", screen)
    for line in ["STEP 1/2: FROM localhost/busybox:latest", "STEP 2/2: RUN echo hi", "hi",
                 "COMMIT x"]:
        follower.show(Progress(1, "build", line))
    follower.finish()
    text = screen.getvalue()
    # Each step header stays in the scrollback; the status line is redrawn in place.
    assert "STEP 1/2: FROM localhost/busybox:latest\n" in text
    assert "STEP 2/2: RUN echo hi\n" in text
    assert "[build step 2/2, 4 lines] COMMIT x" in text
    assert text.endswith("\r\x1b[2K")  # cleared at the end: the result follows cleanly
    plain = io.StringIO()
    Follower("build", plain).show(Progress(1, "build", "STEP 1/2: FROM x"))
    assert plain.getvalue() == "build: STEP 1/2: FROM x\n"  # not a terminal: plain lines


def test_cli_call_build_follow_streams_the_build_log(daemon: DaemonProcess, busybox: str,
                                                     tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo built-here\n")
    tag = f"localhost/clients-follow-{uuid.uuid4().hex[:8]}:latest"
    params = orjson.dumps({"context": str(tmp_path), "tag": tag}).decode()
    try:
        out = cli("call", "build", params, "--follow", "--socket", str(daemon.socket_path),
                  timeout=300)
        assert out.returncode == 0, out.stderr
        lines = out.stderr.splitlines()
        assert lines and all(line.startswith("build: ") for line in lines)
        assert any("built-here" in line for line in lines)
        result = orjson.loads(out.stdout)
        assert tag in result["tags"] and result["built"] is True
    finally:
        podman("rmi", "-f", tag, check=False)


def test_cli_call_takes_params_by_position_version_and_clean_help(daemon: DaemonProcess) -> None:
    """Issue 19: an array is params by position; --version; no rST markup in --help."""
    socket = ("--socket", str(daemon.socket_path))
    exists = cli("call", "exists", '["localhost/busybox:latest"]', *socket)
    assert (exists.returncode, orjson.loads(exists.stdout)) == (0, True), exists.stderr
    extra = cli("call", "ping", "[1, 2]", *socket)
    assert extra.returncode == 1 and orjson.loads(extra.stderr)["data"]["field"] == "params[1]"
    scalar = cli("call", "ping", '"bar"', *socket)
    assert scalar.returncode == 2 and "object" in scalar.stderr and "array" in scalar.stderr
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("podman-rpc 0.")
    helped = cli("--help")
    assert helped.returncode == 0 and "``" not in helped.stdout


def test_ctrl_c_on_call_exits_130_without_a_traceback(daemon: DaemonProcess) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "clients.cli", "call", "run",
         '{"image": "localhost/busybox:latest", "command": ["sleep", "30"], "timeout": 40}',
         "--socket", str(daemon.socket_path)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # the call is in flight
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130 and "Traceback" not in err, err
