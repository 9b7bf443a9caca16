"""glibc heap settings for a server that answers in bursts.

By default glibc gives the top of the heap back to the kernel as soon as 128 KiB
of it is free, and grows it again 128 KiB at a time. A burst of pipelined
replies allocates and frees a few hundred KiB per connection, so every burst
gave the same pages back and faulted them in again: ``strace`` showed 400
``brk`` calls and ``/proc/<pid>/stat`` 8,600 minor faults for 10,000 ``status``
requests over 50 connections. Keeping up to :data:`KEEP_FREE_BYTES` of free heap
ends that for a few MiB of resident memory. Setting either value turns off glibc's
adaptive thresholds, which would otherwise have raised the mmap threshold past the
joined reply buffers (100-200 KiB); it is set to 1 MiB so those still come from the
kept heap instead of a fresh mapping each time.

What the kept heap does not bound is the free space a storm leaves in the middle of
the heap: after issue 18's 32-connection fuzz storm RSS stayed 16 MB above where it
started, and ``malloc_trim(0)`` (through gdb) brought it back to +3 MB.
:class:`HeapTrimmer` looks every :data:`TRIM_CHECK_SECONDS` and gives the free heap
back once more than :data:`TRIM_ABOVE_BYTES` of it lies unused and RSS has grown by
:data:`TRIM_GROWTH_BYTES` since the last trim (glibc still counts released pages as
free, so the free count alone would trim again and again). At most one trim a
second costs a burst that follows at most the faults of what was given back.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
from typing import Any

KEEP_FREE_BYTES = 8 << 20  # M_TRIM_THRESHOLD: free heap kept before trimming
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks this big or bigger get their own mapping
_M_TRIM_THRESHOLD = -1  # from <malloc.h>
_M_MMAP_THRESHOLD = -3


TRIM_CHECK_SECONDS = 1.0
TRIM_ABOVE_BYTES = KEEP_FREE_BYTES  # free heap past which it is given back
TRIM_GROWTH_BYTES = 1 << 20  # RSS growth since the last trim that makes another worth it


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)  # the process's own symbols, libc's among them
    except OSError:
        return None


def keep_freed_heap() -> bool:
    """Apply the settings; False where the C library has no ``mallopt`` (not glibc)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREE_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


GC_THRESHOLDS = (20_000, 10, 10)
"""Python's cycle collector: a young collection every 20,000 net allocations, not 700.

Under a 32-connection fuzz storm, a steady client's ``status`` p99 was 56-82 ms
with the default thresholds and 31-38 ms with these (``gc.freeze()`` alone: 56-82;
issue 18, /tmp/fz/run.sh in its note). Each pause traverses what a burst left
alive, and a burst allocates by the thousand; fewer, equally cheap young
collections give the loop back sooner. The 10 and 10 keep older generations on
their usual relative schedule, so cyclic garbage (a closed ``Connection``) is
still collected within seconds of a busy daemon's work.
"""


def tune_gc() -> None:
    """Freeze what start-up made (never garbage) and space out young collections."""
    gc.freeze()  # later full collections no longer walk the imported modules' objects
    gc.set_threshold(*GC_THRESHOLDS)


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/statm``."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


class HeapTrimmer:
    """Every ``interval`` s, give free heap back once more than ``above`` bytes of it are free.

    ``libc`` is the C library (glibc's ``mallinfo2`` and ``malloc_trim``); without them
    the trimmer does nothing.
    """

    def __init__(self, libc: Any = None, interval: float = TRIM_CHECK_SECONDS,
                 above: int = TRIM_ABOVE_BYTES) -> None:
        libc = libc if libc is not None else _libc()
        self._mallinfo2 = getattr(libc, "mallinfo2", None)
        self._malloc_trim = getattr(libc, "malloc_trim", None)
        if self._mallinfo2 is not None and self._malloc_trim is not None:
            self._mallinfo2.restype = _MallInfo2
            self._malloc_trim.argtypes = (ctypes.c_size_t,)
        self.interval = interval
        self.above = above
        self._floor = 0  # RSS after the last trim
        self._timer: asyncio.TimerHandle | None = None

    def free_bytes(self) -> int:
        """Free bytes in the heap's arenas, as glibc counts them (0 when it cannot say)."""
        return int(self._mallinfo2().fordblks) if self._mallinfo2 is not None else 0

    def check(self) -> bool:
        """Trim now if enough lies free and RSS grew since the last trim; True if it did."""
        if (self._malloc_trim is None or rss_bytes() - self._floor <= TRIM_GROWTH_BYTES
                or self.free_bytes() <= self.above):
            return False
        self._malloc_trim(KEEP_FREE_BYTES)  # what the heap's top keeps anyway
        self._floor = rss_bytes()
        return True

    def start(self) -> None:
        if self._malloc_trim is not None and self._mallinfo2 is not None:
            self._tick()

    def _tick(self) -> None:
        self.check()
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
