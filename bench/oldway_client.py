"""The old way, as a baseline: one Python process per call that imports podman-py.

A faithful minimal equivalent of ``podman_client.py``: parse the command line,
connect a ``PodmanClient`` to the socket, make the same podman-py call the
daemon makes, print ``{"success": ..., "data": ...}`` and exit. The bench times
the whole process, which is what every call cost the old caller.

    python bench/oldway_client.py --socket /run/podman/podman.sock ping
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _ps(client: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    # The same request the daemon's ps makes (podman-py's Container.status breaks on list items).
    response = client.api.get("/containers/json", params={"all": "true" if args.all else "false"})
    response.raise_for_status()
    return [{"id": c.get("Id", ""), "name": (c.get("Names") or [""])[0],
             "status": c.get("State", ""), "image": [c.get("Image", "")],
             "created": c.get("Created")} for c in response.json() or []]


def _images(client: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    response = client.api.get("/images/json", params={"all": "true" if args.all else "false"})
    response.raise_for_status()
    return [{"id": i.get("Id", ""), "tags": i.get("RepoTags") or [], "size": i.get("Size", 0),
             "created": i.get("Created"), "digest": i.get("Digest") or None}
            for i in response.json() or []]


def _run(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    container = client.containers.create(
        args.image, command=args.run_command, network_mode=args.network_mode,
        mem_limit=args.memory, memswap_limit=args.memory_swap,
        nano_cpus=int(args.cpus * 1e9), pids_limit=args.pids_limit)
    try:
        container.start()
        exit_code = container.wait(timeout=args.timeout)
        stdout = b"".join(container.logs(stdout=True, stderr=False)).decode(errors="replace")
    finally:
        if not args.no_auto_remove:
            container.remove(force=True)
    return {"container_id": container.id, "status": "exited", "exit_code": exit_code,
            "auto_remove": not args.no_auto_remove, "stdout": stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=os.environ.get("PODMAN_SOCKET_PATH",
                                                           "/run/podman/podman.sock"))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ping")
    sub.add_parser("version")
    for name in ("ps", "images"):
        sub.add_parser(name).add_argument("--all", action="store_true")
    run = sub.add_parser("run")
    run.add_argument("image")
    run.add_argument("--run-command", "-c", nargs="+")
    run.add_argument("--network-mode", default="none")
    run.add_argument("--memory", default="20m")
    run.add_argument("--memory-swap", default="20m")
    run.add_argument("--cpus", type=float, default=0.5)
    run.add_argument("--pids-limit", type=int, default=64)
    run.add_argument("--timeout", type=float, default=5)
    run.add_argument("--no-auto-remove", action="store_true")
    args = parser.parse_args()

    from podman import PodmanClient  # the import every call paid for

    try:
        with PodmanClient(base_url=f"unix://{args.socket}") as client:
            if args.command == "ping":
                data: Any = "Pong" if client.ping() else None
            elif args.command == "version":
                data = client.version().get("Version", "")
            elif args.command == "ps":
                data = _ps(client, args)
            elif args.command == "images":
                data = _images(client, args)
            else:
                data = _run(client, args)
    except Exception as exc:  # noqa: BLE001 - the old client reported every failure this way
        print(json.dumps({"success": False, "error": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps({"success": True, "data": data}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
