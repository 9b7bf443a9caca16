"""WarmPools: warm containers by spec, claimed once each, refilled and expired in the background.

All bookkeeping happens on the event loop, and a claim takes a container off its
pool's ready list without awaiting anything, so two concurrent claims can never
get the same container. Creation, removal and expiry run as tasks of their own,
never on a ``run`` call's critical path.

A pool's spec is judged by the policy (``check_run_spec``, the cold path's rules)
once, before its first container: a denied spec never gets a pool, and its key is
remembered so it is not judged again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from podman_rpc.daemon.config import Config
from podman_rpc.daemon.guard.confine import harden_options
from podman_rpc.daemon.guard.policy import check_run_spec
from podman_rpc.daemon.podman import lifecycle
from podman_rpc.daemon.podman.labels import WARM_EXPIRES, container_labels
from podman_rpc.daemon.podman.pool import PodmanPool
from podman_rpc.daemon.warm import launcher
from podman_rpc.daemon.warm.config import WarmConfig
from podman_rpc.daemon.warm.keys import ExecSpec, WarmSpec, eligible, exec_spec, spec_of
from podman_rpc.daemon.warm.sentinel import Sentinel
from podman_rpc.daemon.warm.shares import fill_plan
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import PolicyDenied, RpcError

log = structlog.get_logger("podman_rpc.warm")
SIGHTING_WINDOW = 60.0  # seconds in which ``threshold`` sightings make a reactive pool
TICK = 1.0  # seconds between expiry checks
FAILURE_BACKOFF = 5.0  # seconds a pool whose create failed waits before trying again
MAX_REMEMBERED = 10_000  # specs counted (or denied) at once: peers cycling specs cannot grow it


@dataclass(eq=False)
class WarmContainer:
    """One started container, ready for exactly one run."""

    cid: str
    name: str
    pool: Pool
    expires: float  # time.time() past which it is removed unclaimed


@dataclass(eq=False)
class Pool:
    """The containers of one spec; ``figures`` is the live dict ``status`` shows."""

    spec: WarmSpec
    static: bool
    target: int
    ready: deque[WarmContainer] = field(default_factory=deque)
    starting: int = 0
    last_claim: float = field(default_factory=time.time)
    retry_after: float = 0.0
    image_command: tuple[list[str] | None, list[str] | None] | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def show(self) -> None:
        self.figures.update(ready=len(self.ready), starting=self.starting, target=self.target)


class WarmPools:
    """Every warm pool of this daemon instance."""

    def __init__(self, config: Config, pool: PodmanPool, instance_id: str,
                 active: set[str], pending: dict[str, asyncio.Task[Any]],
                 figures: dict[str, dict[str, Any]]) -> None:
        self.config = config
        self.warm: WarmConfig = config.warm
        self.podman = pool
        self.instance_id = instance_id
        self.active = active  # the daemon's active_containers: the reaper leaves these alone
        # The daemon's pending_removal: a used warm container is gone for its caller, so
        # ``ps`` hides it, and ``rmi`` waits for its removal task.
        self.pending = pending
        self.pools: dict[str, Pool] = {}
        self.figures = figures  # status's "warm": one live entry per pool
        self.denied: set[str] = set()
        self._sightings: dict[str, deque[float]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gate = asyncio.Semaphore(max(1, self.warm.fill_parallel))
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._sentinel: Sentinel | None = None

    # --- claim -------------------------------------------------------------------------
    def claim(self, params: m.Run, uid: int) -> tuple[WarmContainer, ExecSpec] | None:
        """A ready container for this run (taken off its pool) and what to launch in it,
        or None: take the cold path."""
        if not self.warm.enabled or self._stopping or not eligible(
                params, self.config.podman_kill_margin, self.warm.max_run_seconds):
            return None
        spec = spec_of(params, uid, self.config.policy)
        if spec is None:
            return None
        pool = self.pools.get(spec.key)
        now = time.time()
        if pool is not None:
            pool.last_claim = now
            launch = exec_spec(params, *(pool.image_command or (None, None)))
            if pool.image_command is not None and (
                    launch is None or not launcher.launchable(launch)):
                return None  # nothing to run, or not expressible in the line: cold says why
            while pool.ready and launch is not None:  # ready: image_command is known
                warm = pool.ready.popleft()
                if warm.expires > now:
                    self.active.add(warm.cid)
                    pool.figures["claimed"] += 1
                    pool.show()
                    self._wake.set()
                    return warm, launch
                self._discard(warm)
            pool.figures["missed"] += 1
            if not pool.static and pool.target < self.warm.max:
                pool.target += 1  # demand outran the pool: grow it, up to max
            pool.show()
            self._wake.set()
        return None

    def sighted(self, params: m.Run, uid: int) -> None:
        """A cold run of this spec went through (policy, image visibility, start): count it.

        Only runs the cold path served count, so a reactive pool forms only for a
        spec this peer has been allowed to run; ``threshold`` of them within a
        minute make one.
        """
        if self.warm.threshold <= 0 or self._stopping or not eligible(
                params, self.config.podman_kill_margin, self.warm.max_run_seconds):
            return
        spec = spec_of(params, uid, self.config.policy)
        if spec is None or spec.key in self.denied or spec.key in self.pools:
            return
        if spec.key not in self._sightings and len(self._sightings) >= MAX_REMEMBERED:
            return  # forgotten within SIGHTING_WINDOW (``_expire``)
        now = time.time()
        seen = self._sightings.setdefault(spec.key, deque())
        seen.append(now)
        while seen and seen[0] < now - SIGHTING_WINDOW:
            seen.popleft()
        if len(seen) >= self.warm.threshold:
            del self._sightings[spec.key]
            self._add_pool(spec, static=False, target=max(1, self.warm.min))

    def release(self, warm: WarmContainer) -> None:
        """The run is over: remove its container off the critical path, then refill."""
        warm.pool.figures["removing"] += 1
        self.pending[warm.cid] = self._spawn(self._remove(warm.cid, used=warm.pool))

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Create the static pools and start the filler; returns at once."""
        if not self.warm.enabled:
            return
        self._sentinel = Sentinel(str(self.podman.socket_path), self.instance_id)
        for static in self.warm.pools:
            assert static.params is not None
            spec = spec_of(static.params, static.uid, self.config.policy)
            if spec is None:
                log.warning("warm pool spec is invalid; no pool", image=static.image)
                continue
            self._add_pool(spec, static=True, target=static.count)
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, budget: float = 10.0) -> None:
        """At shutdown: no more claims or fills; remove every ready container."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=budget)  # fills under way land
        leftovers = [w.cid for p in self.pools.values() for w in p.ready]
        for pool in self.pools.values():
            pool.ready.clear()
            pool.show()
        if leftovers:
            await asyncio.wait([asyncio.ensure_future(self._remove(cid, refill=False))
                                for cid in leftovers], timeout=budget)
        if self._sentinel is not None:
            await asyncio.to_thread(self._sentinel.close)

    def _add_pool(self, spec: WarmSpec, *, static: bool, target: int) -> None:
        try:
            check_run_spec({**spec.body, "image": spec.image}, self.config.policy)
        except PolicyDenied as denial:
            if len(self.denied) >= MAX_REMEMBERED:
                self.denied.clear()  # judged again next time: costs a check, never memory
            self.denied.add(spec.key)
            log.warning("warm pool denied by the policy; no pool", pool=spec.key,
                        rule=(denial.data or {}).get("rule"), reason=denial.message)
            return
        pool = Pool(spec=spec, static=static, target=target)
        pool.figures.update(image=spec.image, uid=spec.uid, static=static, ready=0,
                            starting=0, claimed=0, missed=0, removing=0, target=target)
        self.pools[spec.key] = pool
        self.figures[spec.key] = pool.figures
        log.info("warm pool", pool=spec.key, static=static, target=target)
        self._wake.set()

    async def _run(self) -> None:
        """Expire idle containers and pools, and start what the pools lack."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._expire()
                self._fill()
            except Exception:  # noqa: BLE001 - the pools must outlive one bad pass
                log.exception("warm pool pass crashed")

    def _expire(self) -> None:
        now = time.time()
        for key, seen in list(self._sightings.items()):
            if not seen or seen[-1] < now - SIGHTING_WINDOW:
                del self._sightings[key]  # a spec seen once long ago holds no memory
        for key, pool in list(self.pools.items()):
            while pool.ready and pool.ready[0].expires <= now:
                self._discard(pool.ready.popleft())
            if not pool.static and now - pool.last_claim > self.warm.ttl:
                pool.target = 0  # unused for a ttl: the reactive pool goes
                if not pool.ready and not pool.starting:
                    del self.pools[key]
                    del self.figures[key]
                    continue
            pool.show()

    def _fill(self) -> None:
        """Start what the pools lack, within the budgets and each uid's share (``shares``)."""
        for pool in fill_plan(self.pools.values(), self.warm, time.time()):
            pool.starting += 1
            self._spawn(self._create(pool))
        for pool in self.pools.values():
            pool.show()

    async def _create(self, pool: Pool) -> None:
        """Create and start one warm container; it joins the ready list once it runs."""
        created: str | None = None
        try:
            async with self._gate:
                if self._stopping:
                    return
                if pool.image_command is None:
                    pool.image_command = await lifecycle.image_command(self.podman.http,
                                                                       pool.spec.image)
                body, name, expires = self._body(pool.spec)
                created = await lifecycle.create(self.podman.http, body)
                await lifecycle.start(self.podman.http, created)
            if self._stopping or pool.target == 0:
                await self._remove(created, refill=False)
                return
            pool.ready.append(WarmContainer(cid=created, name=name, pool=pool, expires=expires))
            created = None
        except RpcError as error:
            pool.retry_after = time.time() + FAILURE_BACKOFF
            log.warning("warm container failed to start", pool=pool.spec.key, error=error.message)
        finally:
            pool.starting -= 1
            pool.show()
            if created is not None:  # created but not handed over: never leave it behind
                self._spawn(self._remove(created, refill=False))
            self._wake.set()

    def _body(self, spec: WarmSpec) -> tuple[dict[str, Any], str, float]:
        """The cold path's body, idle in its launcher (stdin open, the host's static busybox
        bound read-only: nothing else of the host), labelled to expire after ``ttl``."""
        now = time.time()
        expires = now + self.warm.ttl
        backstop = self.warm.ttl + self.warm.max_run_seconds + self.config.podman_kill_margin
        name = f"prpc-warm-{uuid.uuid4().hex[:12]}"
        labels = container_labels(self.instance_id, "warm", now + backstop, True, spec.uid)
        labels[WARM_EXPIRES] = f"{expires:.3f}"
        body = {**spec.body, "image": spec.image, "name": name, "labels": labels,
                "entrypoint": launcher.ENTRYPOINT, "command": [], "stdin": True,
                # its output is read from the attach stream only, as a cold attached run's
                "log_configuration": {"driver": "none"},
                "timeout": math.ceil(backstop),  # conmon kills it even if every daemon is gone
                "mounts": [*spec.body["mounts"],
                           {"type": "bind", "source": self.warm.launcher_binary,
                            "destination": launcher.TARGET, "options": harden_options(["ro"])}]}
        return body, name, expires

    def _discard(self, warm: WarmContainer) -> None:
        self._spawn(self._remove(warm.cid, refill=False))

    async def _remove(self, cid: str, refill: bool = True, used: Pool | None = None) -> None:
        try:
            await lifecycle.kill_and_remove(self.podman.http, cid)
        except RpcError as error:  # the labels let the reaper finish it
            log.warning("warm container removal failed", container_id=cid[:12],
                        error=error.message)
        finally:
            self.active.discard(cid)
            self.pending.pop(cid, None)
            if used is not None:
                used.figures["removing"] -= 1
            if refill:
                self._wake.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


__all__ = ["WarmContainer", "WarmPools"]
