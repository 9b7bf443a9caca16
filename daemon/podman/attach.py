"""Read a container's stdout/stderr from a hijacked libpod stream, on the event loop.

Why not the logs endpoint: libpod re-reads the k8s-file log and answers per log
line (1.5 M lines took 28.8 s here); the attach stream carries the bytes as the
container writes them, so the cost here is per byte. Verified on Podman 4.3:
``POST /containers/{id}/attach?stream=true&stdout=true&stderr=true`` on a
non-tty container answers 200 ``application/vnd.docker.raw-stream`` (or 101 with
``Upgrade: tcp``), then sends Docker's multiplexed frames until the container's
streams close: 1 byte stream type (1 stdout, 2 stderr), 3 zero bytes, a
big-endian uint32 length, the payload. ``POST /exec/{id}/start`` with
``Detach: false`` answers the same way, so one reader serves ``run`` and ``exec``.

API::

    stream = await AttachStream.open(http, "POST", path, body=None)  # before start
    ...                                  # start the container / exec
    await stream.write(line)             # to its stdin, if opened with stdin=true
    await stream.pump(sink)              # until EOF; cancel it to stop reading
    stream.close()                       # always (pump does not close)

``sink`` is any :class:`Sink`: ``feed(stream_name, bytes)`` per payload piece
(a frame may arrive in several pieces), and ``full`` once it wants no more bytes:
from then on the reader drains the socket without decoding, so a container that
prints for its whole timeout costs a read per 64 KiB and nothing else, and never
blocks on a full pipe. The request goes out on a connection of its own
(``PodmanHTTP.open``), which is closed by :meth:`close` or when opening fails.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import orjson

from podman_rpc.daemon.podman.errors import translate
from podman_rpc.daemon.podman.http import (
    Connection,
    PodmanHTTP,
    ProtocolError,
    Response,
    StatusError,
)
from podman_rpc.protocol.errors import PodmanUnavailable

STREAMS = {1: "stdout", 2: "stderr"}  # 0 (stdin) is never sent back
_HEADER = struct.Struct(">BxxxL")
_READ = 1 << 16
_ERROR_BODY = 64 << 10


class Sink(Protocol):
    @property
    def full(self) -> bool: ...

    def feed(self, stream: str, chunk: bytes) -> None: ...


class FrameDecoder:
    """Sans-I/O demultiplexer: bytes in, ``sink.feed(stream, piece)`` out. No I/O, no copies
    beyond one slice per piece; a frame split across reads is fed as it arrives."""

    __slots__ = ("sink", "_head", "_stream", "_left")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._head = b""  # a header split across reads
        self._stream: str | None = None  # the current frame's stream (None: ignored)
        self._left = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                if self._stream is not None:
                    self.sink.feed(self._stream, data if take == end else data[pos:pos + take])
                self._left -= take
                pos += take
                continue
            if self._head or end - pos < _HEADER.size:
                need = _HEADER.size - len(self._head)
                self._head += data[pos:pos + need]
                pos += need
                if len(self._head) < _HEADER.size:
                    return
                kind, self._left = _HEADER.unpack(self._head)
                self._head = b""
            else:
                kind, self._left = _HEADER.unpack_from(data, pos)
                pos += _HEADER.size
            self._stream = STREAMS.get(kind)


class AttachStream:
    """One hijacked stream: the response head has been read, the frames follow."""

    def __init__(self, conn: Connection, first: bytes) -> None:
        self.conn = conn
        self._first = first  # bytes read past the head, in the same read
        self.bytes_read = 0

    @classmethod
    async def open(cls, http: PodmanHTTP, method: str, path: str,
                   body: Any = None, subject: str = "container") -> AttachStream:
        """Send the request and read the head; a refusal is raised as a protocol error."""
        conn, head = await http.open(method, path, body)
        try:
            if head.status not in (101, 200):
                raise translate(StatusError(head.status, await _error_text(conn, head)),
                                subject=subject)
        except BaseException:
            conn.close()
            raise
        head.parser = None  # done with it (it refers back to head); the stream is unframed
        return cls(conn, head.body)  # and runs to the socket's EOF

    async def pump(self, sink: Sink) -> None:
        """Feed every frame into ``sink`` until Podman closes the stream."""
        decoder = FrameDecoder(sink)
        read = self.conn.reader.read
        data, self._first = self._first, b""
        try:
            while True:
                if data:
                    self.bytes_read += len(data)
                    if sink.full:
                        break
                    decoder.feed(data)
                data = await read(_READ)
                if not data:
                    return
            while data := await read(_READ):  # past the cap: drain, do not decode
                self.bytes_read += len(data)
        except OSError as exc:
            raise PodmanUnavailable(f"attach stream broke: {exc}") from None

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin (a stream opened with ``stdin=true``)."""
        try:
            self.conn.writer.write(data)
            await self.conn.writer.drain()
        except OSError as exc:
            raise PodmanUnavailable(f"attach stream broke: {exc}") from None

    def close(self) -> None:
        self.conn.close()


async def _error_text(conn: Connection, head: Response) -> str:
    """The message of a refused attach (libpod's JSON ``message``, else the text)."""
    try:
        await conn.receive(head, limit=_ERROR_BODY)
    except (OSError, ProtocolError):
        pass
    body = head.body
    try:
        return str(orjson.loads(body).get("message") or body[:500].decode("utf-8", "replace"))
    except (orjson.JSONDecodeError, AttributeError):
        return bytes(body[:500]).decode("utf-8", "replace")
