"""Case 6 and 7: daemon memory with idle connections and over many requests; cold start."""

from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.clients import LineClient, windowed_load
from bench.rig import rss_mb
from bench.stats import Measurement

COLDSTART = Path(__file__).resolve().with_name("coldstart.py")


def idle_connections(daemon_socket: Path, pid: int, count: int) -> list[Measurement]:
    """Hold ``count`` connections open, check the daemon counts them, read its RSS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (soft if soft != resource.RLIM_INFINITY else 1 << 20) - 64
    wanted = count
    note = ""
    if room < count:
        count = max(room, 0)
        note = f"RLIMIT_NOFILE hard limit {hard} allows only {count} of {wanted}"
    before = rss_mb(pid)
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon_socket))
            held.append(sock)
        probe = LineClient(daemon_socket)
        seen = probe.call("status")["connections"]  # type: ignore[index]
        probe.close()
        if seen < count:
            raise RuntimeError(f"daemon reports {seen} connections, {count} were opened")
        time.sleep(0.2)
        during = rss_mb(pid)
    finally:
        for sock in held:
            sock.close()
    return [Measurement("memory", "daemon RSS, no client connections", value=before, unit="MB"),
            Measurement("memory", f"daemon RSS, {count} idle connections", value=during, unit="MB",
                        note=note or f"daemon saw {seen} connections")]


def soak(daemon_socket: Path, pid: int, total: int, conns: int = 10,
         window: int = 16) -> list[Measurement]:
    """RSS before and after ``total`` requests from well-behaved clients.

    Requests alternate ``status`` (answered at once, on the transport's fast path)
    and ``ping`` (a task with a deadline and a lane slot, answered by Podman), so
    both paths are soaked. Each connection keeps ``window`` requests in flight;
    ``status`` comes back at once, so nearly all of them are pings: 10 x 16 fit the
    query lane (cap 16 + queue 256) and none is refused. A warm-up of the same shape
    comes first: growth then means a leak, not the allocator's high-water mark of a
    deeper burst.
    """
    per_conn = max(1, total // conns)
    methods = ("status", "ping")
    windowed_load(daemon_socket, methods, max(1, per_conn // 5), conns, window)
    before = rss_mb(pid)
    seconds = windowed_load(daemon_socket, methods, per_conn, conns, window)
    after = rss_mb(pid)
    shape = f"{conns} connections x {window} in flight"
    return [Measurement("memory", f"daemon RSS before {conns * per_conn:,} requests",
                        value=before, unit="MB", note=f"after a warm-up, {shape}"),
            Measurement("memory", f"daemon RSS after {conns * per_conn:,} requests",
                        value=after, unit="MB",
                        note=f"status and ping alternating; {seconds:.1f} s, "
                             f"{conns * per_conn / seconds:,.0f} req/s")]


def cold_start(podman_socket: Path, runs: int) -> list[Measurement]:
    """Connect to first ``ping`` reply through systemd-socket-activate (bench/coldstart.py)."""
    if shutil.which("systemd-socket-activate") is None:
        return [Measurement("cold start", "socket-activated connect -> first ping",
                            note="systemd-socket-activate not installed")]
    done = subprocess.run([sys.executable, str(COLDSTART), "--runs", str(runs), "--json",
                           "--podman-socket", str(podman_socket)],
                          capture_output=True, text=True, timeout=120 + 30 * runs)
    if done.returncode != 0:
        raise RuntimeError(f"coldstart.py failed: {done.stderr[-500:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [Measurement("cold start", "socket-activated connect -> first ping",
                        samples=list(summary["cold_samples_s"])),
            Measurement("cold start", "same, second connection (warm process)",
                        value=summary["warm_ping_s"]["median"], unit="ms")]
    if "cold_cpu_s" in summary:  # less sensitive to other load than the wall time
        rows.append(Measurement("cold start", "daemon CPU time up to its first reply",
                                value=summary["cold_cpu_s"]["median"], unit="ms",
                                note=f"median of {runs}"))
    return rows
