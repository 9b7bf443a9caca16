"""``version`` asks each running Podman once (daemon.podman.pool.PodmanPool.podman_version).

Podman's ``/version`` runs ``dpkg-query`` and costs about 0.5 s of CPU, so the pool
keeps the answer while ``_ping`` says the same Podman answers. These tests count the
``/version`` requests a stand-in service (http.server on a real unix socket) receives;
what the real Podman answers is checked in ``test_core.test_ping_version_info``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socketserver
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.protocol.errors import PodmanFailure

T = TypeVar("T")


class StandIn(socketserver.ThreadingUnixStreamServer):
    """Answers ``_ping`` with Podman's identifying headers and counts ``/version`` calls."""

    daemon_threads = True
    request_queue_size = 64  # ten callers connect at once

    def __init__(self, path: Path) -> None:
        self.version = "4.3.1"
        self.version_calls = 0
        self.failing = False
        self.pings = 0
        self.hold_version_until_pings = 0  # /version answers once this many pings were served
        self.cond = threading.Condition()
        super().__init__(str(path), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def _send(self, status: int, body: bytes, extra: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        stand_in = self.server
        with stand_in.cond:
            stand_in.pings += 1
            stand_in.cond.notify_all()
            version = stand_in.version
        self._send(200, b"OK", {"Server": f"Libpod/{version} (linux)",
                                "Libpod-Api-Version": version,
                                "Libpod-Buildah-Version": "1.28.2"})

    def do_GET(self) -> None:  # noqa: N802
        stand_in = self.server
        if not self.path.endswith("/version"):
            self._send(404, b"{}", {})
            return
        with stand_in.cond:
            stand_in.version_calls += 1
            stand_in.cond.wait_for(lambda: stand_in.pings >= stand_in.hold_version_until_pings,
                                   timeout=10)
            version, failing = stand_in.version, stand_in.failing
        if failing:
            self._send(500, b'{"cause":"boom","message":"boom","response":500}',
                       {"Content-Type": "application/json"})
            return
        self._send(200, json.dumps({"Version": version, "ApiVersion": "1.41"}).encode(),
                   {"Content-Type": "application/json"})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    server = StandIn(tmp_path / "podman.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _with_pool(stand_in: StandIn, body: Callable[[PodmanPool], Awaitable[T]]) -> T:
    async def go() -> T:
        pool = PodmanPool(Path(stand_in.server_address), workers=4, call_timeout=10)
        try:
            return await body(pool)
        finally:
            pool.close()
    return asyncio.run(go())


def test_callers_that_ask_together_share_one_call(stand_in: StandIn) -> None:
    async def body(pool: PodmanPool) -> list[str]:
        return list(await asyncio.gather(*(pool.podman_version() for _ in range(10))))

    assert _with_pool(stand_in, body) == ["4.3.1"] * 10
    assert stand_in.version_calls == 1
    assert stand_in.pings <= 2  # their pings are shared too (daemon.podman.shared)


def test_the_same_podman_is_asked_once_and_a_new_one_again(stand_in: StandIn) -> None:
    async def body(pool: PodmanPool) -> list[str]:
        seen = [await pool.podman_version() for _ in range(5)]
        stand_in.version = "5.0.0"  # another Podman answers the socket (an upgrade, a restart)
        seen += [await pool.podman_version() for _ in range(3)]
        return seen

    assert _with_pool(stand_in, body) == ["4.3.1"] * 5 + ["5.0.0"] * 3
    assert stand_in.version_calls == 2
    assert stand_in.pings == 8  # every call still asks whether Podman is there


def test_a_failed_answer_is_not_kept(stand_in: StandIn) -> None:
    stand_in.failing = True

    async def body(pool: PodmanPool) -> tuple[str, str]:
        with pytest.raises(PodmanFailure) as first:
            await pool.podman_version()
        stand_in.failing = False
        return type(first.value).__name__, await pool.podman_version()

    failed, then = _with_pool(stand_in, body)
    assert failed != "" and then == "4.3.1"
    assert stand_in.version_calls == 2


def test_a_cancelled_caller_does_not_cancel_the_shared_call(stand_in: StandIn) -> None:
    stand_in.hold_version_until_pings = 2

    async def body(pool: PodmanPool) -> str:
        first = asyncio.ensure_future(pool.podman_version())
        while stand_in.version_calls == 0:  # the shared call is under way
            await asyncio.sleep(0.01)
        first.cancel()
        return await pool.podman_version()  # the second ping releases the held answer

    assert _with_pool(stand_in, body) == "4.3.1"
    assert stand_in.version_calls == 1


def test_podman_gone_is_unavailable(tmp_path: Path) -> None:
    async def go() -> str:
        pool = PodmanPool(tmp_path / "nothing.sock", workers=1, call_timeout=5)
        try:
            await pool.podman_version()
        except PodmanFailure as error:
            return f"{type(error).__name__} {pool.reachable}"
        finally:
            pool.close()
        return "answered"

    assert asyncio.run(go()) == "PodmanUnavailable False"
