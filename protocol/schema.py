"""Type annotations as the single source of param validation and JSON Schema.

Supported forms: str, int, float, bool, Any, None, list[T], dict[str, T],
Literal[...], unions (``A | B``), TypedDict, and ``Annotated[T, Param(...)]``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from podman_rpc.protocol.errors import InvalidParams


@dataclass(frozen=True, slots=True)
class Param:
    """Metadata for one declared param: its doc and simple bounds."""

    doc: str = ""
    ge: float | None = None
    le: float | None = None
    max_items: int | None = None


def unwrap(annotation: Any) -> tuple[Any, Param]:
    """Split ``Annotated[T, Param]`` into ``(T, Param)``."""
    if get_origin(annotation) is typing.Annotated:
        base, *extras = get_args(annotation)
        meta = next((e for e in extras if isinstance(e, Param)), Param())
        return base, meta
    return annotation, Param()


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "null"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in get_args(tp))
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, dict):
        return {list: "array", dict: "object"}[origin]
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, "value")


def check(value: Any, tp: Any, field: str, meta: Param = Param()) -> Any:
    """Return ``value`` if it matches ``tp``; raise InvalidParams naming the field if not."""
    if tp is Any:
        return value
    if _is_union(tp):
        closest: InvalidParams | None = None  # an arm of the value's kind that refused it
        for arm in get_args(tp):
            try:
                return check(value, arm, field, meta)
            except InvalidParams as error:
                if closest is None and (error.data["field"] != field
                                        or not error.data["reason"].startswith("expected ")):
                    closest = error
        # "must be >= 0" or "entrypoint[0]: expected string" says more than the arms' kinds
        raise closest or InvalidParams(field, f"expected {_type_name(tp)}")
    origin = get_origin(tp)
    if tp is type(None) or tp is None:
        ok = value is None
    elif origin is Literal:
        ok = value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is list:
        if not isinstance(value, list):
            raise InvalidParams(field, f"expected {_type_name(tp)}")
        if meta.max_items is not None and len(value) > meta.max_items:
            raise InvalidParams(field, f"more than {meta.max_items} items")
        (item,) = get_args(tp)
        return [check(v, item, f"{field}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if not isinstance(value, dict):
            raise InvalidParams(field, f"expected {_type_name(tp)}")
        _, item = get_args(tp)
        return {k: check(v, item, f"{field}.{k}") for k, v in value.items()}
    else:
        raise TypeError(f"unsupported annotation {tp!r}")
    if not ok:
        raise InvalidParams(field, f"expected {_type_name(tp)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.ge is not None and value < meta.ge:
            raise InvalidParams(field, f"must be >= {meta.ge:g}")
        if meta.le is not None and value > meta.le:
            raise InvalidParams(field, f"must be <= {meta.le:g}")
    return value


def json_schema(tp: Any) -> dict[str, Any]:
    """JSON Schema for an annotation, as published by ``rpc.discover``."""
    tp, meta = unwrap(tp)
    schema = _schema(tp)
    if meta.ge is not None:
        schema["minimum"] = meta.ge
    if meta.le is not None:
        schema["maximum"] = meta.le
    if meta.max_items is not None:
        schema["maxItems"] = meta.max_items
    return schema


def _schema(tp: Any) -> dict[str, Any]:
    if tp is Any:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if _is_union(tp):
        return {"oneOf": [_schema(a) for a in get_args(tp)]}
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _schema(get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(get_args(tp)[1])}
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return {"type": "object", "title": tp.__name__,
                "properties": {k: json_schema(v) for k, v in hints.items()},
                "required": sorted(tp.__required_keys__)}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"unsupported annotation {tp!r}")
