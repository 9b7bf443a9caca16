"""Every error of podman-rpc, daemon and clients alike, in one tree with family bases
(the model is httpx's ``_exceptions.py``): catch a family to handle its kind.

The tree (code, ``data.kind``)::

    PodmanRpcError
     ├── RpcError ................... travels as a JSON-RPC error object
     │    ├── RequestError .......... the request itself is wrong: do not retry it
     │    │    ├── ParseError ........... -32700  ParseError
     │    │    ├── InvalidRequest ....... -32600  InvalidRequest
     │    │    ├── MethodNotFound ....... -32601  MethodNotFound
     │    │    ├── InvalidParams ........ -32602  InvalidParams   (data.field, data.reason)
     │    │    └── PolicyDenied ......... -32003  PolicyDenied    (data.rule)
     │    ├── ServiceError .......... the daemon could not serve it now: may be retried
     │    │    ├── InternalError ........ -32603  InternalError   (never a traceback)
     │    │    ├── Overloaded ........... -32000  Overloaded      (data.retry_after_ms)
     │    │    ├── Timeout .............. -32001  Timeout
     │    │    ├── ShuttingDown ......... -32002  ShuttingDown
     │    │    └── RequestCancelled ..... -32800  RequestCancelled
     │    └── PodmanFailure ......... what Podman said, or that it could not be asked
     │         ├── PodmanUnavailable .... -32010  PodmanUnavailable
     │         ├── NotFound ............. -32011  ContainerNotFound | ImageNotFound | NotFound
     │         ├── Conflict ............. -32012  Conflict
     │         ├── ContainerFailed ...... -32013  ContainerFailed (data.exit_code, stdout, stderr)
     │         └── PodmanError .......... -32014  PodmanError     (data.status: Podman's HTTP status)
     └── TransportError ............. client side only, never on the wire
          ├── ConnectionLost ........ the connection closed before the reply (a ConnectionError)
          └── ClientTimeout ......... no reply within the client's own timeout (a TimeoutError)

Both the daemon (raising) and the clients (re-raising what came over the wire)
use these classes, so a code means the same thing on both ends. A Podman
exception becomes one of them in one table only (``daemon/podman/errors.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class PodmanRpcError(Exception):
    """Base of every error this project raises."""


class RpcError(PodmanRpcError):
    """Base of every error that travels as a JSON-RPC error object."""

    code: ClassVar[int] = -32603
    kind: ClassVar[str] = "InternalError"
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, data: dict[str, Any] | None = None,
                 *, kind: str | None = None) -> None:
        self.message = message or self.default_message
        self.data: dict[str, Any] = {"kind": kind or self.kind, **(data or {})}
        super().__init__(self.message)

    def to_wire(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        return {"code": self.code, "message": self.message, "data": self.data}


class RequestError(RpcError):
    """The request is wrong (shape, method, params or policy): the same request fails again."""


class ServiceError(RpcError):
    """The daemon could not serve the request now; a later try may succeed."""


class PodmanFailure(RpcError):
    """Podman refused or failed the operation, or could not be reached."""


class TransportError(PodmanRpcError):
    """A client-side failure of the connection itself; nothing came over the wire."""


class ConnectionLost(TransportError, ConnectionError):
    """The connection closed before the reply came; the next call reconnects."""


class ClientTimeout(TransportError, TimeoutError):
    """No reply within the client's own timeout; the request was cancelled."""


class ParseError(RequestError):
    code, kind, default_message = -32700, "ParseError", "Parse error"


class InvalidRequest(RequestError):
    code, kind, default_message = -32600, "InvalidRequest", "Invalid request"


class MethodNotFound(RequestError):
    code, kind, default_message = -32601, "MethodNotFound", "Method not found"


class InvalidParams(RequestError):
    code, kind, default_message = -32602, "InvalidParams", "Invalid params"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid params: {field}: {reason}", {"field": field, "reason": reason})


class InternalError(ServiceError):
    code, kind, default_message = -32603, "InternalError", "Internal error"


class Overloaded(ServiceError):
    code, kind, default_message = -32000, "Overloaded", "Server overloaded, retry later"


class Timeout(ServiceError):
    code, kind, default_message = -32001, "Timeout", "Request deadline exceeded"


class ShuttingDown(ServiceError):
    code, kind, default_message = -32002, "ShuttingDown", "Daemon is shutting down"


class PolicyDenied(RequestError):
    code, kind, default_message = -32003, "PolicyDenied", "Denied by policy"


class PodmanUnavailable(PodmanFailure):
    code, kind, default_message = -32010, "PodmanUnavailable", "Podman service is unreachable"


class NotFound(PodmanFailure):
    code, kind, default_message = -32011, "NotFound", "Not found"


class Conflict(PodmanFailure):
    code, kind, default_message = -32012, "Conflict", "Conflict"


class ContainerFailed(PodmanFailure):
    code, kind, default_message = -32013, "ContainerFailed", "Container exited with a non-zero code"


class PodmanError(PodmanFailure):
    code, kind, default_message = -32014, "PodmanError", "Podman returned an error"


class RequestCancelled(ServiceError):
    code, kind, default_message = -32800, "RequestCancelled", "Request cancelled"


ERROR_CLASSES: tuple[type[RpcError], ...] = (
    ParseError, InvalidRequest, MethodNotFound, InvalidParams, InternalError,
    Overloaded, Timeout, ShuttingDown, PolicyDenied, PodmanUnavailable, NotFound,
    Conflict, ContainerFailed, PodmanError, RequestCancelled,
)
ERRORS_BY_CODE: dict[int, type[RpcError]] = {cls.code: cls for cls in ERROR_CLASSES}


def error_from_wire(error: dict[str, Any]) -> RpcError:
    """Rebuild the typed exception from a wire ``error`` object (used by clients)."""
    code = error.get("code")
    cls = ERRORS_BY_CODE.get(code, RpcError) if isinstance(code, int) else RpcError
    exc = RpcError.__new__(cls)
    exc.message = str(error.get("message", ""))
    data = error.get("data")
    exc.data = data if isinstance(data, dict) else {"kind": cls.kind, "value": data}
    exc.args = (exc.message,)
    if cls is RpcError:
        exc.code = code if isinstance(code, int) else -32603  # type: ignore[misc]  # per instance: an unknown code keeps its number
    return exc


def error_table() -> list[dict[str, Any]]:
    """The error table as published by ``rpc.discover``."""
    return [{"code": c.code, "message": c.default_message, "data": {"kind": c.kind}}
            for c in ERROR_CLASSES]
