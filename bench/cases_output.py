"""Case ``output`` (issue 17): ``run`` of containers that print a lot, against the CLI.

- ``seq 100000`` (589 KB, 100 k lines): daemon ``run`` against ``podman run --rm``
  with the same limits;
- ``yes | head -c 3000000`` with a 5 s timeout: the time to the reply, and that it
  says ``truncated``;
- 8 parallel runs that each print 100 MB (10 MB with --quick): the daemon's peak
  RSS and the CPU seconds it spent (past the cap the reader drains without decoding).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.cases_run import LIMITS
from bench.clients import LineClient, raise_for_error, request_line
from bench.rig import podman_cli_env, rss_mb
from bench.stats import Measurement

SEQ = ["seq", "100000"]
SEQ_BYTES = sum(len(f"{i}\n") for i in range(1, 100001))
YES_3M = ["sh", "-c", "yes | head -c 3000000"]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def _daemon_seq(client: LineClient, image: str) -> float:
    start = time.perf_counter()
    message = orjson.loads(client.roundtrip(request_line(
        "run", {"image": image, "command": SEQ, "timeout": 60})))
    elapsed = time.perf_counter() - start
    raise_for_error(message, "run seq")
    if len(message["result"]["stdout"]) != SEQ_BYTES:
        raise RuntimeError(f"seq output incomplete: {len(message['result']['stdout'])} bytes")
    return elapsed


def _cli_seq(image: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(["podman", "run", "--rm", *LIMITS, image, *SEQ], env=podman_cli_env(),
                          capture_output=True, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or len(done.stdout) != SEQ_BYTES:
        raise RuntimeError(f"podman run seq failed: {done.stderr[-300:]!r}")
    return elapsed


def seq_cases(daemon_socket: Path, image: str, count: int) -> list[Measurement]:
    client = LineClient(daemon_socket, timeout=120)
    try:
        _daemon_seq(client, image)  # warm-up
        daemon = [_daemon_seq(client, image) for _ in range(count)]
    finally:
        client.close()
    _cli_seq(image)
    cli = [_cli_seq(image) for _ in range(count)]
    return [Measurement("output", "daemon run seq 100000", daemon),
            Measurement("output", "podman run --rm seq 100000 (same limits)", cli)]


def yes_case(daemon_socket: Path, image: str, count: int) -> list[Measurement]:
    client = LineClient(daemon_socket, timeout=120)
    samples, notes = [], set()
    try:
        for _ in range(count):
            start = time.perf_counter()
            message: Any = orjson.loads(client.roundtrip(request_line(
                "run", {"image": image, "command": YES_3M, "timeout": 5})))
            samples.append(time.perf_counter() - start)
            body = message.get("result") or message.get("error", {}).get("data") or {}
            kind = "result" if "result" in message else body.get("kind", "error")
            notes.add(f"{kind}, truncated={body.get('truncated')}")
    finally:
        client.close()
    return [Measurement("output", "daemon run yes piped to head -c 3000000, timeout 5 s", samples,
                        note="; ".join(sorted(notes)))]


async def _big_runs(path: str, image: str, parallel: int, size_mb: int) -> list[str]:
    line = request_line("run", {"image": image, "timeout": 120,
                                "command": ["head", "-c", str(size_mb * 1_000_000), "/dev/zero"]})

    async def one() -> str:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
        try:
            writer.write(line)
            message = orjson.loads(await reader.readline())
        finally:
            writer.close()
        body = message.get("result") or message.get("error", {}).get("data") or {}
        return f"{'ok' if 'result' in message else body.get('kind')}:{body.get('truncated')}"

    return list(await asyncio.gather(*(one() for _ in range(parallel))))


def rss_case(daemon_socket: Path, daemon_pid: int, image: str,
             parallel: int = 8, size_mb: int = 100) -> list[Measurement]:
    peak = [rss_mb(daemon_pid)]
    before = peak[0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss_mb(daemon_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    cpu0 = _cpu_seconds(daemon_pid)
    start = time.perf_counter()
    sampler.start()
    try:
        outcomes = asyncio.run(_big_runs(str(daemon_socket), image, parallel, size_mb))
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - start
    cpu = _cpu_seconds(daemon_pid) - cpu0
    note = (f"outcomes {sorted(set(outcomes))}; RSS before {before:.1f} MB; daemon CPU "
            f"{cpu:.2f} s for {wall:.1f} s wall ({parallel * size_mb / max(cpu, 1e-3):.0f} MB "
            "of output per CPU second)")
    return [Measurement("output", f"daemon peak RSS, {parallel} parallel runs printing "
                        f"{size_mb} MB", value=peak[0], unit="MB", note=note)]
