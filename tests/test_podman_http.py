"""daemon.podman.http against the real Podman service: replies, keep-alive, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from podman_rpc.daemon.podman.http import API_PREFIX, PodmanHTTP
from podman_rpc.protocol.errors import PodmanUnavailable
from tests.rig.podman import PodmanService

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
