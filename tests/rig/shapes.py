"""Hostile JSON shapes that more than one fuzz test throws at the parser."""

from __future__ import annotations

from typing import Any


def nested(depth: int, leaf: Any = 0) -> Any:
    """``depth`` levels of alternating objects and arrays around ``leaf``."""
    value: Any = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value
