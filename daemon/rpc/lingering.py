"""A refused peer gets its error line, then EOF, then the close a moment later.

We keep reading (and discarding) for that moment so that a client that wrote
first still reads the reason instead of a reset. Lingering is bounded across
all connections: beyond ``MAX_LINGERING`` at once, refused peers are closed at once.
"""

from __future__ import annotations

import asyncio

REFUSAL_LINGER_SECONDS = 2.0
MAX_LINGERING = 64
_lingering = 0  # refused connections waiting for their peer's EOF, over all connections


def start(transport: asyncio.Transport) -> asyncio.TimerHandle | None:
    """EOF now and the close later (its timer), or the close at once (None)."""
    global _lingering
    if _lingering >= MAX_LINGERING or not transport.can_write_eof():
        transport.close()
        return None
    _lingering += 1
    transport.write_eof()
    return asyncio.get_running_loop().call_later(REFUSAL_LINGER_SECONDS, transport.close)


def end() -> None:
    """A lingering connection is gone."""
    global _lingering
    _lingering -= 1
