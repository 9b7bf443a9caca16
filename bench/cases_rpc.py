"""Cases 1-3: ping, a daemon-local method, pipelined throughput, ps and images."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.clients import (
    LineClient,
    RestClient,
    pipelined_throughput,
    request_line,
    time_calls,
    time_rest,
)
from bench.stats import Measurement

OLDWAY = Path(__file__).resolve().with_name("oldway_client.py")
API = "/v4.0.0/libpod"


@dataclass(frozen=True)
class Counts:
    """How many samples each case takes (full run, or ``--quick``)."""

    ping: int
    oldway: int
    local: int
    pipelined: int  # requests on one connection
    pipelined_reps: int
    fanout_conns: int
    fanout_each: int
    listing: int
    run: int
    cli_run: int
    run_total: int
    run_conns: int
    idle_conns: int
    soak: int
    cold_runs: int
    burst_seconds: float  # each throughput figure repeats its burst for at least this long


FULL = Counts(ping=2000, oldway=20, local=5000, pipelined=1000, pipelined_reps=9,
              fanout_conns=50, fanout_each=200, listing=500, run=50, cli_run=20,
              run_total=200, run_conns=20, idle_conns=1000, soak=100_000, cold_runs=5,
              burst_seconds=0.3)
QUICK = Counts(ping=200, oldway=2, local=300, pipelined=1000, pipelined_reps=1,
               fanout_conns=50, fanout_each=20, listing=20, run=4, cli_run=2,
               run_total=10, run_conns=5, idle_conns=200, soak=5000, cold_runs=1,
               burst_seconds=0.0)


def time_oldway(podman_socket: Path, args: list[str], count: int) -> list[float]:
    """Wall time of whole old-style client processes."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(OLDWAY), "--socket", str(podman_socket), *args],
                              capture_output=True)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0 or not orjson.loads(done.stdout).get("success"):
            raise RuntimeError(f"old-way {args} failed: {done.stderr.decode()[-500:]}")
    return samples


def ping_cases(daemon_socket: Path, podman_socket: Path, n: Counts) -> list[Measurement]:
    client = LineClient(daemon_socket)
    rest = RestClient(podman_socket)
    try:
        rows = [Measurement("ping", "daemon ping (persistent connection)",
                            time_calls(client, request_line("ping"), n.ping)),
                Measurement("ping", "raw REST HEAD _ping (kept-alive)",
                            time_rest(rest, "HEAD", f"{API}/_ping", n.ping)),
                Measurement("ping", "raw REST GET /_ping (kept-alive)",
                            time_rest(rest, "GET", "/_ping", n.ping))]
    finally:
        client.close()
        rest.close()
    rows.append(Measurement("ping", "old way: process per call (podman-py)",
                            time_oldway(podman_socket, ["ping"], n.oldway)))
    return rows


ONE_CPU = "client and server on one CPU"


@contextmanager
def one_cpu(server_pids: list[int]) -> Iterator[bool]:
    """Pin this thread and each server's event-loop thread to one CPU; restore after.

    A sequential round trip here is mostly the kernel waking the other process, and
    a wake-up across CPUs costs 30-60 us more than one on the same CPU. Where the
    scheduler happens to put each process then decides a local call's latency more
    than the server does; pinned, that lottery is the same for both servers.
    Yields False (and pins nothing) where affinity cannot be set.
    """
    try:
        saved = {pid: os.sched_getaffinity(pid) for pid in [0, *server_pids]}
        cpu = min(saved[0])
        for pid in saved:
            os.sched_setaffinity(pid, {cpu})
    except (AttributeError, OSError, ValueError):
        yield False
        return
    try:
        yield True
    finally:
        for pid, mask in saved.items():
            try:
                os.sched_setaffinity(pid, mask)
            except OSError:
                pass  # that server is gone


def _interleaved_status(sockets: dict[str, Path], n: Counts) -> dict[str, list[float]]:
    clients = {name: LineClient(path) for name, path in sockets.items()}
    samples: dict[str, list[float]] = {name: [] for name in clients}
    line = request_line("status")
    blocks = max(1, min(20, n.local // 100))
    try:
        for block in range(blocks):
            order = list(clients) if block % 2 == 0 else list(clients)[::-1]
            for name in order:
                samples[name] += time_calls(clients[name], line, n.local // blocks,
                                            warmup=20 if block == 0 else 2)
    finally:
        for client in clients.values():
            client.close()
    return samples


def local_cases(daemon_socket: Path, line_socket: Path, n: Counts,
                server_pids: list[int] | None = None) -> list[Measurement]:
    """Daemon and line server take turns in blocks, so a slow spell of a shared machine
    lands on both alike instead of on whichever ran second; then the same again with
    client and servers pinned to one CPU (see :func:`one_cpu`)."""
    sockets = {"daemon": daemon_socket, "line server": line_socket}
    blocks = max(1, min(20, n.local // 100))
    rows = [Measurement("local", f"{name} status round trip", samples,
                        note=f"interleaved in {blocks} blocks")
            for name, samples in _interleaved_status(sockets, n).items()]
    if server_pids:
        with one_cpu(server_pids) as pinned:
            if pinned:
                rows += [Measurement("local", f"{name} status round trip, {ONE_CPU}", samples,
                                     note=f"interleaved in {blocks} blocks")
                         for name, samples in _interleaved_status(sockets, n).items()]
    return rows


def throughput_cases(daemon_socket: Path, line_socket: Path, n: Counts) -> list[Measurement]:
    """Each repetition runs daemon and line server back to back (order alternating).

    One untimed burst of each shape warms both servers first: a fresh daemon's first
    bursts measured 30-50% slower than its later ones (allocator and caches warming).
    """
    subjects = {"daemon": daemon_socket, "line server": line_socket}
    shapes = {f"{n.pipelined} pipelined, 1 conn": (n.pipelined, 1),
              f"{n.fanout_conns} conns x {n.fanout_each} pipelined": (n.fanout_each,
                                                                     n.fanout_conns)}
    rates: dict[tuple[str, str], list[float]] = {
        (name, shape): [] for shape in shapes for name in subjects}
    for each, conns in shapes.values():
        for path in subjects.values():
            pipelined_throughput(path, "status", each, conns)
    for rep in range(n.pipelined_reps):
        order = list(subjects) if rep % 2 == 0 else list(subjects)[::-1]
        for shape, (each, conns) in shapes.items():
            for name in order:
                rates[name, shape].append(
                    pipelined_throughput(subjects[name], "status", each, conns,
                                         min_seconds=n.burst_seconds))
    return [Measurement("throughput", f"{name}: {shape}",
                        value=statistics.median(rates[name, shape]), unit="req/s",
                        note=f"median of {n.pipelined_reps}, interleaved, "
                             f"each repeated for >= {n.burst_seconds:g} s")
            for shape in shapes for name in subjects]


def listing_cases(daemon_socket: Path, podman_socket: Path, n: Counts) -> list[Measurement]:
    client = LineClient(daemon_socket)
    rest = RestClient(podman_socket)
    rows = []
    try:
        for method, endpoint in (("ps", "/containers/json?all=true"),
                                 ("images", "/images/json")):
            params = {"all": True} if method == "ps" else None
            rows.append(Measurement(method, f"daemon {method}",
                                    time_calls(client, request_line(method, params), n.listing)))
            rows.append(Measurement(method, f"raw REST GET {API}{endpoint.split('?')[0]}",
                                    time_rest(rest, "GET", API + endpoint, n.listing)))
            old_args = [method, "--all"] if method == "ps" else [method]
            rows.append(Measurement(method, f"old way: process per call ({method})",
                                    time_oldway(podman_socket, old_args, n.oldway)))
    finally:
        client.close()
        rest.close()
    return rows
