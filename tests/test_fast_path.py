"""The daemon-local fast path and write corking, driven in process (no Podman, no socket).

Daemon-local methods (``status``, ``rpc.discover``) are plain functions answered
in the read that brought them; replies made during one read leave in one write.
These tests pin the behaviour the benchmarks rely on, without timing anything.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from podman_rpc.daemon.config import Config
from podman_rpc.daemon.guard.access import OpenAccess
from podman_rpc.daemon.handlers import implements, load_handlers
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.rpc import transport as transport_module
from podman_rpc.daemon.rpc.context import DaemonState
from podman_rpc.daemon.rpc.dispatch import Dispatcher
from podman_rpc.daemon.rpc.session import SLICE_LINES
from podman_rpc.daemon.rpc.transport import Connection
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.envelope import Request, frame_parser, parse_frame
from podman_rpc.protocol.errors import PolicyDenied
from podman_rpc.protocol.registry import METHODS, Lane
from tests.rig.transport import RecordingTransport

NOWHERE = Path("/nonexistent/podman.sock")


def line(method: str, request_id: Any = None, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return orjson.dumps(message) + b"\n"


def _offline_state(log_level: str = "info", access: OpenAccess | None = None) -> DaemonState:
    """A daemon's state with no Podman behind it: enough for daemon-local methods."""
    return DaemonState(Config(socket_path=Path("/nonexistent/rpc.sock"), podman_socket=NOWHERE,
                              log_level=log_level), PodmanPool(NOWHERE, 1, 1.0), access)


async def _drive(chunks: list[bytes], handlers: dict[str, Any] | None = None,
                 log_level: str = "info") -> tuple[RecordingTransport, DaemonState]:
    state = _offline_state(log_level)
    connection = Connection(state, Dispatcher(state, handlers or load_handlers()))
    transport = RecordingTransport(connection)
    connection.connection_made(transport)
    try:
        for chunk in chunks:
            connection.data_received(chunk)
        for _ in range(100):  # let any task-path request finish
            if connection.in_flight_count == 0 and not connection.session.backlog:
                break
            await asyncio.sleep(0)
    finally:
        transport.close()
        await asyncio.sleep(0)
        state.pool.close()
    return transport, state


def replies(transport: RecordingTransport) -> list[Any]:
    return [orjson.loads(raw) for raw in bytes(transport.out).splitlines()]


def test_handlers_of_local_methods_are_plain_functions_and_others_coroutines() -> None:
    handlers = load_handlers()
    for name, spec in METHODS.items():
        assert asyncio.iscoroutinefunction(handlers[name]) == (spec.lane is not Lane.LOCAL), name


def test_binding_a_handler_of_the_wrong_kind_is_refused() -> None:
    async def async_status(ctx: Any, params: Any) -> None:
        return None

    def sync_ping(state: Any, params: Any) -> None:
        return None

    with pytest.raises(TypeError, match="plain function"):
        implements(m.Status)(async_status)
    with pytest.raises(TypeError, match="coroutine"):
        implements(m.Ping)(sync_ping)


def test_one_read_of_local_requests_and_errors_is_answered_in_order_with_one_write() -> None:
    count = 50  # replies well under CORK_BYTES in all, so they leave in one write
    burst = (b"".join(line("status", i) for i in range(count)) + b"not json\n"
             + line("no.such.method", "x") + line("status", "last") + line("status"))
    transport, state = asyncio.run(_drive([burst]))
    got = replies(transport)
    assert len(transport.out) < transport_module.CORK_BYTES
    assert transport.writes == 1
    assert [r["id"] for r in got] == [*range(count), None, "x", "last"]  # notification: no reply
    assert got[count]["error"]["code"] == -32700 and got[count + 1]["error"]["code"] == -32601
    assert got[count - 1]["result"]["requests"]["served"]["status"] == count  # live, itself too
    assert state.counters.served["status"] == count + 2


def test_corked_replies_are_flushed_in_pieces_so_flow_control_sees_them() -> None:
    count = 400  # a status reply is several hundred bytes: well over CORK_BYTES in all
    transport, _ = asyncio.run(_drive([b"".join(line("status", i) for i in range(count))]))
    got = replies(transport)
    assert [r["id"] for r in got] == list(range(count))
    assert len(transport.out) > transport_module.CORK_BYTES
    # within a slice, every flush but the last holds at least CORK_BYTES: few writes,
    # yet more than one; each slice of lines ends with its own flush
    slices = -(-count // SLICE_LINES)
    assert slices == 2
    assert 2 <= transport.writes <= len(transport.out) // transport_module.CORK_BYTES + slices


def test_rpc_discover_on_the_fast_path_is_the_registry_document() -> None:
    transport, _ = asyncio.run(_drive([line("rpc.discover", 1)]))
    (reply,) = replies(transport)
    assert [entry["name"] for entry in reply["result"]["methods"]] == list(METHODS)


def test_a_crashing_local_handler_answers_internal_error_and_the_connection_goes_on() -> None:
    def broken(state: Any, params: Any) -> Any:
        raise RuntimeError("secret detail that must not reach the wire")

    handlers = {**load_handlers(), "status": broken}
    transport, state = asyncio.run(_drive([line("status", 1) + line("rpc.discover", 2)], handlers))
    first, second = replies(transport)
    assert first["error"]["code"] == -32603 and "secret" not in orjson.dumps(first).decode()
    assert "result" in second
    assert state.counters.failed["status"] == 1


def test_a_local_method_with_bad_params_is_refused_like_any_other() -> None:
    transport, _ = asyncio.run(_drive([line("status", 1, {"bogus": True})]))
    (reply,) = replies(transport)
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "bogus"


def test_local_successes_log_at_debug_only_and_failures_at_info() -> None:
    chunk = line("status", 1) + line("status", 2, {"bogus": 1})
    with capture_logs() as quiet:
        asyncio.run(_drive([chunk], log_level="info"))
    requests = [e for e in quiet if e["event"] == "request"]
    assert [(e["id"], e["log_level"]) for e in requests] == [(2, "info")]
    with capture_logs() as chatty:
        asyncio.run(_drive([chunk], log_level="debug"))
    requests = [e for e in chatty if e["event"] == "request"]
    assert [(e["id"], e["log_level"], e["outcome"]) for e in requests] == [
        (1, "debug", "ok"), (2, "info", "InvalidParams")]


def test_local_methods_in_a_batch_are_answered_as_they_were_when_called() -> None:
    batch = orjson.dumps([{"jsonrpc": "2.0", "id": 1, "method": "status"},
                          {"jsonrpc": "2.0", "id": 2, "method": "rpc.discover"},
                          {"jsonrpc": "2.0", "id": 3, "method": "status"},
                          {"jsonrpc": "2.0", "method": "status"},
                          {"jsonrpc": "2.0", "id": 4, "method": "no.such.method"}]) + b"\n"
    transport, state = asyncio.run(_drive([batch]))
    (reply,) = replies(transport)
    by_id = {item["id"]: item for item in reply}
    assert sorted(by_id) == [1, 2, 3, 4]
    # frozen when answered: the first status does not see the calls after it
    assert by_id[1]["result"]["requests"]["served"]["status"] == 1
    assert by_id[3]["result"]["requests"]["served"]["status"] == 2
    assert by_id[4]["error"]["code"] == -32601
    assert state.counters.served["status"] == 3


SHAPES = [
    {"jsonrpc": "2.0", "id": 1, "method": "status"},
    {"jsonrpc": "2.0", "id": "a", "method": "status", "params": None},
    {"jsonrpc": "2.0", "id": 2, "method": "status", "params": {}},
    {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"x": 1}},
    {"jsonrpc": "2.0", "method": "status"},
    {"jsonrpc": "2.0", "id": None, "method": "status"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "status"},
    {"jsonrpc": "2.0", "id": True, "method": "status"},
    {"jsonrpc": "2.0", "id": [1], "method": "status"},
    {"jsonrpc": "1.0", "id": 4, "method": "status"},
    {"id": 5, "method": "status"},
    {"jsonrpc": "2.0", "id": 6, "method": 7},
    {"jsonrpc": "2.0", "id": 7, "method": "status", "params": [1]},
    {"jsonrpc": "2.0", "id": 13, "method": "status", "params": []},  # as jayson sends
    {"jsonrpc": "2.0", "id": 14, "method": "ping", "params": [1, 2]},
    {"jsonrpc": "2.0", "id": 15, "method": "status", "params": "bar"},
    {"jsonrpc": "2.0", "method": "status", "params": "bar"},
    {"jsonrpc": "2.0", "method": "status", "params": []},
    {"jsonrpc": "2.0", "method": "run", "params": ["x" * 80]},  # a notification over the limit
    {"jsonrpc": "2.0", "id": 16, "method": "run", "params": ["x" * 80]},
    {"jsonrpc": "2.0", "id": 8, "method": "status", "x": [[[[[[[[[[[1]]]]]]]]]]]},
    {"jsonrpc": "2.0", "id": 10, "method": "status", "x": 1},  # a fourth key
    {"jsonrpc": "2.0", "id": 11, "params": {}},  # three keys, but not the plain three
    {"jsonrpc": "2.0", "method": "status", "x": [[[[[[[[[[[1]]]]]]]]]]]},
    {"id": 12, "method": "status", "jsonrpc": 2.0},
    {"jsonrpc": "2.0", "id": False, "method": "status"},
    {"jsonrpc": "2.0", "id": {"a": [[[[[[[[[1]]]]]]]]]}, "method": "status"},
    [{"jsonrpc": "2.0", "id": 9, "method": "status"}],
    [],
    7,
]


def _outcome(frame: Any) -> Any:
    if isinstance(frame, list):
        return [_outcome(item) for item in frame]
    if isinstance(frame, Request):
        return ("request", frame.method, frame.params, frame.id, type(frame.id),
                frame.notification)
    return ("bad", frame.error.code, frame.error.message, frame.error.data, frame.id,
            frame.silent)


@pytest.mark.parametrize("max_depth", [64, 8])  # 8: every line is long enough for a depth check
@pytest.mark.parametrize("value", SHAPES, ids=lambda v: orjson.dumps(v).decode()[:60])
def test_the_daemons_bound_parser_answers_as_parse_frame_does(value: Any, max_depth: int) -> None:
    """frame_parser checks the commonest request inline; every shape must still agree."""
    limits = {"max_depth": max_depth, "max_batch": 4, "max_params_bytes": 64}
    raw = orjson.dumps(value)
    assert _outcome(frame_parser(**limits)(raw)) == _outcome(parse_frame(raw, **limits))
    for broken in (raw[:-1], b"", b"  "):
        assert _outcome(frame_parser(**limits)(broken)) == _outcome(parse_frame(broken, **limits))


def test_status_sees_every_lane_change_through_its_encoded_figures() -> None:
    """The lanes are encoded once per change: each change must reach the next status."""
    state = _offline_state()
    status = load_handlers()["status"]
    no_params = METHODS["status"].validate({})

    def run_lane() -> dict[str, int]:
        return orjson.loads(orjson.dumps(status(state, no_params)))["lanes"]["run"]

    async def hold_slots() -> list[dict[str, int]]:
        lane = state.lanes["run"]
        seen = [run_lane()]
        async with lane.slot():
            seen.append(run_lane())
            async with lane.slot():
                seen.append(run_lane())
            seen.append(run_lane())
        seen.append(run_lane())
        return seen

    try:
        seen = asyncio.run(hold_slots())
    finally:
        state.pool.close()
    assert [s["in_flight"] for s in seen] == [0, 1, 2, 1, 0]
    assert seen[0] == {"in_flight": 0, "queued": 0, "cap": state.config.lane(Lane.RUN).cap,
                       "queue_limit": state.config.lane(Lane.RUN).queue}


def test_status_sees_every_figure_its_owner_changes() -> None:
    """status reads every figure from its owner: a change through the owner shows at once."""
    state = _offline_state()
    call = Dispatcher(state, load_handlers()).entries["status"]
    request = parse_frame(line("status", 1))
    assert isinstance(request, Request)

    def status() -> dict[str, Any]:
        return orjson.loads(call(request, None))["result"]  # type: ignore[no-any-return]

    async def change_each_figure() -> list[dict[str, Any]]:
        seen = [status()]
        first, second = Connection(state, Dispatcher(state, load_handlers())), None
        first.connection_made(RecordingTransport(first))
        second = Connection(state, Dispatcher(state, load_handlers()))
        second.connection_made(RecordingTransport(second))
        seen.append(status())
        first.connection_lost(None)
        state.pool.reachable = True  # as a worker thread records a call Podman answered
        state.pool.version = "4.3.1"  # as the version call and the start record it
        state.container_reaped()
        state.container_reaped()
        seen.append(status())
        state.draining = True
        await asyncio.sleep(0.002)
        seen.append(status())
        second.connection_lost(None)
        return seen

    try:
        before, two_open, changed, draining = asyncio.run(change_each_figure())
    finally:
        state.pool.close()
    assert (before["connections"], two_open["connections"], changed["connections"]) == (0, 2, 1)
    assert before["podman"] == {"socket": str(NOWHERE), "reachable": None, "version": None}
    assert changed["podman"] == {"socket": str(NOWHERE), "reachable": True, "version": "4.3.1"}
    assert (before["containers_reaped"], changed["containers_reaped"]) == (0, 2)
    assert (changed["draining"], draining["draining"]) == (False, True)
    assert draining["uptime_s"] > before["uptime_s"]
    assert draining["requests"]["served"]["status"] == 4  # live: each call counts itself
    assert state.draining and state.pool.version == "4.3.1" and state.pool.reachable


class _DenyingAccess(OpenAccess):
    """Access control that refuses every role check it is asked for, and records it."""

    def __init__(self, role_free: frozenset[str]) -> None:
        self.role_free = role_free
        self.checked: list[str] = []

    def authorize(self, connection: Any, spec: Any) -> None:
        self.checked.append(spec.name)
        raise PolicyDenied("no", {"rule": "role"})


def test_a_local_call_checks_the_role_unless_the_method_is_role_free() -> None:
    request = parse_frame(line("status", 1))
    for role_free, answered in ((frozenset({"status"}), True), (frozenset(), False)):
        access = _DenyingAccess(role_free)
        state = _offline_state(access=access)
        try:
            reply = orjson.loads(Dispatcher(state, load_handlers()).entries["status"](request, None))
        finally:
            state.pool.close()
        if answered:
            assert "result" in reply and access.checked == []
        else:
            assert reply["error"]["code"] == PolicyDenied.code and access.checked == ["status"]
