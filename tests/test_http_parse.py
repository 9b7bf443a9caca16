"""daemon.podman.http's reading of replies, cut anywhere: sans-I/O, then over a local socket.

These replies are canned (Podman's own header set, framed each way HTTP allows) so
that every split can be tried; the behaviour against the real service is in
tests/test_podman_http.py and tests/test_attach.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podman_rpc.daemon.podman.http import PodmanHTTP, ProtocolError, Response
from podman_rpc.protocol.errors import PodmanUnavailable

_HEAD = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nCache-Control: no-cache\r\n"
         b"Libpod-Api-Version: 4.3.1\r\nServer: Libpod/4.3.1 (linux)\r\n"
         b"Date: Wed, 02 Dec 2026 07:52:32 GMT\r\n")
BODY = b'{"Id":"0123456789abcdef","Warnings":[]}\n'
LENGTH = _HEAD + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (
    len(BODY), BODY)
CHUNKED = (_HEAD + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"7\r\n" + BODY[:7] + b"\r\n1;ext=1\r\n" + BODY[7:8] + b"\r\n"
           + b"%x\r\n" % len(BODY[8:]) + BODY[8:] + b"\r\n0\r\n\r\n")
HEAD_REPLY = _HEAD + b"\r\n"  # libpod's answer to HEAD _ping: no Content-Length
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n" + LENGTH
CLOSE = LENGTH.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
STREAM = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
          b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
UPGRADE = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
           b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x02\x00\x00\x00\x00\x00\x00\x01e")


def _feed(response: Response, pieces: list[bytes], until_head: bool = False) -> None:
    for piece in pieces:
        if response.done or (until_head and response.head_done):
            break
        response.feed(piece)


def _splits(data: bytes) -> Iterator[list[bytes]]:
    """The reply cut in two at every byte boundary, then byte by byte."""
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i:i + 1] for i in range(len(data))]


@pytest.mark.parametrize("raw, keep_alive", [(LENGTH, True), (CHUNKED, True), (CONTINUE, True),
                                             (CLOSE, False)])
def test_reply_cut_anywhere_parses_the_same(raw: bytes, keep_alive: bool) -> None:
    for pieces in _splits(raw):
        response = Response()
        _feed(response, pieces)
        assert response.done, pieces
        assert (response.status, response.body, response.keep_alive) == (200, BODY, keep_alive)
        assert dict(response.raw_headers)[b"Server"] == b"Libpod/4.3.1 (linux)"


def test_head_reply_ends_at_its_head_and_stays_alive() -> None:
    for pieces in _splits(HEAD_REPLY):
        response = Response(head_only=True)
        _feed(response, pieces)
        assert (response.done, response.status, response.body, response.keep_alive) == (
            True, 200, b"", True)
    response = Response(head_only=True)
    response.feed(HEAD_REPLY + b"junk")  # bytes after the reply: not reused
    assert response.done and not response.keep_alive
    for head in (HEAD_REPLY[:-2] + b"Connection: close\r\n\r\n",
                 HEAD_REPLY.replace(b"HTTP/1.1", b"HTTP/1.0")):
        response = Response(head_only=True)
        response.feed(head)
        assert response.done and not response.keep_alive


@pytest.mark.parametrize("raw, status", [(STREAM, 200), (UPGRADE, 101)])
def test_stream_head_hands_over_the_bytes_past_it(raw: bytes, status: int) -> None:
    """What follows the head in the same read goes to the stream, however the reads fall."""
    past = raw[raw.index(b"\r\n\r\n") + 4:]
    for pieces in _splits(raw):
        response = Response()
        fed = 0
        for piece in pieces:
            response.feed(piece)
            fed += len(piece)
            if response.head_done:
                break
        assert response.status == status
        assert response.body + raw[fed:] == past  # handed over + still on the socket


def test_cut_short_and_garbage_are_protocol_errors() -> None:
    response = Response()
    response.feed(LENGTH[:-3])
    with pytest.raises(ProtocolError):
        response.eof()
    with pytest.raises(ProtocolError):
        Response().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    unframed = Response()  # no length, no chunks: the close ends the body
    unframed.feed(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    unframed.eof()
    assert unframed.done and unframed.body == b"all of it" and not unframed.keep_alive


class _TrickleServer:
    """A unix-socket server that answers each request with ``reply``, one byte per send."""

    def __init__(self, path: Path, reply: bytes, close_after: bool = False) -> None:
        self.reply, self.close_after = reply, close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while request := self._request(conn):
                    self.requests.append(request)
                    for i in range(len(self.reply)):
                        conn.sendall(self.reply[i:i + 1])
                        time.sleep(0.0002)  # so that the client's reads see single bytes
                    if self.close_after:
                        break

    @staticmethod
    def _request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(4096)
            if not more:
                return b""
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                while len(body) < int(line.split(b":")[1]):
                    body += conn.recv(4096)
        return head + b"\r\n\r\n" + body

    def close(self) -> None:
        self.sock.close()


def test_trickled_replies_over_a_socket(tmp_path: Path) -> None:
    """The event-loop client reads a reply sent byte by byte, then reuses the connection."""
    server = _TrickleServer(tmp_path / "s.sock", CHUNKED)

    async def go() -> list[tuple[int, bytes]]:
        client = PodmanHTTP(tmp_path / "s.sock")
        try:
            return [((reply := await client.request(method, "/x", body)).status, reply.body)
                    for method, body in [("GET", None), ("POST", {"a": 1}), ("GET", None)]]
        finally:
            client.close()

    try:
        assert asyncio.run(go()) == [(200, BODY)] * 3
    finally:
        server.close()
    assert server.connections == 1  # kept alive across the three
    assert server.requests[0] == b"GET /x HTTP/1.1\r\nHost: d\r\n\r\n"
    assert server.requests[1] == (b"POST /x HTTP/1.1\r\nHost: d\r\nContent-Type: application/json"
                                  b'\r\nContent-Length: 7\r\n\r\n{"a":1}')


def test_trickled_stream_head_then_socket_reads(tmp_path: Path) -> None:
    """``open``: the head is parsed, the rest of the stream is the socket's, to its EOF."""
    server = _TrickleServer(tmp_path / "s.sock", STREAM, close_after=True)

    async def go() -> tuple[int, bytes]:
        client = PodmanHTTP(tmp_path / "s.sock")
        conn, head = await client.open("POST", "/attach")
        try:
            data = head.body
            while more := await conn.reader.read(1 << 16):
                data += more
            return head.status, data
        finally:
            conn.close()

    try:
        assert asyncio.run(go()) == (200, STREAM[STREAM.index(b"\r\n\r\n") + 4:])
    finally:
        server.close()


def test_bad_target_never_reaches_the_socket(tmp_path: Path) -> None:
    server = _TrickleServer(tmp_path / "s.sock", LENGTH)

    async def go() -> None:
        client = PodmanHTTP(tmp_path / "s.sock")
        try:
            await client.request("GET", "/x HTTP/1.1\r\nX-Injected: 1\r\n")
        finally:
            client.close()

    try:
        with pytest.raises(PodmanUnavailable):
            asyncio.run(go())
    finally:
        server.close()
    assert server.requests == []
