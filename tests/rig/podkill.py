"""Podman SIGKILLed under runs and restarted: the one scenario of the reaper test and the
``podkill`` bench case (issue 18), which differ only in what they do with the outcome."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from podman_rpc.daemon.podman.labels import INSTANCE
from tests.rig.daemon import RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, PodmanService, podman
from tests.rig.procs import conmons_named, processes_in


def instance_containers(instance: str) -> list[str]:
    """Every container Podman lists for a daemon instance, in any state."""
    out = podman("ps", "-a", "--filter", f"label={INSTANCE}={instance}",
                 "--format", "{{.ID}}").stdout
    return out.split()


@dataclass(frozen=True)
class KillOutcome:
    seen: int  # conmons of the runs seen up to the restart
    took: float | None  # seconds from the restart until nothing was left; None past the limit
    left: tuple[dict[int, str], list[int], list[str]]  # conmons, processes, containers at the end


def kill_podman_under_runs(daemon_socket: Path, own: PodmanService, instance: str,
                           runs: int, limit: float) -> KillOutcome:
    """Send ``runs`` runs, SIGKILL ``own`` once a third of them have a conmon (so some are
    up and others still being created or started), restart it 2 s later, and wait up to
    ``limit`` s until no conmon names a run, no process is in a run's cgroup and Podman
    lists no container of ``instance``. The runs' conmons are killed on the way out."""
    prefix = f"podkill-{uuid.uuid4().hex[:8]}-"
    connections = [RawConnection(daemon_socket) for _ in range(runs)]
    seen: dict[int, str] = {}
    try:
        for index, connection in enumerate(connections):
            connection.send({"jsonrpc": "2.0", "id": index, "method": "run",
                             "params": {"image": BUSYBOX_IMAGE, "command": ["sleep", "120"],
                                        "timeout": 120, "name": f"{prefix}{index}"}})
        until = time.monotonic() + 60
        while len(seen) < runs // 3 and time.monotonic() < until:
            seen.update(conmons_named(prefix))
            time.sleep(0.05)
        own.kill()
        seen.update(conmons_named(prefix))
        time.sleep(2)
        own.start()
        restarted = time.monotonic()
        seen.update(conmons_named(prefix))
        ids = {cid for cid in seen.values() if cid}
        while True:
            left = (conmons_named(prefix), processes_in(ids), instance_containers(instance))
            took = time.monotonic() - restarted
            if not any(left):
                return KillOutcome(len(seen), took, left)
            if took > limit:
                return KillOutcome(len(seen), None, left)
            time.sleep(0.1)
    finally:
        for connection in connections:
            connection.close()
        for pid in conmons_named(prefix):  # never leave the runs' processes to the host
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
