"""Clients for the podman-rpc daemon. Importing them never imports uvloop, podman-py or structlog.

    from podman_rpc import Client
    with Client() as client:                 # $PODMAN_RPC_SOCKET or the default socket
        print(client.ping())                 # "Pong"
        out = client.run(image="localhost/busybox:latest", command="echo hi")

``AsyncClient`` is the asyncio twin; ``Client.bridge([...])`` speaks through a
command such as ``ssh host podman-rpc bridge``. Errors are the classes of
``podman_rpc.protocol.errors`` (``NotFound``, ``ContainerFailed``...), each with ``.data``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type checkers see the real classes; at run time they load on first use
    from podman_rpc._core import Progress as Progress
    from podman_rpc._core import default_socket as default_socket
    from podman_rpc.aio import AsyncClient as AsyncClient
    from podman_rpc.aio import Call as Call
    from podman_rpc.protocol import errors as errors
    from podman_rpc.protocol.errors import ClientTimeout as ClientTimeout
    from podman_rpc.protocol.errors import ConnectionLost as ConnectionLost
    from podman_rpc.sync import Client as Client

_LAZY = {"AsyncClient": "podman_rpc.aio", "Call": "podman_rpc.aio", "Client": "podman_rpc.sync",
         "ConnectionLost": "podman_rpc.protocol.errors",
         "ClientTimeout": "podman_rpc.protocol.errors", "Progress": "podman_rpc._core",
         "default_socket": "podman_rpc._core", "errors": "podman_rpc.protocol.errors"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Load on first use: a blocking caller (the compat CLI) never pays for asyncio."""
    if name not in _LAZY:
        raise AttributeError(f"module 'podman_rpc' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "errors" else getattr(module, name)
    globals()[name] = value
    return value
