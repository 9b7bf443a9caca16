"""The JSON-RPC 2.0 envelope: turn one decoded line into requests, build replies.

Pure functions over bytes and dicts; the daemon does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from podman_rpc.protocol.errors import InvalidParams, InvalidRequest, ParseError, RpcError
from podman_rpc.protocol.framing import LINE_OPTION

_dumps = orjson.dumps
PROTOCOL_VERSION = "1.0"
CANCEL_METHOD = "$/cancelRequest"  # a client's request to cancel one of its requests by id
PROGRESS_METHOD = "$/progress"  # the daemon's notification of a line of progress
_MISSING = object()
_COMMON_ID_TYPES = (int, str)  # checked by exact type first: bool is an int, but not this type
_UNSTRUCTURED = '"params" must be an object (by name) or an array (by position)'


Params = dict[str, Any] | list[Any]
"""By name, or by position (a non-empty list: ``MethodSpec.validate`` maps it onto the
declared order). No params, ``null`` and ``[]`` all arrive as ``{}``."""


@dataclass(slots=True)
class Request:
    """One well-formed call. ``notification`` requests get no reply."""

    method: str
    params: Params
    id: Any
    notification: bool


@dataclass(slots=True)
class BadRequest:
    """An element that could not become a Request; it gets one error reply unless ``silent``.

    ``silent``: it is a valid Request object without an id (a notification) that broke
    a limit; JSON-RPC 2.0 forbids answering a notification, whatever is wrong with it.
    """

    error: RpcError
    id: Any = None
    silent: bool = False


Frame = Request | BadRequest | list[Request | BadRequest]
"""What one line held: one request (or the error it earned), or a batch as a list."""


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def frame_parser(*, max_depth: int = 64, max_batch: int = 100,
                 max_params_bytes: int | None = None) -> Callable[[bytes], Frame]:
    """A :func:`parse_frame` with its limits bound, for the daemon's per-line loop.

    The limits are bound once, and the commonest line (one request with an id and
    no params, as a health check sends) is checked inline, where a general call
    would cost three more Python calls than the check itself. It has exactly the
    keys ``jsonrpc``, ``id`` and ``method``, none of them holding a container, so
    it needs no depth check either. Every other shape goes through
    :func:`_parse_value`, which gives the same answer for this one too (a test pins it).
    """
    loads, decode_error = orjson.loads, orjson.JSONDecodeError

    def parse(line: bytes) -> Frame:
        try:
            value = loads(line)
        except decode_error as exc:
            return _parse_error(exc)
        if type(value) is dict and len(value) == 3:  # the common case, first
            try:
                rid, method, version = value["id"], value["method"], value["jsonrpc"]
            except KeyError:
                pass  # three keys, but not these three
            else:
                if version == "2.0" and type(method) is str and type(rid) in _COMMON_ID_TYPES:
                    return Request(method, {}, rid, False)
        return _parse_value(value, line, max_depth, max_batch, max_params_bytes)

    return parse


def parse_frame(line: bytes, *, max_depth: int = 64, max_batch: int = 100,
                max_params_bytes: int | None = None) -> Frame:
    """Decode a line: a Request, a BadRequest (not JSON, not a request), or a batch (a list)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return _parse_error(exc)
    return _parse_value(value, line, max_depth, max_batch, max_params_bytes)


def _parse_error(exc: orjson.JSONDecodeError) -> BadRequest:
    reason = "nesting too deep" if "recursion" in str(exc) or "depth" in str(exc) else "malformed JSON"
    return BadRequest(ParseError(f"Parse error: {reason}"))


def _parse_value(value: Any, line: bytes, max_depth: int, max_batch: int,
                 max_params_bytes: int | None) -> Frame:
    deep = len(line) > 2 * max_depth  # a shorter line cannot nest deeper than the limit
    if isinstance(value, list):
        if not value:
            return BadRequest(InvalidRequest("Empty batch"))
        if len(value) > max_batch:
            return BadRequest(InvalidRequest(
                f"Batch of {len(value)} exceeds the limit of {max_batch}", {"limit": max_batch}))
        # Each element is judged alone (the batch is one level), so a notification
        # nested too deep stays unanswered and its neighbours are still served.
        return [_too_deep(v, max_depth) if deep and _depth_exceeds(v, max_depth - 1)
                else parse_request(v, max_params_bytes) for v in value]
    if deep and _depth_exceeds(value, max_depth):
        return _too_deep(value, max_depth)
    return parse_request(value, max_params_bytes)


def _too_deep(value: Any, limit: int) -> BadRequest:
    rid = value.get("id") if isinstance(value, dict) else None  # echo it when we can
    return BadRequest(InvalidRequest(f"JSON nested deeper than {limit} levels", {"limit": limit}),
                      rid if _valid_id(rid) else None, _is_notification(value))


def frame_items(frame: Frame) -> list[Request | BadRequest]:
    """The requests a frame holds, in order: a single request is a list of one."""
    return frame if isinstance(frame, list) else [frame]


def _is_notification(value: Any) -> bool:
    """A valid Request object without an id: never answered, even when refused."""
    return (isinstance(value, dict) and "id" not in value and value.get("jsonrpc") == "2.0"
            and isinstance(value.get("method"), str)
            and isinstance(value.get("params"), (dict, list, type(None))))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def parse_request(value: Any, max_params_bytes: int | None = None) -> Request | BadRequest:
    """Check one request object against JSON-RPC 2.0."""
    if not isinstance(value, dict):
        return BadRequest(InvalidRequest("Request must be a JSON object"))
    rid = value.get("id", _MISSING)
    if rid is not _MISSING and type(rid) not in _COMMON_ID_TYPES and not _valid_id(rid):
        return BadRequest(InvalidRequest("id must be a string, a number or null"))
    reply_id = None if rid is _MISSING else rid
    if value.get("jsonrpc") != "2.0":
        return BadRequest(InvalidRequest('"jsonrpc" must be exactly "2.0"'), reply_id)
    method = value.get("method")
    if not isinstance(method, str):
        return BadRequest(InvalidRequest('"method" must be a string'), reply_id)
    params = value.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        return BadRequest(InvalidRequest(_UNSTRUCTURED), reply_id)  # not a valid Request object
    if not params:
        params = {}  # absent, null, {} and [] all mean no params
    elif max_params_bytes is not None and len(orjson.dumps(params)) > max_params_bytes:
        return BadRequest(InvalidParams("params", f"larger than {max_params_bytes} bytes"),
                          reply_id, rid is _MISSING)
    return Request(method, params, reply_id, rid is _MISSING)


def result_reply(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def result_line(request_id: Any, result: Any) -> bytes:
    """``encode(result_reply(...))`` in one call: the daemon-local path's per-line cost."""
    return _dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, option=LINE_OPTION)


def error_reply(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_wire()}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}
