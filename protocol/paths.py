"""Where the daemon listens by default: the one rule ``podman-rpcd`` and every client share.

Pure: the caller passes the uid and the environment (``os.geteuid()``,
``os.environ``), so ``protocol`` reads nothing itself and the rule is tested
with any uid. ``PODMAN_RPC_SOCKET`` overrides it on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping

SOCKET_NAME = "podman-rpc.sock"
SOCKET_ENV = "PODMAN_RPC_SOCKET"


def default_runtime_dir(uid: int, environ: Mapping[str, str]) -> str:
    """``/run/podman-rpc`` for root; ``$XDG_RUNTIME_DIR/podman-rpc`` (or a /tmp one) otherwise."""
    if uid == 0:
        return "/run/podman-rpc"
    base = environ.get("XDG_RUNTIME_DIR") or f"/tmp/podman-rpc-{uid}"
    return f"{base}/podman-rpc"


def default_socket(uid: int, environ: Mapping[str, str]) -> str:
    """``$PODMAN_RPC_SOCKET`` when set and not empty, else the runtime dir's socket."""
    return environ.get(SOCKET_ENV) or f"{default_runtime_dir(uid, environ)}/{SOCKET_NAME}"


__all__ = ["SOCKET_ENV", "SOCKET_NAME", "default_runtime_dir", "default_socket"]
