"""The event-loop HTTP client for Podman's API: httptools over kept-alive unix sockets.

Why httptools: it binds llhttp (Node's HTTP parser, in C), the parser uvicorn uses.
Measured here, one request/response exchange cost 48-72 us of CPU with h11 (its send
plus the parse of Podman's dozen reply headers), while httptools parses the same
``_ping`` reply in about 1 us; with h11 the bench's daemon ping / raw REST ``_ping``
ratio went from ~2.4x to ~4x. With this module, formatting and parsing one exchange
costs 6-10 us, and the client's CPU per kept-alive ``_ping`` fell from 151-192 us to
47-57 us (``python -m bench.http_cost``, bench/RESULTS.md). Why not podman-py here:
it is synchronous (a worker-thread hop plus ``requests``); its ``_ping`` costs 0.82 ms
against 0.15 ms on the loop, and it does not implement attach at all
(``daemon.podman.attach`` reads the hijacked stream through :meth:`PodmanHTTP.open`).

What is ours: the request, formatted (a request line, a few headers, the body). All
of the reply is parsed by httptools: status, headers, Content-Length and chunked
bodies, keep-alive (``should_keep_alive``), the offset of upgraded bytes. Two facts
llhttp cannot see and we tell it: a reply to HEAD has no body (httptools has no
skip-body hook, so such a reply ends at its head, kept alive on HTTP/1.1 unless it
says ``Connection: close``), and httptools has no end-of-input call, so the socket's
EOF ends a body that declares neither Content-Length nor chunked, and cuts any other.

Connections are kept alive and reused; a call that is cancelled or fails mid
reply closes its socket at once rather than returning it half-read (every
socket opened toward Podman is closed when its attempt fails). A reused
connection that Podman closed while idle is retried once on a fresh one, only
for idempotent methods (GET, HEAD). :func:`podman_answers` is the one liveness
probe: the daemon's start, the embedded service's readiness, ``ping`` and the
2 s watch all ask through it.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
import orjson

from podman_rpc.protocol.errors import PodmanUnavailable

API_PREFIX = "/v4.0.0/libpod"
PING_PATH = f"{API_PREFIX}/_ping"
ProtocolError = httptools.HttpParserError  # a reply httptools refuses, or one cut short
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_READ = 1 << 16
_TARGET = re.compile(r"[\x21-\x7e]+").fullmatch  # what h11 accepted: visible ASCII
_FIELD = re.compile(r"[\x20-\x7e]*").fullmatch  # no CR/LF smuggled into a header


def format_request(method: str, target: str, body: bytes | None,
                   headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The request head (and body): the only HTTP this module writes itself."""
    if not _TARGET(target):
        raise ValueError(f"invalid request target {target!r}")
    head = f"{method} {target} HTTP/1.1\r\nHost: d\r\n"
    for name, value in headers:
        if not (_TARGET(name) and _FIELD(value)):
            raise ValueError(f"invalid header {name!r}")
        head += f"{name}: {value}\r\n"
    if body is None:
        return (head + "\r\n").encode("ascii")
    return (f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode("ascii") + body)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    raw_headers: Sequence[tuple[bytes, bytes]]  # as sent; decoded (names lower-cased) when asked
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in self.raw_headers}

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class StatusError(Exception):
    """A non-2xx answer, shaped as ``daemon.podman.errors.translate`` reads podman-py's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status
        self.explanation = message


class _StaleConnection(Exception):
    """A kept-alive connection was closed by Podman before it answered."""


class _Extra(Exception):
    """Bytes after the reply: the connection is not clean for another request."""


class Response:
    """One reply as httptools parses it: the callbacks below fill it, :meth:`feed` drives them.

    ``head_done`` once the final head is in (``status``, ``raw_headers``); ``done`` once the
    reply is complete. ``chunks`` is the body as it came, or, for a stream, the bytes that
    followed the head. The parser is dropped when the reply is done (it refers back here).
    """

    __slots__ = ("parser", "head_only", "status", "raw_headers", "chunks",
                 "fed", "head_done", "done", "keep_alive")

    def __init__(self, head_only: bool = False) -> None:
        self.head_only = head_only  # a reply to HEAD: it ends at its head
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.fed = self.head_done = self.done = self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises ProtocolError for what is not a reply. After a 101's head,
        the upgraded bytes (at httptools' offset) go to ``chunks``."""
        self.fed = True
        parser = self.parser
        if parser is None:  # done: anything more is not part of this reply
            self.keep_alive = False
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.chunks.append(data[upgrade.args[0]:])
        except httptools.HttpParserError:
            if not self.done:
                raise
            self.keep_alive = False

    def eof(self) -> None:
        """The socket closed: it ends a body framed by the close, and cuts any other reply."""
        if self.head_done and not self.done and not any(
                name.lower() in (b"content-length", b"transfer-encoding")
                for name, _ in self.raw_headers):
            self._end(False)
            return
        raise ProtocolError("Podman closed the connection mid reply")

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def _end(self, keep_alive: bool) -> None:
        self.done, self.keep_alive, self.parser = True, keep_alive, None

    # httptools' callbacks
    def on_message_begin(self) -> None:
        if self.head_done:
            raise _Extra()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200 and status != 101:  # 100 Continue and kin: the reply follows
            self.raw_headers = []
            return
        self.status, self.head_done = status, True
        if self.head_only:
            self._end(parser.get_http_version() == "1.1" and not any(
                name.lower() == b"connection" and b"close" in value.lower()
                for name, value in self.raw_headers))

    def on_body(self, data: bytes) -> None:
        if self.done:
            self.keep_alive = False
        else:
            self.chunks.append(data)

    def on_message_complete(self) -> None:
        if self.head_done and not self.done:
            parser = self.parser
            assert parser is not None
            self._end(parser.should_keep_alive())


class Connection:
    """One socket to Podman; reused for as many requests as the replies allow."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, method: str, path: str, body: bytes | None,
             extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.writer.write(format_request(method, path, body, extra))

    async def receive(self, response: Response, head: bool = False,
                      limit: int | None = None) -> None:
        """Feed the socket to ``response`` until it is done (its head, with ``head``; or
        ``limit`` body bytes). EOF before any byte of the reply means a stale connection."""
        read = self.reader.read
        while not (response.head_done if head else response.done):
            if limit is not None and sum(map(len, response.chunks)) >= limit:
                return
            data = await read(_READ)
            if not data:
                if not response.fed:
                    raise _StaleConnection()
                response.eof()
            else:
                response.feed(data)

    def close(self) -> None:
        self.writer.close()


class PodmanHTTP:
    """A small pool of kept-alive connections to one Podman socket; use from one event loop."""

    def __init__(self, socket_path: Path | str, *, max_idle: int = 8) -> None:
        self.socket_path = str(socket_path)
        self.max_idle = max_idle
        self._idle: list[Connection] = []

    async def request(self, method: str, path: str, body: Any = None) -> Reply:
        """One request; raises PodmanUnavailable when the socket cannot be reached or breaks."""
        payload = None if body is None else orjson.dumps(body)
        for attempt in range(2):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self.connect()
            response = Response(head_only=method == "HEAD")
            try:
                conn.send(method, path, payload)
                await conn.receive(response)
            except (_StaleConnection, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 0 and method in _IDEMPOTENT:
                    continue
                raise PodmanUnavailable("Podman closed the connection without answering") from None
            except (OSError, ProtocolError, ValueError) as exc:
                conn.close()
                raise PodmanUnavailable(f"Podman connection failed: {exc}") from None
            except BaseException:  # cancelled mid reply: the socket is in an unknown state
                conn.close()
                raise
            if response.keep_alive and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()
            return Reply(response.status, response.raw_headers, response.body)
        raise AssertionError("unreachable")

    async def open(self, method: str, path: str, body: Any = None,
                   extra: tuple[tuple[str, str], ...] = ()) -> tuple[Connection, Response]:
        """A request on a fresh connection of its own, answered up to the response head.

        For streams that outlive a normal reply (attach, exec start): the head's
        ``chunks`` hold the bytes read past it (a 101's upgraded bytes, or the start of
        a raw stream that runs to EOF), the caller reads the rest from the socket and
        closes the connection. Closed here if the exchange fails.
        """
        conn = await self.connect()
        response = Response()
        try:
            conn.send(method, path, None if body is None else orjson.dumps(body), extra)
            await conn.receive(response, head=True)
        except (_StaleConnection, OSError, ProtocolError, ValueError) as exc:
            conn.close()
            raise PodmanUnavailable(f"Podman connection failed: {exc!r}") from None
        except BaseException:
            conn.close()
            raise
        return conn, response  # a 101 (switched protocols) is the caller's to judge

    async def ping(self) -> bool:
        """True if Podman answers ``_ping`` with 200 (the same call podman-py makes)."""
        return (await self.request("HEAD", PING_PATH)).ok

    async def connect(self) -> Connection:
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=_READ)
        except OSError as exc:
            raise PodmanUnavailable("Podman service is unreachable",
                                    {"socket": self.socket_path, "reason": str(exc)}) from None
        return Connection(reader, writer)

    def close(self) -> None:
        """Close every idle connection (call at shutdown)."""
        while self._idle:
            self._idle.pop().close()


class BlockingConnection:
    """A blocking unix socket, for a worker thread that streams a chunked request body
    (``build``'s context upload); the reply is parsed by httptools like the loop's.
    ``sock`` is public so another thread may shut it down."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)
        except BaseException:
            self.sock.close()
            raise
        self._response = Response()

    def send(self, method: str, target: str, headers: list[tuple[str, str]],
             chunks: Iterable[bytes]) -> None:
        """The request with a chunked body made of ``chunks``."""
        self.sock.sendall(format_request(
            method, target, None, [("Transfer-Encoding", "chunked"), *headers]))
        for chunk in chunks:
            if chunk:
                self.sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        self.sock.sendall(b"0\r\n\r\n")

    def _receive(self) -> None:
        """One read fed to the parser (EOF ends or cuts the reply)."""
        data = self.sock.recv(_READ)
        if data:
            self._response.feed(data)
        else:
            self._response.eof()

    def response(self) -> Response:
        """The reply's head (``status``, ``raw_headers``)."""
        while not self._response.head_done:
            self._receive()
        return self._response

    def body(self) -> Iterator[bytes]:
        """The response body as it arrives."""
        response = self.response()
        while True:
            if response.chunks:
                pieces, response.chunks = response.chunks, []
                yield from pieces
            if response.done:
                return
            self._receive()

    def lines(self, max_line: int) -> Iterator[bytes]:
        """The body split into lines (a longer line is cut into ``max_line`` pieces)."""
        pending = b""
        for data in self.body():
            pending += data
            *complete, pending = pending.split(b"\n")
            yield from complete
            while len(pending) > max_line:
                yield pending[:max_line]
                pending = pending[max_line:]
        if pending:
            yield pending

    def close(self) -> None:
        self.sock.close()
        self._response.parser = None  # the parser refers back to the response


async def podman_answers(path: Path | str, timeout: float = 1.0) -> bool:
    """The liveness probe: True if Podman at ``path`` answers ``_ping`` with 200 in time."""
    client = PodmanHTTP(path, max_idle=0)
    try:
        async with asyncio.timeout(timeout):
            return await client.ping()
    except (PodmanUnavailable, TimeoutError):
        return False
    finally:
        client.close()
