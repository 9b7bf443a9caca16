"""Case "podkill" (issue 18): Podman SIGKILLed under runs, restarted; how long until nothing is left.

A Podman service and a daemon of the case's own (the bench's other cases keep theirs):
``runs`` runs are sent, Podman is SIGKILLed once a third of them have a conmon, and
restarted 2 s later. Measured per cycle: seconds from the restart until no conmon
names a run, no process is in a run's cgroup, and Podman lists no container of the
daemon's instance.
"""

from __future__ import annotations

from pathlib import Path

from bench.stats import Measurement, Ratio, absolute
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podkill import kill_podman_under_runs
from tests.rig.podman import PodmanService

REAP_INTERVAL = 1.0


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
        results = [kill_podman_under_runs(daemon.socket_path, own, instance, runs, limit + 10)
                   for _ in range(cycles)]
    finally:
        daemon.stop()
        own.stop()
    samples = [r.took for r in results if r.took is not None]
    late = sum(1 for r in results if r.took is None or r.took > limit)
    seen = ", ".join(str(r.seen) for r in results)
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
