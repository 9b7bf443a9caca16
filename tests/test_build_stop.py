"""A build stops when its request stops (cancel, disconnect, SIGTERM), and the daemon exits
within ``drain_grace`` + 5 s even with a worker stuck in Podman.

"Stopped" is measured on the host: no upload left in Podman's temp directories,
no bytes left in them or in the daemon's state directory, no RUN process
running, no buildah working container, no image; the daemon's memory did not grow
with the context.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podman_rpc.daemon.handlers.build_leftovers import TEMP_DIRS, builder_dirs
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, podman

CONTEXT_MB = 400
SLACK = 10 << 20  # bytes: "back within 10 MB"


def wait_for(check: Callable[[], Any], limit: float, step: float = 0.05) -> Any:
    until = time.monotonic() + limit
    while time.monotonic() < until:
        if value := check():
            return value
        time.sleep(step)
    return check()


def du(path: Path | str) -> int:
    """Bytes on disk below ``path`` (0 if it is gone)."""
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout else 0


def build_leftover_bytes(before: set[str], state_dir: Path) -> int:
    """What builds left where the daemon and libpod spool: new upload directories, buildah
    scratch directories in the temp directories, and the daemon's state directory."""
    new = set(builder_dirs()) - before
    scratch = [str(p) for base in TEMP_DIRS for p in Path(base).glob("buildah*")
               if str(p) not in before]
    return sum(du(p) for p in [*new, *scratch]) + du(state_dir)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def used(path: str) -> int:
    return shutil.disk_usage(path).used


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A build root with a big context (random bytes: nothing compresses) and a small one."""
    base = tmp_path_factory.mktemp("build-stop")
    big = base / "big"
    big.mkdir()
    (big / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY . /ctx/\n")
    with open(big / "blob.bin", "wb") as fh:
        for _ in range(CONTEXT_MB):
            fh.write(os.urandom(1 << 20))
    (base / "small").mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def base_image() -> Iterator[str]:
    """The busybox image under a name of its own: its working containers are ours alone."""
    name = f"localhost/prpc-stopbase-{uuid.uuid4().hex[:8]}"
    podman("tag", BUSYBOX_IMAGE, name)
    yield name
    podman("rmi", "-f", name, check=False)


def working_containers(base: str) -> list[str]:
    short = base.rsplit("/", 1)[-1]
    for _ in range(5):  # `ps --external` fails (125) when a container goes while it lists
        listed = podman("ps", "-a", "--external", "--format", "{{.Names}}", check=False)
        if listed.returncode == 0:
            return [n for n in listed.stdout.split() if n.startswith(short)]
        time.sleep(0.2)
    raise AssertionError(f"podman ps --external kept failing: {listed.stderr}")


def run_processes(token: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", token], capture_output=True, text=True).stdout.split()


def sleeping_context(roots: Path, base: str) -> tuple[Path, str]:
    """A context whose RUN step sleeps, with a token pgrep can find."""
    token = f"{300 + int(uuid.uuid4().hex[:4], 16) % 600}.{uuid.uuid4().hex[:6]}"
    context = roots / "small"
    (context / "Dockerfile").write_text(f"FROM {base}\nRUN sleep {token.split('.')[0]}; "
                                        f"echo {token}\n")
    return context, token


def make_build_daemon(make_daemon: Callable[..., DaemonProcess], roots: Path,
                      extra: str = "") -> DaemonProcess:
    return make_daemon(extra + f'[daemon.policy]\nbuild_roots = ["{roots}"]\n'
                       'max_build_context_bytes = "2g"\n')


def start_upload(conn: RawConnection, context: Path, tag: str, before: set[str]) -> None:
    """Send the build and return once libpod is receiving its upload."""
    conn.send({"jsonrpc": "2.0", "id": 1, "method": "build",
               "params": {"context": str(context), "tag": tag, "no_cache": True}})
    assert wait_for(lambda: set(builder_dirs()) - before, 20), "the upload never began"


@pytest.mark.parametrize("how", ["cancel", "disconnect"])
def test_stopping_an_upload_leaves_nothing(make_daemon: Callable[..., DaemonProcess],
                                           roots: Path, tag: str, how: str) -> None:
    daemon = make_build_daemon(make_daemon, roots)
    state_dir = daemon.directory / "run"
    assert daemon.process is not None
    before = set(builder_dirs()) | {str(p) for b in TEMP_DIRS for p in Path(b).glob("buildah*")}
    disk_before = {p: used(p) for p in ("/tmp", "/var/tmp", str(daemon.directory))}
    rss_before = rss_bytes(daemon.process.pid)
    conn = daemon.connect()
    start_upload(conn, roots / "big", tag, before)
    if how == "cancel":
        conn.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        reply = conn.read()
        assert reply["id"] == 1 and reply["error"]["code"] == -32800, reply
        conn.close()
    else:
        conn.close()
        assert wait_for(lambda: "build stopped" in daemon.log(), 10), daemon.log()
    replied = time.monotonic()
    assert wait_for(lambda: "build stopped" in daemon.log(), 5)
    stopped = json.loads(next(line for line in daemon.log().splitlines()
                              if "build stopped" in line))
    print(stopped)
    assert stopped["finished_upload"] is False and stopped["removed"], stopped
    assert wait_for(lambda: build_leftover_bytes(before, state_dir) < SLACK, 5), (
        f"{build_leftover_bytes(before, state_dir)} bytes left: {set(builder_dirs()) - before}")
    assert not set(builder_dirs()) - before

    def grown() -> dict[str, int]:
        return {p: used(p) - disk_before[p] for p in disk_before}

    # df of the same filesystems: back within 10 MB (other sessions on this host write too,
    # so it is polled within the same 5 s rather than read once)
    settled = wait_for(lambda: all(g < SLACK for g in grown().values()),
                       max(0.1, 5.0 - (time.monotonic() - replied)))
    assert time.monotonic() - replied <= 5.5
    print(f"{how}: disk growth after stop {grown()}, rss {rss_before >> 20} -> "
          f"{rss_bytes(daemon.process.pid) >> 20} MiB")
    assert settled, grown()
    assert rss_bytes(daemon.process.pid) < rss_before + (30 << 20)
    assert podman("image", "exists", tag, check=False).returncode != 0


def start_sleeping_build(daemon: DaemonProcess, roots: Path, base: str, tag: str,
                         **extra: Any) -> tuple[RawConnection, str]:
    context, token = sleeping_context(roots, base)
    conn = daemon.connect()
    conn.send({"jsonrpc": "2.0", "id": 1, "method": "build",
               "params": {"context": str(context), "tag": tag, "no_cache": True, **extra}})
    assert wait_for(lambda: run_processes(f"sleep {token.split('.')[0]}"), 30), daemon.log()
    return conn, token


@pytest.mark.parametrize("how", ["cancel", "deadline", "disconnect"])
def test_stopping_kills_the_running_step(make_daemon: Callable[..., DaemonProcess],
                                         roots: Path, base_image: str, tag: str,
                                         how: str) -> None:
    """libpod lets a RUN step run on after its client leaves; the daemon kills it."""
    daemon = make_build_daemon(make_daemon, roots)
    conn, token = start_sleeping_build(daemon, roots, base_image, tag,
                                       **({"timeout": 8} if how == "deadline" else {}))
    sleeper = f"sleep {token.split('.')[0]}"
    if how == "cancel":
        conn.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        assert conn.read()["error"]["code"] == -32800
    elif how == "deadline":
        assert conn.read()["error"]["code"] == -32001
    else:
        conn.close()
    assert wait_for(lambda: not run_processes(sleeper), 5), run_processes(sleeper)
    assert wait_for(lambda: not working_containers(base_image), 10), working_containers(base_image)
    assert podman("image", "exists", tag, check=False).returncode != 0
    conn.close()


def test_sigterm_with_a_build_in_flight_exits_in_bound(
        make_daemon: Callable[..., DaemonProcess], roots: Path, base_image: str,
        tag: str) -> None:
    daemon = make_build_daemon(make_daemon, roots, "drain_grace = 2\n")
    assert daemon.process is not None
    conn, token = start_sleeping_build(daemon, roots, base_image, tag)
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(30)
    took = time.monotonic() - started
    print(f"SIGTERM with a build in flight: exit {code} after {took:.2f}s (bound 2 + 5)")
    assert took <= 2 + 5
    assert wait_for(lambda: not run_processes(f"sleep {token.split('.')[0]}"), 5)
    conn.close()


def test_sigterm_exits_in_bound_with_a_worker_stuck_in_podman(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """``wait`` on a container the daemon did not start holds a worker thread in Podman for
    its whole timeout; the process still ends within drain_grace + 5 s. A second SIGTERM
    ends it at once."""
    name = f"prpc-stuck-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, BUSYBOX_IMAGE, "sleep", "600")
    try:
        for second in (False, True):
            daemon = make_daemon("drain_grace = 1\n" if not second else "drain_grace = 60\n")
            assert daemon.process is not None
            with daemon.connect() as conn:
                conn.send({"jsonrpc": "2.0", "id": 1, "method": "wait",
                           "params": {"name": name, "timeout": 300}})
                time.sleep(1.0)  # the worker is inside Podman's wait
                started = time.monotonic()
                daemon.process.send_signal(signal.SIGTERM)
                if second:
                    time.sleep(0.5)
                    daemon.process.send_signal(signal.SIGTERM)
                code = daemon.process.wait(90)
            took = time.monotonic() - started
            print(f"stuck worker, second signal {second}: exit {code} after {took:.2f}s")
            assert took <= (1.5 if second else 1 + 5)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
