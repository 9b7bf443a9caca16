"""The ``containers.conf`` an embedded Podman needs on this host, if any.

Podman's defaults fail on some hosts before a container starts: crun refuses
cgroups v1 and hybrid hierarchies ("cgroups in hybrid mode not supported"), and
as root Podman raises each container's ``nofile`` and ``nproc`` to 1048576,
which a host with lower hard limits refuses ("error setting rlimit type 7:
operation not permitted"). The daemon writes this file for the Podman it starts
itself; an operator's ``CONTAINERS_CONF`` wins over it. The same text, in
``/etc/containers/containers.conf.d/``, fixes a host's own Podman service.
"""

from __future__ import annotations

import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

PODMAN_RLIMIT = 1048576
"""What rootful Podman sets ``nofile`` and ``nproc`` to when nothing says otherwise."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What decides whether Podman's defaults work here."""

    unified_cgroup: bool            # /sys/fs/cgroup is cgroup v2 only
    crun: bool
    runc: bool
    hard_limits: dict[str, int]     # ulimit name -> hard limit (-1: unlimited)
    pid_max: int                    # kernel.pid_max (-1: unknown)


def host_facts() -> HostFacts:
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()  # v2 at the top: not hybrid
    limits = {"nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
              "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[1]}
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = -1
    return HostFacts(unified, shutil.which("crun") is not None, shutil.which("runc") is not None,
                     {k: (-1 if v == resource.RLIM_INFINITY else v) for k, v in limits.items()},
                     pid_max)


def _within(hard: int, cap: int) -> int:
    """The lower of two limits where -1 means none."""
    return cap if hard < 0 else hard if cap < 0 else min(hard, cap)


def containers_conf(facts: HostFacts) -> str | None:
    """The settings this host needs beyond Podman's defaults, or None if it needs none."""
    engine, ulimits = [], []
    if facts.runc and (not facts.unified_cgroup or not facts.crun):
        why = "crun is not installed" if not facts.crun else "crun needs cgroup v2 alone"
        engine.append(f'runtime = "runc"  # {why}')
    for name, hard in sorted(facts.hard_limits.items()):
        # Podman runs with nproc no higher than kernel.pid_max (seen with 4.3), and a
        # container cannot be given more than Podman itself has.
        limit = _within(hard, facts.pid_max) if name == "nproc" else hard
        if 0 <= limit < PODMAN_RLIMIT:
            ulimits.append(f"{name}={limit}:{limit}")
    if not engine and not ulimits:
        return None
    parts = ["# Written by podman-rpc for the Podman it starts itself (daemon/podman/conf.py)."]
    if engine:
        parts += ["[engine]", *engine]
    if ulimits:
        parts += ["[containers]",
                  f"# the host's hard limits: Podman's default of {PODMAN_RLIMIT} is refused here",
                  "default_ulimits = [" + ", ".join(f'"{u}"' for u in ulimits) + "]"]
    return "\n".join(parts) + "\n"


def main() -> int:
    """``python -m podman_rpc.daemon.podman.conf``: print what this host needs (nothing if none).

    For a host's own Podman service, save it as a drop-in, e.g.
    ``/etc/containers/containers.conf.d/podman-rpc.conf``.
    """
    text = containers_conf(host_facts())
    print(text or "# Podman's defaults work on this host: nothing to set", end="" if text else "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
