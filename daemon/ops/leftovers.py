"""The processes a container can leave behind after Podman forgot it, found and killed via /proc.

Podman SIGKILLed while starting a container comes back with it recorded as
``created`` (or ``configured``) although ``runc create`` already ran: its
``conmon`` and ``runc init`` are alive, and removing the container deletes the
record but not them (issue 18 saw them alive 13 minutes later). The processes
are easy to find without Podman: every conmon names its container on its command
line (``-c ID``), and the container's processes are conmon's descendants (conmon
is their subreaper). Killing the descendants first, then conmon, leaves nothing.

Reads only ``/proc``; a process is signalled only if it still has the start time
it had when the table was read, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field

PROC = "/proc"
CONMON = "conmon"


@dataclass
class ProcessTable:
    """One reading of /proc: conmons by the container they name, and the process tree."""

    conmons: dict[str, list[int]] = field(default_factory=dict)
    children: dict[int, list[int]] = field(default_factory=dict)
    started: dict[int, int] = field(default_factory=dict)  # pid -> start time (clock ticks)

    def tree(self, container_id: str) -> list[int]:
        """The container's conmons and their descendants, deepest first (the kill order)."""
        order: list[int] = []
        todo = list(self.conmons.get(container_id, ()))
        while todo:
            pid = todo.pop()
            order.append(pid)
            todo.extend(self.children.get(pid, ()))
        return order[::-1]


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


def read_table() -> ProcessTable:
    """Read every process's parent and start time, and each conmon's container."""
    table = ProcessTable()
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        if stat is None:
            continue
        comm, ppid, started = stat
        pid = int(entry.name)
        table.started[pid] = started
        table.children.setdefault(ppid, []).append(pid)
        if comm == CONMON:
            try:
                with open(f"{PROC}/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            container_id = conmon_container(argv)
            if container_id:
                table.conmons.setdefault(container_id, []).append(pid)
    return table


def kill_tree(table: ProcessTable, container_id: str) -> list[int]:
    """SIGKILL what the table says is left of a container; the pids signalled."""
    killed = []
    for pid in table.tree(container_id):
        stat = _stat(str(pid))
        if stat is None or stat[2] != table.started.get(pid):
            continue  # gone, or its pid now belongs to another process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def kill_leftovers(container_ids: list[str]) -> dict[str, list[int]]:
    """Kill the processes left of these containers (one /proc reading); pids by container."""
    table = read_table()
    found = {cid: kill_tree(table, cid) for cid in container_ids if cid in table.conmons}
    return {cid: pids for cid, pids in found.items() if pids}


def containers_with_processes() -> set[str]:
    """Every container id some live conmon names."""
    return set(read_table().conmons)
