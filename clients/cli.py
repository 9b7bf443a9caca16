"""The ``podman-rpc`` command: ``serve`` runs the daemon; the rest talk to it."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any, Sequence

import orjson


def default_socket() -> str:
    """Where the daemon listens, by the same rule ``serve`` uses."""
    if "PODMAN_RPC_SOCKET" in os.environ:
        return os.environ["PODMAN_RPC_SOCKET"]
    if os.geteuid() == 0:
        return "/run/podman-rpc/podman-rpc.sock"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/podman-rpc-{os.geteuid()}"
    return f"{base}/podman-rpc/podman-rpc.sock"


def _serve(args: argparse.Namespace) -> int:
    from daemon.main import serve  # the daemon's dependencies load only here

    return serve(args)


def _call_once(path: str, method: str, params: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        request["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(orjson.dumps(request) + b"\n")
        buffer = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("daemon closed the connection without a reply")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = orjson.loads(line)
                if isinstance(message, dict) and message.get("id") == 1:
                    return message


def _call(args: argparse.Namespace) -> int:
    try:
        params = orjson.loads(args.params) if args.params else None
    except orjson.JSONDecodeError as exc:
        print(f"podman-rpc call: PARAMS_JSON is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        reply = _call_once(args.socket, args.method, params)
    except OSError as exc:
        print(f"podman-rpc call: cannot reach the daemon at {args.socket}: {exc}", file=sys.stderr)
        return 2
    if "error" in reply:
        sys.stderr.write(orjson.dumps(reply["error"], option=orjson.OPT_INDENT_2).decode() + "\n")
        return 1
    sys.stdout.write(orjson.dumps(reply.get("result"), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podman-rpc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--socket", help="daemon socket (env PODMAN_RPC_SOCKET)")
    serve.add_argument("--podman-socket", help="Podman's socket (env PODMAN_SOCKET_PATH)")
    serve.add_argument("--config", help="TOML config file ([daemon] table)")
    serve.add_argument("--log-level", help="debug, info, warning or error")
    serve.add_argument("--idle-timeout", type=float,
                       help="exit after this many idle seconds (off by default)")
    serve.set_defaults(func=_serve)

    call = sub.add_parser("call", help="send one request and print its result")
    call.add_argument("method")
    call.add_argument("params", nargs="?", help="params as a JSON object")
    call.add_argument("--socket", default=default_socket())
    call.set_defaults(func=_call)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
