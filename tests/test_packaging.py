"""The wheel installs one import name, ``podman_rpc``, and nothing that could collide.

``daemon``, ``protocol`` and ``clients`` are also names of other PyPI projects
(python-daemon installs ``daemon``): one install would overwrite the other.
"""

from __future__ import annotations

import subprocess
import sys
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
                   "podman_rpc/daemon/handlers/run.py", "podman_rpc/protocol/methods.py"):
        assert module in names
    assert any(n.startswith("podman_rpc/protocol/transcripts/") for n in names)
    assert not any(n.startswith(("podman_rpc/tests/", "podman_rpc/bench/")) for n in names)
