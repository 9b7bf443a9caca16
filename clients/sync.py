"""The blocking client: one persistent connection, many threads' requests in flight on it.

A reader thread matches replies to requests by id, so calls from several
threads share the connection without waiting on each other. ``submit`` returns
a ``concurrent.futures.Future`` for pipelining from one thread.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from podman_rpc._core import (
    ConnectionLost,
    ProgressCallback,
    Router,
    Waiter,
    default_socket,
    encode_cancel,
    encode_notification,
    encode_request,
    outcome,
    prepare_params,
    settler,
    unwrap,
    with_registry_methods,
)
from podman_rpc._streams import ProcessStream, SocketStream, Stream
from podman_rpc.protocol.errors import ClientTimeout
from podman_rpc.protocol.registry import MethodSpec


class Submitted(Future[Any]):
    """A submitted request's Future; it remembers its id and connection for ``cancel``."""

    request_id: int
    session: _Session


class _Session:
    """One live connection and the thread that reads its replies."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.router = Router()
        # Guards router.waiters and writes. Reentrant: a progress callback runs on the
        # reader thread and may send (it must not block waiting for a reply, though).
        self.lock = threading.RLock()
        self.alive = True
        self.thread = threading.Thread(target=self._read, name="podman-rpc-reader",
                                       daemon=True)
        self.thread.start()

    def _read(self) -> None:
        reason = "the daemon closed the connection"
        try:
            while True:
                data = self.stream.recv()
                if not data:
                    break
                with self.lock:
                    self.router.feed(data)
        except OSError as exc:
            reason = f"connection error: {exc}"
        with self.lock:
            self.alive = False
            self.router.fail_all(reason)

    def send(self, data: bytes, waiters: dict[Any, Waiter]) -> None:
        with self.lock:
            if not self.alive:
                raise self.router.lost("the connection is closed")
            self.router.waiters.update(waiters)
            try:
                self.stream.send(data)
            except OSError:
                self.alive = False
                for key in waiters:
                    self.router.waiters.pop(key, None)
                raise

    def forget(self, request_id: Any) -> None:
        with self.lock:
            self.router.waiters.pop(request_id, None)

    def close(self) -> None:
        self.stream.close()
        if self.thread is not threading.current_thread():
            self.thread.join(5)


if TYPE_CHECKING:  # the declared methods, typed (clients/_typed.pyi, generated)
    from podman_rpc._typed import ClientMethods
else:
    ClientMethods = object


@with_registry_methods
class Client(ClientMethods):
    """Blocking client. Typed methods (``client.ping()``, ``client.run(image=...)``) come
    from ``protocol.registry.METHODS``; errors are ``protocol.errors`` classes.

    ``timeout`` (seconds, default none) bounds the wait for each reply on the client
    side; past it the request is cancelled with ``$/cancelRequest`` and TimeoutError
    is raised. The daemon enforces its own deadlines in any case.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 timeout: float | None = None, connect_timeout: float = 5.0) -> None:
        target = str(path) if path is not None else default_socket()
        self.path: str | None = target
        self._open: Callable[[], Stream] = lambda: SocketStream(target, connect_timeout)
        self.timeout = timeout
        self._session: _Session | None = None
        self._connect_lock = threading.Lock()
        self._ids = itertools.count(1)

    @classmethod
    def bridge(cls, argv: Sequence[str], *, timeout: float | None = None) -> Client:
        """Speak over a command's stdin/stdout, e.g. ``["ssh", "host", "podman-rpc", "bridge"]``."""
        client = cls(os.devnull, timeout=timeout)
        client.path = None
        client._open = lambda: ProcessStream(argv)
        return client

    # --- connection ---------------------------------------------------------------
    def connect(self) -> Client:
        """Open the connection now (otherwise the first call does)."""
        self._live()
        return self

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (the next call opens one if not)."""
        return self._session is not None and self._session.alive

    def _live(self) -> _Session:
        with self._connect_lock:
            if self._session is None or not self._session.alive:
                if self._session is not None:
                    self._session.close()
                self._session = _Session(self._open())
            return self._session

    def _send(self, data: bytes, waiters: dict[Any, Waiter]) -> _Session:
        """Send, reconnecting once if the daemon went away (it restarted, or idled out)."""
        session = self._live()
        try:
            session.send(data, waiters)
        except (OSError, ConnectionLost):
            # If the daemon said why it closed (Overloaded, PolicyDenied), raise that.
            session.thread.join(1)
            if session.router.connection_error is not None:
                raise session.router.lost("refused") from None
            session = self._live()
            session.send(data, waiters)
        return session

    def close(self) -> None:
        with self._connect_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls --------------------------------------------------------------------
    def submit(self, method: str, params: dict[str, Any] | list[Any] | None = None, *,
               on_progress: ProgressCallback | None = None) -> Future[Any]:
        """Send a request now; the Future holds its result or its error."""
        request_id = next(self._ids)
        raw: Future[Any] = Future()
        future = Submitted()

        def done(reply_future: Future[Any]) -> None:
            exc = reply_future.exception()
            if exc is not None:
                future.set_exception(exc)
                return
            try:
                future.set_result(unwrap(reply_future.result()))
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                future.set_exception(error)

        raw.add_done_callback(done)
        session = self._send(encode_request(request_id, method, params),
                             {request_id: Waiter(settler(raw), on_progress)})
        future.request_id, future.session = request_id, session
        return future

    def request(self, method: str, params: dict[str, Any] | list[Any] | None = None, *,
                on_progress: ProgressCallback | None = None,
                timeout: float | None = None) -> Any:
        """Send one request and wait for its result; errors raise."""
        future = self.submit(method, params, on_progress=on_progress)
        wait = timeout if timeout is not None else self.timeout
        try:
            return future.result(wait)
        except FutureTimeout:
            self.cancel(future)
            raise ClientTimeout(f"{method}: no reply within {wait}s; cancelled") from None

    def call(self, method: str, /, **params: Any) -> Any:
        """``client.call("ping")``: any method by name, params as keywords, not validated here."""
        return self.request(method, params or None)

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """A notification: the daemon runs it and sends no reply."""
        self._send(encode_notification(method, params), {})

    def cancel(self, future: Future[Any]) -> None:
        """Ask the daemon to cancel a submitted request; its Future then fails."""
        if not isinstance(future, Submitted):
            raise TypeError("cancel() takes a Future returned by submit()")
        session, request_id = future.session, future.request_id
        session.forget(request_id)
        if not future.done():
            future.set_exception(ClientTimeout(f"request {request_id} cancelled by the client"))
        try:
            session.send(encode_cancel(request_id), {})
        except (OSError, ConnectionLost):
            pass  # the connection is gone: the daemon cancels everything it had

    def batch(self, calls: Iterable[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        """Send several requests as one JSON-RPC batch; each result or exception, in order."""
        entries = [(next(self._ids), method, params) for method, params in calls]
        if not entries:
            return []
        futures: dict[int, Future[Any]] = {rid: Future() for rid, _, _ in entries}
        lines = b",".join(encode_request(rid, m, p)[:-1] for rid, m, p in entries)
        self._send(b"[" + lines + b"]\n",
                   {rid: Waiter(settler(futures[rid])) for rid, _, _ in entries})
        out: list[Any] = []
        for rid, _, _ in entries:
            try:
                out.append(outcome(futures[rid].result(self.timeout)))
            except ConnectionError as exc:
                out.append(exc)
        return out

    def _typed(self, spec: MethodSpec, params: dict[str, Any],
               on_progress: ProgressCallback | None) -> Any:
        return self.request(spec.name, prepare_params(spec, params, on_progress) or None,
                            on_progress=on_progress)
