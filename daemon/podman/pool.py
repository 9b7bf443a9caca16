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
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from podman_rpc.daemon.podman.errors import map_podman_errors
from podman_rpc.daemon.podman.http import PodmanHTTP
from podman_rpc.protocol.errors import PodmanUnavailable

T = TypeVar("T")


class PodmanPool:
    """Run blocking podman-py calls on worker threads, each with its own client."""

    def __init__(self, socket_path: Path, workers: int, call_timeout: float) -> None:
        self.socket_path = socket_path
        self.socket_name = str(socket_path)
        self.call_timeout = call_timeout
        # What ``status`` reports about Podman, kept current here (it is part of the reply).
        self.figures: dict[str, Any] = {"socket": self.socket_name, "reachable": None,
                                        "version": None}
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="podman")
        self.http = PodmanHTTP(socket_path)
        self._watch: asyncio.Task[None] | None = None

    @property
    def reachable(self) -> bool | None:
        """Whether Podman answered the last call (None before the first)."""
        return self.figures["reachable"]

    @reachable.setter
    def reachable(self, answered: bool | None) -> None:
        self.figures["reachable"] = answered

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
        except PodmanUnavailable:
            self.reachable = False
            raise
        self.reachable = True
        return result

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
        try:
            answered = await self.http.ping()
        except PodmanUnavailable:
            self.reachable = False
            raise
        self.reachable = answered
        if not answered:
            raise PodmanUnavailable("Podman did not answer the ping")

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
