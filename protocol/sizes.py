"""Sizes as people write them: ``"20m"``, ``"1.5g"``, ``"2GiB"``, ``"512"``. Pure, no I/O.

One grammar for every size the project reads: a run's ``memory``, ``memory_swap``
and mount ``size=`` params, and the policy's ceilings (``max_memory`` and the
like). Units are powers of 1024 and case does not matter, as in Podman's own
parser (go-units ``RAMInBytes``), so a size means the same here as in Podman:

    NUMBER [UNIT] [i] [b]     NUMBER: digits, optionally with a fraction ("1.5")
                              UNIT: b k m g t (bytes, KiB, MiB, GiB, TiB)

Whitespace around the number and the unit is ignored. The arithmetic is exact
(integers, no float), and a fraction of a byte is dropped ("1.5" is 1 byte).
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d{1,20})(?:\.(\d{1,12}))?\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

GRAMMAR = "a size like 512, 20m, 1.5g or 2GiB (units b, k, m, g, t)"
"""What :func:`parse_size` accepts, in words, for error messages."""


def parse_size(text: str) -> int:
    """``"20m"`` -> 20971520 bytes; raises ValueError (saying the grammar) for anything else."""
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not {GRAMMAR}: {text!r}")
    whole, fraction, unit = match.groups()
    scale = _UNITS[unit.lower()]
    size = int(whole) * scale
    if fraction:
        size += int(fraction) * scale // 10 ** len(fraction)
    return size


def is_size(text: str) -> bool:
    """Whether ``text`` is a size in :func:`parse_size`'s grammar."""
    return isinstance(text, str) and _SIZE.match(text) is not None


__all__ = ["GRAMMAR", "is_size", "parse_size"]
