"""Pure protocol logic: framing, envelope and registry validation (no I/O, no Podman)."""

from __future__ import annotations

import orjson
import pytest

from podman_rpc.protocol.envelope import BadRequest, Request, parse_frame
from podman_rpc.protocol.errors import InvalidParams
from podman_rpc.protocol.framing import OVERSIZE, LineDecoder, encode
from podman_rpc.protocol.registry import METHODS, openrpc_document


def test_decoder_splits_lines_across_chunks() -> None:
    decoder = LineDecoder(100)
    assert decoder.feed(b'{"a"') == []
    assert decoder.has_partial
    assert decoder.feed(b':1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert decoder.feed(b":3}\n") == [b'{"c":3}']
    assert not decoder.has_partial


def test_decoder_reports_oversize_once_and_resyncs() -> None:
    decoder = LineDecoder(10)
    assert decoder.feed(b"x" * 8) == []
    assert decoder.feed(b"y" * 8) == [OVERSIZE]
    assert decoder.feed(b"z" * 50) == []  # still discarding the same line
    assert decoder.feed(b"zz\nok\n") == [b"ok"]


def test_decoder_oversize_within_one_chunk() -> None:
    decoder = LineDecoder(4)
    assert decoder.feed(b"12345678\nabc\n") == [OVERSIZE, b"abc"]


def test_encode_never_emits_raw_newline() -> None:
    line = encode({"s": "a\nb\r\n", "u": "\u2028"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"s": "a\nb\r\n", "u": "\u2028"}


@pytest.mark.parametrize("line, message", [
    (b"{", "Parse error: malformed JSON"),
    (b"\xff\xfe", "Parse error: malformed JSON"),
])
def test_parse_errors(line: bytes, message: str) -> None:
    item = parse_frame(line)
    assert isinstance(item, BadRequest) and item.error.code == -32700
    assert item.error.message == message and item.id is None


@pytest.mark.parametrize("value, code, rid", [
    ([], -32600, None),
    (1, -32600, None),
    ({"jsonrpc": "1.0", "id": 4, "method": "ping"}, -32600, 4),
    ({"id": 4, "method": "ping"}, -32600, 4),
    ({"jsonrpc": "2.0", "id": 4, "method": 7}, -32600, 4),
    ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}, -32600, None),
    ({"jsonrpc": "2.0", "id": True, "method": "ping"}, -32600, None),
    ({"jsonrpc": "2.0", "id": 5, "method": "ping", "params": "bar"}, -32600, 5),
    ({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": 0}, -32600, 6),
    ({"jsonrpc": "2.0", "id": 7, "method": "ping", "params": False}, -32600, 7),
    ({"jsonrpc": "2.0", "method": "ping", "params": "bar"}, -32600, None),  # not a Request object
])
def test_invalid_requests(value: object, code: int, rid: object) -> None:
    item = parse_frame(orjson.dumps(value))
    assert isinstance(item, BadRequest)
    assert (item.error.code, item.id) == (code, rid)


@pytest.mark.parametrize("params, expected", [
    (None, {}), ({}, {}), ([], {}), ([1], [1]), ({"timeout": 1}, {"timeout": 1})])
def test_params_by_name_or_position_and_empty_means_none(params: object, expected: object) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    if params is not None:
        request["params"] = params
    item = parse_frame(orjson.dumps(request))
    assert isinstance(item, Request) and item.params == expected


def test_a_notification_that_breaks_a_limit_is_refused_silently() -> None:
    """Only a valid Request object without an id is silent; anything else is answered."""
    big = orjson.dumps({"jsonrpc": "2.0", "method": "run", "params": ["x" * 2000]})
    deep = orjson.dumps({"jsonrpc": "2.0", "method": "ping", "params": {"a": [[[[[[1]]]]]]}})
    for line, limits in ((big, {"max_params_bytes": 1000}), (deep, {"max_depth": 4})):
        item = parse_frame(line, **limits)
        assert isinstance(item, BadRequest) and item.silent, line
        answered = parse_frame(line.replace(b'"method"', b'"id":1,"method"'), **limits)
        assert isinstance(answered, BadRequest) and not answered.silent and answered.id == 1
    deep_invalid = orjson.dumps({"jsonrpc": "1.0", "method": "ping", "x": [[[[[[1]]]]]]})
    assert not parse_frame(deep_invalid, max_depth=4).silent


def test_notification_and_ids() -> None:
    frame = parse_frame(b'[{"jsonrpc":"2.0","method":"ping"},'
                        b'{"jsonrpc":"2.0","method":"ping","id":null},'
                        b'{"jsonrpc":"2.0","method":"ping","id":"x"},'
                        b'{"jsonrpc":"2.0","method":"ping","id":1.5}]')
    assert isinstance(frame, list)
    kinds = [(i.notification, i.id) for i in frame if isinstance(i, Request)]
    assert kinds == [(True, None), (False, None), (False, "x"), (False, 1.5)]


def test_depth_and_batch_limits() -> None:
    deep = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + b"[" * 100 + b"]" * 100 + b"}}"
    item = parse_frame(deep, max_depth=20)
    assert isinstance(item, BadRequest) and item.error.code == -32600
    batch = orjson.dumps([{"jsonrpc": "2.0", "method": "ping"}] * 11)
    item = parse_frame(batch, max_batch=10)
    assert isinstance(item, BadRequest) and item.error.data["limit"] == 10


def test_params_size_limit() -> None:
    line = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "run",
                         "params": {"image": "x" * 2000}})
    item = parse_frame(line, max_params_bytes=1000)
    assert isinstance(item, BadRequest) and item.error.code == -32602


def test_registry_validates_types_defaults_and_unknowns() -> None:
    run = METHODS["run"]
    params = run.validate({"image": "img", "command": ["sh", "-c", "true"], "cpus": 1})
    assert params.cpus == 1.0 and params.memory == "20m" and params.network_mode == "none"
    with pytest.raises(InvalidParams) as err:
        run.validate({"image": "img", "bogus": 1})
    assert err.value.data["field"] == "bogus"
    with pytest.raises(InvalidParams) as err:
        run.validate({})
    assert err.value.data == {"kind": "InvalidParams", "field": "image", "reason": "required"}
    with pytest.raises(InvalidParams) as err:
        run.validate({"image": "img", "env": ["A=1", 2]})
    assert err.value.data["field"] == "env[1]"
    with pytest.raises(InvalidParams):
        run.validate({"image": "img", "detach": 1})
    with pytest.raises(InvalidParams) as err:
        run.validate({"image": "img", "timeout": -1})
    assert "must be >=" in err.value.data["reason"]


def test_params_by_position_follow_the_declared_order() -> None:
    run, ping, status, exists = (METHODS[n] for n in ("run", "ping", "status", "exists"))
    params = run.validate(["img", "job", None, ["true"]])
    assert (params.image, params.name, params.command) == ("img", "job", ["true"])
    assert ping.validate([2]).timeout == 2 and status.validate([]) == status.validate({})
    with pytest.raises(InvalidParams) as err:
        ping.validate([1, 2])
    assert err.value.data["field"] == "params[1]" and "timeout" in err.value.data["reason"]
    with pytest.raises(InvalidParams) as err:
        status.validate([1])
    assert err.value.data == {"kind": "InvalidParams", "field": "params[0]",
                              "reason": "unexpected; status takes none"}
    with pytest.raises(InvalidParams) as err:
        exists.validate([])
    assert err.value.data["field"] == "name" and err.value.data["reason"] == "required"
    with pytest.raises(InvalidParams) as err:
        exists.validate([7])
    assert err.value.data["field"] == "name"


def test_every_method_declares_its_required_params_first() -> None:
    """So a call by position can stop after the required ones."""
    for spec in METHODS.values():
        flags = [p.required for p in spec.params]
        assert flags == sorted(flags, reverse=True), spec.name


def test_deadlines_follow_the_declaration() -> None:
    ping, run = METHODS["ping"], METHODS["run"]
    assert ping.deadline(ping.validate({}), allowance=10, maximum=300) == 10
    assert ping.deadline(ping.validate({"timeout": 2}), allowance=10, maximum=300) == 2
    assert ping.deadline(ping.validate({"timeout": 99}), allowance=10, maximum=300) == 10
    assert run.deadline(run.validate({"image": "i", "timeout": 3}), allowance=10,
                        maximum=300) == 13
    assert run.deadline(run.validate({"image": "i", "timeout": 3000}), allowance=10,
                        maximum=300) == 300


def test_openrpc_document_lists_every_method_and_error() -> None:
    doc = openrpc_document("test")
    names = [m["name"] for m in doc["methods"]]
    assert names == list(METHODS)
    run = next(m for m in doc["methods"] if m["name"] == "run")
    params = {p["name"]: p for p in run["params"]}
    assert params["image"]["required"] is True
    assert params["memory"]["schema"] == {"type": "string", "default": "20m"}
    assert run["result"]["schema"]["properties"]["exit_code"]
    codes = {e["code"] for e in doc["components"]["errors"]}
    assert {-32700, -32600, -32601, -32602, -32603, -32000, -32800} <= codes
    assert {m["paramStructure"] for m in doc["methods"]} == {"either"}
    orjson.dumps(doc)  # serialisable


@pytest.mark.parametrize("method, raw, field, reason", [
    ("ping", {"timeout": -1}, "timeout", "must be >= 0.001"),
    ("logs", {"name": "x", "tail": -5}, "tail", "must be >= 0"),
    ("run", {"image": "i", "entrypoint": [1]}, "entrypoint[0]", "expected string"),
    ("info", {"format": 7}, "format", "expected string or null"),
])
def test_a_value_or_null_param_says_what_was_wrong(method: str, raw: dict[str, object],
                                                   field: str, reason: str) -> None:
    """A number out of range is not "expected number or null" (issue 19)."""
    with pytest.raises(InvalidParams) as err:
        METHODS[method].validate(raw)
    assert (err.value.data["field"], err.value.data["reason"]) == (field, reason)
