"""What a run left on the host, read from /proc: for the Podman-kill test and bench case."""

from __future__ import annotations

from pathlib import Path


def conmons_named(prefix: str) -> dict[int, str]:
    """Live conmon processes whose container name (``-n``) starts with ``prefix``: pid -> id."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or Path(argv[0]).name != "conmon":
            continue
        args = dict(zip(argv, argv[1:], strict=False))
        if args.get("-n", "").startswith(prefix):
            found[int(entry.name)] = args.get("-c", "")
    return found


def processes_in(container_ids: set[str]) -> list[int]:
    """Live processes whose cgroup names one of these containers (``runc init``, the workload)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cgroup = (entry / "cgroup").read_text()
            except OSError:
                continue
            if any(cid in cgroup for cid in container_ids):
                pids.append(int(entry.name))
    return pids
