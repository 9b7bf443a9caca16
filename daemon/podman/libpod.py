"""Raw libpod REST calls, each ``fn(client, ...)`` for ``PodmanPool.call``.

Used where podman-py's object layer costs round trips (``containers.get`` before
every action) or hides a field. Failures surface as podman-py exceptions from
``raise_for_status`` and are translated by the pool (``daemon.podman.errors``);
the cleanup helpers instead check the status code, because "already gone" is
success for them.
"""

from __future__ import annotations

import json
from typing import Any

from podman_rpc.daemon.handlers.output import OutputCapture, read_frames

WAIT_INTERVAL = "10ms"  # libpod polls the state this often; its default (250ms) costs ~0.2s per run
_GONE = {404, 409}  # no such container / not running (libpod also says 500 "state improper")


def create(client: Any, body: dict[str, Any]) -> str:
    response = client.api.post("/containers/create", data=json.dumps(body),
                               headers={"Content-Type": "application/json"})
    response.raise_for_status()
    return str(response.json()["Id"])


def start(client: Any, cid: str) -> None:
    client.api.post(f"/containers/{cid}/start").raise_for_status()


def wait_exit(client: Any, cid: str, http_timeout: float) -> int:
    """Block until the container has exited; its exit code."""
    response = client.api.post(f"/containers/{cid}/wait", timeout=http_timeout,
                               params={"condition": "exited", "interval": WAIT_INTERVAL})
    response.raise_for_status()
    return int(response.json())


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


def state_or_none(client: Any, cid: str) -> str | None:
    """The container's state ("running", "exited", ...), or None once it is gone."""
    response = client.api.get(f"/containers/{cid}/json")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return str(response.json().get("State", {}).get("Status", ""))


def kill(client: Any, cid: str, signal: str = "SIGKILL") -> None:
    response = client.api.post(f"/containers/{cid}/kill", params={"signal": signal})
    response.raise_for_status()


def kill_quietly(client: Any, cid: str) -> None:
    """SIGKILL; a container that already stopped or vanished is fine."""
    response = client.api.post(f"/containers/{cid}/kill", params={"signal": "SIGKILL"})
    if response.status_code not in _GONE and "state improper" not in response.text:
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


def remove_quietly(client: Any, cid: str) -> None:
    """Force-remove (killing it first); one that is already gone is fine."""
    response = client.api.delete(f"/containers/{cid}", params={"force": "true", "timeout": "0"})
    if response.status_code != 404 and not _removed_anyway(client, cid, response):
        response.raise_for_status()


def stop(client: Any, cid: str, seconds: float, http_timeout: float) -> None:
    response = client.api.post(f"/containers/{cid}/stop", params={"timeout": int(seconds)},
                               timeout=http_timeout)
    if response.status_code != 304:  # 304: already stopped
        response.raise_for_status()
