"""Cases 4 and 5: ``run`` of an echo container, against ``podman run --rm`` and the old way."""

from __future__ import annotations

import asyncio
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from bench.cases_rpc import time_oldway
from bench.clients import LineClient, raise_for_error, request_line
from bench.rig import podman_cli_env
from bench.stats import Measurement

LIMITS = ["--memory", "20m", "--memory-swap", "20m", "--cpus", "0.5", "--pids-limit", "64",
          "--network", "none"]
ECHO = ["echo", "hello"]


def run_params(image: str) -> dict:
    """The daemon's defaults already are 20m, 0.5 cpu, 64 pids, no network, auto-remove."""
    return {"image": image, "command": ECHO}


def _check_run(reply: bytes) -> None:
    message = orjson.loads(reply)
    raise_for_error(message, "run")
    if "hello" not in str(message["result"].get("stdout")):
        raise RuntimeError(f"run did not capture the output: {message['result']}")


def cli_run(image: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(["podman", "run", "--rm", *LIMITS, image, *ECHO],
                          env=podman_cli_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or done.stdout.strip() != "hello":
        raise RuntimeError(f"podman run failed (exit {done.returncode}, "
                           f"stdout {done.stdout[-100:]!r}): {done.stderr[-400:]}")
    return elapsed


def _attempt(fn: Any) -> str | None:
    """None if ``fn()`` succeeded, else why not (throughput counts only successes)."""
    try:
        fn()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None


def run_latency(daemon_socket: Path, podman_socket: Path, image: str, count: int,
                cli_count: int, oldway_count: int) -> list[Measurement]:
    client = LineClient(daemon_socket, timeout=120)
    line = request_line("run", run_params(image))
    try:
        _check_run(client.roundtrip(line))  # warm-up
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            reply = client.roundtrip(line)
            samples.append(time.perf_counter() - start)
            _check_run(reply)
    finally:
        client.close()
    cli_run(image)  # warm-up
    rows = [Measurement("run", "daemon run echo (defaults)", samples),
            Measurement("run", "podman run --rm (same limits)",
                        [cli_run(image) for _ in range(cli_count)])]
    rows.append(Measurement("run", "old way: process per call (run)", time_oldway(
        podman_socket, ["run", image, "--run-command", *ECHO], oldway_count)))
    return rows


async def _daemon_runs(path: str, line: bytes, total: int, conns: int) -> list[str]:
    remaining = [total]
    failures: list[str] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                writer.write(line)
                reply = await reader.readline()
                why = _attempt(lambda reply=reply: _check_run(reply))
                if why is not None:
                    failures.append(why)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return failures


def run_throughput(daemon_socket: Path, image: str, total: int,
                   conns: int) -> list[Measurement]:
    import uvloop

    line = request_line("run", run_params(image))
    start = time.perf_counter()
    daemon_failed = uvloop.run(_daemon_runs(str(daemon_socket), line, total, conns))
    daemon_rate = (total - len(daemon_failed)) / (time.perf_counter() - start)
    start = time.perf_counter()
    with ThreadPoolExecutor(conns) as pool:
        cli_failed = [why for why in pool.map(lambda _: _attempt(lambda: cli_run(image)),
                                              range(total)) if why is not None]
    cli_rate = (total - len(cli_failed)) / (time.perf_counter() - start)
    for who, failed in (("daemon", daemon_failed), ("podman CLI", cli_failed)):
        if len(failed) > total // 10:
            raise RuntimeError(f"{who}: {len(failed)} of {total} runs failed, e.g. {failed[0]}")

    def note(failed: list[str]) -> str:
        return f"{len(failed)} failed, not counted: {failed[0][:80]}" if failed else ""

    return [Measurement("run throughput", f"daemon: {total} runs over {conns} connections",
                        value=daemon_rate, unit="runs/s",
                        note=note(daemon_failed) or "default run lane cap"),
            Measurement("run throughput", f"podman run --rm: {total} runs, {conns} in parallel",
                        value=cli_rate, unit="runs/s", note=note(cli_failed))]
