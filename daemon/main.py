"""``podman-rpc serve``: build the one Config, set up logging, run the Server."""

from __future__ import annotations

import argparse
import sys
import threading

from podman_rpc.daemon.config import load_config
from podman_rpc.daemon.heap import keep_freed_heap
from podman_rpc.daemon.logs import configure_logging
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
    code = Server(config).run()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        hard_exit(code)  # a worker still inside a Podman call: do not wait to join it
    return code
