"""``build`` and ``pull``: under the policy (daemon.guard.build_policy), and stopped with their request.

A build streams its context (daemon.handlers.build_context) as the chunked body
of libpod's POST /build over a connection of its own, so the loop can end it:
cancel, disconnect, deadline and shutdown set the build's stop signal (checked
by the tar and the log reader) and shut the socket down, so a blocked send or
read returns at once. libpod abandons a build whose connection closes but lets
the RUN step in progress run to its end, so the daemon kills that step's
processes (daemon.handlers.build_cgroup); and libpod keeps an upload cut short
in its temp directory (``libpod_builder*`` holding only ``tarBall``), so the
daemon removes those of its own interrupted uploads
(daemon.handlers.build_leftovers). A peer's tag may only name its own image.

Both read Podman's JSON-lines stream themselves so ``progress`` can forward
each line as it comes. Every built image is labelled with its creator's uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any
from urllib.parse import urlencode

import structlog

from podman_rpc.daemon.guard.access import peer_groups
from podman_rpc.daemon.guard.build_policy import (
    build_namespace,
    check_dockerfile,
    check_pull_reference,
    resolve_source,
)
from podman_rpc.daemon.guard.policy_rules import deny
from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.build_cgroup import BuildCgroup
from podman_rpc.daemon.handlers.build_context import ContextTar, Reader, Stopped
from podman_rpc.daemon.handlers.build_leftovers import remove_interrupted_uploads
from podman_rpc.daemon.handlers.owned import image_or_none, image_owner
from podman_rpc.daemon.handlers.run_spec import parse_key_values
from podman_rpc.daemon.podman import labels
from podman_rpc.daemon.podman.http import API_PREFIX, BlockingConnection, ProtocolError
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import PodmanError

log = structlog.get_logger("podman_rpc.build")

_BUILT_MARKER = re.compile(r"^[0-9a-f]{12,64}$")
_LOG_KEEP = 10_000  # build log lines kept for the result
_MAX_LINE = 1 << 20
STOP_WAIT = 3.0  # seconds a stopped build's worker is waited for before cleaning up


def _line_sink(ctx: CallContext, stream: str) -> Callable[[str], None]:
    """A thread-safe callback that forwards one line as ``$/progress``."""
    loop = asyncio.get_running_loop()
    def forward(line: str) -> None:
        loop.call_soon_threadsafe(ctx.progress, stream, line)

    return forward if ctx.want_progress else (lambda line: None)


class BuildCall:
    """One build's stop signal, shared by the loop (which stops it) and its worker thread."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.cgroup = BuildCgroup()  # where libpod puts this build's RUN steps
        self.upload_started: float | None = None  # wall-clock time the body began
        self._conn: BlockingConnection | None = None
        self._lock = threading.Lock()

    def attach(self, conn: BlockingConnection) -> None:
        with self._lock:
            if self.stopped.is_set():
                raise Stopped()
            self._conn = conn
            self.upload_started = time.time()

    def stop(self) -> None:
        """From the loop: the tar and the log reader stop, a blocked send or read returns."""
        self.stopped.set()
        with self._lock:
            sock = self._conn.sock if self._conn is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _podman_error(status: int, conn: BlockingConnection) -> PodmanError:
    raw = b""
    with contextlib.suppress(OSError, ProtocolError):
        for data in conn.body():
            raw += data
            if len(raw) > 64 << 10:
                break
    try:
        message = str(json.loads(raw).get("message") or raw[:500].decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        message = raw[:500].decode("utf-8", "replace")
    return PodmanError(f"Build failed: {message.strip()}", {"status": status})


def _stream_lines(conn: BlockingConnection, call: BuildCall) -> Iterator[dict[str, Any]]:
    """Podman's JSON lines, until it ends or the build is stopped."""
    try:
        for raw in conn.lines(_MAX_LINE):
            if call.stopped.is_set():
                raise Stopped()
            raw = raw.strip()
            if raw:
                try:
                    yield json.loads(raw)
                except ValueError:
                    yield {"stream": raw.decode("utf-8", "replace")}
    except (OSError, ProtocolError) as exc:  # stopped: the socket was shut down
        if not call.stopped.is_set():
            raise PodmanError(f"Build failed: Podman's reply broke off: {exc}",
                              {"status": None}) from None
    if call.stopped.is_set():
        raise Stopped()


def _run_build(client: Any, call: BuildCall, tar: ContextTar, query: dict[str, str],
               podman: tuple[str, float], on_line: Callable[[str], None]) -> dict[str, Any]:
    """In a worker: size the context, stream it to POST /build, collect the log.

    ``podman`` is the socket path and the per-read timeout; the build has its own
    connection (not the worker's kept-alive client) so that ``call.stop`` can end it.
    """
    tar.measure()
    conn = BlockingConnection(*podman)
    logs: list[str] = []
    image_id = None
    try:
        call.attach(conn)
        try:
            conn.send("POST", f"{API_PREFIX}/build?{urlencode(query)}",
                      [("Content-Type", "application/x-tar")], tar.chunks())
            response = conn.response()
        except (OSError, ProtocolError):
            if call.stopped.is_set():
                raise Stopped() from None
            raise
        if response.status != 200:
            raise _podman_error(response.status, conn)
        for item in _stream_lines(conn, call):
            if item.get("error"):
                raise PodmanError(f"Build failed: {str(item['error']).strip()}",
                                  {"status": None, "logs": logs[-50:]})
            for line in str(item.get("stream") or "").splitlines():
                if _BUILT_MARKER.match(line.strip()):
                    image_id = line.strip()
                if len(logs) < _LOG_KEEP:
                    logs.append(line)
                on_line(line)
    finally:
        conn.close()
    attrs = image_or_none(client, image_id) if image_id else None
    if attrs is None:
        raise PodmanError("Build ended without an image", {"status": None, "logs": logs[-50:]})
    return {"image_id": attrs.get("Id", image_id), "tags": attrs.get("RepoTags") or [],
            "logs": logs, "built": True}


async def _existing_tag(ctx: CallContext, tag: str | None) -> dict[str, Any] | None:
    """The image ``tag`` names now, if any; denied if it is another user's.

    A tag is a name others run: only the image's owner (its ``io.podman-rpc.uid``
    label) or an admin may point it at a new build.
    """
    existing = await ctx.pool.call(image_or_none, tag, subject="image") if tag else None
    if existing is not None and not ctx.is_admin and image_owner(existing) != str(ctx.peer_uid):
        raise deny("tag_owner", f"{str(tag)[:200]!r} names an image another user owns",
                   tag=str(tag)[:200])
    return existing


@implements(m.Build)
async def build(ctx: CallContext, params: m.Build) -> dict[str, Any]:
    policy = ctx.config.policy
    source = resolve_source(params.context, params.file, policy, ctx.is_admin)
    namespace = build_namespace(params.network, policy)
    build_args = parse_key_values(params.build_args, "build_args")
    existing = await _existing_tag(ctx, params.tag)
    if existing is not None and not params.force:
        return {"image_id": existing.get("Id", ""), "tags": existing.get("RepoTags") or [],
                "platform": params.platform,
                "logs": [f"Image {params.tag} exists; not rebuilt (use force)"],
                "built": False}
    query = {"dockerfile": source.dockerfile, "rm": "true", "forcerm": "true",
             "labels": json.dumps({labels.OWNER_UID: str(ctx.peer_uid)}), **namespace}
    if params.tag:
        query["t"] = params.tag
    if params.no_cache:
        query["nocache"] = "true"
    if params.platform:
        query["platform"] = params.platform
    if build_args:
        query["buildargs"] = json.dumps(build_args)
    call = BuildCall()
    query["cgroupparent"] = call.cgroup.parent
    tar = ContextTar(source, policy.max_build_context_bytes, call.stopped,
                     functools.partial(check_dockerfile, build_args=build_args,
                                       network=params.network), _reader(ctx))
    work = asyncio.ensure_future(ctx.pool.call(
        _run_build, call, tar, query, (ctx.pool.socket_name, ctx.pool.call_timeout),
        _line_sink(ctx, "build"), subject="image"))
    finished = False
    try:
        result = await asyncio.shield(work)
        finished = True
    finally:
        if not finished:
            # Cancelled, timed out or failed: end the build and clear what it left,
            # even if this request is cancelled again meanwhile.
            await asyncio.shield(ctx.state.spawn(_stop(call, tar, work)))
    return {**result, "platform": params.platform}


def _reader(ctx: CallContext) -> Reader | None:
    """Whose rights the context is read with: None (the daemon's) for an admin."""
    peer = ctx.connection.peer if ctx.connection is not None else None
    if ctx.is_admin or peer is None:
        return None
    return Reader(peer.uid, peer_groups(peer))


async def _stop(call: BuildCall, tar: ContextTar, work: asyncio.Future[Any]) -> None:
    """Stop a build: its connection, its RUN step's processes, then (bounded) its worker;
    remove an upload libpod kept."""
    call.stop()
    killed = await asyncio.to_thread(call.cgroup.kill)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(work), STOP_WAIT)
    if work.done() and not work.cancelled():
        work.exception()  # retrieved: a stopped build's error is not news
    removed: list[str] = []
    if call.upload_started is not None and not tar.finished:
        removed = await asyncio.to_thread(remove_interrupted_uploads, call.upload_started,
                                          tar.total)
    await asyncio.to_thread(call.cgroup.remove)
    log.info("build stopped", killed=killed, removed=removed, tar_bytes=tar.total,
             finished_upload=tar.finished)


def _json_lines(response: Any) -> Generator[dict[str, Any], None, None]:
    """The objects of a streamed pull reply (one JSON object per line); closes it."""
    try:
        response.raise_for_status()
        for raw in response.iter_lines():
            if raw:
                yield json.loads(raw)
    finally:
        response.close()


def _pull(client: Any, reference: str, on_line: Callable[[str], None]) -> dict[str, Any]:
    response = client.api.post("/images/pull", stream=True,
                               params={"reference": reference, "policy": "always"})
    image_id = None
    with contextlib.closing(_json_lines(response)) as items:
        for item in items:
            if item.get("error"):
                raise PodmanError(f"Pull failed: {str(item['error']).strip()}", {"status": None})
            for line in str(item.get("stream") or "").splitlines():
                on_line(line)
            image_id = item.get("id") or image_id
    if not image_id:
        raise PodmanError("Pull ended without an image", {"status": None})
    return {"image": reference, "image_id": image_id}


@implements(m.Pull)
async def pull(ctx: CallContext, params: m.Pull) -> dict[str, Any]:
    check_pull_reference(params.image, ctx.config.policy)
    return await ctx.pool.call(_pull, params.image, _line_sink(ctx, "pull"), subject="image")
