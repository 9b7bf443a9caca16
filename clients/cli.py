"""The ``podman-rpc`` command: ``serve`` runs the daemon; the rest talk to it.

No command imports the daemon (uvloop, podman-py, structlog): ``serve`` execs it
(``podman_rpc.daemon.main``, also installed as ``podman-rpcd``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from podman_rpc._core import default_socket, has_progress
from podman_rpc.follow import Follower
from podman_rpc.protocol.version import VERSION


def _serve(args: argparse.Namespace) -> int:
    """Become the daemon (same pid, so systemd's socket activation and notify still hold).

    The clients never import the daemon: ``serve`` execs ``python -m podman_rpc.daemon``.
    """
    os.execv(sys.executable, [sys.executable, "-m", "podman_rpc.daemon", *args.rest])


def _print_json(value: Any, stream: Any) -> None:
    stream.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _client(args: argparse.Namespace) -> Any:
    from podman_rpc.sync import Client

    return Client(args.socket)


def _unreachable(command: str, path: str, exc: OSError) -> int:
    print(f"podman-rpc {command}: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
    return 2


def _call(args: argparse.Namespace) -> int:
    from podman_rpc.protocol.errors import RpcError
    from podman_rpc.protocol.registry import METHODS

    try:
        params = orjson.loads(args.params) if args.params else None
    except orjson.JSONDecodeError as exc:
        print(f"podman-rpc call: PARAMS_JSON is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if params is not None and not isinstance(params, (dict, list)):
        print("podman-rpc call: PARAMS_JSON must be a JSON object (params by name) or array"
              " (by position)", file=sys.stderr)
        return 2
    follower = None
    try:
        if args.follow:
            spec = METHODS.get(args.method)
            if spec is not None and has_progress(spec):
                named = spec.by_name(params) if isinstance(params, list) else params or {}
                params = {**named, "progress": True}
            follower = Follower(args.method, sys.stderr)
        with _client(args) as client:
            result = client.request(args.method, params,
                                    on_progress=follower.show if follower else None)
    except RpcError as exc:
        if follower:
            follower.finish()
        _print_json({"code": exc.code, "message": exc.message, "data": exc.data}, sys.stderr)
        return 1
    except OSError as exc:
        if follower:
            follower.finish()
        return _unreachable("call", args.socket, exc)
    if follower:
        follower.finish()
    _print_json(result, sys.stdout)
    return 0


def _discover(args: argparse.Namespace, command: str) -> dict[str, Any] | int:
    try:
        with _client(args) as client:
            return client.rpc_discover()
    except OSError as exc:
        return _unreachable(command, args.socket, exc)


def schema_type(schema: dict[str, Any]) -> str:
    """A short type name for a JSON Schema, as ``methods`` and ``describe`` print it."""
    if "enum" in schema:
        return "|".join(orjson.dumps(v).decode() for v in schema["enum"])
    if "oneOf" in schema:
        return "|".join(schema_type(s) for s in schema["oneOf"])
    kind = schema.get("type")
    if kind == "array":
        return f"{schema_type(schema.get('items', {}))}[]"
    if kind == "object" and "title" in schema:
        return str(schema["title"])
    return str(kind) if kind else "any"


def _param_text(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    text = f"{param['name']}: {schema_type(schema)}"
    if not param.get("required"):
        text += f" = {orjson.dumps(schema.get('default')).decode()}"
    return text


def _methods(args: argparse.Namespace) -> int:
    document = _discover(args, "methods")
    if isinstance(document, int):
        return document
    if args.json:
        _print_json(document["methods"], sys.stdout)
        return 0
    for entry in document["methods"]:
        params = ", ".join(_param_text(p) for p in entry["params"])
        print(f"{entry['name']}({params})")
        print(f"    {entry.get('summary', '')}")
    return 0


def _describe(args: argparse.Namespace) -> int:
    document = _discover(args, "describe")
    if isinstance(document, int):
        return document
    entry = next((m for m in document["methods"] if m["name"] == args.method), None)
    if entry is None:
        print(f"podman-rpc describe: no method {args.method!r}; see `podman-rpc methods`",
              file=sys.stderr)
        return 1
    if args.json:
        _print_json(entry, sys.stdout)
        return 0
    print(entry["name"])
    print()
    for line in inspect.cleandoc(entry.get("description", "")).splitlines():
        print(f"  {line}".rstrip())
    print()
    print(f"lane: {entry.get('x-lane')}    default deadline: {entry.get('x-timeout')}s")
    print("params:" if entry["params"] else "params: none")
    for param in entry["params"]:
        flag = " (required)" if param.get("required") else ""
        print(f"  {_param_text(param)}{flag}")
        if param.get("description"):
            print(f"      {param['description']}")
    print(f"result: {schema_type(entry['result']['schema'])}")
    print(orjson.dumps(entry["result"]["schema"], option=orjson.OPT_INDENT_2).decode())
    return 0


def _bridge(args: argparse.Namespace) -> int:
    from podman_rpc.bridge import bridge

    return bridge(args.socket)


def _compat(args: argparse.Namespace) -> int:
    from podman_rpc.compat import main as compat_main

    return compat_main(args.rest, prog="podman-rpc compat")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podman-rpc", description="Run the podman-rpc daemon (serve), or talk to it.")
    parser.add_argument("--version", action="version", version=f"podman-rpc {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon (podman-rpcd); --help for its options",
                           add_help=False)
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    serve.set_defaults(func=_serve)

    socket_help = "daemon socket (default: $PODMAN_RPC_SOCKET or the serve default)"
    call = sub.add_parser("call", help="send one request and print its result")
    call.add_argument("method")
    call.add_argument("params", nargs="?",
                      help="params: a JSON object (by name) or array (by position)")
    call.add_argument("--socket", default=default_socket(), help=socket_help)
    call.add_argument("--follow", action="store_true",
                      help="ask for $/progress and print it on stderr as it comes")
    call.set_defaults(func=_call)

    methods = sub.add_parser("methods", help="list the methods, from rpc.discover")
    methods.add_argument("--socket", default=default_socket(), help=socket_help)
    methods.add_argument("--json", action="store_true", help="print the OpenRPC method list")
    methods.set_defaults(func=_methods)

    describe = sub.add_parser("describe", help="one method's params, docs and result")
    describe.add_argument("method")
    describe.add_argument("--socket", default=default_socket(), help=socket_help)
    describe.add_argument("--json", action="store_true", help="print its OpenRPC entry")
    describe.set_defaults(func=_describe)

    bridge = sub.add_parser("bridge", help="copy stdin/stdout to the daemon socket (for ssh)")
    bridge.add_argument("--socket", default=default_socket(), help=socket_help)
    bridge.set_defaults(func=_bridge)

    compat = sub.add_parser("compat", help="the old podman_client.py CLI, through the daemon",
                            add_help=False)
    compat.add_argument("rest", nargs=argparse.REMAINDER)
    compat.set_defaults(func=_compat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # every later argument is the daemon's, --help included
        return _serve(argparse.Namespace(rest=argv[1:]))
    if argv[:1] == ["compat"]:  # every later argument is the old CLI's, options included
        from podman_rpc.compat import main as compat_main

        return compat_main(argv[1:], prog="podman-rpc compat")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: the shell's convention, without a traceback
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
