"""Property tests of the protocol layer: whatever bytes arrive, each frame gets one reply.

Pure parts (LineDecoder, parse_frame, every method's ``validate``) are fuzzed
directly. The whole per-connection pipeline (daemon.rpc.transport.Connection with
the real Dispatcher) is fuzzed in-process over a recording transport, with
trivial handlers: this tests framing and replies, not Podman, which the
live-daemon fuzz test (test_fuzz_daemon.py) covers.
"""

from __future__ import annotations

import asyncio
import typing
from collections import Counter
from pathlib import Path
from typing import Any, get_args, get_origin

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from podman_rpc.daemon.config import Config
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.rpc.context import DaemonState
from podman_rpc.daemon.rpc.dispatch import Dispatcher
from podman_rpc.daemon.rpc.transport import Connection
from podman_rpc.protocol.envelope import BadRequest, Request, error_reply, frame_items, parse_frame
from podman_rpc.protocol.errors import ERRORS_BY_CODE, InvalidParams
from podman_rpc.protocol.framing import OVERSIZE, LineDecoder, encode
from podman_rpc.protocol.registry import METHODS, Lane
from podman_rpc.protocol.schema import unwrap
from tests.rig.shapes import nested
from tests.rig.transport import RecordingTransport

MAX_LINE, MAX_DEPTH, MAX_BATCH, MAX_PARAMS = 512, 8, 4, 256
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)
method_names = st.sampled_from([*METHODS, "$/cancelRequest", "nope", ""]) | st.text(max_size=10)
request_ids = st.one_of(st.none(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.text(max_size=10),
                        st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                        st.lists(st.integers(-5, 5), max_size=2))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Request-shaped objects, each member sometimes missing or of the wrong type."""
    out: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        out["jsonrpc"] = draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2.0, None]))
    if draw(st.integers(0, 9)):
        out["method"] = draw(method_names | json_values)
    if draw(st.integers(0, 3)):
        out["id"] = draw(request_ids)
    if draw(st.booleans()):
        out["params"] = draw(json_values | st.dictionaries(st.sampled_from(
            ["id", "name", "all", "timeout", "image", "format", "tail", "command"]),
            json_values, max_size=3))
    return out


lines = st.one_of(
    st.binary(max_size=MAX_LINE + 64).map(lambda b: b.replace(b"\n", b"")),
    json_values.map(orjson.dumps),
    requests().map(orjson.dumps),
    st.lists(requests() | json_values, min_size=0, max_size=MAX_BATCH + 2).map(orjson.dumps),
    st.integers(1, 40).map(lambda d: orjson.dumps({"jsonrpc": "2.0", "id": d, "method": "ping",
                                                   "params": {"x": nested(d)}})),
    requests().map(lambda r: orjson.dumps(r)[: max(1, len(orjson.dumps(r)) // 2)]),  # truncated
    st.tuples(st.sampled_from(sorted(METHODS)), st.integers(0, 3), st.booleans()).map(
        lambda t: orjson.dumps({"jsonrpc": "2.0", "method": t[0], "id": t[1]}) + b"\n"
        + orjson.dumps({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": t[1]},
                        **({"id": "c"} if t[2] else {})})),  # a call and its cancel, one read
)


@pytest.fixture(autouse=True, scope="module")
def quiet_logs() -> Any:
    """The in-process connection logs each request; thousands of lines help nobody here."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(50))
    yield
    structlog.reset_defaults()


# --- pure pieces -------------------------------------------------------------------------

@FUZZ
@given(st.lists(st.binary(max_size=200)), st.integers(1, 64))
def test_decoder_yields_each_complete_line_or_one_oversize(chunks: list[bytes], limit: int) -> None:
    decoder = LineDecoder(limit)
    got: list[Any] = []
    for chunk in chunks:
        got += decoder.feed(chunk)
        assert len(decoder._buffer) <= limit  # never holds more than one line's worth
    data = b"".join(chunks)
    *complete, tail = data.split(b"\n")
    expected: list[Any] = [line if len(line) <= limit else OVERSIZE for line in complete]
    if len(tail) > limit:
        expected.append(OVERSIZE)
    assert got == expected
    assert decoder.has_partial == bool(tail)


def _well_formed(reply: Any) -> None:
    assert isinstance(reply, dict) and reply["jsonrpc"] == "2.0" and "id" in reply
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        error = reply["error"]
        assert error["code"] in ERRORS_BY_CODE and isinstance(error["message"], str)
        assert error["data"]["kind"] and "Traceback" not in error["message"]


@FUZZ
@given(lines)
def test_parse_frame_never_raises_and_every_item_can_be_answered(line: bytes) -> None:
    frame = parse_frame(line, max_depth=MAX_DEPTH, max_batch=MAX_BATCH,
                         max_params_bytes=MAX_PARAMS)
    items = frame_items(frame)
    assert 1 <= len(items) <= MAX_BATCH
    for item in items:
        assert isinstance(item, (Request, BadRequest))
        if isinstance(item, BadRequest):
            reply = orjson.loads(encode(error_reply(item.id, item.error)))
            _well_formed(reply)
            if item.silent:  # a valid Request object without an id: never answered
                assert item.id is None and len(items) >= 1
        else:
            assert len(orjson.dumps(item.params)) <= MAX_PARAMS
            assert isinstance(item.method, str)
            assert isinstance(item.params, dict) or (isinstance(item.params, list) and item.params)


# --- every field of every method, with a value of the wrong type -----------------------------

def _json_kinds(annotation: Any) -> set[str]:
    """The JSON kinds an annotation accepts (int is also a number)."""
    tp, _ = unwrap(annotation)
    if tp is Any:
        return {"null", "bool", "int", "float", "str", "list", "dict"}
    if get_origin(tp) in (typing.Union, __import__("types").UnionType):
        return set().union(*(_json_kinds(a) for a in get_args(tp)))
    if get_origin(tp) is typing.Literal:
        return {type(a).__name__ for a in get_args(tp)}
    if tp is type(None):
        return {"null"}
    if tp is float:
        return {"int", "float"}
    return {{list: "list", dict: "dict"}.get(get_origin(tp), getattr(tp, "__name__", ""))}


KIND_VALUES = {"null": st.none(), "bool": st.booleans(), "int": st.integers(-10 ** 6, 10 ** 6),
               "float": st.floats(allow_nan=False, allow_infinity=False).filter(
                   lambda f: not f.is_integer()),
               "str": st.text(max_size=10), "list": st.lists(json_scalars, max_size=3),
               "dict": st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)}
FIELDS = [(spec.name, p) for spec in METHODS.values() for p in spec.params]


@pytest.mark.parametrize("method, param", FIELDS, ids=[f"{m}.{p.name}" for m, p in FIELDS])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_wrong_type_in_every_field_names_that_field(method: str, param: Any,
                                                    data: st.DataObject) -> None:
    wrong = sorted(set(KIND_VALUES) - _json_kinds(param.annotation))
    if not wrong:
        return  # Any accepts every JSON value
    value = data.draw(st.sampled_from(wrong).flatmap(KIND_VALUES.__getitem__))
    spec = METHODS[method]
    raw = {p.name: _valid_example(p) for p in spec.params if p.required}
    raw[param.name] = value
    try:
        spec.validate(raw)
    except InvalidParams as error:
        assert error.data["field"] == param.name, (method, param.name, value, error.data)
    else:
        raise AssertionError(f"{method}.{param.name} accepted {value!r}")


def _valid_example(param: Any) -> Any:
    kinds = _json_kinds(param.annotation)
    return "x" if "str" in kinds else 1 if "int" in kinds else [] if "list" in kinds else None


@FUZZ
@given(st.sampled_from(sorted(METHODS)), st.dictionaries(st.text(max_size=12), json_values,
                                                         max_size=5))
def test_validate_only_ever_raises_invalid_params(method: str, raw: dict[str, Any]) -> None:
    try:
        METHODS[method].validate(raw)
    except InvalidParams as error:
        assert isinstance(error.data["field"], str)


# --- the whole connection pipeline, in-process ---------------------------------------------

async def _echo(ctx: Any, params: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"method": ctx.spec.name}


def _expected_replies(data: bytes) -> tuple[int, Counter[str]]:
    """How many reply lines the model predicts, and the ids of single-request replies."""
    count, ids = 0, Counter()
    *complete, tail = data.split(b"\n")
    for line in complete:
        if len(line) > MAX_LINE:
            count, ids["None"] = count + 1, ids["None"] + 1
            continue
        if not line.strip():
            continue
        frame = parse_frame(line, max_depth=MAX_DEPTH, max_batch=MAX_BATCH,
                            max_params_bytes=MAX_PARAMS)
        answered = [i for i in frame_items(frame)
                    if not (i.notification if isinstance(i, Request) else i.silent)]
        if isinstance(frame, list):
            count += 1 if answered else 0
        elif answered:
            count += 1
            ids[repr(answered[0].id)] += 1
    if len(tail) > MAX_LINE:
        count, ids["None"] = count + 1, ids["None"] + 1
    return count, ids


def _local_echo(state: Any, params: Any) -> dict[str, Any]:
    """A daemon-local handler: a plain function, answered on the transport's fast path."""
    return {"method": type(params).rpc_spec.name}


async def _feed(chunks: list[bytes], max_in_flight: int = 64, handler: Any = _echo,
                local: bool = False) -> bytes:
    config = Config(max_line_bytes=MAX_LINE, max_json_depth=MAX_DEPTH, max_batch=MAX_BATCH,
                    max_params_bytes=MAX_PARAMS, partial_line_timeout=3600,
                    max_in_flight_per_connection=max_in_flight)
    pool = PodmanPool(Path("/nonexistent/podman.sock"), 1, 1.0)
    state = DaemonState(config, pool)
    handlers = {name: _local_echo if local and spec.lane is Lane.LOCAL else handler
                for name, spec in METHODS.items()}
    connection = Connection(state, Dispatcher(state, handlers))
    transport = RecordingTransport(connection)
    connection.connection_made(transport)
    try:
        for chunk in chunks:
            connection.data_received(chunk)
            await asyncio.sleep(0)
        for _ in range(1000):
            if connection.in_flight_count == 0 and not connection.session.backlog:
                break
            await asyncio.sleep(0)
        assert connection.in_flight_count == 0 and not connection.session.backlog
    finally:
        transport.close()
        await asyncio.sleep(0)
        pool.close()
    return bytes(transport.out)


@FUZZ
@given(st.lists(lines, max_size=12), st.lists(st.integers(0, 4000), max_size=6),
       st.booleans(), st.sampled_from([1, 2, 64]), st.booleans())
def test_every_frame_gets_exactly_one_well_formed_reply(frames: list[bytes], cuts: list[int],
                                                        finish: bool, max_in_flight: int,
                                                        local: bool) -> None:
    """``local``: daemon-local methods take the synchronous fast path, mixed with tasks."""
    data = b"\n".join(frames) + (b"\n" if finish else b"")
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    out = asyncio.run(_feed(chunks, max_in_flight, local=local))  # 1, 2: lines queue up
    replies = [orjson.loads(line) for line in out.split(b"\n")[:-1]]
    assert out == b"" or out.endswith(b"\n")
    expected, ids = _expected_replies(data)
    assert len(replies) == expected, (data[:300], replies[:5])
    single: Counter[str] = Counter()
    for reply in replies:
        if isinstance(reply, list):
            assert reply, "an empty batch reply is never sent"
            for item in reply:
                _well_formed(item)
        else:
            _well_formed(reply)
            single[repr(reply["id"])] += 1
    assert single == ids


def test_one_read_of_many_requests_starts_only_max_in_flight_at_once() -> None:
    running, peak = 0, 0

    async def counting(ctx: Any, params: Any) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1
        return {}

    data = b"".join(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "status"}) + b"\n"
                    for i in range(200))
    out = asyncio.run(_feed([data], max_in_flight=3, handler=counting))
    assert sorted(orjson.loads(line)["id"] for line in out.splitlines()) == list(range(200))
    assert peak == 3


def test_a_request_cancelled_in_the_same_read_still_gets_its_reply() -> None:
    out = asyncio.run(_feed([b'{"jsonrpc":"2.0","id":5,"method":"status"}\n'
                             b'{"jsonrpc":"2.0","id":6,"method":"$/cancelRequest",'
                             b'"params":{"id":5}}\n']))
    replies = {r["id"]: r for r in map(orjson.loads, out.splitlines())}
    assert replies[6]["result"] == {"cancelled": 1}
    assert replies[5]["error"]["data"]["kind"] == "RequestCancelled"


notifications = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": method_names},
    optional={"params": st.none() | st.lists(json_values, max_size=4)
              | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
              | st.integers(1, 40).map(lambda d: {"x": nested(d)})
              | st.just(["x" * (MAX_PARAMS // 2 + 1)] * 2)})


@FUZZ
@given(st.lists(notifications, min_size=1, max_size=MAX_BATCH), st.booleans(), st.booleans())
def test_a_notification_is_never_answered_alone_or_in_a_batch(items: list[dict[str, Any]],
                                                               batch: bool, local: bool) -> None:
    """Whatever is wrong with it (unknown method, bad params, over a limit): JSON-RPC 2.0 §4.1.

    A line over ``max_line_bytes`` is discarded unread, so nobody can tell it held a
    notification: that one limit is answered (id null) and is left out here.
    """
    lines = [orjson.dumps(items)] if batch else [orjson.dumps(item) for item in items]
    assume(all(len(line) <= MAX_LINE for line in lines))
    data = b"\n".join(lines) + b"\n"
    assert asyncio.run(_feed([data], local=local)) == b""
