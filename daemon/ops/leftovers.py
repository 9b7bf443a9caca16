"""The processes a container can leave behind after Podman forgot it, found and killed via /proc.

Podman SIGKILLed while starting a container comes back with it recorded as
``created`` (or ``configured``) although ``runc create`` already ran: its
``conmon`` and ``runc init`` are alive, and removing the container deletes the
record but not them (issue 18 saw them alive 13 minutes later). The processes
are easy to find without Podman: every conmon names its container on its command
line (``-c ID``), and the container's processes run in its own cgroup
(``libpod-ID``). Killing those, then conmon, leaves nothing.

Reads only ``/proc``; a process is signalled only if it still has the start time
it had when the table was read, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass, field

PROC = "/proc"
CONMON = "conmon"


@dataclass
class ProcessTable:
    """One reading of /proc: each container's conmons and the processes in its cgroup."""

    conmons: dict[str, list[int]] = field(default_factory=dict)
    inside: dict[str, list[int]] = field(default_factory=dict)  # in cgroup libpod-<id>
    started: dict[int, int] = field(default_factory=dict)  # pid -> start time (clock ticks)


def _stat(pid: str) -> tuple[str, int, int] | None:
    """(comm, ppid, start time) of a process, or None if it is gone."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    left, right = raw.index(b"("), raw.rindex(b")")
    fields = raw[right + 2:].split()
    return raw[left + 1:right].decode(errors="replace"), int(fields[1]), int(fields[19])


def conmon_container(argv: list[str]) -> str | None:
    """The container id a conmon command line names (``-c ID``, ``--cid ID``, ``--cid=ID``)."""
    for index, arg in enumerate(argv):
        if arg in ("-c", "--cid") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--cid="):
            return arg.split("=", 1)[1]
    return None


# A container's own cgroup (cgroupfs ``libpod-ID``, systemd ``libpod-ID.scope``); conmon's
# is another (``libpod_parent/conmon``, ``libpod-conmon-ID.scope``), so its exit command
# (``podman container cleanup``, which takes Podman's locks) is never taken for the container's.
_CONTAINER_CGROUP = re.compile(rb"libpod-([0-9a-f]{64})")


def read_table(wanted: set[str]) -> ProcessTable:
    """Each process's start time, each conmon's container, and who runs in ``wanted``'s cgroups."""
    table = ProcessTable()
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        if stat is None:
            continue
        comm, _, started = stat
        pid = int(entry.name)
        table.started[pid] = started
        try:
            if comm == CONMON:
                with open(f"{PROC}/{pid}/cmdline", "rb") as fh:
                    container_id = conmon_container(
                        fh.read().decode(errors="replace").split("\0"))
                if container_id:
                    table.conmons.setdefault(container_id, []).append(pid)
                continue
            with open(f"{PROC}/{pid}/cgroup", "rb") as fh:
                match = _CONTAINER_CGROUP.search(fh.read())
        except OSError:
            continue
        if match is not None and match.group(1).decode() in wanted:
            table.inside.setdefault(match.group(1).decode(), []).append(pid)
    return table


def _kill(table: ProcessTable, pids: list[int]) -> list[int]:
    killed = []
    for pid in pids:
        stat = _stat(str(pid))
        if stat is None or stat[2] != table.started.get(pid):
            continue  # gone, or its pid now belongs to another process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def kill_leftovers(container_ids: list[str], stale: frozenset[str] = frozenset()
                   ) -> tuple[dict[str, list[int]], set[str]]:
    """Kill what is left of these (removed or doomed) containers, from one /proc reading.

    The processes in a container's cgroup (``runc init``, the workload) are killed, then
    its conmon, which would otherwise wait for them forever. A conmon whose container has
    no process left is normally finishing on its own (its exit command); it is killed only
    once its id is in ``stale``. Returns the pids killed by container, and the containers
    whose conmon was left running.
    """
    table = read_table(set(container_ids))
    killed: dict[str, list[int]] = {}
    lingering: set[str] = set()
    for cid in container_ids:
        inside = table.inside.get(cid, [])
        conmons = table.conmons.get(cid, [])
        pids = _kill(table, inside)
        if conmons and (inside or cid in stale):
            pids += _kill(table, conmons)
        elif conmons:
            lingering.add(cid)
        if pids:
            killed[cid] = pids
    return killed, lingering
