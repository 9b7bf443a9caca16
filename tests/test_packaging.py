"""The wheel installs one import name, ``podman_rpc``, and nothing that could collide.

``daemon``, ``protocol`` and ``clients`` are also names of other PyPI projects
(python-daemon installs ``daemon``): one install would overwrite the other.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_has_one_top_level_name(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("podman_rpc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"podman_rpc"}
    for module in ("podman_rpc/__init__.py", "podman_rpc/sync.py", "podman_rpc/daemon/server.py",
                   "podman_rpc/daemon/handlers/run.py", "podman_rpc/protocol/methods.py",
                   "podman_rpc/_typed.pyi"):
        assert module in names
    assert any(n.startswith("podman_rpc/protocol/transcripts/") for n in names)
    assert not any(n.startswith(("podman_rpc/tests/", "podman_rpc/bench/")) for n in names)


def test_one_version_source() -> None:
    """The package metadata, status and rpc.discover all read protocol/version.py.

    The Dart client's pubspec.yaml must hold a literal, so it is checked against it,
    and no Python source spells the version out anywhere else.
    """
    from importlib.metadata import version

    from podman_rpc.daemon.rpc.context import DAEMON_VERSION
    from podman_rpc.protocol.registry import openrpc_document
    from podman_rpc.protocol.version import VERSION

    assert version("podman-rpc") == VERSION == DAEMON_VERSION
    assert openrpc_document(DAEMON_VERSION)["info"]["version"] == VERSION
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    pubspec = (REPO / "clients" / "dart" / "pubspec.yaml").read_text().splitlines()
    assert f"version: {VERSION}" in pubspec
    spelled = [str(path.relative_to(REPO)) for folder in ("clients", "daemon", "protocol")
               for path in (REPO / folder).rglob("*.py")
               if f'"{VERSION}"' in path.read_text() or f"'{VERSION}'" in path.read_text()]
    assert spelled == ["protocol/version.py"]


def test_the_daemon_refuses_handlers_out_of_step_with_the_declarations() -> None:
    import pytest

    from podman_rpc.daemon.handlers import check_complete, load_handlers
    from podman_rpc.protocol.registry import METHODS

    handlers = load_handlers()  # the real set is complete
    assert set(handlers) == set(METHODS)
    without_ping = {k: v for k, v in handlers.items() if k != "ping"}
    with pytest.raises(RuntimeError, match="missing \\['ping'\\]"):
        check_complete(without_ping, METHODS)
    with pytest.raises(RuntimeError, match="undeclared \\['extra'\\]"):
        check_complete({**handlers, "extra": handlers["ping"]}, METHODS)
