"""Image methods: images, exists, inspect, rmi, prune (``build`` and ``pull``: daemon.handlers.build)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from podman_rpc.daemon.handlers import implements
from podman_rpc.daemon.handlers.owned import (
    image_missing,
    image_owner,
    may_see_image,
    owned_container,
    visible_image,
)
from podman_rpc.daemon.handlers.owned import image_or_none as _image_or_none
from podman_rpc.daemon.handlers.templates import render
from podman_rpc.daemon.podman.libpod import container_inspect
from podman_rpc.daemon.podman.listing import iso_time
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import PolicyDenied


def _inspect_image(client: Any, name: str) -> dict[str, Any]:
    response = client.api.get(f"/images/{quote(name, safe='')}/json")
    response.raise_for_status()
    return response.json()


@implements(m.Images)
async def images(ctx: CallContext, params: m.Images) -> list[dict[str, Any]]:
    found = await ctx.pool.listings.images(params.all)
    return [{"id": i.get("Id", ""), "tags": i.get("RepoTags") or [], "size": i.get("Size", 0),
             "created": iso_time(i.get("Created")), "digest": i.get("Digest") or None}
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
    if params.kind == "container":
        attrs = await ctx.pool.call(container_inspect, await owned_container(ctx, params.name))
    elif ctx.is_admin:
        attrs = await ctx.pool.call(_inspect_image, params.name, subject="image")
    else:
        found = await visible_image(ctx, params.name)
        if found is None:
            raise image_missing(params.name)
        attrs = found
    return render(attrs, params.format) if params.format else attrs


def _remove_image(client: Any, name: str, force: bool) -> None:
    """DELETE the image; with ``force``, a container of it that Podman 4.3 reported busy
    while dropping it (the userns shm race, ``libpod.remove``) is gone on the next try."""
    for attempt in range(3):
        response = client.api.delete(f"/images/{quote(name, safe='')}",
                                     params={"force": "true" if force else "false"})
        busy = response.status_code == 500 and "root filesystem" in response.text
        if not (force and busy) or attempt == 2:
            break
        time.sleep(0.2)
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
    await ctx.state.removals_settled()  # a run that just replied may still hold the image
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
    await ctx.state.removals_settled()  # images of runs that just replied are not yet unused
    return await ctx.pool.call(_prune, subject="image")
