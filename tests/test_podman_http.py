"""daemon.podman.http against the real Podman service: replies, keep-alive, failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from podman_rpc.daemon.podman.http import API_PREFIX, Connection, PodmanHTTP
from podman_rpc.protocol.errors import PodmanUnavailable
from tests.rig.podman import PodmanService, podman

pytestmark = pytest.mark.podman


def run(coro):  # a fresh loop per test, like the daemon's own
    return asyncio.run(coro)


def test_ping_and_connection_reuse(podman_service: PodmanService) -> None:
    async def go() -> tuple[list[bool], int]:
        client = PodmanHTTP(podman_service.socket_path)
        results = [await client.ping() for _ in range(5)]
        idle = len(client._idle)
        client.close()
        return results, idle

    results, idle = run(go())
    assert results == [True] * 5
    assert idle == 1  # one kept-alive connection served all five sequential calls


def test_json_bodies_match_podman(podman_service: PodmanService, busybox: str) -> None:
    """Chunked and Content-Length replies both decode to what Podman sent."""
    async def go() -> tuple[dict, list, int]:
        client = PodmanHTTP(podman_service.socket_path)
        info = await client.request("GET", f"{API_PREFIX}/info")
        images = await client.request("GET", f"{API_PREFIX}/images/json")
        missing = await client.request("GET", f"{API_PREFIX}/containers/no-such-container-x/json")
        client.close()
        return info.json(), images.json(), missing.status

    info, images, missing_status = run(go())
    assert "host" in info and "store" in info
    assert any(busybox in (image.get("Names") or image.get("RepoTags") or []) for image in images)
    assert missing_status == 404


def test_concurrent_requests_use_separate_connections(podman_service: PodmanService) -> None:
    async def go() -> tuple[list[bool], int]:
        client = PodmanHTTP(podman_service.socket_path, max_idle=3)
        results = await asyncio.gather(*(client.ping() for _ in range(10)))
        idle = len(client._idle)
        client.close()
        return list(results), idle

    results, idle = run(go())
    assert results == [True] * 10
    assert 1 <= idle <= 3  # never more idle connections kept than max_idle


def test_unreachable_socket_is_podman_unavailable(tmp_path: Path) -> None:
    client = PodmanHTTP(tmp_path / "nothing.sock")
    with pytest.raises(PodmanUnavailable):
        run(client.ping())


def test_restarted_service_reuses_nothing_stale(tmp_path: Path) -> None:
    """A kept-alive connection closed by a restarted Podman is retried once, transparently."""
    directory = Path(str(tmp_path)[:60])  # unix socket paths are short
    directory.mkdir(parents=True, exist_ok=True)
    service = PodmanService(directory)
    service.start()

    async def go() -> tuple[bool, bool]:
        client = PodmanHTTP(service.socket_path)
        first = await client.ping()
        await asyncio.to_thread(service.stop)
        await asyncio.to_thread(service.start)
        second = await client.ping()
        client.close()
        return first, second

    try:
        assert run(go()) == (True, True)
    finally:
        service.stop()


def test_cancelled_call_does_not_return_its_connection(podman_service: PodmanService) -> None:
    async def go() -> tuple[int, bool]:
        client = PodmanHTTP(podman_service.socket_path)
        assert await client.ping() and len(client._idle) == 1
        task = asyncio.ensure_future(client.request("GET", f"{API_PREFIX}/info"))
        await asyncio.sleep(0)  # it takes the idle connection and sends; cancel before the reply
        assert len(client._idle) == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        idle_after_cancel = len(client._idle)
        ok = await client.ping()
        client.close()
        return idle_after_cancel, ok

    idle, ok = run(go())
    assert idle == 0
    assert ok


class CountingHTTP(PodmanHTTP):
    """Counts the sockets it opens (a subclass, so the client itself is unchanged)."""

    connects = 0

    async def connect(self) -> Connection:
        self.connects += 1
        return await super().connect()


def test_chunked_reply_matches_the_cli(podman_service: PodmanService) -> None:
    """libpod sends /info chunked; the parsed body is the JSON the CLI reports."""
    async def go() -> tuple[dict[str, str], dict]:
        client = PodmanHTTP(podman_service.socket_path)
        reply = await client.request("GET", f"{API_PREFIX}/info")
        client.close()
        return reply.headers, reply.json()

    headers, info = run(go())
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    cli = json.loads(podman("info", "--format", "json").stdout)
    assert info["store"]["graphRoot"] == cli["store"]["graphRoot"]
    assert info["host"]["arch"] == cli["host"]["arch"]
    assert info["host"]["hostname"] == cli["host"]["hostname"]
    assert info["version"]["Version"] == cli["version"]["Version"]


def test_keep_alive_reuse_count(podman_service: PodmanService) -> None:
    """HEAD (no length), chunked, Content-Length and error replies all leave the socket reusable."""
    async def go() -> tuple[list[int], int, int]:
        client = CountingHTTP(podman_service.socket_path)
        statuses = []
        for _ in range(10):
            statuses.append((await client.request("HEAD", f"{API_PREFIX}/_ping")).status)
            statuses.append((await client.request("GET", f"{API_PREFIX}/_ping")).status)
            statuses.append((await client.request("GET", f"{API_PREFIX}/info")).status)
            statuses.append((await client.request(
                "GET", f"{API_PREFIX}/containers/no-such-container-x/json")).status)
        idle = len(client._idle)
        client.close()
        return statuses, client.connects, idle

    statuses, connects, idle = run(go())
    assert statuses == [200, 200, 200, 404] * 10
    assert connects == 1 and idle == 1  # forty requests, one socket
