"""daemon.rpc.turns without sockets or a loop: a fake clock and a list of scheduled turns."""

from __future__ import annotations

from collections.abc import Callable

from podman_rpc.daemon.rpc.turns import Turns


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loop:
    """Collects what ``call_soon`` scheduled; :meth:`turn` runs the oldest."""

    def __init__(self) -> None:
        self.scheduled: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> object:
        self.scheduled.append(callback)
        return callback

    def turn(self) -> None:
        self.scheduled.pop(0)()


class Conn:
    """A connection with ``lines`` queued; each slice starts ``per_slice`` and costs ``cost`` s."""

    def __init__(self, name: str, lines: int, log: list[str], clock: Clock,
                 per_slice: int = 256, cost: float = 0.001) -> None:
        self.name, self.lines, self.log, self.clock = name, lines, log, clock
        self.per_slice, self.cost = per_slice, cost
        self.closed = False

    @property
    def lines_waiting(self) -> int:
        return self.lines

    def start_slice(self) -> bool:
        self.log.append(self.name)
        self.lines -= min(self.lines, self.per_slice)
        self.clock.now += self.cost
        return self.lines > 0


def make(turn_seconds: float = 0.002) -> tuple[Turns, Loop, Clock, list[str]]:
    loop, clock = Loop(), Clock()
    return Turns(loop.call_soon, clock, turn_seconds=turn_seconds), loop, clock, []


def test_an_idle_loop_starts_a_read_at_once() -> None:
    turns, loop, clock, log = make()
    conn = Conn("a", 1, log, clock)
    assert turns.ready(conn) is True
    assert log == ["a"] and turns.waiting == 0
    loop.turn()  # the turn that marked the boundary finds nothing to do
    assert loop.scheduled == []


def test_a_turn_stops_when_its_time_is_spent() -> None:
    turns, loop, clock, log = make(turn_seconds=0.002)
    conns = [Conn(f"c{i}", 10_000, log, clock) for i in range(6)]
    started_now = [turns.ready(c) for c in conns]
    assert started_now == [True, True, False, False, False, False]  # 1 ms each, 2 ms budget
    assert log == ["c0", "c1"]
    loop.turn()
    assert log[2:] == ["c0", "c1"]  # the next turn: two more slices, then it yields
    loop.turn()
    assert log[4:] == ["c2", "c3"]  # back of the queue after a slice: c0 and c1 queued first
    assert len(loop.scheduled) == 1


def test_busy_connections_take_turns_round_robin() -> None:
    turns, loop, clock, log = make(turn_seconds=0.0035)
    conns = [Conn(name, 10_000, log, clock) for name in "abc"]
    for c in conns:
        turns.ready(c)
    for _ in range(3):
        loop.turn()
    # a, b, c started at once (3 ms); then four slices a turn, always in the same order
    assert "".join(log) == "abc" + "abca" + "bcab" + "cabc"


def test_a_sparse_connection_is_served_first_next_turn() -> None:
    turns, loop, clock, log = make(turn_seconds=0.002)
    for name in "abcd":
        turns.ready(Conn(name, 10_000, log, clock))
    turns.ready(Conn("status", 1, log, clock))  # arrives after the budget was spent
    assert log == ["a", "b"]
    loop.turn()
    assert log[2] == "status"  # ahead of c and d, which were waiting before it


def test_a_connection_with_many_lines_is_not_sparse() -> None:
    turns, loop, clock, log = make(turn_seconds=0.002)
    for name in "ab":
        turns.ready(Conn(name, 10_000, log, clock))
    turns.ready(Conn("flood", 50, log, clock))  # 50 lines in one read
    turns.ready(Conn("status", 1, log, clock))
    loop.turn()
    assert log[2:4] == ["status", "a"]  # the flood waits its turn, behind a and b
    loop.turn()
    assert log[4:6] == ["b", "flood"]


def test_a_waiting_connection_is_queued_once() -> None:
    turns, loop, clock, log = make(turn_seconds=0.001)
    turns.ready(Conn("a", 10_000, log, clock))
    b = Conn("b", 10_000, log, clock)
    assert turns.ready(b) is False
    assert turns.ready(b) is False  # it read again (or a task ended) while waiting
    assert turns.waiting == 2
    loop.turn()
    assert log == ["a", "a"]  # a's own slice went first: it was queued before b
    loop.turn()
    assert log[2:] == ["b"]


def test_closed_connections_are_skipped() -> None:
    turns, loop, clock, log = make(turn_seconds=0.001)
    turns.ready(Conn("a", 10_000, log, clock))
    gone = Conn("gone", 10_000, log, clock)
    turns.ready(gone)
    gone.closed = True
    loop.turn()
    loop.turn()
    assert "gone" not in log and turns.waiting == 1


def test_the_turns_stop_when_nothing_waits() -> None:
    turns, loop, clock, log = make(turn_seconds=0.002)
    conn = Conn("a", 600, log, clock)  # three slices of 256
    turns.ready(conn)
    while loop.scheduled:
        loop.turn()
    assert log == ["a", "a", "a"] and turns.waiting == 0
