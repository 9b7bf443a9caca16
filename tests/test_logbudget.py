"""The per-connection budget of request log lines, on a fake clock."""

from __future__ import annotations

from podman_rpc.daemon.rpc.logbudget import LogBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_written_then_lines_are_counted_not_written() -> None:
    clock = Clock()
    budget = LogBudget(rate=10, burst=5, clock=clock)
    assert [budget.take() for _ in range(8)] == [True] * 5 + [False] * 3
    assert budget.suppressed == 3


def test_the_budget_refills_at_its_rate_and_reports_what_it_held_back() -> None:
    clock = Clock()
    budget = LogBudget(rate=10, burst=5, clock=clock)
    for _ in range(7):
        budget.take()
    clock.now += 0.25  # 2.5 lines' worth
    assert [budget.take() for _ in range(3)] == [True, True, False]
    assert budget.release_suppressed() == 3  # 2 before the refill, 1 after
    assert budget.suppressed == 0


def test_a_long_quiet_spell_refills_no_more_than_the_burst() -> None:
    clock = Clock()
    budget = LogBudget(rate=10, burst=5, clock=clock)
    for _ in range(5):
        budget.take()
    clock.now += 3600
    assert sum(budget.take() for _ in range(100)) == 5


def test_connections_also_share_a_daemon_wide_budget() -> None:
    clock = Clock()
    daemon = LogBudget(rate=10, burst=6, clock=clock)
    first, second = (LogBudget(rate=10, burst=5, clock=clock, shared=daemon) for _ in range(2))
    assert [first.take() for _ in range(5)] == [True] * 5  # its own burst, drawn from both
    assert [second.take() for _ in range(3)] == [True, False, False]  # the daemon's is spent
    assert (first.suppressed, second.suppressed) == (0, 2)
    clock.now += 0.15  # one line's worth for everyone, and a half
    assert [second.take(), first.take()] == [True, False]
