"""``podman-rpc call --follow``: show ``$/progress`` on stderr while the call runs.

Lines are printed as they come, prefixed by their stream. For ``build`` on a
terminal, a one-line display (step N/M and the latest line) is redrawn in place
instead, and cleared when the call ends: the result JSON alone goes to stdout.
"""

from __future__ import annotations

import re
import shutil
from typing import Any, TextIO

import orjson

from podman_rpc._core import Progress

_STEP = re.compile(r"\bstep\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE)


def _text(line: Any) -> str:
    return line if isinstance(line, str) else orjson.dumps(line).decode()


class Follower:
    """Receives Progress on the client's reader thread and writes it out."""

    def __init__(self, method: str, out: TextIO) -> None:
        self.out = out
        self.live = method == "build" and out.isatty()
        self.step = ""
        self.lines = 0
        self.drawn = False

    def show(self, progress: Progress) -> None:
        text = _text(progress.line).rstrip("\n")
        self.lines += 1
        if not self.live:
            self.out.write(f"{progress.stream}: {text}\n")
            self.out.flush()
            return
        match = _STEP.search(text)
        if match:
            self.step = f"step {match.group(1)}/{match.group(2)}"
            self.out.write(f"\r\x1b[2K{text}\n")  # keep each step's header in the scrollback
        width = shutil.get_terminal_size((80, 24)).columns
        status = f"[build {self.step or '...'}, {self.lines} lines] {text}"
        self.out.write("\r\x1b[2K" + status[: max(width - 1, 10)])
        self.out.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.out.write("\r\x1b[2K")
            self.out.flush()
