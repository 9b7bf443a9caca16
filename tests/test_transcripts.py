"""Replay the wire transcripts in ``protocol/transcripts`` against the real daemon, byte for byte.

Format (see ``protocol/transcripts/README.md``): the first line names the
transcript; then ``{"send": LINE}`` is written as is, and ``{"recv": LINE}`` must
be the very next line the daemon writes. In a ``recv`` line, ``"<<str>>"``
matches any JSON string and ``<<num>>`` any JSON number (container ids, times,
versions); everything else, ids included, must match exactly.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from podman_rpc._core import encode_cancel, encode_notification, encode_request
from tests.rig.daemon import REPO, DaemonProcess
from tests.rig.podman import podman

TRANSCRIPTS = REPO / "protocol" / "transcripts"
FILES = sorted(TRANSCRIPTS.glob("*.jsonl"))
PLACEHOLDERS = {'"<<str>>"': r'"(?:[^"\\]|\\.)*"',
                "<<num>>": r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?"}


def load(path: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header, steps = lines[0], lines[1:]
    return header, [(next(iter(step)), next(iter(step.values()))) for step in steps]


def pattern(expected: str) -> re.Pattern[str]:
    """The regex a recv line stands for: exact text except the placeholders."""
    parts = re.split("(" + "|".join(map(re.escape, PLACEHOLDERS)) + ")", expected)
    return re.compile("".join(PLACEHOLDERS.get(p) or re.escape(p) for p in parts))


def test_transcripts_exist_and_are_well_formed() -> None:
    assert {p.stem for p in FILES} >= {"success", "errors", "batch", "progress", "cancel"}
    for path in FILES:
        header, steps = load(path)
        assert header["transcript"] == path.stem and header["doc"]
        assert steps and steps[0][0] == "send"
        for kind, line in steps:
            assert kind in ("send", "recv") and "\n" not in line
            if kind == "recv":  # with samples in the placeholders, a recv line is JSON
                json.loads(line.replace('"<<str>>"', '"x"').replace("<<num>>", "1.5"))


def test_python_client_writes_the_transcripts_request_bytes() -> None:
    """The Python (and so the Dart) client's encoding is the one the transcripts pin."""
    _, success = load(TRANSCRIPTS / "success.jsonl")
    sent = [line for kind, line in success if kind == "send"]
    assert encode_request(1, "ping", None) == sent[0].encode() + b"\n"
    assert encode_notification("ping", None) == sent[4].encode() + b"\n"
    assert encode_request(3, "info", {"format": "{{.Host.Arch}}"}) == sent[6].encode() + b"\n"
    _, cancel = load(TRANSCRIPTS / "cancel.jsonl")
    assert encode_cancel("long") == cancel[1][1].encode() + b"\n"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_replay(path: Path, daemon: DaemonProcess, busybox: str) -> None:
    _, steps = load(path)
    with daemon.connect(timeout=60) as conn:
        for number, (kind, line) in enumerate(steps, start=2):
            if kind == "send":
                conn.send_bytes(line.encode() + b"\n")
                continue
            got = conn.read_line().decode()
            assert pattern(line).fullmatch(got), f"{path.name}:{number}\n want {line}\n got  {got}"
        # Nothing else may be waiting: the next line is the reply to a fresh request.
        conn.send_bytes(b'{"jsonrpc":"2.0","id":"end-of-transcript","method":"status"}\n')
        assert conn.read()["id"] == "end-of-transcript"
    names = re.findall(rb'"name":"(transcript-[a-z-]+)"', path.read_bytes().replace(b'\\"', b'"'))
    for name in {n.decode() for n in names}:  # auto_remove: none of them stays behind
        until = time.monotonic() + 30
        while podman("container", "exists", name, check=False).returncode == 0:
            assert time.monotonic() < until, f"{name} was left behind"
            time.sleep(0.1)
