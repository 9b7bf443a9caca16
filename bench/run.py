"""``python -m bench``: every case side by side in one run; markdown tables on stdout.

    python -m bench [--quick] [--plot latency.png] [--results bench/RESULTS.md]
                    [--only ping,local,throughput,listing,run,output,memory,cold,hostile,podkill,
                            warm]

It starts its own Podman service, daemon and line server (see bench/rig.py)
and stops them at the end. A case that fails is reported in the table and
makes the exit status 1; a method the daemon does not implement yet is skipped.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import orjson

from bench import (
    cases_hostile,
    cases_output,
    cases_podkill,
    cases_resources,
    cases_rpc,
    cases_run,
    cases_warm,
)
from bench.clients import LineClient, NotImplementedByDaemon
from bench.rig import BenchRig, raise_nofile
from bench.stats import Measurement, Ratio, absolute, measurements_table, ratio, ratio_table

CASES = ("ping", "local", "throughput", "listing", "run", "output", "memory", "cold", "hostile",
         "podkill", "warm")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    podman = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, {podman or 'podman ?'}")


def find(rows: list[Measurement], case: str, prefix: str,
         whole: bool = False) -> Measurement | None:
    """The first measured row of ``case`` whose subject starts with (or, whole, is) ``prefix``."""
    return next((r for r in rows if r.case == case and not math.isnan(r.p50)
                 and (r.subject == prefix if whole else r.subject.startswith(prefix))), None)


def quotient(a: Measurement | None, b: Measurement | None) -> float | None:
    if a is None or b is None or not b.p50:
        return None
    return a.p50 / b.p50


def ratios(rows: list[Measurement]) -> list[Ratio]:
    ping = find(rows, "ping", "daemon ping")
    rest = find(rows, "ping", "raw REST HEAD")
    local = find(rows, "local", "daemon status round trip", whole=True)
    line = find(rows, "local", "line server status round trip", whole=True)
    pinned = find(rows, "local", f"daemon status round trip, {cases_rpc.ONE_CPU}")
    pinned_line = find(rows, "local", f"line server status round trip, {cases_rpc.ONE_CPU}")
    run, cli = find(rows, "run", "daemon"), find(rows, "run", "podman run")
    run_tp, cli_tp = find(rows, "run throughput", "daemon"), find(rows, "run throughput", "podman")
    idle = next((r for r in rows if r.case == "memory" and "idle connections" in r.subject), None)
    before = find(rows, "memory", "daemon RSS before")
    after = find(rows, "memory", "daemon RSS after")
    cold = find(rows, "cold start", "socket-activated")
    seq, cli_seq = find(rows, "output", "daemon run seq"), find(rows, "output", "podman run --rm seq")
    yes = find(rows, "output", "daemon run yes")
    peak = find(rows, "output", "daemon peak RSS")
    tp8 = next((r for r in rows if r.case == "run throughput" and "over 8 connections" in r.subject), None)
    cli8 = next((r for r in rows if r.case == "run throughput" and "8 in parallel" in r.subject), None)
    out = [
        ratio("old per-call ping p50 / daemon ping p50", quotient(find(rows, "ping", "old way"), ping),
              ">= 200x", lambda v: v >= 200),
        ratio("daemon ping p50 / raw REST _ping p50", quotient(ping, rest), "<= 3x",
              lambda v: v <= 3),
        ratio("daemon status p50 / line server p50", quotient(local, line), "<= 2x",
              lambda v: v <= 2),
        ratio(f"daemon status p50 / line server p50, {cases_rpc.ONE_CPU}",
              quotient(pinned, pinned_line), "<= 2x", lambda v: v <= 2),
    ]
    for label in ("pipelined, 1 conn", "conns x"):
        d = next((r for r in rows if r.case == "throughput" and r.subject.startswith("daemon")
                  and label in r.subject), None)
        b = next((r for r in rows if r.case == "throughput" and r.subject.startswith("line")
                  and label in r.subject), None)
        name = "1 connection" if "1 conn" in label else "50 connections"
        out.append(ratio(f"pipelined throughput, {name}: daemon / line server", quotient(d, b),
                         ">= 0.5x", lambda v: v >= 0.5))
    out += [
        ratio("daemon run p50 / podman run --rm p50", quotient(run, cli), "<= 0.75x (issue 17)",
              lambda v: v <= 0.75),
        ratio("daemon run seq 100000 p50 / podman run --rm seq 100000 p50", quotient(seq, cli_seq),
              "<= 1.0x", lambda v: v <= 1.0),
        absolute("run yes piped to head -c 3000000, timeout 5 s: slowest reply",
                 max(yes.samples) if yes else None, "s", "<= 6 s, truncated",
                 lambda v: v <= 6 and yes is not None and "truncated=True" in yes.note
                 and "False" not in yes.note),
        ratio("run throughput at parallelism 8: daemon / podman CLI", quotient(tp8, cli8),
              ">= 1.3x (issue 17)", lambda v: v >= 1.3),
        absolute(peak.subject if peak else "daemon peak RSS, 8 parallel runs printing 100 MB",
                 peak.p50 if peak else None,
                 "MB", "<= 100 MB", lambda v: v <= 100),
        ratio("run throughput: daemon / podman CLI", quotient(run_tp, cli_tp), ">= 0.9x",
              lambda v: v >= 0.9),
        absolute("daemon RSS with idle connections", idle.p50 if idle else None, "MB",
                 "<= 80 MB", lambda v: v <= 80,
                 why_missing=idle.note if idle else ""),
        absolute("daemon RSS growth over the request soak",
                 after.p50 - before.p50 if after and before else None, "MB", "<= 5 MB",
                 lambda v: v <= 5),
        absolute("cold start: connect -> first reply (p50)", cold.p50 if cold else None, "s",
                 "<= 0.5 s", lambda v: v <= 0.5),
    ]
    warm = find(rows, "warm", "daemon run echo, warm pool")
    miss = find(rows, "warm", "daemon run echo, warm daemon")
    out += [
        ratio("warm pool hit p50 / podman run --rm p50 (issue 20)",
              quotient(warm, find(rows, "warm", "podman run")), "<= 0.4x", lambda v: v <= 0.4),
        ratio("warm daemon miss p50 / cold path p50 (issue 20)",
              quotient(miss, find(rows, "warm", "daemon run echo, cold")), "within noise (<= 1.1x)",
              lambda v: v <= 1.1),
    ]
    if idle is not None and "allows only" in idle.note:
        out[-5].shown += f" ({idle.note})"
    return out


def plot(rows: list[Measurement], path: Path) -> None:
    """CDFs of every case's latency samples, daemon against its baselines (log time axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in dict.fromkeys(r.case for r in rows)
             if any(r.case == c and len(r.samples) > 1 for r in rows)]
    fig, axes = plt.subplots(len(cases), 1, figsize=(9, 2.6 * max(len(cases), 1)), squeeze=False)
    for ax, case in zip(axes[:, 0], cases, strict=True):
        for row in rows:
            if row.case == case and len(row.samples) > 1:
                xs = sorted(s * 1000 for s in row.samples)
                ys = [(i + 1) / len(xs) for i in range(len(xs))]
                ax.step(xs, ys, where="post", label=f"{row.subject} (p50 {row.p50 * 1000:.3g} ms)")
        ax.set_xscale("log")
        ax.set_title(case)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def guarded(rows: list[Measurement], failures: list[str], case: str,
            fn: Callable[[], list[Measurement]]) -> None:
    started = time.perf_counter()
    try:
        rows.extend(fn())
    except NotImplementedByDaemon as exc:
        rows.append(Measurement(case, "skipped", note=str(exc)))
    except Exception as exc:  # noqa: BLE001 - one failed case must not hide the others
        traceback.print_exc(file=sys.stderr)
        failures.append(f"{case}: {exc}")
        rows.append(Measurement(case, "FAILED", note=str(exc)[:200]))
    print(f"bench: {case} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for CI (< 60 s)")
    parser.add_argument("--plot", type=Path, help="write a PNG of the latency distributions")
    parser.add_argument("--results", type=Path, help="also write the tables to this file")
    parser.add_argument("--only", help="comma-separated cases: " + ",".join(CASES))
    parser.add_argument("--json", type=Path, help="also dump every measurement as JSON")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(CASES)
    unknown = only - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    n = cases_rpc.QUICK if args.quick else cases_rpc.FULL
    hostile = cases_hostile.QUICK if args.quick else cases_hostile.FULL
    soft, hard = raise_nofile(n.idle_conns + 512)  # before any child starts: they inherit it
    rows: list[Measurement] = []
    failures: list[str] = []
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    rig = BenchRig()
    try:
        rig.start()
        assert rig.daemon is not None
        dsock, psock = rig.daemon.socket_path, rig.podman.socket_path
        if only & {"local", "throughput"}:
            probe = LineClient(dsock)
            status = probe.call("status")
            probe.close()
            result_file = rig.directory / "status.json"
            result_file.write_bytes(orjson.dumps(status))
            rig.start_line_server(result_file)
        line_sock = rig.line.socket_path if rig.line else Path("/nonexistent")
        plan: list[tuple[str, Callable[[], list[Measurement]]]] = [
            ("ping", lambda: cases_rpc.ping_cases(dsock, psock, n)),
            ("local", lambda: cases_rpc.local_cases(
                dsock, line_sock, n, [rig.daemon_pid, rig.line.process.pid]
                if rig.line and rig.line.process else None)),
            ("throughput", lambda: cases_rpc.throughput_cases(dsock, line_sock, n)),
            ("listing", lambda: cases_rpc.listing_cases(dsock, psock, n)),
            ("run", lambda: cases_run.run_latency(dsock, psock, rig.image, n.run, n.cli_run,
                                                  n.oldway)),
            ("run", lambda: cases_run.run_throughput(dsock, rig.image, n.run_total, n.run_conns)),
            ("output", lambda: cases_output.seq_cases(dsock, rig.image, n.run // 5 or 2)),
            ("output", lambda: cases_output.yes_case(dsock, rig.image, 3 if n.run > 10 else 1)),
            ("output", lambda: cases_run.run_throughput(dsock, rig.image, 8 * max(n.run_total // 20, 1),
                                                        8)),
            ("output", lambda: cases_output.rss_case(dsock, rig.daemon_pid, rig.image,
                                                     size_mb=10 if args.quick else 100)),
            ("memory", lambda: cases_resources.idle_connections(dsock, rig.daemon_pid,
                                                                n.idle_conns)),
            ("memory", lambda: cases_resources.soak(dsock, rig.daemon_pid, n.soak)),
            ("cold", lambda: cases_resources.cold_start(psock, n.cold_runs)),
            ("hostile", lambda: cases_hostile.flood_beside_steady(dsock, hostile)),
            ("hostile", lambda: cases_hostile.fuzz_storm(dsock, rig.daemon_pid, hostile)),
            ("hostile", lambda: cases_hostile.slow_clients(rig.directory, psock, hostile)),
            ("podkill", lambda: cases_podkill.podman_kill_cycles(
                rig.directory, *((1, 10) if args.quick else (5, 30)))),
            ("warm", lambda: cases_warm.warm_cases(rig.directory, dsock, psock, rig.image,
                                                   max(4, n.cli_run))),
        ]
        for case, fn in plan:
            if case in only:
                guarded(rows, failures, case, fn)
    finally:
        rig.close()
    header = (f"podman-rpc bench, {'quick' if args.quick else 'full'} run, "
              f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
              f"{time.perf_counter() - began:.0f} s\n\nMachine: {machine()}; "
              f"RLIMIT_NOFILE {soft}/{hard}; 1-minute load average {load_before:.1f} at start, "
              f"{os.getloadavg()[0]:.1f} at end (other work on the machine skews every figure).\n")
    report = (header + "\n" + measurements_table(rows) + "\n\nTargets (issue 8), same run:\n\n"
              + ratio_table(ratios(rows)) + "\n")
    hostile_targets = cases_hostile.targets(rows, hostile) + cases_podkill.targets(rows)
    if hostile_targets:
        report += "\nTargets (issue 18), same run:\n\n" + ratio_table(hostile_targets) + "\n"
    print(report)
    if args.results:
        args.results.write_text(report)
    if args.json:
        from bench.stats import as_dict

        args.json.write_bytes(orjson.dumps(as_dict(rows), option=orjson.OPT_INDENT_2))
    if args.plot:
        try:
            plot(rows, args.plot)
        except ImportError:
            print("bench: --plot needs matplotlib: pip install -e '.[bench]'", file=sys.stderr)
            return 2
        print(f"bench: wrote {args.plot}", file=sys.stderr)
    if failures:
        print("bench: failed cases: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0
