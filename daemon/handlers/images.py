"""Image methods: build, images, exists, inspect, rmi, prune, pull.

``build`` and ``pull`` read Podman's JSON-lines stream themselves (podman-py
reads it whole before returning) so ``progress`` can forward each line as it
comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from podman_rpc.daemon.context import CallContext
from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.containers import _iso
from podman_rpc.daemon.handlers.owned import (
    image_missing,
    image_owner,
    may_see_image,
    visible_image,
)
from podman_rpc.daemon.handlers.owned import image_or_none as _image_or_none
from podman_rpc.daemon.handlers.run_spec import parse_key_values
from podman_rpc.daemon.handlers.templates import render
from podman_rpc.daemon.labels import OWNER_UID
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import InvalidParams, PodmanError, PolicyDenied

_BUILT_MARKER = re.compile(r"^[0-9a-f]{12,64}$")
_LOG_KEEP = 10_000  # build log lines kept for the result


def _line_sink(ctx: CallContext, stream: str) -> Callable[[str], None]:
    """A thread-safe callback that forwards one line as ``$/progress``."""
    loop = asyncio.get_running_loop()
    def forward(line: str) -> None:
        loop.call_soon_threadsafe(ctx.progress, stream, line)

    return forward if ctx.want_progress else (lambda line: None)


def _inspect_image(client: Any, name: str) -> dict[str, Any]:
    response = client.api.get(f"/images/{quote(name, safe='')}/json")
    response.raise_for_status()
    return response.json()


def _json_lines(response: Any) -> Generator[dict[str, Any], None, None]:
    """The objects of a streamed build or pull reply (one JSON object per line); closes it."""
    try:
        response.raise_for_status()
        for raw in response.iter_lines():
            if raw:
                yield json.loads(raw)
    finally:
        response.close()


def _build(client: Any, params: m.Build, on_line: Callable[[str], None],
           owner_uid: int) -> dict[str, Any]:
    """POST /build with the context as a tar, collecting the log; the built image's summary."""
    from podman import api  # lazy: importing podman is slow

    context = Path(params.context)
    query = client.images._render_params({  # noqa: SLF001 - podman-py's own param mapping
        "path": str(context), "dockerfile": params.file, "tag": params.tag,
        "nocache": params.no_cache or None, "platform": params.platform,
        "buildargs": parse_key_values(params.build_args, "build_args"),
        "labels": {OWNER_UID: str(owner_uid)}})
    query["dockerfile"] = api.prepare_containerfile(str(context), str(context / params.file))
    body = api.create_tar(anchor=str(context), exclude=api.prepare_containerignore(str(context)))
    response = client.api.post("/build", params=query, data=body, stream=True,
                               headers={"Content-type": "application/x-tar"})
    logs: list[str] = []
    image_id = None
    with contextlib.closing(_json_lines(response)) as items:
        for item in items:
            if "error" in item:
                raise PodmanError(f"Build failed: {str(item['error']).strip()}",
                                  {"status": None, "logs": logs[-50:]})
            for line in str(item.get("stream") or "").splitlines():
                if _BUILT_MARKER.match(line.strip()):
                    image_id = line.strip()
                if len(logs) < _LOG_KEEP:
                    logs.append(line)
                on_line(line)
    if image_id is None:
        raise PodmanError("Build ended without an image", {"status": None, "logs": logs[-50:]})
    attrs = _inspect_image(client, image_id)
    return {"image_id": attrs.get("Id", image_id), "tags": attrs.get("RepoTags") or [],
            "platform": params.platform, "logs": logs, "built": True}


@implements(m.Build)
async def build(ctx: CallContext, params: m.Build) -> dict[str, Any]:
    context = Path(params.context)
    if not context.is_dir():
        raise InvalidParams("context", f"not a directory on the daemon's host: {params.context}")
    if not (context / params.file).is_file():
        raise InvalidParams("file", f"no {params.file} in {params.context}")
    parse_key_values(params.build_args, "build_args")
    if params.tag and not params.force:
        existing = await ctx.pool.call(_image_or_none, params.tag, subject="image")
        if existing is not None:
            return {"image_id": existing.get("Id", ""), "tags": existing.get("RepoTags") or [],
                    "platform": params.platform,
                    "logs": [f"Image {params.tag} exists; not rebuilt (use force)"],
                    "built": False}
    return await ctx.pool.call(_build, params, _line_sink(ctx, "build"), ctx.peer_uid,
                               subject="image")


def _list_images(client: Any, all_: bool) -> list[dict[str, Any]]:
    response = client.api.get("/images/json", params={"all": "true" if all_ else "false"})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json() or []
    return found


@implements(m.Images)
async def images(ctx: CallContext, params: m.Images) -> list[dict[str, Any]]:
    found = await ctx.pool.call(_list_images, params.all, subject="image")
    return [{"id": i.get("Id", ""), "tags": i.get("RepoTags") or [], "size": i.get("Size", 0),
             "created": _iso(i.get("Created")), "digest": i.get("Digest") or None}
            for i in found if may_see_image(ctx, i)]


def _exists(client: Any, name: str) -> bool:
    response = client.api.get(f"/images/{quote(name, safe='')}/exists")
    if response.status_code == 404:
        return False
    response.raise_for_status()
    return True


@implements(m.Exists)
async def exists(ctx: CallContext, params: m.Exists) -> bool:
    if not ctx.is_admin:
        return await visible_image(ctx, params.name) is not None
    return await ctx.pool.call(_exists, params.name, subject="image")


@implements(m.Inspect)
async def inspect(ctx: CallContext, params: m.Inspect) -> Any:
    if ctx.is_admin:
        attrs = await ctx.pool.call(_inspect_image, params.name, subject="image")
    else:
        found = await visible_image(ctx, params.name)
        if found is None:
            raise image_missing(params.name)
        attrs = found
    return render(attrs, params.format) if params.format else attrs


def _remove_image(client: Any, name: str, force: bool) -> None:
    response = client.api.delete(f"/images/{quote(name, safe='')}",
                                 params={"force": "true" if force else "false"})
    response.raise_for_status()


@implements(m.Rmi)
async def rmi(ctx: CallContext, params: m.Rmi) -> dict[str, str]:
    if not ctx.is_admin:  # only images this peer built
        attrs = await ctx.pool.call(_image_or_none, params.name, subject="image")
        if attrs is None or image_owner(attrs) != str(ctx.peer_uid):
            raise image_missing(params.name)
        if params.force:  # force would remove other peers' containers that use it
            raise PolicyDenied("Denied by policy (rmi_force): only admin may force-remove an "
                               "image", {"rule": "rmi_force"})
    await ctx.pool.call(_remove_image, params.name, params.force, subject="image")
    return {"image": params.name, "message": "Image deleted successfully"}


def _prune(client: Any) -> dict[str, Any]:
    response = client.api.post("/images/prune")
    response.raise_for_status()
    reports = response.json() or []
    return {"images_deleted": [r.get("Id", "") for r in reports if not r.get("Err")],
            "space_reclaimed": sum(int(r.get("Size") or 0) for r in reports if not r.get("Err")),
            "message": "Images pruned successfully"}


@implements(m.Prune)
async def prune(ctx: CallContext, params: m.Prune) -> dict[str, Any]:
    return await ctx.pool.call(_prune, subject="image")


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
    return await ctx.pool.call(_pull, params.image, _line_sink(ctx, "pull"), subject="image")
