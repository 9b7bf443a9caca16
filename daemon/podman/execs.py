"""libpod exec calls for the warm pool's runs, on the event loop (``PodmanHTTP``).

Exec create and inspect are small JSON calls on kept-alive connections; the
attached ``exec start`` is read by the same reader as ``run``'s attach stream
(``daemon.podman.attach``), with the same cap.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from podman_rpc.daemon.podman.attach import AttachStream, Sink
from podman_rpc.daemon.podman.http import API_PREFIX, PodmanHTTP
from podman_rpc.daemon.podman.lifecycle import check


async def exec_create(http: PodmanHTTP, cid: str, argv: list[str], env: list[str],
                      workdir: str | None) -> str:
    body: dict[str, Any] = {"AttachStdout": True, "AttachStderr": True, "AttachStdin": False,
                            "Tty": False, "Cmd": argv, "Env": env}
    if workdir:
        body["WorkingDir"] = workdir
    reply = check(await http.request("POST", f"{API_PREFIX}/containers/{cid}/exec", body))
    return str(reply.json()["Id"])


async def exec_run(http: PodmanHTTP, exec_id: str, sink: Sink) -> None:
    """Start the exec attached and feed its output into ``sink`` until it ends."""
    stream = await AttachStream.open(http, "POST", f"{API_PREFIX}/exec/{exec_id}/start",
                                     {"Detach": False, "Tty": False})
    try:
        await stream.pump(sink)
    finally:
        stream.close()


async def exec_exit_code(http: PodmanHTTP, exec_id: str) -> int | None:
    """The exec's exit code, or None while Podman still reports it running."""
    attrs = check(await http.request("GET", f"{API_PREFIX}/exec/{exec_id}/json")).json()
    if attrs.get("Running"):
        return None
    return int(attrs.get("ExitCode", -1))


async def image_command(http: PodmanHTTP,
                        image: str) -> tuple[list[str] | None, list[str] | None]:
    """The image's (Entrypoint, Cmd): what a warm run execs when the call names no command."""
    reply = check(await http.request("GET", f"{API_PREFIX}/images/{quote(image, safe='/:@')}/json"),
                     subject="image")
    config = reply.json().get("Config") or {}
    return config.get("Entrypoint"), config.get("Cmd")
