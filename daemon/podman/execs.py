"""libpod exec calls for the warm pool's runs, each ``fn(client, ...)`` for ``PodmanPool.call``.

``exec_start_into`` reads the attached exec the way the cold path reads a
multiplexed stream: 8-byte frames into an ``OutputCapture`` with its cap.
"""

from __future__ import annotations

import json
from typing import Any

from podman_rpc.daemon.handlers.output import OutputCapture, read_frames


def exec_create(client: Any, cid: str, argv: list[str], env: list[str],
                workdir: str | None) -> str:
    body: dict[str, Any] = {"AttachStdout": True, "AttachStderr": True, "AttachStdin": False,
                            "Tty": False, "Cmd": argv, "Env": env}
    if workdir:
        body["WorkingDir"] = workdir
    response = client.api.post(f"/containers/{cid}/exec", data=json.dumps(body),
                               headers={"Content-Type": "application/json"})
    response.raise_for_status()
    return str(response.json()["Id"])


def exec_start_into(client: Any, exec_id: str, capture: OutputCapture) -> None:
    """Start the exec attached and feed its output into ``capture`` until it ends."""
    response = client.api.post(f"/exec/{exec_id}/start",
                               data=json.dumps({"Detach": False, "Tty": False}),
                               headers={"Content-Type": "application/json"},
                               stream=True, timeout=None)
    try:
        response.raise_for_status()
        read_frames(response.raw, capture)
    finally:
        response.close()


def exec_exit_code(client: Any, exec_id: str) -> int | None:
    """The exec's exit code, or None while Podman still reports it running."""
    response = client.api.get(f"/exec/{exec_id}/json")
    response.raise_for_status()
    attrs = response.json()
    if attrs.get("Running"):
        return None
    return int(attrs.get("ExitCode", -1))


def image_command(client: Any, image: str) -> tuple[list[str] | None, list[str] | None]:
    """The image's (Entrypoint, Cmd): what a warm run execs when the call names no command."""
    response = client.api.get(f"/images/{image}/json")
    response.raise_for_status()
    config = response.json().get("Config") or {}
    return config.get("Entrypoint"), config.get("Cmd")
