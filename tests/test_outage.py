"""A Podman outage must not make the daemon hold file descriptors: every failed attempt closes
its socket at once, not when the garbage collector gets round to it.

The daemon runs in front of a Podman service of the test's own, which the test SIGKILLs
(the shared service other tests use is never touched).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest

from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.podman import PodmanService
from tests.test_reaper import wait_until

pytestmark = pytest.mark.podman

# Podman-bound calls of both paths: the event loop's own HTTP client (ping) and the
# podman-py clients of the worker threads (the rest).
MIX = ["ping", "version", "ps", "images"]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def unconnected_sockets(pid: int) -> int:
    """The process's unix sockets that are neither connected nor listening (a failed connect)."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    count = 0
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()  # Num RefCount Protocol Flags Type St Inode [Path]
        listening = int(fields[3], 16) & 0x10000
        if fields[6] in inodes and fields[5] == "01" and not listening:
            count += 1
    return count


def burst(conn: RawConnection, rounds: int) -> list[dict[str, object]]:
    """``rounds`` of MIX, pipelined; every reply."""
    conn.send_bytes(b"".join(
        orjson.dumps({"jsonrpc": "2.0", "id": i, "method": MIX[i % len(MIX)]}) + b"\n"
        for i in range(rounds * len(MIX))))
    return [conn.read() for _ in range(rounds * len(MIX))]


def test_file_descriptors_do_not_grow_across_a_podman_outage(
        own_podman: tuple[DaemonProcess, PodmanService]) -> None:
    daemon, own = own_podman
    assert daemon.process is not None
    pid = daemon.process.pid
    with daemon.connect() as conn:
        for method in MIX:  # a fresh Podman answers its first calls slowly
            conn.call(method)
        warm = burst(conn, 10)
        assert all("result" in reply for reply in warm), [r for r in warm if "error" in r][:3]
        before = fds(pid)
        own.kill()
        counts = []
        for _ in range(6):  # 6 x 40 failing calls
            replies = burst(conn, 10)
            assert all(reply.get("error", {}).get("code") == -32010 for reply in replies), replies
            counts.append((fds(pid), unconnected_sockets(pid)))
        own.start()
        assert wait_until(lambda: "result" in conn.request("ping"), limit=30)
        assert all("result" in reply for reply in burst(conn, 10))
        after = fds(pid)
    print(f"fds before {before}, during the outage (fds, unconnected sockets) {counts}, "
          f"after {after}")
    # Each failed attempt closed its socket: none is left unconnected, and 240 failures
    # hold no more descriptors than the first 40 did.
    assert all(unconnected <= 1 for _, unconnected in counts), counts
    assert max(count for count, _ in counts) <= counts[0][0] + 2, counts
    assert after <= before + 2 * len(MIX), (before, after)  # reconnected, not piled up
