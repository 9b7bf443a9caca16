"""The daemon as JSON-RPC 2.0 client libraries we did not write see it (issue 19).

Requests are built by ``jsonrpcclient`` (by name and by position, as any
caller would) and ``ajsonrpc`` (``params: []``, as jayson sends for a call
without arguments). Every line the daemon writes back is checked by
``ajsonrpc``'s strict Response object and read with ``jsonrpcclient.parse``;
each reply's id must be the one its request carried.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import jsonrpcclient
import pytest
from ajsonrpc.core import JSONRPC20Request, JSONRPC20Response, JSONRPC20ResponseIdWarning

from tests.rig.daemon import DaemonProcess, RawConnection
from tests.test_transcripts import FILES, load

pytestmark = pytest.mark.podman


def validated(body: Any) -> Any:
    """``body`` (a reply or a batch reply) as ajsonrpc and jsonrpcclient accept it."""
    for item in body if isinstance(body, list) else [body]:
        assert set(item) <= {"jsonrpc", "id", "result", "error"}, item  # nothing extra
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JSONRPC20ResponseIdWarning)  # float ids
            JSONRPC20Response(result=0).body = item  # the setter validates, or raises
    parsed = jsonrpcclient.parse(body)
    return list(parsed) if isinstance(body, list) else parsed


def exchange(conn: RawConnection, request: str | dict[str, Any]) -> Any:
    """Send one request (JSON text or a body), read its validated reply."""
    conn.send_bytes((request if isinstance(request, str) else json.dumps(request)).encode() + b"\n")
    return validated(json.loads(conn.read_line()))


def test_calls_by_name_by_position_and_with_empty_params(conn: RawConnection,
                                                         busybox: str) -> None:
    cases = [
        (jsonrpcclient.request_json("ping", id=1), "Pong"),
        (JSONRPC20Request("ping", params=[], id=2).body, "Pong"),  # as jayson sends it
        (JSONRPC20Request("status", params={}, id=3).body, None),
        (jsonrpcclient.request_json("exists", params=(busybox,), id=4), True),
        (jsonrpcclient.request_json("exists", params={"name": busybox}, id="5"), True),
        (jsonrpcclient.request_json("exists", params=("localhost/never-built:x", 5), id=6), False),
        (jsonrpcclient.request_json("inspect", params=(busybox,), id=7), None),
    ]
    for request, expected in cases:
        reply = exchange(conn, request)
        sent_id = (json.loads(request) if isinstance(request, str) else request)["id"]
        assert isinstance(reply, jsonrpcclient.Ok), (request, reply)
        assert reply.id == sent_id and type(reply.id) is type(sent_id)
        if expected is not None:
            assert reply.result == expected


def test_a_run_by_position(conn: RawConnection, busybox: str) -> None:
    """``run``'s params by position, in the order ``rpc.discover`` lists them."""
    methods = exchange(conn, jsonrpcclient.request_json("rpc.discover", id=1)).result["methods"]
    declared = next(m for m in methods if m["name"] == "run")["params"]
    names = [p["name"] for p in declared]
    values = {p["name"]: p["schema"].get("default") for p in declared}
    values |= {"image": busybox, "command": ["echo", "by position"], "timeout": 20}
    positional = tuple(values[name] for name in names[:names.index("timeout") + 1])
    reply = exchange(conn, jsonrpcclient.request_json("run", params=positional, id=2))
    assert isinstance(reply, jsonrpcclient.Ok), reply
    assert reply.result["stdout"] == "by position\n" and reply.result["exit_code"] == 0


def test_every_method_is_declared_callable_either_way(conn: RawConnection) -> None:
    methods = exchange(conn, jsonrpcclient.request_json("rpc.discover", id=1)).result["methods"]
    assert methods and {m["paramStructure"] for m in methods} == {"either"}


@pytest.mark.parametrize("request_line, code, field", [
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":[1,2]}', -32602, "params[1]"),
    ('{"jsonrpc":"2.0","id":1,"method":"status","params":[null]}', -32602, "params[0]"),
    ('{"jsonrpc":"2.0","id":1,"method":"exists","params":[]}', -32602, "name"),
    ('{"jsonrpc":"2.0","id":1,"method":"exists","params":[7]}', -32602, "name"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":"bar"}', -32600, None),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":3}', -32600, None),
])
def test_bad_params_get_the_right_code_and_name_the_field(conn: RawConnection, request_line: str,
                                                          code: int, field: str | None) -> None:
    reply = exchange(conn, request_line)
    assert isinstance(reply, jsonrpcclient.Error) and reply.id == 1
    assert reply.code == code and reply.data.get("field") == field


def test_notifications_are_never_answered_whatever_is_wrong(conn: RawConnection) -> None:
    notifications = [
        jsonrpcclient.notification_json("ping", params=[1, 2, 3]),        # extra item
        jsonrpcclient.notification_json("exists"),                       # missing param
        jsonrpcclient.notification_json("ping", params={"bogus": 1}),    # unknown param
        jsonrpcclient.notification_json("nope", params=[1]),             # unknown method
        jsonrpcclient.notification_json("status", params=["x"]),         # local method
        jsonrpcclient.notification_json("$/cancelRequest", params={"id": True}),
        '{"jsonrpc":"2.0","method":"ping","params":{"x":' + "[" * 100 + "]" * 100 + "}}",
        json.dumps([json.loads(jsonrpcclient.notification_json("ping", params=[1, 2])),
                    json.loads(jsonrpcclient.notification_json("nope"))]),
    ]
    for line in notifications:
        conn.send_bytes(line.encode() + b"\n")
    # The next line is the answer to the next request: nothing came before it.
    reply = exchange(conn, jsonrpcclient.request_json("ping", id="after"))
    assert reply == jsonrpcclient.Ok("Pong", "after")


def test_a_batch_answers_only_its_requests(conn: RawConnection) -> None:
    batch = [json.loads(jsonrpcclient.request_json("ping", id=1)),
             json.loads(jsonrpcclient.notification_json("ping", params=[1, 2])),
             JSONRPC20Request("status", params=[], id=2).body,
             json.loads(jsonrpcclient.request_json("ping", params=(1, 2), id=3))]
    replies = exchange(conn, batch)
    assert [r.id for r in replies] == [1, 2, 3]
    assert isinstance(replies[0], jsonrpcclient.Ok) and isinstance(replies[1], jsonrpcclient.Ok)
    assert isinstance(replies[2], jsonrpcclient.Error) and replies[2].code == -32602


def test_every_transcript_reply_is_a_valid_response() -> None:
    """The pinned bytes (``protocol/transcripts``) are themselves valid to ajsonrpc."""
    checked = 0
    for path in FILES:
        for line in (line for kind, line in load(path)[1] if kind == "recv"):
            body = json.loads(line.replace('"<<str>>"', '"x"').replace("<<num>>", "1.5"))
            if not (isinstance(body, dict) and "method" in body):
                validated(body)  # $/progress lines are notifications, not replies
                checked += 1
    assert checked > 20


def test_the_daemon_survives_all_of_it(daemon: DaemonProcess) -> None:
    assert daemon.process is not None and daemon.process.poll() is None
    with daemon.connect() as conn:
        assert exchange(conn, jsonrpcclient.request_json("ping", id=9)).result == "Pong"


def test_lines_that_are_not_requests_are_logged_and_counted_as_such(make_daemon) -> None:
    """A parse error and a silently refused notification leave a log line each (issue 19)."""
    daemon = make_daemon("max_params_bytes = 64\n")
    with daemon.connect() as conn:
        conn.send_bytes(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]\n')
        reply = validated(json.loads(conn.read_line()))
        assert isinstance(reply, jsonrpcclient.Error) and reply.code == -32700
        conn.send_bytes(b'{"jsonrpc":"2.0","method":"run","params":["' + b"x" * 100 + b'"]}\n')
        assert exchange(conn, jsonrpcclient.request_json("ping", id=1)).result == "Pong"
    assert daemon.terminate() == 0
    lines = [json.loads(line) for line in daemon.log_path.read_text().splitlines()
             if line.startswith("{")]
    outcomes = [(line.get("outcome"), line.get("code")) for line in lines
                if line.get("event") == "request" and line.get("method") is None]
    assert ("ParseError", -32700) in outcomes and ("InvalidParams", -32602) in outcomes


def test_a_request_ended_by_disconnect_is_counted_as_disconnected(daemon: DaemonProcess,
                                                                  busybox: str) -> None:
    with daemon.connect() as conn:
        before = conn.call("status")["requests"]
    gone = daemon.connect()
    gone.send({"jsonrpc": "2.0", "id": 1, "method": "run",
               "params": {"image": busybox, "command": ["sleep", "30"], "timeout": 40}})
    time.sleep(1.5)  # the run is in flight
    gone.close()
    with daemon.connect() as conn:
        until = time.monotonic() + 30
        while (after := conn.call("status")["requests"])["disconnected"].get("run", 0) \
                == before["disconnected"].get("run", 0):
            assert time.monotonic() < until, after
            time.sleep(0.2)
    assert after["failed"].get("run", 0) == before["failed"].get("run", 0)
    assert after["served"].get("run", 0) == before["served"].get("run", 0)
