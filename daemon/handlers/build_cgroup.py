"""A build's RUN steps in a cgroup named for that build, so a stopped build can be ended.

When a POST /build connection closes, libpod (4.3) abandons the build but lets
the RUN step in progress run to its end (measured: ``RUN sleep 45`` ran on for
its 45 s after the client left; see the report in the sec-build branch). The
daemon asks libpod to put RUN steps under ``cgroupparent=/<name>``, and on stop
kills every process whose cgroup path has that component, found through
``/proc/PID/cgroup`` (works for cgroup v1, hybrid and v2 alike). The failed step
then ends the build, and buildah removes its working container (``forcerm``).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class BuildCgroup:
    """The cgroup parent of one build's RUN steps."""

    def __init__(self) -> None:
        self.name = f"podman-rpc-build-{uuid.uuid4().hex[:16]}"

    @property
    def parent(self) -> str:
        """libpod's ``cgroupparent`` for this build."""
        return "/" + self.name

    def _member(self, pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
                return any(self.name in line.rstrip("\n").split(":", 2)[-1].split("/")
                           for line in fh)
        except OSError:
            return False

    def pids(self) -> list[int]:
        """Processes now inside this build's cgroups."""
        return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and self._member(pid)]

    def kill(self, wait: float = 3.0) -> int:
        """SIGKILL every process of the build, again until none is left (a fork may race)."""
        killed = 0
        until = time.monotonic() + wait
        while (pids := self.pids()) and time.monotonic() < until:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        return killed

    def remove(self) -> None:
        """Remove the (empty) cgroup directories left under each hierarchy."""
        for base in (CGROUP_ROOT, *_hierarchies()):
            top = base / self.name
            if not top.is_dir():
                continue
            for directory, _subdirs, _files in os.walk(top, topdown=False):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass


def _hierarchies() -> list[Path]:
    try:
        return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
