"""The lists callers poll, ``ps`` and ``images``: asked on the loop, and shared by callers
that ask together.

Why on the loop (``daemon.podman.http``) and not through podman-py on a worker: a
worker hop plus ``requests`` costs about a millisecond of the daemon's CPU per call,
and the worker threads take the GIL from the event loop.

Why shared: each list costs Podman CPU, and a peer may ask in a loop; callers asking
together share one call (``daemon.podman.shared``), so a list asked right after a
``run`` replied still includes that run's container.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from podman_rpc.daemon.podman.http import API_PREFIX, PodmanHTTP
from podman_rpc.daemon.podman.lifecycle import check
from podman_rpc.daemon.podman.shared import SharedReads


def iso_time(value: Any) -> str:
    """Podman gives Unix seconds in lists and RFC 3339 text elsewhere; the CLI showed text."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return str(value or "")


class Listings:
    """``ps`` and ``images`` as Podman lists them, shared by callers asking together."""

    def __init__(self, http: PodmanHTTP, shared: SharedReads) -> None:
        self.http = http
        self.shared = shared

    async def containers(self, all_: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The containers, in the reply shape of ``ps`` (shared: callers must not change it)."""
        query = {"all": "true" if all_ else "false"}
        if filters:
            query["filters"] = json.dumps(filters, sort_keys=True)
        target = f"{API_PREFIX}/containers/json?{urlencode(query)}"
        return await self.shared.read(target, functools.partial(self._containers, target))

    async def _containers(self, target: str) -> list[dict[str, Any]]:
        found = check(await self.http.request("GET", target)).json() or []
        return [{"id": c.get("Id", ""), "name": (c.get("Names") or [""])[0],
                 "status": c.get("State", ""), "image": [c.get("Image", "")],
                 "created": iso_time(c.get("Created"))} for c in found]

    async def images(self, all_: bool) -> list[dict[str, Any]]:
        """Podman's image list, as it answers (shared: callers must not change it)."""
        target = f"{API_PREFIX}/images/json?all={'true' if all_ else 'false'}"
        return await self.shared.read(target, functools.partial(self._images, target))

    async def _images(self, target: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = check(await self.http.request("GET", target),
                                            subject="image").json() or []
        return found
