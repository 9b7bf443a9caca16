"""Which pools get their next warm container: the budgets, and each peer's share of them.

``max_warm_total`` and ``memory_budget`` bound all warm containers together. Without a
share per peer, one uid that ran many specs ``threshold`` times filled both with its
reactive pools, and every other peer's pool waited for those to expire (stop 23's
note). Reactive pools are therefore held to a fair share per uid: the budgets divided
by the number of uids that have a reactive pool wanting containers, as lane queues
are shared between connections (``daemon.rpc.lanes``). A uid over its share, because
another arrived, is not evicted: its containers are used or expire within ``ttl`` and
are not replaced past the share. Static pools are the operator's: they count toward
the budgets but take no peer's share.

Pure: it reads the pools and returns a plan; ``WarmPools._fill`` carries it out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from podman_rpc.daemon.warm.config import WarmConfig

if TYPE_CHECKING:
    from podman_rpc.daemon.warm.pools import Pool


def held(pool: Pool) -> int:
    """Containers the pool has ready or being started."""
    return len(pool.ready) + pool.starting


def fill_plan(pools: Iterable[Pool], warm: WarmConfig, now: float) -> list[Pool]:
    """The pools to start one container each for, in order (a pool may appear many times).

    The emptiest pools go first, as before; a pool waits while its failures back off.
    """
    pools = list(pools)
    total = sum(held(p) for p in pools)
    memory = sum(held(p) * p.spec.memory for p in pools)
    by_uid: Counter[int] = Counter()
    memory_by_uid: Counter[int] = Counter()
    for pool in pools:
        if not pool.static:
            by_uid[pool.spec.uid] += held(pool)
            memory_by_uid[pool.spec.uid] += held(pool) * pool.spec.memory
    wanting = {p.spec.uid for p in pools if not p.static and p.target > 0}
    share = max(1, warm.max_warm_total // max(1, len(wanting)))
    memory_share = warm.memory_budget // max(1, len(wanting))
    plan: list[Pool] = []
    for pool in sorted(pools, key=held):
        count, uid, size = held(pool), pool.spec.uid, pool.spec.memory
        while (count < pool.target and pool.retry_after <= now
               and total < warm.max_warm_total and memory + size <= warm.memory_budget
               and (pool.static or (by_uid[uid] < share
                                    and memory_by_uid[uid] + size <= memory_share))):
            plan.append(pool)
            count += 1
            total += 1
            memory += size
            if not pool.static:
                by_uid[uid] += 1
                memory_by_uid[uid] += size
    return plan
