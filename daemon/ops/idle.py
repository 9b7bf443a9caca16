"""Idle exit: leave after ``idle_timeout`` seconds with nothing to do, never mid-work.

Podman's own service exited under running work twice (containers/podman
issues 7826 and 7905: its idle timer ignored long-running calls and attached
sessions). Here "idle" is checked from the daemon's real state each time, not
inferred from a counter: no open connection, no request in flight or queued, no
cleanup task running, no container of ours running. Every connection open or
close and every finished request calls :meth:`Activity.touch` (as
``DaemonState.on_activity``), which restarts the idle period; while busy the
timer also re-checks on its own every ``poll`` seconds, because a container can
stop without any request finishing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from podman_rpc.daemon.rpc.context import DaemonState

log = structlog.get_logger("podman_rpc.idle")


def busy_reason(state: DaemonState) -> str | None:
    """Why the daemon must not exit now, or None when it is idle."""
    if state.connections:
        return f"{len(state.connections)} connection(s) open"
    if state.in_flight():
        return f"{state.in_flight()} request(s) in flight"
    if state.active_containers:
        return f"{len(state.active_containers)} container(s) running"
    if state.background:
        return f"{len(state.background)} cleanup task(s) running"
    return None


class Activity:
    """When a connection last opened or closed, or a request last finished (loop time).

    The daemon state is given :meth:`touch` and the idle timer reads :attr:`last`,
    so each gets it through its constructor and neither needs the other built first.
    ``touch`` runs on every request, so it only records the time: O(1), no timer churn.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = float("-inf")

    def touch(self) -> None:
        self.last = asyncio.get_running_loop().time()


class IdleTimer:
    """Calls ``on_idle`` once the daemon has been idle for ``timeout`` seconds.

    One timer is pending at any moment; when it fires it looks at the real state
    and at the last :class:`Activity`, and either re-arms or gives up.
    """

    def __init__(self, state: DaemonState, activity: Activity, timeout: float,
                 on_idle: Callable[[], None], poll: float = 1.0) -> None:
        self.state = state
        self.activity = activity
        self.timeout = timeout
        self.on_idle = on_idle
        self.poll = min(poll, max(timeout, 0.05))
        self.idle_since: float | None = None
        self._last_busy = 0.0  # when a check last found work under way
        self._silent_work = False  # that work could end without an activity call
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> None:
        """Begin counting; the daemon is idle from now unless work is already under way."""
        self._stopped = False
        self._last_busy = asyncio.get_running_loop().time()  # idle from now at the earliest
        self._arm(0.0)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def rearm(self) -> None:
        """Resume counting after an exit attempt was called off (work arrived meanwhile)."""
        self.stop()
        self.idle_since = None
        self.start()

    def _arm(self, delay: float) -> None:
        self._handle = asyncio.get_running_loop().call_later(max(delay, 0.0), self._check)

    def _check(self) -> None:
        self._handle = None
        if self._stopped:
            return
        now = asyncio.get_running_loop().time()
        if self.idle_since is not None and self.activity.last > self.idle_since:
            self.idle_since = None  # activity since the period began: it starts again
        if self.state.draining or busy_reason(self.state) is not None:
            self.idle_since = None
            self._last_busy = now
            self._silent_work = bool(self.state.active_containers or self.state.background)
            self._arm(self.poll)
            return
        if self.idle_since is None:
            # Requests and connections end with an activity call; a container or a
            # cleanup task ends silently, so then the idle period starts now (later
            # than the truth, never earlier).
            ended = now if self._silent_work else max(self.activity.last, self._last_busy)
            self.idle_since = ended
            self._silent_work = False
        left = self.idle_since + self.timeout - now
        if left > 0:
            self._arm(left)
            return
        log.info("idle timeout reached; exiting", idle_s=round(now - self.idle_since, 3))
        self._stopped = True
        self.on_idle()
