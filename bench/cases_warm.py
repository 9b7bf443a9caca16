"""Case ``warm`` (issue 20): a repeated-spec ``run`` served by the warm pool.

A second daemon, with a static pool of the bench's ``run`` spec, runs beside the
rig's plain one. Rounds interleave, so load on the shared machine hits every
subject alike: one warm run, one miss on the warm daemon (a spec no pool has), one
cold run on the plain daemon, and one ``podman run --rm`` with the same limits,
in an order rotated each round. Before each, untimed: the pool full again, the
used container removed (``status``: starting and removing 0), then 0.5 s for
Podman's cleanup process, so the warm path's background work does not land on
the next subject. Also the resident memory of each idle warm container (its
launcher, the busybox shell blocked on its stdin; its conmon; its cgroup's
memory.current) and of the daemon's sentinel.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson

from bench.cases_run import _check_run, cli_run, run_params
from bench.clients import LineClient, raise_for_error, request_line
from bench.rig import DaemonProcess, rss_mb
from bench.stats import Measurement
from tests.rig.podman import podman

POOL_SIZE = 2
SETTLE = 0.5  # seconds after the pool is full again and the used container removed (cleanup)


def warm_config(image: str) -> str:
    return (f"[daemon.warm]\nttl = 600\n[[daemon.warm.pools]]\n"
            f'image = "{image}"\ncount = {POOL_SIZE}\n')


def _ready(client: LineClient, count: int, seconds: float = 30.0) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pools = list(client.call("status")["warm"].values())
        if (pools and pools[0]["ready"] >= count and not pools[0]["starting"]
                and not pools[0]["removing"]):
            return
        time.sleep(0.01)
    raise RuntimeError(f"warm pool not ready within {seconds}s")


def _timed(client: LineClient, line: bytes) -> tuple[float, dict]:
    start = time.perf_counter()
    reply = client.roundtrip(line)
    elapsed = time.perf_counter() - start
    _check_run(reply)
    message = orjson.loads(reply)
    raise_for_error(message, "run")
    return elapsed, message["result"]


def _idle_memory(instance: str) -> tuple[list[float], list[float], list[float]]:
    """(launcher RSS, conmon RSS, cgroup memory.current) in MiB, per idle warm container."""
    out = podman("ps", "--no-trunc", "--filter", f"label=io.podman-rpc.instance={instance}",
                 "--format", "{{.ID}}").stdout.split()
    pause, monitor, cgroup = [], [], []
    for cid in out:
        attrs = json.loads(podman("inspect", cid).stdout)[0]
        state = attrs["State"]
        pause.append(rss_mb(int(state["Pid"])))
        monitor.append(rss_mb(int(state["ConmonPid"])))
        path = Path("/proc") / str(state["Pid"]) / "cgroup"
        relative = path.read_text().strip().split(":")[-1]
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory"):
            for name in ("memory.current", "memory.usage_in_bytes"):
                current = Path(root + relative) / name
                if current.exists():
                    cgroup.append(int(current.read_text()) / (1 << 20))
                    break
            else:
                continue
            break
    return pause, monitor, cgroup


def lookup_cost(image: str, count: int = 20_000) -> Measurement:
    """What a miss adds to the cold path, in-process: the spec's key and one dict lookup."""
    from podman_rpc.daemon.guard.policy import PolicyConfig
    from podman_rpc.daemon.warm.keys import eligible, spec_of
    from podman_rpc.protocol import methods as m

    params = m.Run.rpc_spec.validate({**run_params(image), "memory": "24m",
                                      "memory_swap": "24m"})
    assert isinstance(params, m.Run)
    policy = PolicyConfig()
    pools: dict[str, object] = {}
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        if eligible(params, 2.0, 60.0):
            spec = spec_of(params, 0, policy)
            assert spec is not None and pools.get(spec.key) is None
        samples.append(time.perf_counter() - start)
    return Measurement("warm", "a miss's lookup (eligible, key, dict), in-process", samples,
                       note="what the miss adds to the cold path")


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _sentinel_rss(daemon: DaemonProcess) -> float:
    """RSS (MiB) of the daemon's warm sentinel (sh and its cat): once per daemon."""
    assert daemon.process is not None
    for child in _children(daemon.process.pid):
        if b"warm/sentinel.py" in Path(f"/proc/{child}/cmdline").read_bytes():
            return rss_mb(child) + sum(rss_mb(c) for c in _children(child))
    return float("nan")


def warm_cases(rig_dir: Path, plain_socket: Path, podman_socket: Path, image: str,
               rounds: int) -> list[Measurement]:
    daemon = DaemonProcess(rig_dir / "warm-daemon", podman_socket, warm_config(image)).start()
    warm_client = LineClient(daemon.socket_path, timeout=120)
    plain = LineClient(plain_socket, timeout=120)
    try:
        hit_line = request_line("run", run_params(image))
        miss_line = request_line("run", {**run_params(image), "memory": "24m",
                                         "memory_swap": "24m"})
        instance = warm_client.call("status")["instance_id"]
        _ready(warm_client, POOL_SIZE)
        pause, monitor, cgroup = _idle_memory(instance)
        sentinel = _sentinel_rss(daemon)
        _timed(plain, hit_line)  # warm-ups
        _timed(warm_client, miss_line)
        cli_run(image)
        hits: list[float] = []
        misses: list[float] = []
        colds: list[float] = []
        clis: list[float] = []
        not_warm = 0
        def settled() -> None:
            """The pool full again and the used container's removal done: nothing competes."""
            _ready(warm_client, POOL_SIZE)
            time.sleep(SETTLE)

        def hit() -> None:
            nonlocal not_warm
            elapsed, result = _timed(warm_client, hit_line)
            if result.get("timing", {}).get("warm"):
                hits.append(elapsed)
            else:
                not_warm += 1

        def miss() -> None:
            elapsed, result = _timed(warm_client, miss_line)
            if result.get("timing", {}).get("warm"):
                raise RuntimeError("a spec with no pool was served warm")
            misses.append(elapsed)

        subjects = [hit, miss, lambda: colds.append(_timed(plain, miss_line)[0]),
                    lambda: clis.append(cli_run(image))]
        for index in range(rounds):
            # Rotated each round: each subject follows each other one (and its aftermath,
            # e.g. the warm hit's kill and refill) equally often.
            for subject in subjects[index % 4:] + subjects[:index % 4]:
                settled()
                subject()
    finally:
        warm_client.close()
        plain.close()
        daemon.stop()
    note = f"{not_warm} of {rounds} not served warm, not counted" if not_warm else ""
    return [
        lookup_cost(image),
        Measurement("warm", "daemon run echo, warm pool hit", hits, note=note),
        Measurement("warm", "daemon run echo, warm daemon, miss (no pool for the spec)",
                    misses),
        Measurement("warm", "daemon run echo, cold path (plain daemon, same spec)", colds),
        Measurement("warm", "podman run --rm (same limits)", clis),
        Measurement("warm", "idle warm container: launcher (busybox sh) RSS",
                    value=max(pause, default=0),
                    unit="MB", note=f"max of {len(pause)}: {[round(v, 2) for v in pause]}"),
        Measurement("warm", "idle warm container: conmon RSS", value=max(monitor, default=0),
                    unit="MB", note=f"max of {len(monitor)}: {[round(v, 2) for v in monitor]}"),
        Measurement("warm", "the daemon's warm sentinel process RSS (once per daemon)",
                    value=sentinel, unit="MB"),
        Measurement("warm", "idle warm container: cgroup memory.current",
                    value=max(cgroup, default=float("nan")), unit="MB",
                    note=f"max of {len(cgroup)}: {[round(v, 2) for v in cgroup]}"),
    ]
