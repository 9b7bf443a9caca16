"""Byte pipes for the blocking client: a unix socket, or a bridge command's stdin/stdout."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from typing import Protocol


class Stream(Protocol):
    """A byte pipe to the daemon: a unix socket, or a bridge subprocess's stdin/stdout."""

    def send(self, data: bytes) -> None: ...
    def recv(self) -> bytes: ...
    def close(self) -> None: ...


class SocketStream(Stream):
    def __init__(self, path: str, connect_timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(connect_timeout)
            self.sock.connect(path)
            self.sock.settimeout(None)
        except BaseException:
            self.sock.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        return self.sock.recv(1 << 16)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread
        except OSError:
            pass
        self.sock.close()


class ProcessStream(Stream):
    """Speaks over a child's stdin/stdout, as varlink's ``new_with_bridge`` did."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are PIPE
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.stdin.write(view):]

    def recv(self) -> bytes:
        return os.read(self.stdout.fileno(), 1 << 16)

    def close(self) -> None:
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
