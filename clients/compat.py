"""Drop-in for the old ``podman_client.py``: its exact arguments and JSON, through the daemon.

``podman-rpc compat [--socket PATH] COMMAND ...`` (or the ``podman-rpc-compat``
script) parses every command and option of the old CLI and answers on the same
streams with the same exit codes:

- success: ``{"success": true, "data": ...}`` on stdout, exit 0;
- failure: ``{"success": false, "error": "...", "exit_code": N}`` on stderr, exit 1,
  where N is the container's exit code for a failed ``run``, else 1;
- bad arguments: argparse's usage message on stderr, exit 2, as before.

The JSON is written with the stdlib ``json.dumps`` defaults, as the old CLI did,
so the bytes match too.

``--socket``: in the old CLI this is *Podman's* socket. The daemon already
knows which Podman it drives, so the option is accepted and ignored (a caller
such as the Dart ``PodmanPyRuntime`` keeps passing it unchanged). The daemon's
socket comes from ``PODMAN_RPC_SOCKET``, else the default path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from podman_rpc._core import default_socket
from podman_rpc.protocol.errors import ContainerFailed, RpcError
from podman_rpc.sync import Client


def build_parser(prog: str = "podman_client.py") -> argparse.ArgumentParser:
    """The old CLI's parser, option for option."""
    parser = argparse.ArgumentParser(prog=prog, description="Podman client (via podman-rpc)")
    parser.add_argument("--socket", default=os.environ.get("PODMAN_SOCKET_PATH",
                                                           "/run/podman/podman.sock"),
                        help="Podman socket (accepted for compatibility; the daemon "
                             "uses its own; the daemon socket is $PODMAN_RPC_SOCKET)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("version", help="Podman version")
    sub.add_parser("ping", help="Test the connection")
    info = sub.add_parser("info", help="System information")
    info.add_argument("--format")

    build = sub.add_parser("build", help="Build an image")
    build.add_argument("context")
    build.add_argument("--tag", "-t")
    build.add_argument("--file", "-f", default="Dockerfile")
    build.add_argument("--build-arg", action="append", default=[])
    build.add_argument("--platform")
    build.add_argument("--no-cache", action="store_true")
    build.add_argument("--force", action="store_true")

    images = sub.add_parser("images", help="List images")
    images.add_argument("--all", action="store_true")
    exists = sub.add_parser("exists", help="Whether an image exists")
    exists.add_argument("name")
    inspect = sub.add_parser("inspect", help="Inspect an image")
    inspect.add_argument("name")
    inspect.add_argument("--format")
    rmi = sub.add_parser("rmi", help="Remove an image")
    rmi.add_argument("name")
    rmi.add_argument("--force", action="store_true")
    sub.add_parser("prune", help="Remove unused images")

    run = sub.add_parser("run", help="Run a container")
    run.add_argument("image")
    run.add_argument("--name")
    run.add_argument("--entrypoint")
    # The old CLI's --detach defaulted to true and it still waited for the output,
    # so the flag never changed anything: accepted, and the run still waits.
    run.add_argument("--detach", "-d", action="store_true", default=True)
    run.add_argument("--port", "-p", action="append", default=[])
    run.add_argument("--env", "-e", action="append", default=[])
    run.add_argument("--volume", "-v", action="append", default=[])
    run.add_argument("--mount", "-m", action="append", default=[])
    run.add_argument("--run-command", "-c")
    run.add_argument("--no-auto-remove", action="store_true")
    run.add_argument("--network-mode", default="none")
    run.add_argument("--memory", default="20m")
    run.add_argument("--memory-swap", default="20m")
    run.add_argument("--cpus", type=float, default=0.5)
    run.add_argument("--timeout", type=float, default=5)
    run.add_argument("--workdir", "-w")

    ps = sub.add_parser("ps", help="List containers")
    ps.add_argument("--all", action="store_true")
    kill = sub.add_parser("kill", help="Kill a container")
    kill.add_argument("name")
    kill.add_argument("--signal", default="SIGKILL")
    rm = sub.add_parser("rm", help="Remove a container")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true")
    return parser


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def to_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The method and params the old command line means."""
    command = args.command
    if command in ("version", "ping", "prune"):
        return command, {}
    if command == "info":
        return "info", _drop_none({"format": args.format})
    if command == "build":
        # The old CLI resolved the context against its own working directory.
        return "build", _drop_none({
            "context": os.path.abspath(args.context), "tag": args.tag, "file": args.file,
            "build_args": args.build_arg, "platform": args.platform,
            "no_cache": args.no_cache, "force": args.force})
    if command in ("images", "ps"):
        return command, {"all": args.all}
    if command == "exists":
        return "exists", {"name": args.name}
    if command == "inspect":
        return "inspect", _drop_none({"name": args.name, "format": args.format})
    if command in ("rmi", "rm"):
        return command, {"name": args.name, "force": args.force}
    if command == "kill":
        return "kill", {"name": args.name, "signal": args.signal}
    if command == "run":
        return "run", _drop_none({
            "image": args.image, "name": args.name, "entrypoint": args.entrypoint,
            "command": args.run_command, "ports": args.port, "env": args.env,
            "volumes": args.volume, "mounts": args.mount,
            "auto_remove": not args.no_auto_remove, "network_mode": args.network_mode,
            "memory": args.memory, "memory_swap": args.memory_swap, "cpus": args.cpus,
            "timeout": args.timeout, "workdir": args.workdir})
    raise AssertionError(f"unhandled command {command}")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def to_old_shape(command: str, data: Any) -> Any:
    """The few places where the old ``data`` differs from the method's result."""
    if command == "run" and isinstance(data, dict) and "image" in data:
        return {**data, "image": _as_list(data["image"])}
    if command == "ps" and isinstance(data, list):
        return [{**c, "image": _as_list(c.get("image"))} if isinstance(c, dict) else c
                for c in data]
    return data


def _fail(message: str, exit_code: int = 1) -> int:
    sys.stderr.write(json.dumps({"success": False, "error": message,
                                 "exit_code": exit_code}) + "\n")
    return 1


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog or os.path.basename(sys.argv[0]) or "podman_client.py"
                        ).parse_args(argv)
    method, params = to_request(args)
    path = default_socket()
    try:
        with Client(path) as client:
            data = client.request(method, params or None)
    except ContainerFailed as exc:
        code = exc.data.get("exit_code")
        return _fail(exc.message, code if isinstance(code, int) and code else 1)
    except RpcError as exc:
        return _fail(exc.message)
    except OSError as exc:
        return _fail(f"Failed to connect to the podman-rpc daemon at {path}: {exc}")
    sys.stdout.write(json.dumps({"success": True, "data": to_old_shape(args.command, data)})
                     + "\n")
    return 0


def console_main() -> None:
    """Entry point of the ``podman-rpc-compat`` script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
