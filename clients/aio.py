"""The asyncio client: one persistent connection, any number of calls in flight on it.

Cancelling a call (``task.cancel()``, ``asyncio.timeout``) sends
``$/cancelRequest`` for its id, so the daemon stops the work (a ``run``'s
container is killed and removed). ``stream()`` gives ``$/progress`` as an async
iterator. The Dart package follows this file line by line.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from podman_rpc._core import (
    ConnectionLost,
    Progress,
    ProgressCallback,
    Router,
    Waiter,
    default_socket,
    encode_cancel,
    encode_notification,
    encode_request,
    has_progress,
    outcome,
    prepare_params,
    settler,
    unwrap,
    with_registry_methods,
)
from podman_rpc.protocol.errors import ClientTimeout
from podman_rpc.protocol.registry import METHODS, MethodSpec

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter, Any]]]


class _Session:
    """One live connection and the task that reads its replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 process: Any) -> None:
        self.reader, self.writer, self.process = reader, writer, process
        self.router = Router()
        self.alive = True
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        reason = "the daemon closed the connection"
        try:
            while data := await self.reader.read(1 << 16):
                self.router.feed(data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = f"connection error: {exc}"
        finally:
            self.alive = False
            self.router.fail_all(reason)

    async def send(self, data: bytes, waiters: dict[Any, Waiter]) -> None:
        if not self.alive or self.writer.is_closing():
            self.alive = False
            raise self.router.lost("the connection is closed")
        self.router.waiters.update(waiters)
        try:
            self.writer.write(data)  # one write per message: lines never interleave
            await self.writer.drain()
        except OSError:
            self.alive = False
            for key in waiters:
                self.router.waiters.pop(key, None)
            raise

    def send_nowait(self, data: bytes) -> None:
        """Used from cancellation, where awaiting is not possible."""
        if self.alive and not self.writer.is_closing():
            self.writer.write(data)

    async def close(self) -> None:
        self.alive = False
        if self.process is not None and self.writer.can_write_eof():
            self.writer.write_eof()  # the bridge half-closes; the daemon answers and closes
        self.writer.close()
        try:
            await asyncio.wait_for(self.task, 5)
        except (TimeoutError, asyncio.CancelledError, OSError):
            self.task.cancel()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


if TYPE_CHECKING:  # the declared methods, typed (clients/_typed.pyi, generated)
    from podman_rpc._typed import AsyncClientMethods
else:
    AsyncClientMethods = object


@with_registry_methods
class AsyncClient(AsyncClientMethods):
    """Asyncio client; typed methods (``await client.run(image=...)``) come from the registry.

    ``timeout`` (seconds, default none) bounds each wait on the client side; past it
    the request is cancelled with ``$/cancelRequest`` and TimeoutError is raised.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 timeout: float | None = None) -> None:
        target = str(path) if path is not None else default_socket()
        self.path: str | None = target

        async def open_socket() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Any]:
            reader, writer = await asyncio.open_unix_connection(target)
            return reader, writer, None

        self._open: Opener = open_socket
        self.timeout = timeout
        self._session: _Session | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)

    @classmethod
    def bridge(cls, argv: Sequence[str], *, timeout: float | None = None) -> AsyncClient:
        """Speak over a command's stdin/stdout, e.g. ``["ssh", "host", "podman-rpc", "bridge"]``."""
        client = cls(os.devnull, timeout=timeout)
        client.path = None

        async def open_bridge() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Any]:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            assert process.stdout is not None and process.stdin is not None
            return process.stdout, process.stdin, process

        client._open = open_bridge
        return client

    # --- connection ---------------------------------------------------------------
    async def connect(self) -> AsyncClient:
        await self._live()
        return self

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (the next call opens one if not)."""
        return self._session is not None and self._session.alive

    async def _live(self) -> _Session:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new asyncio.run(): start afresh
            self._loop, self._session, self._connect_lock = loop, None, asyncio.Lock()
        assert self._connect_lock is not None
        async with self._connect_lock:
            if self._session is None or not self._session.alive:
                if self._session is not None:
                    await self._session.close()
                self._session = _Session(*await self._open())
            return self._session

    async def _send(self, data: bytes, waiters: dict[Any, Waiter]) -> _Session:
        """Send, reconnecting once if the daemon went away (it restarted, or idled out)."""
        session = await self._live()
        try:
            await session.send(data, waiters)
        except (OSError, ConnectionLost):
            # If the daemon said why it closed (Overloaded, PolicyDenied), raise that.
            await asyncio.wait({session.task}, timeout=1)
            if session.router.connection_error is not None:
                raise session.router.lost("refused") from None
            session = await self._live()
            await session.send(data, waiters)
        return session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- calls --------------------------------------------------------------------
    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      on_progress: ProgressCallback | None = None,
                      timeout: float | None = None) -> Any:
        """Send one request and await its result; errors raise, cancelling cancels it."""
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        session = await self._send(encode_request(request_id, method, params),
                                   {request_id: Waiter(settler(future), on_progress)})
        wait = timeout if timeout is not None else self.timeout
        try:
            async with asyncio.timeout(wait):
                reply = await future
        except asyncio.CancelledError:
            self._forget(session, request_id, future)
            raise
        except TimeoutError:
            self._forget(session, request_id, future)
            raise ClientTimeout(f"{method}: no reply within {wait}s; cancelled") from None
        return unwrap(reply)

    @staticmethod
    def _forget(session: _Session, request_id: int, future: asyncio.Future[Any]) -> None:
        """A call given up on: its reply will be dropped and the daemon told to cancel it."""
        if future.cancelled() or not future.done():  # awaiting it cancels it, too
            session.router.waiters.pop(request_id, None)
            session.send_nowait(encode_cancel(request_id))

    async def call(self, method: str, /, **params: Any) -> Any:
        """``await client.call("ping")``: any method by name, not validated here."""
        return await self.request(method, params or None)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._send(encode_notification(method, params), {})

    async def batch(self, calls: Iterable[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        """Send several requests as one JSON-RPC batch; each result or exception, in order."""
        entries = [(next(self._ids), method, params) for method, params in calls]
        if not entries:
            return []
        loop = asyncio.get_running_loop()
        futures = {rid: loop.create_future() for rid, _, _ in entries}
        lines = b",".join(encode_request(rid, m, p)[:-1] for rid, m, p in entries)
        await self._send(b"[" + lines + b"]\n",
                         {rid: Waiter(settler(futures[rid])) for rid, _, _ in entries})
        replies = await asyncio.gather(*futures.values(), return_exceptions=True)
        return [r if isinstance(r, BaseException) else outcome(r) for r in replies]

    def stream(self, method: str, /, **params: Any) -> Call:
        """Start a call with ``progress`` on: iterate it for Progress, await it for the result."""
        spec = METHODS.get(method)
        if spec is not None and not has_progress(spec):
            raise TypeError(f"{method} sends no progress notifications")
        return Call(self, method, {**params, "progress": True})

    async def _typed(self, spec: MethodSpec, params: dict[str, Any],
                     on_progress: ProgressCallback | None) -> Any:
        return await self.request(spec.name, prepare_params(spec, params, on_progress) or None,
                                  on_progress=on_progress)


class Call:
    """A call in flight with its progress: ``async for p in call`` then ``await call``.

    Progress always arrives before the reply, so iteration ends once every line
    has been yielded and the reply is in; ``cancel()`` sends ``$/cancelRequest``.
    """

    def __init__(self, client: AsyncClient, method: str, params: dict[str, Any]) -> None:
        self._queue: asyncio.Queue[Progress] = asyncio.Queue()
        self.task = asyncio.ensure_future(
            client.request(method, params, on_progress=self._queue.put_nowait))

    def __aiter__(self) -> AsyncIterator[Progress]:
        return self

    async def __anext__(self) -> Progress:
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            if self.task.done():
                raise StopAsyncIteration
            getter = asyncio.ensure_future(self._queue.get())
            try:
                await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                got = getter.done() and not getter.cancelled()
                if not getter.done():
                    getter.cancel()
            if got:
                return getter.result()

    def cancel(self) -> None:
        self.task.cancel()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.task.__await__()
