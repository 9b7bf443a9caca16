"""The bench runs (``--quick``) and prints well-formed tables, so it cannot rot.

No timing is asserted: only that every case ran (or was skipped because the
daemon does not implement its method yet), and that the output is well formed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig.daemon import REPO

pytestmark = [pytest.mark.podman, pytest.mark.slow]

# Case names as printed; a skipped group is printed under its --only name instead.
CASE_NAMES = [{"ping"}, {"local"}, {"throughput"}, {"ps", "listing"}, {"images", "listing"},
              {"run"}, {"run throughput", "run"}, {"output"}, {"memory"}, {"cold start", "cold"},
              {"hostile"}, {"podkill"}, {"warm"}]


def _table(lines: list[str], header: str) -> list[list[str]]:
    """The rows (as cells) of the markdown table whose header line is ``header``."""
    start = lines.index(header)
    width = header.count("|")
    assert set(lines[start + 1].replace("|", "").replace(":", "")) == {"-"}
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        assert line.count("|") == width, f"malformed row: {line}"
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_bench_prints_every_case(tmp_path: Path) -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed")
    plot = tmp_path / "latency.png"
    dump = tmp_path / "rows.json"
    args = [sys.executable, "-m", "bench", "--quick", "--json", str(dump)]
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if has_matplotlib:
        args += ["--plot", str(plot)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()

    measured = _table(lines, "| case | subject | n | p50 | p99 | unit | note |")
    printed = {row[0] for row in measured}
    assert all(printed & names for names in CASE_NAMES), printed
    assert not [row for row in measured if row[1] == "FAILED"]
    for case, subject, n, p50, _p99, unit, note in measured:
        if subject == "skipped":
            assert "not implemented" in note
            continue
        assert int(n) >= 1, (case, subject)
        assert float(p50.replace(",", "")) > 0, (case, subject, p50)
        assert unit in {"ms", "req/s", "runs/s", "MB"}

    targets = _table(lines, "| comparison | measured | target | met |")
    assert len(targets) == 17  # 15 before issue 20's two
    for _, shown, _, met in targets:
        assert met in {"yes", "**no**", "n/a"}
        assert (met == "n/a") == (shown.startswith("not measured") or shown == "-")

    rows = json.loads(dump.read_text())
    assert len(rows) == len(measured)
    if has_matplotlib:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_path_prints_every_step() -> None:
    """``python -m bench.profile_path`` (no Podman needed) still runs and prints its table."""
    done = subprocess.run([sys.executable, "-m", "bench.profile_path", "--calls", "400",
                           "--rounds", "1"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    rows = _table(lines, "| step of the per-request path | CPU per call (us) |")
    steps = [step for step, _ in rows]
    assert "the line server (bench/line_server.py): status, 200 lines per read" in steps
    assert "whole request through Connection: status, 200 lines per read" in steps
    assert all(float(micros) > 0 for _, micros in rows), rows
    # The second process (log level warning) appends its two whole-request rows.
    assert sum("log level warning" in line for line in lines) == 2
