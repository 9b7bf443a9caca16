"""The bench's private world: its own Podman service, daemon and line server.

Reuses the test rig (tests/rig) so the bench runs on any machine where the
tests run, and never touches a Podman service or daemon it did not start.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.rig.daemon import REPO, DaemonProcess, RawConnection
from tests.rig.podman import PodmanService, ensure_busybox_image, podman_env

# Enough connections for the idle-connection case, above the daemon's defaults.
DAEMON_CONFIG = ("max_connections = 1200\nmax_connections_per_uid = 1200\n"
                 "max_connections_per_pid = 1200\n")


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (capped by the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB, from /proc."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class LineServerProcess:
    """``bench/line_server.py`` as a child process."""

    def __init__(self, directory: Path, result_file: Path | None) -> None:
        self.socket_path = directory / "line.sock"
        self.result_file = result_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LineServerProcess:
        command = [sys.executable, "-m", "bench.line_server", "--socket", str(self.socket_path)]
        if self.result_file is not None:
            command += ["--result-file", str(self.result_file)]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.process = subprocess.Popen(command, cwd=REPO, env=env)
        until = time.monotonic() + 20
        while time.monotonic() < until:
            try:
                with RawConnection(self.socket_path, timeout=5) as conn:
                    conn.call("status")
                return self
            except (OSError, ConnectionError):
                if self.process.poll() is not None:
                    raise RuntimeError("line server exited") from None
                time.sleep(0.05)
        raise RuntimeError("line server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class BenchRig:
    """Start everything in a short temporary directory; ``close()`` stops it all."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="prpc-bench-"))
        self.podman = PodmanService(self.directory)
        self.daemon: DaemonProcess | None = None
        self.line: LineServerProcess | None = None
        self.image = ""

    def start(self) -> BenchRig:
        self.podman.start()
        self.image = ensure_busybox_image()
        self.daemon = DaemonProcess(self.directory / "daemon", self.podman.socket_path,
                                    DAEMON_CONFIG).start()
        return self

    def start_line_server(self, result_file: Path | None) -> LineServerProcess:
        self.line = LineServerProcess(self.directory, result_file).start()
        return self.line

    @property
    def daemon_pid(self) -> int:
        assert self.daemon is not None and self.daemon.process is not None
        return self.daemon.process.pid

    def close(self) -> None:
        for stop in ((self.line.stop if self.line else None),
                     (self.daemon.stop if self.daemon else None), self.podman.stop):
            if stop is not None:
                try:
                    stop()
                except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                    print(f"bench: cleanup error: {exc}", file=sys.stderr)
        shutil.rmtree(self.directory, ignore_errors=True)


def podman_cli_env() -> dict[str, str]:
    return podman_env()


__all__ = ["BenchRig", "rss_mb", "raise_nofile", "podman_cli_env", "DaemonProcess"]
