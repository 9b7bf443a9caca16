"""Handlers: the daemon's implementation of each declared method.

A handler is bound to its declaration with ``@implements(ParamsClass)``; the
declaration (in ``protocol.methods``) holds the name, params, lane and timeout.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from protocol.registry import METHODS, Params

Handler = Callable[[Any, Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def implements(params_class: type[Params]) -> Callable[[Handler], Handler]:
    """Bind a coroutine ``handler(ctx, params)`` to a declared method."""
    name = params_class.rpc_spec.name

    def bind(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise ValueError(f"method {name!r} implemented twice")
        HANDLERS[name] = fn
        return fn

    return bind


def load_handlers() -> dict[str, Handler]:
    """Import every handler module and check that each declared method has a handler."""
    import importlib

    for module in ("system", "images", "containers"):
        try:
            importlib.import_module(f"daemon.handlers.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"daemon.handlers.{module}":
                raise
    return HANDLERS


def missing_handlers() -> list[str]:
    return [name for name in METHODS if name not in HANDLERS]
