"""Where a request's time goes: CPU per step of the daemon's per-request path, in process.

    python -m bench.profile_path [--calls 20000]

Each step runs alone many times on uvloop (best of several rounds, process CPU
time, so other load on the machine matters less), then whole requests go
through a real ``Connection`` with a fake transport (no syscalls) at log level
info and warning. The log line goes to a temporary file, as a daemon's stderr
would under systemd or the test rig. The process takes the daemon's heap settings
(daemon/ops/heap.py), as the daemon and the bench's line server do. No Podman is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


class _FakeTransport:
    """Counts reply lines; stands in for the socket so only Python work is measured."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, data: bytes) -> None:
        self.lines += data.count(b"\n")

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _best(rounds: int, calls: int, fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


async def _abest(rounds: int, calls: int, fn: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            await fn()
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


async def _through_connection(state: Any, dispatcher: Any, method: str, calls: int,
                              chunk: int) -> float:
    from bench.clients import request_line
    from podman_rpc.daemon.rpc.transport import Connection

    conn = Connection(state, dispatcher)
    transport = _FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    lines = [request_line(method, None, i) for i in range(calls)]
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        target = transport.lines + calls
        for i in range(0, calls, chunk):
            conn.data_received(b"".join(lines[i:i + chunk]))
            while conn.in_flight_count > chunk:
                await asyncio.sleep(0)
        while transport.lines < target:
            await asyncio.sleep(0)
        best = min(best, (time.process_time() - start) / calls)
    conn.connection_lost(None)
    return best * 1e6


def _through_line_server(result: Any, calls: int, chunk: int) -> float:
    """The floor the bench compares against: bench/line_server.py on the same reads."""
    from bench.clients import request_line
    from bench.line_server import LineProtocol

    lines = [request_line("status", None, i) for i in range(calls)]
    best = float("inf")
    for _ in range(3):
        protocol, transport = LineProtocol(result), _FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        start = time.process_time()
        for i in range(0, calls, chunk):
            protocol.data_received(b"".join(lines[i:i + chunk]))
        best = min(best, (time.process_time() - start) / calls)
        assert transport.lines == calls
    return best * 1e6


async def measure(calls: int, rounds: int, level: str,
                  whole_only: bool) -> list[tuple[str, float]]:
    import orjson
    import structlog

    from podman_rpc.daemon.config import Config
    from podman_rpc.daemon.handlers import load_handlers
    from podman_rpc.daemon.podman.pool import PodmanPool
    from podman_rpc.daemon.rpc.context import DaemonState
    from podman_rpc.daemon.rpc.dispatch import Dispatcher
    from podman_rpc.protocol.envelope import frame_parser, parse_frame, result_reply
    from podman_rpc.protocol.framing import encode
    from podman_rpc.protocol.registry import METHODS

    nowhere = Path("/nonexistent/podman.sock")
    state = DaemonState(Config(socket_path=Path("/nonexistent/rpc.sock"), podman_socket=nowhere),
                        PodmanPool(nowhere, 2, 5))
    handlers = load_handlers()
    dispatcher = Dispatcher(state, handlers)
    line = b'{"jsonrpc":"2.0","id":1,"method":"status"}'
    request = parse_frame(line)
    parse_line = frame_parser(max_depth=64, max_batch=100, max_params_bytes=256 << 10)
    params = METHODS["status"].validate({})
    status = handlers["status"](state, params)
    ping_request = parse_frame(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    loop = asyncio.get_running_loop()
    lane = state.lanes["query"]
    log = structlog.get_logger("podman_rpc.request")
    run_params = {"image": "localhost/busybox:latest", "command": ["echo", "hello"]}

    async def nothing() -> None:
        return None

    async def task_round_trip() -> None:
        await loop.create_task(nothing())

    async def deadline_scope() -> None:
        async with asyncio.timeout_at(loop.time() + 5):
            pass

    async def lane_slot() -> None:
        async with lane.slot():
            pass

    rows = [] if whole_only else [
        ("frame_parser(...)(line), as the daemon parses: orjson.loads + envelope checks",
         _best(rounds, calls, lambda: parse_line(line))),
        ("Dispatcher.begin(status): the whole daemon-local call, reply encoded",
         _best(rounds, calls, lambda: dispatcher.begin(request, None))),
        ("Dispatcher.begin(ping): lookup, validate, deadline, CallContext",
         _best(rounds, calls, lambda: dispatcher.begin(ping_request, None))),
        ("MethodSpec.validate for run(image, command)",
         _best(rounds, calls, lambda: METHODS["run"].validate(run_params))),
        ("create_task + first step of a trivial coroutine",
         await _abest(rounds, calls, task_round_trip)),
        ("asyncio.timeout_at enter + exit (deadline scope)",
         await _abest(rounds, calls, deadline_scope)),
        ("Lane.slot() enter + exit (capped lane)", await _abest(rounds, calls, lane_slot)),
        ("status handler body", _best(rounds, calls, lambda: handlers["status"](state, params))),
        ("encode(result_reply(status))",
         _best(rounds, calls, lambda: encode(result_reply(1, status)))),
        ("the per-request log line (structlog JSON to a file)",
         _best(rounds, calls, lambda: log.info("request", method="status", id=1, outcome="ok",
                                                duration_ms=0.01, uid=0, pid=1))),
    ]
    for method in ("status", "no.such.method"):
        rows.append((f"whole request through Connection: {method}, log level {level}",
                     await _through_connection(state, dispatcher, method, calls, 32)))
    if not whole_only:  # the same reads as the bench's 50-connection burst: 200 lines each
        rows.append(("whole request through Connection: status, 200 lines per read",
                     await _through_connection(state, dispatcher, "status", calls, 200)))
        canned = orjson.loads(orjson.dumps(status))
        rows.append(("the line server (bench/line_server.py): status, 200 lines per read",
                     _through_line_server(canned, calls, 200)))
    state.pool.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench.profile_path",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--level", default="info", help=argparse.SUPPRESS)
    parser.add_argument("--whole-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from podman_rpc.daemon.ops.heap import keep_freed_heap

    keep_freed_heap()  # as the daemon and the line server both run: it decides their large buffers
    out = sys.stdout
    log_file = tempfile.NamedTemporaryFile(prefix="prpc-profile-", suffix=".log")
    saved_stderr = os.dup(2)
    os.dup2(log_file.fileno(), 2)  # the daemon's stderr is a file or a pipe, never a terminal
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from podman_rpc.daemon.ops.logs import configure_logging

    configure_logging(args.level)  # structlog caches loggers: one level per process
    try:
        rows = uvloop.run(measure(args.calls, args.rounds, args.level, args.whole_only))
    finally:
        os.dup2(saved_stderr, 2)  # so a failure's traceback is seen
    if not args.whole_only:
        out.write("| step of the per-request path | CPU per call (us) |\n|---|---:|\n")
    for name, micros in rows:
        out.write(f"| {name} | {micros:.2f} |\n")
    out.flush()
    if not args.whole_only:
        subprocess.run([sys.executable, "-m", "bench.profile_path", "--calls", str(args.calls),
                        "--level", "warning", "--whole-only"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
