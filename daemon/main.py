"""``podman-rpcd`` (also ``podman-rpc serve``): parse, build the one Config, set up
logging, run the Server. The serve command line lives here, with the daemon, so
the clients never import the daemon and the daemon never imports the clients."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from podman_rpc.daemon.config import load_config
from podman_rpc.daemon.ops.heap import keep_freed_heap, tune_gc
from podman_rpc.daemon.ops.logs import configure_logging
from podman_rpc.daemon.server import Server, hard_exit


def serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, {
            "socket_path": args.socket,
            "podman_socket": args.podman_socket,
            "log_level": args.log_level,
            "idle_timeout": getattr(args, "idle_timeout", None),
        })
        configure_logging(config.log_level)
    except (OSError, ValueError, TypeError) as exc:
        print(f"podman-rpc serve: bad configuration: {exc}", file=sys.stderr)
        return 2
    keep_freed_heap()  # bursts of replies no longer fault the same pages in again
    tune_gc()  # shorter pauses under bursts (issue 18)
    code = Server(config).run()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        hard_exit(code)  # a worker still inside a Podman call: do not wait to join it
    return code


def build_parser(prog: str = "podman-rpc serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the podman-rpc daemon.")
    parser.add_argument("--socket", help="daemon socket (env PODMAN_RPC_SOCKET)")
    parser.add_argument("--podman-socket", help="Podman's socket (env PODMAN_SOCKET_PATH)")
    parser.add_argument("--config", help="TOML config file ([daemon] table)")
    parser.add_argument("--log-level", help="debug, info, warning or error")
    parser.add_argument("--idle-timeout", type=float,
                        help="exit after this many idle seconds (off by default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return serve(build_parser().parse_args(argv))
