"""The default socket: one rule (protocol.paths) that the daemon and the clients both follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from podman_rpc import default_socket
from podman_rpc.daemon.config import Config, default_runtime_dir, load_config
from podman_rpc.protocol import paths


@pytest.mark.parametrize("uid, environ, socket", [
    (0, {}, "/run/podman-rpc/podman-rpc.sock"),
    (0, {"XDG_RUNTIME_DIR": "/run/user/0"}, "/run/podman-rpc/podman-rpc.sock"),
    (1000, {"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/podman-rpc/podman-rpc.sock"),
    (1000, {}, "/tmp/podman-rpc-1000/podman-rpc/podman-rpc.sock"),
    (1000, {"XDG_RUNTIME_DIR": ""}, "/tmp/podman-rpc-1000/podman-rpc/podman-rpc.sock"),
    (1000, {"PODMAN_RPC_SOCKET": "/srv/rpc.sock"}, "/srv/rpc.sock"),
    (0, {"PODMAN_RPC_SOCKET": ""}, "/run/podman-rpc/podman-rpc.sock"),  # empty: not set
])
def test_the_rule(uid: int, environ: dict[str, str], socket: str) -> None:
    assert paths.default_socket(uid, environ) == socket


@pytest.mark.parametrize("xdg", [None, "/run/user/4242"])
def test_daemon_and_clients_agree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  xdg: str | None) -> None:
    monkeypatch.delenv("PODMAN_RPC_SOCKET", raising=False)
    if xdg is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    assert Config().socket_path == Path(default_socket())
    assert Config().socket_path.parent == default_runtime_dir()
    monkeypatch.setenv("PODMAN_RPC_SOCKET", str(tmp_path / "given.sock"))
    assert load_config().socket_path == Path(default_socket()) == tmp_path / "given.sock"
