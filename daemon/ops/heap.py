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
"""

from __future__ import annotations

import ctypes
import gc

KEEP_FREE_BYTES = 8 << 20  # M_TRIM_THRESHOLD: free heap kept before trimming
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks this big or bigger get their own mapping
_M_TRIM_THRESHOLD = -1  # from <malloc.h>
_M_MMAP_THRESHOLD = -3


def keep_freed_heap() -> bool:
    """Apply the settings; False where the C library has no ``mallopt`` (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, libc's among them
    except (OSError, AttributeError):
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
