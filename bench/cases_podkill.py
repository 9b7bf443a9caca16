"""Case "podkill" (issue 18): Podman SIGKILLed under runs, restarted; how long until nothing is left.

A Podman service and a daemon of the case's own (the bench's other cases keep theirs):
``runs`` runs are sent, Podman is SIGKILLed once a third of them have a conmon, and
restarted 2 s later. Measured per cycle: seconds from the restart until no conmon
names a run, no process is in a run's cgroup, and Podman lists no container of the
daemon's instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from bench.stats import Measurement, Ratio, absolute
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, PodmanService, podman
from tests.rig.procs import conmons_named, processes_in

REAP_INTERVAL = 1.0


def _labelled(instance: str) -> list[str]:
    return podman("ps", "-a", "--filter", f"label=io.podman-rpc.instance={instance}",
                  "--format", "{{.ID}}", check=False).stdout.split()


def _cycle(daemon: DaemonProcess, own: PodmanService, instance: str, runs: int,
           limit: float) -> tuple[float | None, int]:
    """One kill-and-restart; (seconds to clean, or None past ``limit``; conmons seen)."""
    prefix = f"podkill-{uuid.uuid4().hex[:8]}-"
    connections = [RawConnection(daemon.socket_path) for _ in range(runs)]
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
        while time.monotonic() - restarted < limit:
            if not (conmons_named(prefix) or processes_in(ids) or _labelled(instance)):
                return time.monotonic() - restarted, len(seen)
            time.sleep(0.1)
        return None, len(seen)
    finally:
        for connection in connections:
            connection.close()
        for pid in conmons_named(prefix):  # never leave a cycle's processes to the next one
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def podman_kill_cycles(directory: Path, cycles: int, runs: int) -> list[Measurement]:
    own = PodmanService(directory / "podkill")
    own.directory.mkdir(parents=True, exist_ok=True)
    own.start()
    daemon = DaemonProcess(directory / "podkill-daemon", own.socket_path,
                           f"reap_interval = {REAP_INTERVAL}\n"
                           f"lanes = {{ run = {{ cap = {runs}, queue = {runs} }} }}\n").start()
    limit = REAP_INTERVAL + 5
    try:
        with RawConnection(daemon.socket_path) as conn:
            instance = conn.call("status")["instance_id"]
        results = [_cycle(daemon, own, instance, runs, limit + 10) for _ in range(cycles)]
    finally:
        daemon.stop()
        own.stop()
    samples = [took for took, _ in results if took is not None]
    late = sum(1 for took, _ in results if took is None or took > limit)
    seen = ", ".join(str(count) for _, count in results)
    return [Measurement("podkill", f"Podman SIGKILLed under {runs} runs, restarted 2 s later: "
                                   "restart -> no conmon, process or container left", samples,
                        note=f"{cycles} cycles, reap_interval {REAP_INTERVAL:g} s; conmons up "
                             f"at the kill: {seen}; over reap_interval + 5 s: {late}")]


def targets(rows: list[Measurement]) -> list[Ratio]:
    found = next((r for r in rows if r.case == "podkill" and r.samples), None)
    if found is None:
        return []
    late = int(found.note.rsplit(": ", 1)[1])
    return [absolute("Podman killed: cycles not clean within reap_interval + 5 s", late, "",
                     "0", lambda v: v == 0),
            absolute("Podman killed: slowest restart -> clean", max(found.samples), "ms",
                     f"<= {REAP_INTERVAL + 5:g} s", lambda v: v <= REAP_INTERVAL + 5)]
