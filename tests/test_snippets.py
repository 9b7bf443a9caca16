"""Every fenced example in the READMEs runs as written, against the test rig's daemon.

Shell lines run in bash, Python blocks in a fresh interpreter, TOML blocks are
parsed. Three things are swapped, and only these: the default socket path for
the test daemon's (also given as ``PODMAN_RPC_SOCKET``), ``ssh host`` for this
host (the bridge runs here), and ``.venv/bin/python`` for this interpreter. A
``# …`` line after a command is its expected output (``…`` matches anything);
``exit N`` in a command's comments is its expected exit code (else 0).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.rig.daemon import REPO, DaemonProcess

DOCS = [REPO / "README.md", REPO / "clients" / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
DEFAULT_SOCKET = "/run/podman-rpc/podman-rpc.sock"
NOT_RUN = {  # whole-machine setup: the test run itself is their proof
    "bash daemon/quickstart.sh": "installs packages and runs the daemon in the foreground",
    "bash tests/run.sh": "it is what runs this test",
}


def blocks(language: str) -> list[tuple[str, str]]:
    """(where, text) of each fenced block in ``language``."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(REPO)}:{line}", match.group(2)))
    return found


def commands(block: str) -> list[tuple[str, list[str]]]:
    """Each command of a shell block (continuation lines joined), with its comment lines."""
    out: list[tuple[str, list[str]]] = []
    pending = ""
    for line in block.splitlines():
        if line.startswith("#") and not pending:
            if out:
                out[-1][1].append(line[1:].strip())
            continue
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\") and pending.strip():
            command, _, comment = pending.partition("  # ")
            out.append((command.strip(), [comment.strip()] if comment else []))
            pending = ""
    return out


def _here(text: str, socket: Path) -> str:
    return (text.replace(DEFAULT_SOCKET, str(socket)).replace("ssh host ", "")
            .replace('"ssh", "host", ', "").replace(".venv/bin/python", sys.executable))


def _env(daemon: DaemonProcess) -> dict[str, str]:
    env = dict(os.environ, PODMAN_RPC_SOCKET=str(daemon.socket_path))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


SHELL = [(where, command, notes) for where, block in blocks("sh")
         for command, notes in commands(block) if command not in NOT_RUN]


def test_the_readmes_have_examples_of_each_kind() -> None:
    assert len(SHELL) >= 10 and blocks("python") and blocks("toml")
    every = {command for _, block in blocks("sh") for command, _ in commands(block)}
    assert every >= set(NOT_RUN)  # the two commands are still there, and still skipped


@pytest.mark.podman
@pytest.mark.parametrize("where, command, notes", SHELL, ids=[f"{w}:{c[:40]}" for w, c, _ in SHELL])
def test_shell_example_runs(where: str, command: str, notes: list[str],
                            daemon: DaemonProcess) -> None:
    done = subprocess.run(["bash", "-c", _here(command, daemon.socket_path)], env=_env(daemon),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    exit_code = next((int(m.group(1)) for n in notes for m in [re.search(r"exit (\d)", n)] if m), 0)
    assert done.returncode == exit_code, (where, done.stdout, done.stderr)
    assert done.stdout or done.stderr, f"{where}: printed nothing"
    expected = [n for n in notes if n.startswith(("{", "["))]
    for line in expected:  # the documented reply, "…" standing for anything
        pattern = ".*?".join(map(re.escape, line.split("…")))
        assert re.fullmatch(pattern, done.stdout.strip()), (where, line, done.stdout)


PYTHON = blocks("python")


@pytest.mark.podman
@pytest.mark.parametrize("where, code", PYTHON, ids=[w for w, _ in PYTHON])
def test_python_example_runs(where: str, code: str, daemon: DaemonProcess) -> None:
    done = subprocess.run([sys.executable, "-c", _here(code, daemon.socket_path)],
                          env=_env(daemon), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (where, done.stderr)
    assert "Pong" in done.stdout, (where, done.stdout)


@pytest.mark.parametrize("where, text", blocks("toml"), ids=[w for w, _ in blocks("toml")])
def test_toml_example_parses(where: str, text: str) -> None:
    assert tomllib.loads(text), where
