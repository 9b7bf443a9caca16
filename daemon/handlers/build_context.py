"""A build context as a tar stream, read without following a single link.

The daemon reads the context as root, so every name is opened relative to its
parent directory's descriptor with ``O_NOFOLLOW``: a symlink is sent as a link
(``COPY`` of it copies the link, never its target), and a file or directory
swapped for a link while the tar is made is refused by the kernel, not followed.
The root's descriptor is checked against its resolved path, so a parent
swapped after ``resolve_source`` cannot move the context elsewhere. Nothing is
written anywhere: the tar is yielded in chunks for a chunked HTTP body.

A non-admin peer's build holds only what that peer could read itself
(``Reader``): the daemon's root rights must not lend it other users' files
under a shared build root (PolicyDenied ``context_access``).

``.containerignore``/``.dockerignore`` patterns (fnmatch over the relative
path, as podman-py applies them) leave entries out; the Dockerfile and the
ignore file itself are always sent. The tar stops at ``limit`` bytes
(PolicyDenied ``build_context_size``) and at the build's stop signal.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch

from podman_rpc.daemon.guard.build_policy import MAX_DOCKERFILE_BYTES, BuildSource
from podman_rpc.daemon.guard.policy_rules import deny
from podman_rpc.protocol.errors import InvalidParams

CHUNK = 1 << 20
IGNORE_FILES = (".containerignore", ".dockerignore")
MAX_IGNORE_BYTES = 256 << 10
MAX_DEPTH = 128
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_END = tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # end-of-archive marker


@dataclass(frozen=True, slots=True)
class Reader:
    """Whose rights the context is read with: the daemon reads as root, so a non-admin
    peer's build may hold only what that peer could read itself (mode bits; ACLs are
    not consulted)."""

    uid: int
    groups: frozenset[int]

    def _bits(self, st: os.stat_result) -> int:
        if st.st_uid == self.uid:
            return (st.st_mode >> 6) & 7
        if st.st_gid in self.groups:
            return (st.st_mode >> 3) & 7
        return st.st_mode & 7

    def check(self, st: os.stat_result, rel: str) -> None:
        """Deny a directory the peer cannot list and enter, a file it cannot read."""
        need = 5 if stat.S_ISDIR(st.st_mode) else 4
        if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and \
                self._bits(st) & need != need:
            raise deny("context_access", f"{rel[:200]!r} is not readable by the caller",
                       path=rel[:200])

    def check_reach(self, path: str) -> None:
        """The peer must be able to pass through every directory above the context."""
        parts = path.strip("/").split("/")
        for depth in range(len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            if not self._bits(os.stat(ancestor)) & 1:
                raise deny("context_access", f"{ancestor[:200]!r} cannot be entered by the "
                           "caller", path=ancestor[:200])


class Stopped(Exception):
    """The build's request ended (cancel, disconnect, deadline, shutdown): stop where we are."""


def _header(name: str, st: os.stat_result, kind: bytes, size: int = 0, link: str = "") -> bytes:
    """One tar header (PAX, so long names fit); owners are not sent, as podman-py does."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = max(0, int(st.st_mtime))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class ContextTar:
    """One context to send: ``measure()`` sizes it from metadata, ``chunks()`` streams it."""

    def __init__(self, source: BuildSource, limit: int, stop: threading.Event,
                 check_dockerfile: Callable[[bytes], None], reader: Reader | None) -> None:
        self.source = source
        self.reader = reader  # None: an admin's build, read with the daemon's own rights
        self.check_dockerfile = check_dockerfile  # judges the exact bytes that are sent
        self.limit = limit
        self.stop = stop
        self.total = 0  # bytes of tar counted so far in the current pass
        self.finished = False  # chunks() yielded the end-of-archive marker
        self.excludes: list[str] = []

    # --- one walk, shared by both passes ---------------------------------------------------
    def _open_root(self) -> int:
        fd = os.open(self.source.context, _OPEN_DIR)
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != self.source.context:
                raise deny("build_root", "the context moved while it was being read",
                           context=self.source.context[:200])
            if self.reader is not None:
                self.reader.check_reach(self.source.context)
                self.reader.check(os.fstat(fd), ".")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_ignore(self, root: int) -> list[str]:
        """The first ignore file's patterns; a link in its place is not followed (ignored)."""
        for name in IGNORE_FILES:
            try:
                fd = os.open(name, _OPEN_FILE, dir_fd=root)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                text = os.read(fd, MAX_IGNORE_BYTES).decode("utf-8", "replace")
            finally:
                os.close(fd)
            lines = (line.strip().removeprefix("./").lstrip("/") for line in text.splitlines())
            return [line for line in lines if line and not line.startswith("#")]
        return []

    def _excluded(self, rel: str) -> bool:
        dockerfile = self.source.dockerfile
        if rel in IGNORE_FILES or rel == dockerfile or dockerfile.startswith(rel + "/"):
            return False
        return any(fnmatch(rel, pattern) for pattern in self.excludes)

    def _entries(self, dfd: int, prefix: str,
                 depth: int = 0) -> Iterator[tuple[str, str, os.stat_result, int]]:
        """(relative path, name, lstat, parent fd) below ``dfd``, depth first, links not followed."""
        if depth > MAX_DEPTH:
            raise InvalidParams("context", f"nested deeper than {MAX_DEPTH} directories")
        for name in sorted(os.listdir(dfd)):
            if self.stop.is_set():
                raise Stopped()
            rel = prefix + name
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                continue
            if self._excluded(rel):
                continue
            if self.reader is not None:
                self.reader.check(st, rel)
            yield rel, name, st, dfd
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(name, _OPEN_DIR, dir_fd=dfd)
                except OSError:
                    continue  # gone, or swapped for a link: not followed
                try:
                    if (os.fstat(sub).st_ino, os.fstat(sub).st_dev) == (st.st_ino, st.st_dev):
                        yield from self._entries(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)

    def _count(self, nbytes: int) -> None:
        self.total += nbytes
        if self.total > self.limit:
            raise deny("build_context_size",
                       f"the build context is larger than {self.limit} bytes",
                       limit=self.limit, context=self.source.context[:200])

    # --- the two passes -------------------------------------------------------------------
    def measure(self) -> int:
        """The tar's size from metadata alone: a context over the limit is denied before
        Podman is asked anything. (The stream counts again: files may grow meanwhile.)"""
        self.total = 0
        root = self._open_root()
        try:
            self.excludes = self._read_ignore(root)
            for rel, name, st, dfd in self._entries(root, ""):
                size = st.st_size if stat.S_ISREG(st.st_mode) else 0
                if rel == self.source.dockerfile:
                    self._dockerfile(name, dfd)
                self._count(tarfile.BLOCKSIZE + size + (-size % tarfile.BLOCKSIZE))
            self._count(len(_END))
        finally:
            os.close(root)
        return self.total

    def chunks(self) -> Iterator[bytes]:
        """The tar, in chunks of at most CHUNK bytes; raises Stopped or PolicyDenied midway."""
        self.total = 0
        sent_dockerfile = False
        root = self._open_root()
        try:
            self.excludes = self._read_ignore(root)
            for rel, name, st, dfd in self._entries(root, ""):
                if stat.S_ISDIR(st.st_mode):
                    yield self._counted(_header(rel, st, tarfile.DIRTYPE))
                elif stat.S_ISLNK(st.st_mode):
                    try:
                        link = os.readlink(name, dir_fd=dfd)
                    except OSError:
                        continue
                    yield self._counted(_header(rel, st, tarfile.SYMTYPE, link=link))
                elif stat.S_ISREG(st.st_mode):
                    sent = yield from self._file(rel, name, dfd)
                    sent_dockerfile |= sent and rel == self.source.dockerfile
            if not sent_dockerfile:  # swapped for a link or removed since resolve_source
                raise deny("dockerfile", "the Dockerfile changed while the context was read",
                           file=self.source.dockerfile[:200])
            yield self._counted(_END)
            self.finished = True
        finally:
            os.close(root)

    def _counted(self, data: bytes) -> bytes:
        self._count(len(data))
        return data

    def _dockerfile(self, name: str, dfd: int) -> tuple[bytes, os.stat_result]:
        """The Dockerfile's bytes, read once without following a link, and judged."""
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=dfd)
        except OSError:
            raise deny("dockerfile", "the Dockerfile changed while the context was read",
                       file=self.source.dockerfile[:200]) from None
        try:
            st = os.fstat(fd)
            if self.reader is not None:
                self.reader.check(st, self.source.dockerfile)
            data = os.read(fd, MAX_DOCKERFILE_BYTES + 1) if stat.S_ISREG(st.st_mode) else b""
        finally:
            os.close(fd)
        self.check_dockerfile(data)
        return data, st

    def _file(self, rel: str, name: str, dfd: int) -> Generator[bytes, None, bool]:
        """One regular file's header, content and padding; False if it is no longer one."""
        if rel == self.source.dockerfile:  # sent from memory: what was judged is what is sent
            data, st = self._dockerfile(name, dfd)
            if not stat.S_ISREG(st.st_mode):
                return False
            yield self._counted(_header(rel, st, tarfile.REGTYPE, size=len(data)))
            yield self._counted(data + tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))
            return True
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=dfd)  # a link swapped in: ELOOP, skipped
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            if self.reader is not None:
                self.reader.check(st, rel)  # the file opened, not the one listed
            size = st.st_size
            padding = -size % tarfile.BLOCKSIZE
            header = _header(rel, st, tarfile.REGTYPE, size=size)
            self._count(len(header) + size + padding)  # before any of it is read
            yield header
            left = size
            while left > 0:
                if self.stop.is_set():
                    raise Stopped()
                data = os.read(fd, min(CHUNK, left))
                if not data:  # shrank since fstat: the header promised size bytes
                    data = tarfile.NUL * min(CHUNK, left)
                left -= len(data)
                yield data
            if padding:
                yield tarfile.NUL * padding
            return True
        finally:
            os.close(fd)
