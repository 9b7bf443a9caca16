"""Ownership: a peer below ``admin`` sees and touches only what it created.

Every container (``run``) and image (``build``) the daemon creates carries the
creating peer's uid in ``labels.OWNER_UID``. For a peer below admin:

- a container is its own when that label is its uid;
- an image is visible when it carries no owner label (a base image put there by
  the host's operator) or the label is its uid, and removable only in the second
  case (``rmi`` acts only on images it built).

Anything else answers ``NotFound`` in Podman's own words for a missing name, so
a peer cannot tell another peer's container from one that does not exist.
Admin peers (uid 0 unless configured) skip the check, and with it the extra
round trip.

The container actions then use the id the check resolved, not the name: a name
freed and taken by another peer's container in between cannot redirect them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from podman_rpc.daemon.podman.labels import OWNER_UID
from podman_rpc.daemon.rpc.context import CallContext
from podman_rpc.protocol.errors import NotFound


def container_missing(name: str) -> NotFound:
    """The error Podman gives for a container name it does not know."""
    return NotFound(f'no container with name or ID "{name}" found: no such container',
                    kind="ContainerNotFound")


def image_missing(name: str) -> NotFound:
    """The error Podman gives for an image name it does not know."""
    return NotFound(f"{name}: image not known", kind="ImageNotFound")


def _container_owner(client: Any, name: str) -> tuple[str, str | None] | None:
    """(id, owner uid label) of the container, or None if Podman knows no such name."""
    response = client.api.get(f"/containers/{quote(name, safe='')}/json")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    attrs = response.json()
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return str(attrs.get("Id", "")), labels.get(OWNER_UID)


def image_or_none(client: Any, name: str) -> dict[str, Any] | None:
    """The image's inspect object, or None if Podman knows no such name."""
    response = client.api.get(f"/images/{quote(name, safe='')}/json")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    attrs: dict[str, Any] = response.json()
    return attrs


def image_owner(attrs: dict[str, Any]) -> str | None:
    """The owner uid label of an image's inspect object (None: a base image, shared)."""
    labels = attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}
    owner = labels.get(OWNER_UID)
    return None if owner is None else str(owner)


def may_see_image(ctx: CallContext, attrs: dict[str, Any]) -> bool:
    """Whether this peer may see an image: admin, a base image, or one it built."""
    owner = image_owner(attrs)
    return ctx.is_admin or owner is None or owner == str(ctx.peer_uid)


async def visible_image(ctx: CallContext, name: str) -> dict[str, Any] | None:
    """The image's inspect object if it exists and this peer may see it, else None."""
    attrs = await ctx.pool.call(image_or_none, name, subject="image")
    return attrs if attrs is not None and may_see_image(ctx, attrs) else None


async def owned_container(ctx: CallContext, name: str) -> str:
    """The id of ``name`` if this peer may act on it; NotFound as for a missing one otherwise."""
    if ctx.is_admin:
        return name
    found = await ctx.pool.call(_container_owner, name)
    if found is None or found[1] != str(ctx.peer_uid):
        raise container_missing(name)
    return found[0]


def owner_filter(ctx: CallContext) -> dict[str, list[str]]:
    """libpod list filters that keep only this peer's containers (none for admin)."""
    return {} if ctx.is_admin else {"label": [f"{OWNER_UID}={ctx.peer_uid}"]}
