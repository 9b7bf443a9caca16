"""JSON-RPC errors: one class per code, each carrying its own code, kind and data.

The tree (code, ``data.kind``)::

    RpcError
     ├── ParseError ............ -32700  ParseError
     ├── InvalidRequest ........ -32600  InvalidRequest
     ├── MethodNotFound ........ -32601  MethodNotFound
     ├── InvalidParams ......... -32602  InvalidParams   (data.field, data.reason)
     ├── InternalError ......... -32603  InternalError   (never a traceback)
     ├── Overloaded ............ -32000  Overloaded      (data.retry_after_ms)
     ├── Timeout ............... -32001  Timeout
     ├── ShuttingDown .......... -32002  ShuttingDown
     ├── PolicyDenied .......... -32003  PolicyDenied    (data.rule)
     ├── PodmanUnavailable ..... -32010  PodmanUnavailable
     ├── NotFound .............. -32011  ContainerNotFound | ImageNotFound | NotFound
     ├── Conflict .............. -32012  Conflict
     ├── ContainerFailed ....... -32013  ContainerFailed (data.exit_code, stdout, stderr)
     ├── PodmanError ........... -32014  PodmanError     (data.status: Podman's HTTP status)
     └── RequestCancelled ...... -32800  RequestCancelled

Both the daemon (raising) and the clients (re-raising what came over the wire)
use these classes, so a code means the same thing on both ends.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RpcError(Exception):
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


class ParseError(RpcError):
    code, kind, default_message = -32700, "ParseError", "Parse error"


class InvalidRequest(RpcError):
    code, kind, default_message = -32600, "InvalidRequest", "Invalid request"


class MethodNotFound(RpcError):
    code, kind, default_message = -32601, "MethodNotFound", "Method not found"


class InvalidParams(RpcError):
    code, kind, default_message = -32602, "InvalidParams", "Invalid params"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid params: {field}: {reason}", {"field": field, "reason": reason})


class InternalError(RpcError):
    code, kind, default_message = -32603, "InternalError", "Internal error"


class Overloaded(RpcError):
    code, kind, default_message = -32000, "Overloaded", "Server overloaded, retry later"


class Timeout(RpcError):
    code, kind, default_message = -32001, "Timeout", "Request deadline exceeded"


class ShuttingDown(RpcError):
    code, kind, default_message = -32002, "ShuttingDown", "Daemon is shutting down"


class PolicyDenied(RpcError):
    code, kind, default_message = -32003, "PolicyDenied", "Denied by policy"


class PodmanUnavailable(RpcError):
    code, kind, default_message = -32010, "PodmanUnavailable", "Podman service is unreachable"


class NotFound(RpcError):
    code, kind, default_message = -32011, "NotFound", "Not found"


class Conflict(RpcError):
    code, kind, default_message = -32012, "Conflict", "Conflict"


class ContainerFailed(RpcError):
    code, kind, default_message = -32013, "ContainerFailed", "Container exited with a non-zero code"


class PodmanError(RpcError):
    code, kind, default_message = -32014, "PodmanError", "Podman returned an error"


class RequestCancelled(RpcError):
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
