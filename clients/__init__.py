"""Clients for the podman-rpc daemon. Importing them never imports uvloop, podman-py or structlog.

    from clients import Client
    with Client() as client:                 # $PODMAN_RPC_SOCKET or the default socket
        print(client.ping())                 # "Pong"
        out = client.run(image="localhost/busybox:latest", command="echo hi")

``AsyncClient`` is the asyncio twin; ``Client.bridge([...])`` speaks through a
command such as ``ssh host podman-rpc bridge``. Errors are the classes of
``protocol.errors`` (``NotFound``, ``ContainerFailed``...), each with ``.data``.
"""

from clients._core import ConnectionLost, Progress, default_socket
from clients.aio import AsyncClient, Call
from clients.sync import Client
from protocol import errors

__all__ = ["AsyncClient", "Call", "Client", "ConnectionLost", "Progress", "default_socket",
           "errors"]
