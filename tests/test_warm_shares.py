"""daemon.warm.shares: the warm budgets, and each uid's share of them, without Podman."""

from __future__ import annotations

from collections import Counter

from podman_rpc.daemon.warm.config import WarmConfig
from podman_rpc.daemon.warm.keys import WarmSpec
from podman_rpc.daemon.warm.pools import Pool, WarmContainer
from podman_rpc.daemon.warm.shares import fill_plan

MB = 1 << 20


def pool(key: str, uid: int, target: int, *, static: bool = False, ready: int = 0,
         memory: int = 20 * MB, retry_after: float = 0.0) -> Pool:
    made = Pool(spec=WarmSpec(key=key, uid=uid, image="localhost/busybox:latest", body={},
                              memory=memory), static=static, target=target,
                retry_after=retry_after)
    made.ready.extend(WarmContainer(f"{key}-{i}", f"{key}-{i}", made, expires=1e12)
                      for i in range(ready))
    return made


def planned(plan: list[Pool]) -> Counter[str]:
    return Counter(p.spec.key for p in plan)


def test_one_uid_alone_may_use_the_whole_budget() -> None:
    pools = [pool(f"a{i}", 1000, target=4) for i in range(5)]
    plan = fill_plan(pools, WarmConfig(max_warm_total=16), now=0)
    assert len(plan) == 16


def test_two_uids_share_the_total_and_neither_takes_the_others_half() -> None:
    greedy = [pool(f"g{i}", 1000, target=4) for i in range(6)]  # wants 24
    modest = [pool("m0", 2000, target=2)]
    plan = fill_plan(greedy + modest, WarmConfig(max_warm_total=16), now=0)
    by_uid = Counter(p.spec.uid for p in plan)
    assert by_uid == {1000: 8, 2000: 2}  # the greedy uid stops at its half


def test_a_uid_already_over_its_share_gets_nothing_more_and_keeps_what_it_has() -> None:
    greedy = [pool(f"g{i}", 1000, target=4, ready=4) for i in range(4)]  # holds all 16
    newcomer = pool("n0", 2000, target=2)
    plan = fill_plan(greedy + [newcomer], WarmConfig(max_warm_total=16), now=0)
    # The total is spent: the newcomer waits until the greedy uid's containers expire or
    # are used, and those are not replaced past its share (8).
    assert plan == []
    greedy[0].ready.clear()  # 4 were used
    plan = fill_plan(greedy + [newcomer], WarmConfig(max_warm_total=16), now=0)
    assert planned(plan) == {"n0": 2}


def test_the_memory_budget_is_shared_the_same_way() -> None:
    big = [pool(f"b{i}", 1000, target=4, memory=100 * MB) for i in range(4)]
    small = [pool("s0", 2000, target=4, memory=100 * MB)]
    plan = fill_plan(big + small, WarmConfig(max_warm_total=64, memory_budget=800 * MB), now=0)
    by_uid = Counter(p.spec.uid for p in plan)
    assert by_uid == {1000: 4, 2000: 4}  # 400 MB each of 800


def test_static_pools_count_toward_the_budget_but_take_no_share() -> None:
    static = pool("static", 0, target=6, static=True)
    reactive = [pool(f"r{i}", 1000, target=4) for i in range(4)]
    plan = fill_plan([static] + reactive, WarmConfig(max_warm_total=16), now=0)
    assert planned(plan)["static"] == 6
    assert sum(1 for p in plan if p.spec.uid == 1000) == 10  # what the total leaves


def test_a_backing_off_pool_waits_and_the_emptiest_goes_first() -> None:
    failing = pool("failing", 1000, target=2, retry_after=50.0)
    fuller = pool("fuller", 2000, target=3, ready=2)
    empty = pool("empty", 3000, target=1)
    plan = fill_plan([fuller, failing, empty], WarmConfig(max_warm_total=16), now=10.0)
    assert [p.spec.key for p in plan] == ["empty", "fuller"]
