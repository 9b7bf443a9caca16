"""One size grammar (protocol.sizes) for run params and policy ceilings: pure, no daemon."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podman_rpc.daemon.handlers.run_spec import parse_mount, size_param
from podman_rpc.protocol.errors import InvalidParams
from podman_rpc.protocol.sizes import GRAMMAR, is_size, parse_size

SCALES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@pytest.mark.parametrize("text, size", [
    ("512", 512), ("0", 0), ("20m", 20 << 20), ("20M", 20 << 20), ("20mb", 20 << 20),
    ("20MiB", 20 << 20), ("512k", 512 << 10), ("1g", 1 << 30), ("2t", 2 << 40),
    ("1.5g", 3 << 29), ("1.5 GiB", 3 << 29), (" 2t ", 2 << 40), ("0.5k", 512),
    ("1.1g", 1181116006),  # exact integer arithmetic, rounded down: 1.1 * 2**30 = ...006.4
    ("1.5", 1),  # a fraction of a byte is dropped
    ("7b", 7), ("7ib", 7),
])
def test_the_union_grammar(text: str, size: int) -> None:
    assert is_size(text)
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [
    "", " ", "lots", "-1", "-5m", "1e3", "1.2.3", "20x", "1.", ".5g", "20 m b", "m",
    "1" * 21, "1." + "5" * 13, "20mm", "0x10",
])
def test_anything_else_is_refused_naming_the_grammar(text: str) -> None:
    assert not is_size(text)
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert str(caught.value) == f"not {GRAMMAR}: {text!r}"


@pytest.mark.parametrize("value", [5, None, 1.5, b"5m", ["5m"]])
def test_a_non_string_is_refused_not_crashed_on(value: object) -> None:
    assert not is_size(value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a size like"):
        parse_size(value)  # type: ignore[arg-type]


@given(st.integers(0, 10 ** 20 - 1), st.sampled_from(sorted(SCALES)), st.booleans())
def test_whole_numbers_scale_by_powers_of_1024(number: int, unit: str, upper: bool) -> None:
    text = f"{number}{unit.upper() if upper else unit}"
    assert parse_size(text) == number * SCALES[unit]


def test_run_params_take_the_same_grammar_and_keep_their_own_rules() -> None:
    assert size_param("1.5g", "memory") == 3 << 29
    assert size_param("-1", "memory_swap") == -1  # unlimited: swap only
    for text, field, reason in [("-1", "memory", "not a size like"),
                                ("lots", "memory_swap", "not a size like"),
                                ("0", "memory", "more than 0 bytes")]:
        with pytest.raises(InvalidParams) as caught:
            size_param(text, field)
        assert caught.value.data is not None
        assert caught.value.data["field"] == field and reason in caught.value.data["reason"]


def test_a_mount_size_in_the_union_grammar_is_accepted_and_a_bad_one_refused() -> None:
    kind, mount = parse_mount("cache:/c:1.5g")
    assert (kind, mount["Options"]) == ("volumes", ["size=1.5g"])
    assert parse_mount("cache:/c:size=20MiB")[1]["Options"] == ["size=20MiB"]
    with pytest.raises(InvalidParams, match="not a size like"):
        parse_mount("cache:/c:size=lots")
