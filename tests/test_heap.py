"""The daemon keeps freed heap (daemon/heap.py): bursts of replies do not fault pages in again.

Counted, not timed: minor page faults of a real daemon process over bursts of
pipelined ``status`` requests. With glibc's default trimming the same burst cost
about 8,600 faults per 10,000 requests here (the heap top was given back and
grown again 400 times a burst).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import pytest

from daemon.heap import keep_freed_heap
from tests.rig.daemon import DaemonProcess

pytestmark = pytest.mark.podman

CONNECTIONS, PER_CONNECTION = 50, 200


def test_keep_freed_heap_applies_with_glibc() -> None:
    assert keep_freed_heap() is True  # Debian's glibc has mallopt


def minor_faults(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])  # minflt: the 10th field of stat, counted after the name


async def one_connection(path: str, payload: bytes) -> int:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
    writer.write(payload)
    replies = 0
    while replies < PER_CONNECTION:
        chunk = await reader.read(1 << 18)
        assert chunk, f"closed after {replies} replies"
        replies += chunk.count(b"\n")
        assert b'"error"' not in chunk
    writer.close()
    return replies


def burst(path: Path) -> None:
    payload = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"status"}\n' % i
                       for i in range(PER_CONNECTION))

    async def all_connections() -> list[int]:
        return await asyncio.gather(*(one_connection(str(path), payload)
                                      for _ in range(CONNECTIONS)))

    assert asyncio.run(all_connections()) == [PER_CONNECTION] * CONNECTIONS


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
