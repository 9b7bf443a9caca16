"""An in-memory asyncio transport for driving a daemon ``Connection`` without a socket."""

from __future__ import annotations

import asyncio
from typing import Any

from podman_rpc.daemon.rpc.transport import Connection


class RecordingTransport(asyncio.Transport):
    """Collects what the connection writes; closing is reported back like a real one."""

    def __init__(self, protocol: Connection) -> None:
        super().__init__()
        self.protocol = protocol
        self.out = bytearray()
        self.writes = 0
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing
        self.writes += 1
        self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
