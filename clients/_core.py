"""What the blocking and asyncio clients share: encoding, reply routing, typed methods.

Pure code over bytes and dicts: the clients do the I/O. It imports only
``protocol`` and orjson, never the daemon's dependencies (uvloop, podman-py,
structlog), so a program that only talks to the daemon stays light.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from podman_rpc.protocol import paths
from podman_rpc.protocol.envelope import CANCEL_METHOD, PROGRESS_METHOD
from podman_rpc.protocol.errors import ConnectionLost, RpcError, error_from_wire
from podman_rpc.protocol.framing import OVERSIZE, LineDecoder, encode
from podman_rpc.protocol.registry import METHODS, MethodSpec

MAX_REPLY_LINE = 256 << 20
"""Replies carry captured output (capped by the daemon at a few MiB); this only stops runaways."""


def default_socket() -> str:
    """Where the daemon listens, by the rule ``podman-rpcd`` uses (``protocol.paths``)."""
    return paths.default_socket(os.geteuid(), os.environ)


class Progress(NamedTuple):
    """One ``$/progress`` notification: a line of ``stdout``, ``stderr`` or ``build`` output."""

    id: Any
    stream: str
    line: Any


ProgressCallback = Callable[[Progress], Any]


def encode_request(request_id: Any, method: str,
                   params: dict[str, Any] | list[Any] | None) -> bytes:
    """One request line; ``params`` (by name, or a list by position) is left out when empty."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params:
        message["params"] = params
    return encode(message)


def encode_notification(method: str, params: dict[str, Any] | None) -> bytes:
    """A request without an id: the daemon sends no reply."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        message["params"] = params
    return encode(message)


def encode_cancel(request_id: Any) -> bytes:
    """The LSP-style cancel notification for a request in flight."""
    return encode({"jsonrpc": "2.0", "method": CANCEL_METHOD, "params": {"id": request_id}})


def unwrap(reply: dict[str, Any]) -> Any:
    """The result of a reply, or its error raised as the protocol's exception class."""
    if "error" in reply:
        error = reply["error"]
        raise error_from_wire(error if isinstance(error, dict) else {"message": str(error)})
    return reply.get("result")


def outcome(reply: dict[str, Any]) -> Any:
    """Like :func:`unwrap`, but returns the exception instead of raising (for batches)."""
    try:
        return unwrap(reply)
    except RpcError as exc:
        return exc


@dataclass(slots=True)
class Waiter:
    """One request awaiting its reply: how to settle it and where its progress goes."""

    settle: Callable[[dict[str, Any] | BaseException], None]
    on_progress: ProgressCallback | None = None


class Router:
    """Splits the reply stream into lines and hands each message to its waiter by id."""

    def __init__(self) -> None:
        self.waiters: dict[Any, Waiter] = {}
        self.decoder = LineDecoder(MAX_REPLY_LINE)
        self.connection_error: dict[str, Any] | None = None
        """An id-less wire error (Overloaded, PolicyDenied on connect) explaining a close."""

    def feed(self, data: bytes) -> None:
        for line in self.decoder.feed(data):
            if line is OVERSIZE or not line.strip():
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # not ours to fix; the request it belonged to fails on close
            for item in message if isinstance(message, list) else (message,):
                if isinstance(item, dict):
                    self._route(item)

    def _route(self, message: dict[str, Any]) -> None:
        if message.get("method") == PROGRESS_METHOD:
            params = message.get("params") or {}
            waiter = self.waiters.get(params.get("id"))
            if waiter is not None and waiter.on_progress is not None:
                waiter.on_progress(Progress(params.get("id"), str(params.get("stream", "")),
                                            params.get("line")))
            return
        if "id" not in message or "method" in message:
            return
        request_id = message["id"]
        waiter = self.waiters.pop(request_id, None) if request_id is not None else None
        if waiter is not None:
            waiter.settle(message)
        elif request_id is None and isinstance(message.get("error"), dict):
            self.connection_error = message["error"]

    def lost(self, reason: str) -> BaseException:
        """Why a request on this connection will get no reply."""
        if self.connection_error is not None:
            return error_from_wire(self.connection_error)
        return ConnectionLost(reason)

    def fail_all(self, reason: str) -> None:
        """Settle every waiter with the connection-level error, or ConnectionLost."""
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            waiter.settle(self.lost(reason))


# --- typed methods, generated from the registry --------------------------------------

def py_name(method: str) -> str:
    """``rpc.discover`` becomes ``rpc_discover``."""
    return method.replace(".", "_")


def has_progress(spec: MethodSpec) -> bool:
    """Whether the method is declared with a ``progress`` param (run, build, pull)."""
    return any(param.name == "progress" for param in spec.params)


def prepare_params(spec: MethodSpec, params: dict[str, Any],
                   on_progress: ProgressCallback | None) -> dict[str, Any]:
    """Validate with the declaration before anything is sent; ask for progress if wanted."""
    params = dict(params)
    if on_progress is not None:
        if not has_progress(spec):
            raise TypeError(f"{spec.name} sends no progress notifications")
        params["progress"] = True
    spec.validate(params)  # raises protocol.errors.InvalidParams naming the field
    return params


def _signature(spec: MethodSpec) -> inspect.Signature:
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
    for param in spec.params:
        parameters.append(inspect.Parameter(
            param.name, inspect.Parameter.KEYWORD_ONLY, annotation=param.annotation,
            default=inspect.Parameter.empty if param.required else param.default))
    if has_progress(spec):
        parameters.append(inspect.Parameter("on_progress", inspect.Parameter.KEYWORD_ONLY,
                                            default=None))
    return inspect.Signature(parameters, return_annotation=spec.result)


def _make_method(spec: MethodSpec) -> Callable[..., Any]:
    def method(self: Any, /, **params: Any) -> Any:
        on_progress = params.pop("on_progress", None)
        return self._typed(spec, params, on_progress)

    method.__name__ = method.__qualname__ = py_name(spec.name)
    method.__doc__ = spec.doc.strip() or spec.name
    method.__signature__ = _signature(spec)  # type: ignore[attr-defined]  # read by help() and inspect
    return method


def with_registry_methods(cls: type) -> type:
    """Add one method per declared JSON-RPC method; a clash with the class is an error."""
    for spec in METHODS.values():
        name = py_name(spec.name)
        if name in cls.__dict__:
            raise TypeError(f"{cls.__name__}.{name} clashes with the method {spec.name!r}")
        setattr(cls, name, _make_method(spec))
    return cls


def settler(future: Any) -> Callable[[Any], None]:
    """Settle a future (asyncio or concurrent) with a reply or an exception, once."""
    def settle(reply: Any) -> None:
        if future.done():
            return
        if isinstance(reply, BaseException):
            future.set_exception(reply)
        else:
            future.set_result(reply)
    return settle
