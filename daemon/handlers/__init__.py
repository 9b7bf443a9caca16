"""Handlers: the daemon's implementation of each declared method.

A handler is bound to its declaration with ``@implements(ParamsClass)``; the
declaration (in ``protocol.methods``) holds the name, params, lane and timeout.

Daemon-local methods (``Lane.LOCAL``) are plain functions of ``(state, params)``:
they do no I/O, so the transport answers them in the same read that brought the
request, with no task, deadline or lane. Every other handler is a coroutine of
``(ctx, params)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from podman_rpc.protocol.registry import METHODS, Lane, Params

AsyncHandler = Callable[[Any, Any], Awaitable[Any]]
LocalHandler = Callable[[Any, Any], Any]
Handler = AsyncHandler | LocalHandler
HANDLERS: dict[str, Handler] = {}


def is_local(handler: Handler) -> bool:
    """A plain function: answered synchronously, on the transport's fast path."""
    return not inspect.iscoroutinefunction(handler)


def implements(params_class: type[Params]) -> Callable[[Handler], Handler]:
    """Bind a handler to a declared method: a function for LOCAL, a coroutine otherwise."""
    spec = params_class.rpc_spec
    name = spec.name

    def bind(fn: Handler) -> Handler:
        if is_local(fn) != (spec.lane is Lane.LOCAL):
            raise TypeError(f"{name!r} is in lane {spec.lane.value!r}: its handler must be "
                            + ("a plain function" if spec.lane is Lane.LOCAL else "a coroutine"))
        if name in HANDLERS:
            raise ValueError(f"method {name!r} implemented twice")
        HANDLERS[name] = fn
        return fn

    return bind


def load_handlers() -> dict[str, Handler]:
    """Import every handler module and check that each declared method has a handler."""
    import importlib

    for module in ("system", "images", "build", "containers"):
        try:
            importlib.import_module(f"podman_rpc.daemon.handlers.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"podman_rpc.daemon.handlers.{module}":
                raise
    return HANDLERS


def missing_handlers() -> list[str]:
    return [name for name in METHODS if name not in HANDLERS]
