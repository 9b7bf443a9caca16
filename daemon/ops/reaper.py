"""The container reaper: removes the daemon's own containers that nobody will clean up.

It only ever looks at containers carrying ``OWNER=podman-rpc`` (see
``daemon.podman.labels``); unlabelled containers are never listed, so never touched.
A labelled container is reaped when:

* its ``DEADLINE`` label (Unix time) has passed, whichever daemon made it: the
  deadline is authoritative, so a container outlives no request;
* the daemon instance that made it is gone (pid + process start time, see
  ``context.instance_alive``): this covers a daemon SIGKILLed mid-run, and lets
  several daemons share one host without reaping each other's live work;
* it has exited, was made by this instance, no request of ours is still
  collecting it (not in ``state.active_containers``) and it was auto-remove;
* it was made by this instance, has not finished, no request of ours supervises
  it (not in ``active_containers``, not a detached run) and it is older than
  :data:`ORPHAN_GRACE`: its request failed while Podman was away (SIGKILLed,
  restarting), so its cleanup never reached Podman. The grace covers the moment
  between Podman recording a create and the request learning the new id.
* it is an idle warm container of this instance (``WARM_EXPIRES``, not claimed,
  so not in ``state.active_containers``) past its ttl.

One exception to all three: an exited container whose caller asked to keep it
(``AUTO_REMOVE`` false) is the caller's to remove; a running one past its
deadline is still killed and removed.

Running containers are SIGKILLed before removal, by the daemon's one
kill-and-remove routine (``daemon.podman.lifecycle.kill_and_remove``): ``rm
--force`` would first send SIGTERM and wait the stop timeout (10 s), which a
``sleep`` as PID 1 ignores. Removing a container is not always the end of its
processes: Podman SIGKILLed mid-start forgets that ``runc create`` ran, and its
removal leaves ``conmon`` and ``runc init`` alive. After each removal, and for
any container of ours that vanished from Podman's list, the pass kills what
``daemon.ops.leftovers`` finds of it in /proc.

The pass runs once before the daemon serves, then every ``reap_interval``.
Each pass lists once and removes with a small bounded concurrency, so a slow
Podman never makes passes pile up and the reaper never takes more than a few
pool workers from requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from podman_rpc.daemon.ops.leftovers import kill_leftovers
from podman_rpc.daemon.podman.labels import (
    AUTO_REMOVE,
    DEADLINE,
    DETACHED,
    INSTANCE,
    OWNER,
    OWNER_VALUE,
    REQUEST,
    WARM_EXPIRES,
)
from podman_rpc.daemon.podman.lifecycle import kill_and_remove
from podman_rpc.daemon.rpc.context import DaemonState, instance_alive
from podman_rpc.protocol.errors import NotFound, RpcError

log = structlog.get_logger("podman_rpc.reaper")

FINISHED_STATES = frozenset({"exited", "stopped", "dead"})
# Seconds past a container's deadline before the reaper steps in: the request that
# owns it kills and removes it itself at the deadline, and the reaper should not race it.
DEADLINE_GRACE = 1.0
PARALLEL_REMOVALS = 4
# The startup pass runs before serving; past this budget the periodic pass takes over.
STARTUP_BUDGET = 20.0
# Seconds an unfinished container of ours must exist, unsupervised, before it is an orphan.
ORPHAN_GRACE = 3.0
# Seconds a container of ours is remembered after it left Podman's list, so that what
# it left behind is found in the passes after.
REMEMBER_GONE = 60.0
# Seconds a removed container's conmon may live on once its container has no process
# left: it normally runs the exit command and ends on its own well within this.
CONMON_LINGER = 3.0


def list_owned(client: Any) -> list[dict[str, Any]]:
    """Every container (any state) labelled as ours, as Podman's list objects."""
    found = client.containers.list(all=True, filters={"label": f"{OWNER}={OWNER_VALUE}"})
    return [container.attrs for container in found]


def _deadline(labels: dict[str, str]) -> float | None:
    try:
        return float(labels[DEADLINE])
    except (KeyError, ValueError):
        return None


def created_unix(attrs: dict[str, Any]) -> float | None:
    """When Podman created the container (list's ``Created``: RFC 3339 text or Unix time).

    Go writes nanoseconds, which ``datetime`` does not read: the fraction is cut to micros.
    """
    created = attrs.get("Created")
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        return float(created)
    match = _RFC3339.match(created) if isinstance(created, str) else None
    if match is None:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(base + (fraction or "")[:7] + zone).timestamp()


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def verdict(attrs: dict[str, Any], *, now: float, own_instance: str,
            active: set[str] | frozenset[str], alive: Callable[[str], bool],
            stopping: bool = False) -> str | None:
    """Why this container must be reaped, or None to leave it alone. Pure: no I/O.

    ``stopping`` is the daemon's last pass: its own running containers (detached
    runs) would outlive it unsupervised, so they go too.
    """
    labels = attrs.get("Labels") or {}
    if labels.get(OWNER) != OWNER_VALUE:
        return None  # never touch what we did not create
    finished = str(attrs.get("State", "")).lower() in FINISHED_STATES
    if finished and labels.get(AUTO_REMOVE) != "true":
        return None  # the caller asked to keep it (``auto_remove: false``): it is theirs now
    deadline = _deadline(labels)
    if deadline is not None and now > deadline + DEADLINE_GRACE:
        return "deadline passed"
    instance = labels.get(INSTANCE, "")
    if instance != own_instance:
        return None if alive(instance) else "instance gone"
    names = set(attrs.get("Names") or ())
    supervised = attrs.get("Id") in active or bool(names & set(active))
    if not finished:
        if stopping:
            return "daemon stopping"
        if WARM_EXPIRES in labels:  # idle by design, not orphaned: only its ttl ends it
            return _warm_expired(attrs, labels, now, active)
        created = created_unix(attrs)
        if (supervised or labels.get(DETACHED) == "true" or created is None
                or now - created < ORPHAN_GRACE):
            return None
        return "orphaned"  # its request gave up while Podman was away
    if supervised:
        return None  # a request of ours is still collecting its result
    return "exited, uncollected"


def _warm_expired(attrs: dict[str, Any], labels: dict[str, str], now: float,
                  active: set[str] | frozenset[str]) -> str | None:
    """An idle warm container past its ttl (a claimed one is in ``active`` until removed)."""
    try:
        expires = float(labels[WARM_EXPIRES])
    except (KeyError, ValueError):
        return None
    if attrs.get("Id") in active or now <= expires + DEADLINE_GRACE:
        return None
    return "warm idle past ttl"


class Reaper:
    """Runs reaping passes: once at start, then periodically until stopped."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        # Our containers by id, when a pass last listed them (see _sweep).
        self._seen: dict[str, float] = {}
        # Containers gone or doomed whose conmon lives on with nothing left to watch: since when.
        self._lingering: dict[str, float] = {}

    async def reap_once(self, stopping: bool = False) -> int:
        """One pass: list our containers, reap those with a verdict. Returns how many."""
        state = self.state
        listed = await state.pool.call(list_owned)
        alive_cache: dict[str, bool] = {}

        def alive(instance: str) -> bool:
            if instance not in alive_cache:
                alive_cache[instance] = instance_alive(instance)
            return alive_cache[instance]

        now = time.time()
        active = frozenset(state.active_containers)
        doomed = [(attrs, reason) for attrs in listed
                  if (reason := verdict(attrs, now=now, own_instance=state.instance_id,
                                        active=active, alive=alive,
                                        stopping=stopping)) is not None]
        count = 0
        if doomed:
            gate = asyncio.Semaphore(PARALLEL_REMOVALS)

            async def reap(attrs: dict[str, Any], reason: str) -> bool:
                async with gate:
                    return await self._reap(attrs, reason)

            count = sum(await asyncio.gather(*(reap(a, r) for a, r in doomed)))
        await self._sweep(listed, [attrs for attrs, _ in doomed])
        return count

    async def _sweep(self, listed: list[dict[str, Any]], doomed: list[dict[str, Any]]) -> None:
        """Kill what is left of the containers just reaped and of ours that left the list."""
        now = time.monotonic()
        listed_ids = {str(attrs.get("Id", "")) for attrs in listed}
        seen = self._seen
        for container_id in listed_ids:
            seen[container_id] = now
        gone = [cid for cid in seen if cid not in listed_ids]
        for container_id in gone:
            if now - seen[container_id] > REMEMBER_GONE:
                del seen[container_id]
        targets = sorted({str(attrs.get("Id", "")) for attrs in doomed} | set(gone))
        if not targets:
            self._lingering.clear()
            return
        stale = frozenset(cid for cid, since in self._lingering.items()
                          if now - since >= CONMON_LINGER)
        killed, lingering = await asyncio.to_thread(kill_leftovers, targets, stale)
        self._lingering = {cid: self._lingering.get(cid, now) for cid in lingering}
        for container_id, pids in killed.items():
            log.warning("killed leftover processes", container_id=container_id[:12], pids=pids)

    async def _reap(self, attrs: dict[str, Any], reason: str) -> bool:
        container_id = str(attrs.get("Id", ""))
        labels = attrs.get("Labels") or {}
        state_name = str(attrs.get("State", "")).lower()
        try:
            if not await kill_and_remove(self.state.pool.http, container_id,
                                         state_name not in FINISHED_STATES):
                return False  # gone already (its request or Podman's auto-remove won the race)
        except NotFound:
            return False
        except RpcError as error:
            log.warning("reap failed", container_id=container_id[:12], reason=reason,
                        error=error.message)
            return False
        self.state.container_reaped()
        log.info("reaped container", container_id=container_id[:12],
                 name=(attrs.get("Names") or [None])[0], reason=reason, state=state_name,
                 instance=labels.get(INSTANCE), request=labels.get(REQUEST))
        return True

    async def startup_pass(self) -> None:
        """Reap leftovers (e.g. of a SIGKILLed daemon) before serving; never fails startup."""
        try:
            async with asyncio.timeout(STARTUP_BUDGET):
                count = await self.reap_once()
        except TimeoutError:
            log.warning("startup reap pass unfinished; the periodic pass continues it")
        except RpcError as error:
            log.warning("startup reap pass failed", error=error.message)
        else:
            log.info("startup reap pass", reaped=count)

    async def final_pass(self) -> None:
        """At shutdown, after draining: remove what this instance still owns."""
        try:
            async with asyncio.timeout(STARTUP_BUDGET):
                count = await self.reap_once(stopping=True)
        except (TimeoutError, RpcError) as error:
            log.warning("final reap pass unfinished; conmon's timeout and the next daemon's "
                        "reaper take over", error=str(error))
        else:
            log.info("final reap pass", reaped=count)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        interval = self.state.config.reap_interval
        failing = False  # log an outage once, not every pass
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_once()
            except RpcError as error:
                if not failing:
                    log.warning("reap pass failed", error=error.message)
                failing = True
                continue
            except Exception:  # noqa: BLE001 - the reaper must outlive one bad pass
                log.exception("reap pass crashed")
                continue
            if failing:
                log.info("reap pass works again")
            failing = False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
