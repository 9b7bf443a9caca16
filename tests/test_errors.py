"""Pin every error code and kind: clients in other languages depend on them."""

from __future__ import annotations

import pytest

from podman_rpc.protocol import errors

EXPECTED = {
    "ParseError": (-32700, "ParseError"),
    "InvalidRequest": (-32600, "InvalidRequest"),
    "MethodNotFound": (-32601, "MethodNotFound"),
    "InvalidParams": (-32602, "InvalidParams"),
    "InternalError": (-32603, "InternalError"),
    "Overloaded": (-32000, "Overloaded"),
    "Timeout": (-32001, "Timeout"),
    "ShuttingDown": (-32002, "ShuttingDown"),
    "PolicyDenied": (-32003, "PolicyDenied"),
    "PodmanUnavailable": (-32010, "PodmanUnavailable"),
    "NotFound": (-32011, "NotFound"),
    "Conflict": (-32012, "Conflict"),
    "ContainerFailed": (-32013, "ContainerFailed"),
    "PodmanError": (-32014, "PodmanError"),
    "RequestCancelled": (-32800, "RequestCancelled"),
}


def test_every_class_is_pinned() -> None:
    assert {cls.__name__ for cls in errors.ERROR_CLASSES} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_code_and_kind(name: str) -> None:
    cls = getattr(errors, name)
    code, kind = EXPECTED[name]
    assert (cls.code, cls.kind) == (code, kind)
    assert errors.ERRORS_BY_CODE[code] is cls


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in errors.ERROR_CLASSES]
    assert len(codes) == len(set(codes))


def test_wire_round_trip_keeps_class_and_data() -> None:
    original = errors.NotFound("no such container: x", kind="ContainerNotFound")
    wire = original.to_wire()
    assert wire == {"code": -32011, "message": "no such container: x",
                    "data": {"kind": "ContainerNotFound"}}
    rebuilt = errors.error_from_wire(wire)
    assert type(rebuilt) is errors.NotFound
    assert rebuilt.data["kind"] == "ContainerNotFound"
    assert rebuilt.message == "no such container: x"


def test_invalid_params_names_the_field() -> None:
    wire = errors.InvalidParams("memory", "expected string").to_wire()
    assert wire["data"] == {"kind": "InvalidParams", "field": "memory", "reason": "expected string"}


def test_unknown_code_becomes_base_class() -> None:
    rebuilt = errors.error_from_wire({"code": -1, "message": "odd"})
    assert type(rebuilt) is errors.RpcError and rebuilt.code == -1


def test_every_error_has_one_family_and_the_tree_is_drawn() -> None:
    """Each wire error sits under exactly one family base; the client's own errors are in the
    same tree and still are the built-in exceptions callers already catch."""
    from podman_rpc.protocol import errors as e

    families = (e.RequestError, e.ServiceError, e.PodmanFailure)
    for cls in e.ERROR_CLASSES:
        assert sum(issubclass(cls, family) for family in families) == 1, cls
        assert f"{cls.__name__} ." in e.__doc__ or f"{cls.__name__} .." in e.__doc__, cls
    assert issubclass(e.ConnectionLost, (e.TransportError, ConnectionError))
    assert issubclass(e.ClientTimeout, e.TransportError) and issubclass(e.ClientTimeout,
                                                                        TimeoutError)
    assert not issubclass(e.TransportError, e.RpcError)  # never on the wire
    for cls in (*e.ERROR_CLASSES, e.ConnectionLost, e.ClientTimeout):
        assert issubclass(cls, e.PodmanRpcError)
    rebuilt = e.error_from_wire({"code": -32011, "message": "gone", "data": {"kind": "X"}})
    assert isinstance(rebuilt, e.PodmanFailure) and isinstance(rebuilt, e.NotFound)
