"""The daemon keeps freed heap (daemon/ops/heap.py): bursts of replies do not fault pages in again.

Counted, not timed: minor page faults of a real daemon process over bursts of
pipelined ``status`` requests. With glibc's default trimming the same burst cost
about 8,600 faults per 10,000 requests here (the heap top was given back and
grown again 400 times a burst).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.clients import pipelined_throughput
from podman_rpc.daemon.ops.heap import GC_THRESHOLDS, keep_freed_heap, tune_gc
from tests.rig.daemon import DaemonProcess

pytestmark = pytest.mark.podman

CONNECTIONS, PER_CONNECTION = 50, 200


def test_keep_freed_heap_applies_with_glibc() -> None:
    assert keep_freed_heap() is True  # Debian's glibc has mallopt


def minor_faults(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])  # minflt: the 10th field of stat, counted after the name


def burst(path: Path) -> None:
    """50 connections pipelining 200 status requests each (raises on an error or a short reply)."""
    pipelined_throughput(path, "status", PER_CONNECTION, CONNECTIONS)


def test_pipelined_bursts_do_not_fault_the_heap_in_again(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    assert daemon.process is not None
    for _ in range(2):  # the first bursts grow the heap to its working size
        burst(daemon.socket_path)
    before = minor_faults(daemon.process.pid)
    for _ in range(3):
        burst(daemon.socket_path)
    per_burst = (minor_faults(daemon.process.pid) - before) / 3
    assert per_burst < 1500, f"{per_burst:.0f} minor faults per burst of 10,000 requests"



def test_tune_gc_freezes_start_up_and_spaces_out_young_collections() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold()[0] > before[0]  # fewer young collections than the default
        assert gc.get_freeze_count() > 0  # start-up's objects are out of the collector's way
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


FRAGMENT = """
import json, sys
from podman_rpc.daemon.ops.heap import HeapTrimmer, keep_freed_heap

def rss_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

keep_freed_heap()  # as the daemon runs: blocks under 1 MiB come from the heap
kept = []
blocks = [bytearray(200_000) for _ in range(500)]  # 100 MB, like a storm's long lines
for index, block in enumerate(blocks):
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    if index % 25 == 0:
        kept.append(block)  # a few survivors pin the heap's top
del blocks, block
trimmer = HeapTrimmer()
free_before, rss_before = trimmer.free_bytes(), rss_kib()
trimmed = trimmer.check()
print(json.dumps({"free_before": free_before, "free_after": trimmer.free_bytes(),
                  "rss_before": rss_before, "rss_after": rss_kib(), "trimmed": trimmed,
                  "again": trimmer.check()}))
"""


def test_the_trimmer_gives_back_what_a_burst_left_free() -> None:
    """A real process, its heap fragmented the way a storm leaves it; RSS read from /proc."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    figures = json.loads(out)
    assert figures["free_before"] > 50 << 20  # glibc kept what was freed, between survivors
    assert figures["trimmed"] is True and figures["again"] is False  # nothing left to give
    assert figures["rss_before"] - figures["rss_after"] > 50 << 10  # KiB: over 50 MB returned
