"""Newline-delimited JSON framing: split a byte stream into lines, encode replies.

A line longer than ``max_line`` is reported once as :data:`OVERSIZE` and the
rest of it is discarded up to the next newline, so the connection stays usable.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

OVERSIZE: Final = object()
"""Marker yielded in place of a line that exceeded the limit."""


class LineDecoder:
    """Incremental splitter; holds at most ``max_line`` bytes of a partial line."""

    __slots__ = ("max_line", "_buffer", "_discarding")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False

    def clear(self) -> None:
        """Let go of a partial line now (the connection is closing), not when collected."""
        self._buffer = bytearray()
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of the partial line held now (what counts against a memory budget)."""
        return len(self._buffer)

    @property
    def has_partial(self) -> bool:
        """True while a line has started but not ended (used by idle timeouts)."""
        return bool(self._buffer) or self._discarding

    def feed(self, data: bytes) -> list[Any]:
        """Return the complete lines (bytes, or OVERSIZE) that ``data`` finished."""
        if not self._buffer and not self._discarding:
            # The common case, one C-level split: no partial line before, none too long.
            lines = data.split(b"\n")
            if len(data) <= self.max_line or max(map(len, lines)) <= self.max_line:
                rest = lines.pop()
                self._buffer += rest
                return lines
        out: list[Any] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
            elif len(self._buffer) + (end - start) > self.max_line:
                self._buffer.clear()
                out.append(OVERSIZE)
            elif self._buffer:
                self._buffer += data[start:end]
                out.append(bytes(self._buffer))
                self._buffer.clear()
            else:
                out.append(data[start:end])
            start = end + 1
        left = len(data) - start
        if left and not self._discarding:
            if len(self._buffer) + left > self.max_line:
                self._buffer.clear()
                self._discarding = True
                out.append(OVERSIZE)
            else:
                self._buffer += data[start:]
        return out


LINE_OPTION: Final = orjson.OPT_APPEND_NEWLINE
"""orjson's option for one message per line: it escapes every newline inside strings."""


def encode(message: Any) -> bytes:
    """One JSON value on one line."""
    return orjson.dumps(message, option=LINE_OPTION)


def embedded(line: bytes) -> orjson.Fragment:
    """An encoded line as a value inside another message (a reply inside a batch's list)."""
    return orjson.Fragment(line[:-1] if line.endswith(b"\n") else line)
