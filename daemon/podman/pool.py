"""A pool of podman-py clients, one per worker thread.

podman-py is synchronous and its clients are not thread-safe, so each worker
thread owns one kept-alive client. The number of threads is fixed (the sum of
the lane caps), so the pool can never grow into a pile-up.

A Podman call whose request is cancelled or times out cannot be interrupted
inside its thread: asyncio stops waiting for it at once, and the thread finishes
the HTTP call on its own, bounded by ``podman_call_timeout`` (the socket timeout
given to every client). Until then it holds its worker, so later calls queue for
a free worker rather than spawning new threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from podman_rpc.daemon.podman.errors import map_podman_errors
from podman_rpc.daemon.podman.http import PING_PATH, PodmanHTTP, Reply
from podman_rpc.daemon.podman.listing import Listings
from podman_rpc.daemon.podman.shared import SharedReads
from podman_rpc.protocol.errors import PodmanUnavailable, RpcError

T = TypeVar("T")

_IDENTITY_HEADERS = ("server", "libpod-api-version", "libpod-buildah-version")
"""What ``_ping`` says of the Podman answering (``Libpod/4.3.1 (linux)``, ``4.3.1``, ...)."""


def _version_of(client: Any) -> str:
    """Podman's version string ("4.3.1"), as the old CLI printed it."""
    return str(client.version().get("Version", ""))


def release_frames(error: BaseException) -> None:
    """Clear the locals of the finished frames behind ``error`` and the errors it chains.

    A failed connect leaves its socket in a local of podman-py's (urllib3's) frame, and
    the exception's traceback keeps that frame, and so the socket, open. The RpcError
    travels on through futures and replies, often inside a reference cycle, so the
    socket waited for the garbage collector: 98 of them during one outage (issue 18).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames still running
        current = current.__cause__ or current.__context__


class PodmanPool:
    """Run blocking podman-py calls on worker threads, each with its own client."""

    def __init__(self, socket_path: Path, workers: int, call_timeout: float) -> None:
        self.socket_path = socket_path
        self.socket_name = str(socket_path)
        self.call_timeout = call_timeout
        # What ``status`` reports about Podman (daemon.rpc.status reads them here).
        self.reachable: bool | None = None  # whether Podman answered the last call or ping
        self.version: str | None = None  # Podman's version, as last asked
        self._version_identity: tuple[str, ...] = ()  # the ping headers of that answer
        self._version_call: tuple[tuple[str, ...], asyncio.Future[str]] | None = None
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="podman")
        self.http = PodmanHTTP(socket_path)
        self.shared = SharedReads()  # reads that callers asking together share
        self.listings = Listings(self.http, self.shared)  # ps and images
        self._watch: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from podman import PodmanClient  # lazy: importing podman costs ~0.3 s

            client = PodmanClient(base_url=self.base_url, timeout=self.call_timeout)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _invoke(self, fn: Callable[..., T], args: tuple[Any, ...], subject: str) -> T:
        try:
            with map_podman_errors(subject):
                result = fn(self._client(), *args)
        except PodmanUnavailable as error:
            self.reachable = False
            release_frames(error)
            self._drop_client()
            raise
        except RpcError as error:
            release_frames(error)
            raise
        self.reachable = True
        return result

    def _drop_client(self) -> None:
        """Close this thread's client after Podman went away: its kept-alive sockets are dead,
        and the next call starts a fresh one."""
        client = getattr(self._local, "client", None)
        if client is None:
            return
        self._local.client = None
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        with contextlib.suppress(Exception):
            client.close()

    async def call(self, fn: Callable[..., T], *args: Any, subject: str = "container") -> T:
        """Run ``fn(client, *args)`` on a worker; Podman errors arrive as RpcErrors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._invoke, fn, args, subject)

    async def ping(self) -> None:
        """Podman's ``_ping`` straight from the event loop (``daemon.podman.http``).

        About 0.3 ms instead of 1-1.6 ms through podman-py and a worker thread
        (bench/RESULTS.md), and it needs no podman import, so a cold start's
        first reply does not wait for one. Same request as ``podman_answers``,
        over this pool's kept-alive connections.
        """
        await self._ping_reply()

    async def _ping_reply(self) -> Reply:
        """``_ping``'s reply; callers asking together share one (``daemon.podman.shared``)."""
        return await self.shared.read(PING_PATH, self._ask_ping)

    async def _ask_ping(self) -> Reply:
        try:
            reply = await self.http.request("HEAD", PING_PATH)
        except PodmanUnavailable:
            self.reachable = False
            raise
        self.reachable = reply.ok
        if not reply.ok:
            raise PodmanUnavailable("Podman did not answer the ping")
        return reply

    async def podman_version(self) -> str:
        """Podman's version string, asked of each running Podman service once.

        Podman's ``/version`` costs about 0.5 s of CPU here (it runs ``dpkg-query``
        for its components' packages), so peers calling ``version`` in a loop kept
        a core busy in Podman (issue 18's fuzz storm). The answer can change only
        when another Podman answers, so each call pings on the loop and asks
        ``/version`` again only when the ping's identifying headers differ from
        those of the last answer. Callers that ask together share one call.
        """
        headers = (await self._ping_reply()).headers
        identity = tuple(headers.get(name, "") for name in _IDENTITY_HEADERS)
        if self.version is not None and identity == self._version_identity:
            return self.version
        asking = self._version_call
        if asking is None or asking[0] != identity:
            task = asyncio.ensure_future(self.call(_version_of))
            task.add_done_callback(functools.partial(self._version_answered, identity))
            self._version_call = asking = (identity, task)
        return await asyncio.shield(asking[1])

    def _version_answered(self, identity: tuple[str, ...], task: asyncio.Future[str]) -> None:
        if self._version_call is not None and self._version_call[1] is task:
            self._version_call = None
        if task.cancelled() or task.exception() is not None:
            return  # its askers got the error; the next call asks again
        self.version, self._version_identity = task.result(), identity

    def watch(self, interval: float) -> None:
        """Ping Podman every ``interval`` seconds, so ``reachable`` says how it is now.

        Without it, ``status`` showed the outcome of the last call, however old:
        a Podman that went away while nobody called still read ``reachable: true``.
        A ping costs about 0.3 ms and does not count as activity for the idle exit.
        """
        self._watch = asyncio.get_running_loop().create_task(self._watching(interval))

    async def _watching(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):
                    await self.ping()
            except (PodmanUnavailable, TimeoutError):
                self.reachable = False

    def warm_up(self) -> None:
        """Import podman-py in the background so the first real call does not pay for it."""
        self._executor.submit(lambda: __import__("podman"))

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self.http.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for client in self._clients:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing best-effort at exit
                    pass
            self._clients.clear()
