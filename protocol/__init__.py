"""podman-rpc's wire protocol: framing, envelope, errors and the method registry.

Pure code, no I/O: the daemon and every client import it.
"""

from podman_rpc.protocol import methods as _methods  # noqa: F401  (declares every method)
from podman_rpc.protocol.registry import METHODS, Lane, MethodSpec, openrpc_document

__all__ = ["METHODS", "Lane", "MethodSpec", "openrpc_document"]
