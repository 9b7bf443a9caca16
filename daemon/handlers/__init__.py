"""Handlers: the daemon's implementation of each declared method.

A handler is bound to its declaration with ``@implements(ParamsClass)``; the
declaration (in ``protocol.methods``) holds the name, params, lane and timeout.

Daemon-local methods (``Lane.LOCAL``) are plain functions of ``(state, params)``:
they do no I/O, so the transport answers them in the same read that brought the
request, with no task, deadline or lane. Every other handler is a coroutine of
``(ctx, params)``.

``load_handlers`` imports every module of ``HANDLER_MODULES`` and refuses to
start unless each declared method has exactly one handler.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
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


HANDLER_MODULES = ("system", "images", "build", "containers")


def check_complete(handlers: Mapping[str, Handler], methods: Iterable[str]) -> None:
    """Refuse to start when a declared method has no handler (or a handler no method)."""
    declared = set(methods)
    missing = sorted(declared - set(handlers))
    unknown = sorted(set(handlers) - declared)
    if missing or unknown:
        raise RuntimeError(f"handlers out of step with the declarations: missing {missing}, "
                           f"undeclared {unknown}")


def load_handlers() -> dict[str, Handler]:
    """Import every handler module; every declared method must then have its handler."""
    for module in HANDLER_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    check_complete(HANDLERS, METHODS)
    return HANDLERS
