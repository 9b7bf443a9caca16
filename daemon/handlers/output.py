"""Collect a container's stdout/stderr, capped: the sink of the attach reader and of logs.

Podman frames each chunk with an 8-byte header (stream type, length); the
attach reader (``daemon.podman.attach``) decodes them on the loop, ``logs``
with :func:`read_frames` on a worker. The capture keeps at most ``cap`` bytes
per stream and says when it is ``full``, so the reader drains the rest without
decoding (the container never blocks on a full pipe), and can hand complete
lines to a callback as they arrive (for ``$/progress``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson

STREAMS = {1: "stdout", 2: "stderr"}
_HEADER = struct.Struct(">BxxxL")


class OutputCapture:
    """Per-stream byte buffers with a cap, a truncation flag and an optional line callback."""

    def __init__(self, cap: int, on_line: Callable[[str, str], None] | None = None) -> None:
        self.cap = cap
        self.on_line = on_line
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False
        self._pending = {"stdout": b"", "stderr": b""}

    @property
    def full(self) -> bool:
        """Both streams hold ``cap`` bytes and one more was offered: nothing more is kept."""
        return self.truncated and all(len(b) >= self.cap for b in self.data.values())

    def feed(self, stream: str, chunk: bytes) -> None:
        buffer = self.data[stream]
        room = self.cap - len(buffer)
        if len(chunk) > room:
            self.truncated = True
        if room > 0:
            buffer += chunk[:room]
        if self.on_line is not None and room > 0:  # progress stops at the cap too
            self._emit_lines(stream, chunk[:room])

    def _emit_lines(self, stream: str, chunk: bytes) -> None:
        assert self.on_line is not None
        pending = self._pending[stream] + chunk
        *lines, rest = pending.split(b"\n")
        for line in lines:
            self.on_line(stream, line.decode("utf-8", "replace"))
        self._pending[stream] = rest[-self.cap:]

    def flush(self) -> None:
        """Emit any last line that did not end with a newline."""
        for stream, rest in self._pending.items():
            if rest and self.on_line is not None:
                self.on_line(stream, rest.decode("utf-8", "replace"))
            self._pending[stream] = b""

    def text(self, stream: str) -> str:
        return bytes(self.data[stream]).decode("utf-8", "replace")

    def stdout_value(self) -> Any:
        """Parsed JSON when stdout is valid JSON (as the CLI did), else the text."""
        return parse_stdout(self.text("stdout"))

    def snapshot(self) -> dict[str, Any]:
        return {"stdout": self.stdout_value(), "stderr": self.text("stderr"),
                "truncated": self.truncated}


def parse_stdout(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        return text
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return text


def _read_exact(raw: Any, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = raw.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frames(raw: Any, capture: OutputCapture) -> None:
    """Feed every frame of a multiplexed stream into ``capture`` until EOF (blocking)."""
    while True:
        header = _read_exact(raw, _HEADER.size)
        if len(header) < _HEADER.size:
            return
        kind, size = _HEADER.unpack(header)
        payload = _read_exact(raw, size)
        stream = STREAMS.get(kind)
        if stream is not None and payload:
            capture.feed(stream, payload)
        if len(payload) < size:
            return
