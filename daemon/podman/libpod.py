"""Raw libpod REST calls, each ``fn(client, ...)`` for ``PodmanPool.call``.

Used where podman-py's object layer costs round trips (``containers.get`` before
every action) or hides a field. Failures surface as podman-py exceptions from
``raise_for_status`` and are translated by the pool (``daemon.podman.errors``);
the lifecycle of a ``run`` (create, start, wait, kill-and-remove) is on the event
loop instead (``daemon.podman.lifecycle``).
"""

from __future__ import annotations

from typing import Any

from podman_rpc.daemon.handlers.output import OutputCapture, read_frames


def logs_into(client: Any, cid: str, capture: OutputCapture, follow: bool = False,
              tail: int | None = None) -> None:
    """Stream the container's logs into ``capture`` (until it exits, with ``follow``)."""
    params: dict[str, Any] = {"stdout": "true", "stderr": "true"}
    if follow:
        params["follow"] = "true"
    if tail is not None:
        params["tail"] = str(tail)
    response = client.api.get(f"/containers/{cid}/logs", params=params, stream=True,
                              timeout=None if follow else client.api.timeout)
    try:
        response.raise_for_status()
        read_frames(response.raw, capture)
    finally:
        response.close()


def container_inspect(client: Any, cid: str) -> dict[str, Any]:
    response = client.api.get(f"/containers/{cid}/json")
    response.raise_for_status()
    attrs: dict[str, Any] = response.json()
    return attrs


def kill(client: Any, cid: str, signal: str = "SIGKILL") -> None:
    response = client.api.post(f"/containers/{cid}/kill", params={"signal": signal})
    response.raise_for_status()


def _removed_anyway(client: Any, cid: str, response: Any) -> bool:
    """A 500 "root filesystem ... busy" after which the container is gone all the same.

    With a user namespace (policy userns = "auto") Podman 4.3 sometimes answers a
    remove with EBUSY on the container's shm directory (its cleanup process still
    holds the mount) after it has already dropped the container: about 1 in 4 here.
    """
    if response.status_code != 500 or "root filesystem" not in response.text:
        return False
    return client.api.get(f"/containers/{cid}/exists").status_code == 404


def remove(client: Any, cid: str, force: bool) -> None:
    params = {"force": "true", "timeout": "0"} if force else {}
    response = client.api.delete(f"/containers/{cid}", params=params)
    if not _removed_anyway(client, cid, response):
        response.raise_for_status()


def stop(client: Any, cid: str, seconds: float, http_timeout: float) -> None:
    response = client.api.post(f"/containers/{cid}/stop", params={"timeout": int(seconds)},
                               timeout=http_timeout)
    if response.status_code != 304:  # 304: already stopped
        response.raise_for_status()
