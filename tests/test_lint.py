"""The checks a maintainer relies on, run by the README's test command: ruff, mypy and
the import contracts (import-linter), all configured in ``pyproject.toml``.

mypy and import-linter resolve ``podman_rpc`` by walking folders, and cannot follow
setuptools' ``package-dir`` (``podman_rpc`` is ``clients/``, ``podman_rpc.daemon`` is
``daemon/``...). So both run on a copy laid out as installed, and their findings are
mapped back to the repository's paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYOUT = {"podman_rpc": REPO / "clients", "podman_rpc/daemon": REPO / "daemon",
          "podman_rpc/protocol": REPO / "protocol"}


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a wheel installs it: podman_rpc/, podman_rpc/daemon/, ..."""
    root = tmp_path_factory.mktemp("layout")
    for target, source in LAYOUT.items():
        shutil.copytree(source, root / target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "dart", "*.md"))
    return root


def _to_repo_paths(text: str) -> str:
    for target, source in sorted(LAYOUT.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(target + "/", str(source.relative_to(REPO)) + "/")
    return text


def test_ruff() -> None:
    code, out = _run("ruff", "check", "--no-cache", ".", cwd=REPO)
    assert code == 0, out


def test_mypy(installed_layout: Path) -> None:
    code, out = _run("mypy", "--config-file", str(REPO / "pyproject.toml"),
                     "--cache-dir", str(installed_layout / ".mypy_cache"), "-p", "podman_rpc",
                     cwd=installed_layout)
    assert code == 0, _to_repo_paths(out)


def test_import_contracts(installed_layout: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(installed_layout))
    script = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(script), "--config", str(REPO / "pyproject.toml"),
                           "--no-cache"], cwd=installed_layout, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


def test_the_contracts_name_every_client_module() -> None:
    """A client module missing from the contracts would escape them silently."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    clients = {f"podman_rpc.{p.stem}" for p in (REPO / "clients").glob("*.py")
               if p.stem != "__init__"}
    by_name = {c["name"]: c for c in contracts["contracts"]}
    assert set(by_name["the clients never import the daemon"]["source_modules"]) == clients
    assert set(by_name["the daemon never imports the clients"]["forbidden_modules"]) == clients
    protocol = set(by_name["protocol imports nothing else of the project (it does no I/O)"]
                   ["forbidden_modules"])
    assert protocol == clients | {"podman_rpc.daemon"}


def test_the_typed_client_stubs_are_current() -> None:
    """clients/_typed.pyi is generated from the declarations; a declaration changed without
    ``python -m podman_rpc._stubgen`` fails here."""
    from podman_rpc._stubgen import TARGET, render_stubs
    from podman_rpc.protocol.registry import METHODS

    assert TARGET.read_text() == render_stubs(), "stale: run python -m podman_rpc._stubgen"
    text = TARGET.read_text()
    for name in METHODS:
        py = name.replace(".", "_")
        assert f"    def {py}(" in text and f"    async def {py}(" in text
