"""Fuzz a live daemon: thousands of random frames over many connections at once.

Every connection must get exactly the replies the protocol promises (counted
with the same parser the daemon uses), each well formed; a well-behaved client
on its own connection keeps getting ``status`` answers throughout;
and the daemon is still up, with no crashed handler in its log, at the end.
Root gets the ``read`` role here, so no random frame can create a container.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from podman_rpc.protocol.envelope import Request, frame_items, parse_frame
from podman_rpc.protocol.errors import ERRORS_BY_CODE
from podman_rpc.protocol.registry import METHODS
from tests.rig.daemon import DaemonProcess, RawConnection
from tests.rig.shapes import nested

MAX_LINE, MAX_DEPTH, MAX_BATCH, MAX_PARAMS = 16384, 16, 8, 4096
CONFIG = (f"max_line_bytes = {MAX_LINE}\nmax_json_depth = {MAX_DEPTH}\nmax_batch = {MAX_BATCH}\n"
          f"max_params_bytes = {MAX_PARAMS}\n"
          '[daemon.access]\nuid_roles = { "0" = "read" }\n')
CONNECTIONS, FRAMES_PER_CONNECTION, ABUSERS = 24, 160, 8
BUDGET_S = 90.0  # the whole fuzz stops sending after this, however far it got
PARAM_NAMES = sorted({p.name for spec in METHODS.values() for p in spec.params})


def _scalar(rng: random.Random) -> Any:
    return rng.choice([None, True, False, rng.randint(-2 ** 63, 2 ** 63 - 1), rng.random() * 1e6,
                       "", "x" * rng.randint(0, 40), "{{.Host.Arch}}", "{{", "\u2028\n\"",
                       rng.randint(-3, 3)])


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.6:
        return _scalar(rng)
    if roll < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(PARAM_NAMES + ["k", ""]): _value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def _request(rng: random.Random) -> Any:
    message: dict[str, Any] = {}
    if rng.random() < 0.9:
        message["jsonrpc"] = rng.choice(["2.0"] * 8 + ["1.0", 2])
    if rng.random() < 0.95:
        message["method"] = rng.choice([*METHODS, "$/cancelRequest", "nope", 7, None])
    if rng.random() < 0.8:
        message["id"] = rng.choice([rng.randint(0, 50), f"s{rng.randint(0, 50)}", None, 1.5,
                                    [1], {"a": 1}, True])
    if rng.random() < 0.7:
        message["params"] = {rng.choice(PARAM_NAMES): _value(rng) for _ in range(rng.randint(0, 3))}
        if message.get("method") in ("ping", "version", "info", "ps", "images") and rng.random() < .5:
            message["params"] = {}  # valid calls that really reach Podman
    return message


def random_frame(rng: random.Random) -> bytes:
    """One line (without its newline) from a mix of hostile and plausible shapes."""
    kind = rng.random()
    if kind < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))).replace(b"\n", b"")
    if kind < 0.25:
        return orjson.dumps(_value(rng))
    if kind < 0.65:
        return orjson.dumps(_request(rng))
    if kind < 0.75:
        return orjson.dumps([_request(rng) for _ in range(rng.randint(0, MAX_BATCH + 2))])
    if kind < 0.82:
        whole = orjson.dumps(_request(rng))
        return whole[: rng.randint(0, len(whole))]
    if kind < 0.88:
        depth = rng.choice([MAX_DEPTH - 1, MAX_DEPTH + 1, 200, 2000])
        return orjson.dumps({"jsonrpc": "2.0", "id": "deep", "method": "ping",
                             "params": {"timeout": nested(depth, 1)}}) if depth < 1000 else \
            b"[" * depth + b"]" * depth
    if kind < 0.92:
        return b'{"jsonrpc":"2.0","id":"big","method":"status","params":{"x":"' + \
            b"a" * rng.choice([MAX_PARAMS, MAX_LINE]) + b'"}}'
    if kind < 0.96:
        return orjson.dumps({"jsonrpc": "2.0", "method": "$/cancelRequest",
                             "id": rng.choice([None, 1, "c"]),
                             "params": {"id": rng.randint(0, 50)}})
    return b" \t\r"


def expected_replies(lines: list[bytes]) -> int:
    """Reply lines the protocol promises for these complete lines."""
    count = 0
    for line in lines:
        if len(line) > MAX_LINE:
            count += 1
            continue
        if not line.strip():
            continue
        frame = parse_frame(line, max_depth=MAX_DEPTH, max_batch=MAX_BATCH,
                            max_params_bytes=MAX_PARAMS)
        if any(not (isinstance(i, Request) and i.notification) for i in frame_items(frame)):
            count += 1
    return count


def well_formed(reply: Any, problems: list[str]) -> None:
    items = reply if isinstance(reply, list) else [reply]
    if isinstance(reply, list) and not reply:
        problems.append("empty batch reply")
    for item in items:
        ok = (isinstance(item, dict) and item.get("jsonrpc") == "2.0" and "id" in item
              and ("result" in item) != ("error" in item))
        if ok and "error" in item:
            error = item["error"]
            ok = error.get("code") in ERRORS_BY_CODE and isinstance(error.get("message"), str)
            if error.get("data", {}).get("kind") == "InternalError":
                problems.append(f"internal error: {item}")
        if not ok:
            problems.append(f"malformed reply: {str(item)[:300]}")


def fuzz_connection(path: str, seed: int, until: float, problems: list[str],
                    totals: dict[str, int]) -> None:
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(120)
    sock.connect(path)
    lines = [random_frame(rng) for _ in range(FRAMES_PER_CONNECTION)]
    sent: list[bytes] = []
    received: list[bytes] = []

    def read_all() -> None:
        buffer = b""
        try:
            while chunk := sock.recv(1 << 16):
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                received.extend(done)
        except OSError as exc:
            problems.append(f"seed {seed}: read failed: {exc!r}")

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        for line in lines:
            if time.monotonic() > until:
                break
            # Split each frame at a random point: lines must survive arbitrary chunking.
            cut = rng.randint(0, len(line))
            sock.sendall(line[:cut])
            sock.sendall(line[cut:] + b"\n")
            sent.append(line)
        sock.shutdown(socket.SHUT_WR)  # the daemon answers what is in flight, then closes
    except OSError as exc:
        problems.append(f"seed {seed}: send failed: {exc!r}")
    reader.join(150)
    sock.close()
    want = expected_replies(sent)
    if len(received) != want:
        problems.append(f"seed {seed}: {len(received)} replies for {want} expected")
    for raw in received:
        try:
            well_formed(orjson.loads(raw), problems)
        except orjson.JSONDecodeError:
            problems.append(f"seed {seed}: reply is not JSON: {raw[:200]!r}")
    totals["frames"] += len(sent)
    totals["replies"] += len(received)


def abuse_connection(path: str, seed: int) -> None:
    """Half lines, garbage and in-flight calls, then an abrupt close: must disturb no one."""
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    try:
        for _ in range(rng.randint(1, 20)):
            sock.sendall(random_frame(rng) + (b"\n" if rng.random() < 0.7 else b""))
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":2,')
    except OSError:
        pass  # the daemon may already have refused a line: closing is its right
    if rng.random() < 0.5:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


@pytest.mark.podman
def test_live_daemon_survives_random_frames(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(CONFIG)
    path = str(daemon.socket_path)
    problems: list[str] = []
    totals = {"frames": 0, "replies": 0}
    until = time.monotonic() + BUDGET_S
    base_seed = random.randrange(1 << 30)
    workers = [threading.Thread(target=fuzz_connection,
                                args=(path, base_seed + i, until, problems, totals))
               for i in range(CONNECTIONS)]
    answers: list[Any] = []
    stop = threading.Event()

    def well_behaved() -> None:
        try:
            with RawConnection(path, timeout=30) as conn:
                while not stop.is_set():
                    answers.append(conn.call("status")["instance_id"])
                    stop.wait(0.002)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            problems.append(f"well-behaved client failed: {exc!r}")

    watcher = threading.Thread(target=well_behaved)
    watcher.start()
    for worker in workers:
        worker.start()
    for i in range(ABUSERS * 4):
        abuse_connection(path, base_seed + 1000 + i)
    for worker in workers:
        worker.join(240)
    stop.set()
    watcher.join(60)
    print(f"fuzz seed {base_seed}: {totals}, {len(answers)} status answers meanwhile")
    assert not problems, f"seed {base_seed}: {problems[:10]}"
    assert totals["frames"] >= 1000, totals  # thousands across all connections, normally
    assert len(answers) >= 4 and len(set(answers)) == 1  # the same instance, throughout
    assert daemon.process is not None and daemon.process.poll() is None
    with daemon.connect() as conn:
        status = conn.call("status")
    assert status["instance_id"] == answers[0]
    log = daemon.log()
    assert "handler crashed" not in log and "connection task failed" not in log
    assert "Traceback" not in daemon.log_path.read_text()
