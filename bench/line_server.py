"""The floor for the daemon's own overhead: a minimal uvloop + orjson JSON-RPC line server.

It splits lines, decodes each request with orjson, and answers every method with
the same result (by default the JSON in ``--result-file``, so that it sends as
many bytes as the daemon method it stands in for). No validation, no lanes, no
logging: whatever the daemon costs beyond this is its own. It takes the daemon's
glibc heap settings (daemon/ops/heap.py), so that glibc's trimming, which costs the
same page faults in both, does not decide the comparison.

    python -m bench.line_server --socket /tmp/line.sock [--result-file status.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import orjson


class LineProtocol(asyncio.Protocol):
    def __init__(self, result: Any) -> None:
        self.result = result
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        out = []
        for line in lines:
            request = orjson.loads(line)
            out.append(orjson.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                                     "result": self.result}))
        if out:
            out.append(b"")
            self.transport.write(b"\n".join(out))  # type: ignore[union-attr]


async def serve(path: Path, result: Any) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    path.unlink(missing_ok=True)
    server = await loop.create_unix_server(lambda: LineProtocol(result), str(path), backlog=1024)
    await stop.wait()
    server.close()
    path.unlink(missing_ok=True)


def main() -> None:
    import uvloop

    from podman_rpc.daemon.ops.heap import keep_freed_heap

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--result-file", type=Path)
    args = parser.parse_args()
    result = orjson.loads(args.result_file.read_bytes()) if args.result_file else "ok"
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    keep_freed_heap()
    uvloop.run(serve(args.socket, result))


if __name__ == "__main__":
    main()
