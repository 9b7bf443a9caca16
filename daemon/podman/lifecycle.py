"""A container's lifecycle over the event-loop client: create, start, wait, kill-and-remove.

Why on the loop and not through podman-py on a worker (``libpod``): ``run`` makes
four or five of these calls per request, and each worker hop plus ``requests``
cost about a millisecond; here they share kept-alive connections
(``daemon.podman.http``). Refusals become protocol errors through the one table
(``daemon.podman.errors.translate``).

:func:`kill_and_remove` is the daemon's one kill-and-remove routine: ``run``'s
cleanup, a detached run's deadline and the reaper all end a container with it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn
from urllib.parse import quote

from podman_rpc.daemon.podman.errors import translate
from podman_rpc.daemon.podman.http import API_PREFIX, PodmanHTTP, Reply, StatusError
from podman_rpc.protocol.errors import NotFound

EXIT_POLL = 0.002  # seconds between looks for conmon's exit file, once the output has ended
EXIT_POLL_MAX = 0.05
WAIT_INTERVAL = "10ms"  # libpod polls the state this often; its default (250ms) costs ~0.2s per run
_GONE = {404, 409}  # no such container / not running (libpod also says 500 "state improper")


def _message(reply: Reply) -> str:
    try:
        return str(reply.json().get("message") or reply.body[:500].decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        return reply.body[:500].decode("utf-8", "replace")


def check(reply: Reply, subject: str = "container") -> Reply:
    """``reply`` if it is a 2xx, else the matching protocol error."""
    if not reply.ok:
        raise translate(StatusError(reply.status, _message(reply)), subject=subject)
    return reply


async def create(http: PodmanHTTP, body: dict[str, Any]) -> str:
    reply = check(await http.request("POST", f"{API_PREFIX}/containers/create", body), "image")
    return str(reply.json()["Id"])


async def start(http: PodmanHTTP, cid: str) -> None:
    check(await http.request("POST", f"{API_PREFIX}/containers/{cid}/start"))


async def wait_exit(http: PodmanHTTP, cid: str) -> int:
    """The exit code, once the container has exited (the caller bounds the wait)."""
    reply = check(await http.request(
        "POST", f"{API_PREFIX}/containers/{cid}/wait?condition=exited&interval={WAIT_INTERVAL}"))
    return int(reply.json())


async def exit_file_code(exit_dir: str, cid: str) -> int:
    """The exit code conmon writes to ``exit_dir/cid`` when the container's process ends.

    Why: measured here, the file is there when the attach stream ends, while libpod's
    wait answers 100-170 ms later (it waits for its own state update). Poll it only
    once the output has ended; libpod's wait stays the authority when this finds nothing.
    """
    path = os.path.join(exit_dir, cid)
    delay = EXIT_POLL
    while True:
        try:
            with open(path, "rb") as fh:
                text = fh.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, EXIT_POLL_MAX)  # a process that closed its output lives on


async def exit_code(reader: asyncio.Task[None], waiter: asyncio.Task[int], *, cid: str,
                    exit_dir: str, limit: float, began: float,
                    overran: Callable[[], Awaitable[NoReturn]]) -> int:
    """libpod's wait (``waiter``), or conmon's exit file once the output (``reader``) has
    ended, whichever is first; ``overran`` (which raises) when ``limit`` seconds pass.

    The cold path and the warm path both end a run here. ``exit_dir`` empty: the
    wait alone.
    """
    first, _ = await asyncio.wait({reader, waiter}, timeout=limit,
                                  return_when=asyncio.FIRST_COMPLETED)
    if not first:
        await overran()
    pending: set[asyncio.Future[int]] = {waiter}
    if not waiter.done() and exit_dir:  # the output ended first, as usual: the file is near
        pending.add(asyncio.ensure_future(exit_file_code(exit_dir, cid)))
    try:
        while True:
            left = limit - (time.perf_counter() - began)
            done, pending = await asyncio.wait(pending, timeout=max(0.0, left),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await overran()
            found = next(iter(done))
            if found is waiter or found.exception() is None or not pending:
                return int(found.result())
    finally:
        for task in pending:
            if task is not waiter:
                task.cancel()


async def kill(http: PodmanHTTP, cid: str) -> None:
    """SIGKILL; a container that already stopped or vanished is fine."""
    reply = await http.request("POST", f"{API_PREFIX}/containers/{cid}/kill?signal=SIGKILL")
    if not reply.ok and reply.status not in _GONE and "state improper" not in _message(reply):
        check(reply)


async def kill_and_remove(http: PodmanHTTP, cid: str, running: bool = True) -> bool:
    """SIGKILL (when it may be running), then force-remove with its volumes, no stop timeout.

    False if it was gone already. SIGKILL first because ``rm --force`` alone sends
    SIGTERM and waits the stop timeout, which a ``sleep`` as PID 1 ignores.
    """
    if running:
        await kill(http, cid)
    reply = await http.request(
        "DELETE", f"{API_PREFIX}/containers/{cid}?force=true&volumes=true&timeout=0")
    if reply.status == 404:
        return False
    if not reply.ok and not await _removed_anyway(http, cid, reply):
        check(reply)
    return True


async def _removed_anyway(http: PodmanHTTP, cid: str, reply: Reply) -> bool:
    """A 500 "root filesystem ... busy" after which the container is gone all the same.

    With a user namespace (policy userns = "auto") Podman 4.3 sometimes answers a
    remove with EBUSY on the container's shm directory (its cleanup process still
    holds the mount) after it has already dropped the container: about 1 in 4 here.
    """
    if reply.status != 500 or "root filesystem" not in _message(reply):
        return False
    exists = await http.request("GET", f"{API_PREFIX}/containers/{cid}/exists")
    return exists.status == 404


async def state_or_none(http: PodmanHTTP, cid: str) -> str | None:
    """The container's state ("running", "exited", ...), or None once it is gone."""
    try:
        reply = check(await http.request("GET", f"{API_PREFIX}/containers/{cid}/json"))
    except NotFound:
        return None
    return str(reply.json().get("State", {}).get("Status", ""))


async def image_command(http: PodmanHTTP,
                        image: str) -> tuple[list[str] | None, list[str] | None]:
    """The image's (Entrypoint, Cmd): what a run that names no command runs."""
    reply = check(await http.request("GET", f"{API_PREFIX}/images/{quote(image, safe='/:@')}/json"),
                  subject="image")
    config = reply.json().get("Config") or {}
    return config.get("Entrypoint"), config.get("Cmd")
