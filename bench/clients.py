"""Lean measuring clients: a blocking line client, a kept-alive HTTP/1.1 client, pipelining.

They are deliberately thin (pre-encoded requests, no JSON parsing on the hot
path beyond a check) so that the figures are the server's, not the client's.
The same client measures the daemon and its baseline, so ratios stay fair.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import orjson


def request_line(method: str, params: dict | None = None, request_id: int = 1) -> bytes:
    message: dict = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return orjson.dumps(message) + b"\n"


class LineClient:
    """One blocking unix-socket connection that sends a line and reads one line back."""

    def __init__(self, path: Path | str, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buffer = b""

    def roundtrip(self, line: bytes) -> bytes:
        """Send one pre-encoded request and return the next reply line (notifications skipped)."""
        self.sock.sendall(line)
        while True:
            while b"\n" not in self._buffer:
                chunk = self.sock.recv(1 << 18)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self._buffer += chunk
            reply, self._buffer = self._buffer.split(b"\n", 1)
            if b'"$/progress"' not in reply[:80]:
                return reply

    def call(self, method: str, params: dict | None = None) -> object:
        reply = orjson.loads(self.roundtrip(request_line(method, params)))
        raise_for_error(reply, method)
        return reply["result"]

    def close(self) -> None:
        self.sock.close()


def time_calls(client: LineClient, line: bytes, count: int, warmup: int = 20) -> list[float]:
    """Latency samples (seconds) of ``count`` sequential round trips, after a warm-up."""
    for _ in range(warmup):
        check_reply(client.roundtrip(line))
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        reply = client.roundtrip(line)
        samples.append(clock() - start)
        if b'"error"' in reply:
            check_reply(reply)
    return samples


class NotImplementedByDaemon(Exception):
    """The daemon answered Method not found: the case is skipped, not failed."""


def raise_for_error(message: dict, what: str = "request") -> None:
    error = message.get("error")
    if error is None:
        return
    if error.get("code") == -32601:
        raise NotImplementedByDaemon(f"{what}: method not implemented by this daemon")
    raise RuntimeError(f"{what} failed: {error}")


def check_reply(reply: bytes) -> None:
    raise_for_error(orjson.loads(reply))


class RestClient:
    """Kept-alive HTTP/1.1 over Podman's unix socket, the floor for anything through Podman."""

    def __init__(self, path: Path | str, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("podman closed the connection")
        self._buffer += chunk

    def _take_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: d\r\n\r\n".encode())
        status = int(self._take_line().split(b" ", 2)[1])
        length, chunked = None, False
        while line := self._take_line():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if method == "HEAD" or status in (204, 304):
            return status, b""
        if chunked:
            body = bytearray()
            while size := int(self._take_line().split(b";")[0], 16):
                body += self._take(size)
                self._take_line()
            while self._take_line():  # trailers, then the blank line
                pass
            return status, bytes(body)
        return status, self._take(length or 0)

    def close(self) -> None:
        self.sock.close()


def time_rest(client: RestClient, method: str, path: str, count: int,
              warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        client.request(method, path)
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        status, _ = client.request(method, path)
        samples.append(clock() - start)
        if status >= 400:
            raise RuntimeError(f"{method} {path} answered {status}")
    return samples


async def _pipeline_one(path: str, payload: bytes, expected: int) -> int:
    """Write ``payload`` while reading ``expected`` reply lines; return how many were errors."""
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)

    async def write() -> None:
        writer.write(payload)
        await writer.drain()

    sender = asyncio.ensure_future(write())
    seen = errors = 0
    while seen < expected:
        chunk = await reader.read(1 << 18)
        if not chunk:
            raise ConnectionError(f"closed after {seen} of {expected} replies")
        seen += chunk.count(b"\n")
        errors += chunk.count(b'"error":{')
    await sender
    writer.close()
    return errors


async def _pipeline(path: str, method: str, per_connection: int, connections: int) -> float:
    payload = b"".join(request_line(method, None, i) for i in range(per_connection))
    start = time.perf_counter()
    errors = await asyncio.gather(*(_pipeline_one(path, payload, per_connection)
                                    for _ in range(connections)))
    elapsed = time.perf_counter() - start
    if sum(errors):
        raise RuntimeError(f"{sum(errors)} pipelined {method} requests failed")
    return elapsed


def pipelined_throughput(path: Path | str, method: str, per_connection: int,
                         connections: int = 1, min_seconds: float = 0.0) -> float:
    """Requests per second with every connection pipelining ``per_connection`` requests.

    The burst (connect, pipeline, read every reply, close) repeats until ``min_seconds``
    have passed: one 50 x 200 burst lasts only 20-60 ms, short enough that a single
    scheduling hiccup of either process decides its figure.
    """
    import uvloop

    async def bursts() -> tuple[int, float]:
        done, elapsed = 0, 0.0
        while True:
            elapsed += await _pipeline(str(path), method, per_connection, connections)
            done += per_connection * connections
            if elapsed >= min_seconds:
                return done, elapsed

    done, elapsed = uvloop.run(bursts())
    return done / elapsed


async def _windowed_one(path: str, lines: list[bytes], total: int, window: int) -> int:
    """Keep at most ``window`` requests outstanding until ``total`` are answered; return errors.

    Requests cycle through ``lines`` in order.
    """
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)

    def batch(start: int, count: int) -> bytes:
        return b"".join(lines[(start + i) % len(lines)] for i in range(count))

    sent = min(window, total)
    writer.write(batch(0, sent))
    seen = errors = 0
    while seen < total:
        chunk = await reader.read(1 << 18)
        if not chunk:
            raise ConnectionError(f"closed after {seen} of {total} replies")
        answered = chunk.count(b"\n")
        seen += answered
        errors += chunk.count(b'"error":{')
        more = min(answered, total - sent)
        if more > 0:
            writer.write(batch(sent, more))
            sent += more
    writer.close()
    return errors


async def _windowed(path: str, methods: tuple[str, ...], per_connection: int, connections: int,
                    window: int) -> float:
    lines = [request_line(method) for method in methods]
    start = time.perf_counter()
    errors = await asyncio.gather(*(_windowed_one(path, lines, per_connection, window)
                                    for _ in range(connections)))
    if sum(errors):
        raise RuntimeError(f"{sum(errors)} of the {'/'.join(methods)} requests failed")
    return time.perf_counter() - start


def windowed_load(path: Path | str, methods: tuple[str, ...], per_connection: int,
                  connections: int, window: int = 64) -> float:
    """Seconds to serve ``connections`` x ``per_connection`` requests, ``window`` in flight each,
    cycling through ``methods``."""
    import uvloop

    return uvloop.run(_windowed(str(path), methods, per_connection, connections, window))
