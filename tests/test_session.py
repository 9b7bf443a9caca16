"""The connection's state machine, without sockets (after h11's tests/test_state.py)."""

from __future__ import annotations

from podman_rpc.daemon.rpc.session import Phase, Session, id_key
from podman_rpc.protocol.envelope import BadRequest, Request
from podman_rpc.protocol.framing import OVERSIZE


def _session(max_in_flight: int = 4, slice_lines: int = 100, max_line: int = 64) -> Session[str]:
    return Session(max_line, max_in_flight, slice_lines)


def _take_all(session: Session[str]) -> list[object]:
    taken = []
    while (line := session.next_line()) is not None:
        taken.append(line)
    return taken


def test_reads_become_lines_and_a_partial_line_waits_for_its_end() -> None:
    session = _session()
    assert session.receive(b'{"a":1}\n{"b"') == 1
    assert session.decoder.has_partial and not session.partial_on_clock  # "a" not started yet
    assert _take_all(session) == [b'{"a":1}']
    assert session.partial_on_clock  # now only the client holds things up
    assert session.receive(b":2}\n") == 1
    assert _take_all(session) == [b'{"b":2}']
    assert not session.partial_on_clock


def test_an_oversize_line_is_one_marker_and_the_next_line_is_whole() -> None:
    session = _session(max_line=8)
    session.receive(b"x" * 20 + b"\nok\n")
    assert _take_all(session) == [OVERSIZE, b"ok"]


def test_the_in_flight_limit_holds_lines_back_and_stops_reading() -> None:
    session = _session(max_in_flight=2)
    session.receive(b"1\n2\n3\n")
    assert session.next_line() == b"1"
    session.started()
    assert session.next_line() == b"2"
    session.started()
    assert session.next_line() is None  # at the limit
    assert not session.wants_read and not session.slice_spent
    session.ended()
    assert session.next_line() == b"3"
    assert session.wants_read  # everything read has started, and there is room


def test_lines_start_in_slices_and_reading_waits_for_the_backlog() -> None:
    session = _session(slice_lines=3)
    session.receive(b"".join(b"%d\n" % i for i in range(7)))
    session.new_slice()
    assert _take_all(session) == [b"0", b"1", b"2"]
    assert session.slice_spent and not session.wants_read  # the flood waits in the socket
    session.new_slice()
    assert _take_all(session) == [b"3", b"4", b"5"]
    session.new_slice()
    assert _take_all(session) == [b"6"]
    assert not session.slice_spent and session.wants_read


def test_a_blocked_writer_stops_starting_and_reading_until_it_drains() -> None:
    session = _session()
    session.receive(b"1\n2\n")
    assert session.next_line() == b"1"
    session.write_blocked = True
    assert session.next_line() is None and not session.wants_read and not session.slice_spent
    assert not session.partial_on_clock  # we are not reading: not the client's stall
    session.write_blocked = False
    assert session.next_line() == b"2"


def test_a_partial_line_is_not_on_the_clock_while_we_hold_its_connection_back() -> None:
    session = _session(max_in_flight=1)
    session.receive(b"1\npart")
    assert session.next_line() == b"1"
    session.started()
    assert session.decoder.has_partial and not session.partial_on_clock
    session.ended()
    assert session.partial_on_clock


def test_half_close_answers_everything_then_finishes() -> None:
    session = _session(max_in_flight=1)
    session.receive(b"1\n2\n")
    assert session.next_line() == b"1"
    session.started()
    assert session.receive_eof()  # answers owed: keep the socket
    assert session.phase is Phase.HALF_CLOSED and not session.wants_read
    assert not session.finished
    session.ended()
    assert session.next_line() == b"2"  # queued lines still start after EOF
    session.started()  # "2" needs a task...
    assert not session.finished
    session.ended()
    assert session.finished  # ...and once it is answered, the connection closes


def test_eof_with_nothing_owed_finishes_at_once() -> None:
    session = _session()
    assert not session.receive_eof()
    assert session.finished


def test_a_closed_session_discards_reads_and_starts_nothing() -> None:
    session = _session()
    session.receive(b"1\n2\n")
    session.close()
    assert session.phase is Phase.CLOSED
    assert session.receive(b"3\n") == 0
    assert session.next_line() is None and not session.wants_read and not session.finished


def test_requests_are_tracked_by_id_for_cancels() -> None:
    session = _session()
    session.track(id_key(1), "first")
    session.track(id_key(1.0), "same id as a float")
    session.track(id_key("1"), "a string id")
    assert session.entries_for(1) == ["first", "same id as a float"]
    assert session.entries_for("1") == ["a string id"]
    session.untrack(id_key(1), "first")
    session.untrack(id_key(1), "not tracked")  # a no-op, not an error
    assert session.entries_for(1) == ["same id as a float"]
    assert sorted(session.entries()) == ["a string id", "same id as a float"]
    session.untrack(id_key(1), "same id as a float")
    assert id_key(1) not in session.in_flight  # no empty lists left behind


def test_frames_are_parsed_requests_and_bad_lines_become_their_errors() -> None:
    session = _session(max_line=48)
    session.receive(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
                    b"   \n"  # blank: skipped, unanswered
                    b"not json\n" + b"x" * 60 + b"\n"
                    b'[{"jsonrpc":"2.0","id":2,"method":"ping"}]\n')
    first, bad, oversize, batch = (session.next_frame() for _ in range(4))
    assert isinstance(first, Request) and first.id == 1 and first.method == "ping"
    assert isinstance(bad, BadRequest) and bad.error.code == -32700
    assert isinstance(oversize, BadRequest) and oversize.error.code == -32600
    assert oversize.error.data["limit"] == 48
    assert isinstance(batch, list) and batch[0].id == 2  # type: ignore[union-attr]
    assert session.next_frame() is None


def test_long_lines_fill_a_slice_sooner_so_a_slice_is_bounded_in_bytes_too() -> None:
    session = _session(slice_lines=8, max_line=1 << 20)
    long_line = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'.rjust(2048)  # 8 units of 256 bytes
    session.receive(long_line + b"\n" + long_line + b"\n")
    session.new_slice()
    assert isinstance(session.next_frame(), Request)
    assert session.next_frame() is None and session.slice_spent  # 1 + 8 units: slice spent
    session.new_slice()
    assert isinstance(session.next_frame(), Request)
