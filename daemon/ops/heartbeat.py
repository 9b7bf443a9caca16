"""The systemd watchdog and STATUS= summaries, driven by a timer on the event loop.

The ping is sent from a callback on the loop itself, so a loop that is blocked
(a handler doing blocking I/O, a runaway computation) sends no ``WATCHDOG=1``
and systemd restarts the daemon, which is what ``WatchdogSec=`` is for. A ping
from a separate thread would keep a wedged daemon alive.
"""

from __future__ import annotations

import asyncio

import structlog

from podman_rpc.daemon.ops.idle import busy_reason
from podman_rpc.daemon.ops.systemd import Notifier
from podman_rpc.daemon.rpc.context import DaemonState

log = structlog.get_logger("podman_rpc.heartbeat")

STATUS_INTERVAL = 2.0


def summary(state: DaemonState) -> str:
    """One line for ``systemctl status``: what the daemon is doing right now."""
    pool = state.pool
    if pool.version and pool.reachable is not False:
        podman = f"podman {pool.version}"
    else:
        podman = "podman answering" if pool.reachable else "podman unreachable"
    if state.draining:
        return f"draining: {state.in_flight()} request(s) in flight; {podman}"
    served = sum(state.counters.served.values())
    work = busy_reason(state) and (
        f"{len(state.connections)} connection(s), {state.in_flight()} in flight, "
        f"{len(state.active_containers)} container(s)")
    return f"serving: {work or 'idle'}; {served} request(s) served; {podman}"


class Heartbeat:
    """Sends WATCHDOG=1 every half WATCHDOG_USEC and STATUS= when it changes."""

    def __init__(self, state: DaemonState, notifier: Notifier) -> None:
        self.state = state
        self.notifier = notifier
        watchdog = notifier.watchdog_interval
        self.watchdog = watchdog
        self.interval = min(watchdog, STATUS_INTERVAL) if watchdog else STATUS_INTERVAL
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0

    def start(self) -> None:
        if not self.notifier.enabled:
            return
        self._tick()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = now - self._expected if self._expected else 0.0
        if self.watchdog and late > self.watchdog:
            log.warning("event loop was blocked", late_s=round(late, 3))
        fields = []
        if self.watchdog:
            fields.append("WATCHDOG=1")
        line = summary(self.state)
        if line != self.notifier.last_status:
            self.notifier.last_status = line
            fields.append(f"STATUS={line}")
        if fields:
            self.notifier.notify(*fields)
        self._expected = now + self.interval
        self._handle = loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
