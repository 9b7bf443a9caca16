"""The method registry: each method is declared once, as a params class.

A declaration names the method, its lane, its default deadline, its result
type and the weakest role that may call it; the class's annotated fields are its
params. That one declaration drives param validation, the role check, daemon
dispatch, the typed client methods and ``rpc.discover`` (the model is
asyncvarlink's ``@varlinkmethod``)::

    @method("exists", lane=Lane.QUERY, timeout=10, result=bool, role=Role.READ)
    class Exists(Params):
        \"\"\"Whether an image exists.\"\"\"
        name: Annotated[str, Param("Image name or id")]
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from podman_rpc.protocol.errors import InvalidParams, error_table
from podman_rpc.protocol.schema import Param, check, json_schema, unwrap

_REQUIRED = dataclasses.MISSING


class Lane(str, enum.Enum):
    """Concurrency lanes; each has its own cap and queue in the daemon."""

    LOCAL = "local"   # answered by the daemon itself, at once: no I/O, never queued
    QUERY = "query"   # quick Podman calls
    RUN = "run"       # containers that run user code
    WAIT = "wait"     # calls that block on a container (wait, stop)
    BUILD = "build"   # builds and pulls


class Role(str, enum.Enum):
    """Who may call a method: each role may call what the roles below it may.

    ``read`` sees the daemon and images; ``run`` also runs and manages its own
    containers and images; ``admin`` acts on everything (uid 0 by default).
    """

    READ = "read"
    RUN = "run"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, needed: Role) -> bool:
        """True if a peer with this role may call a method that needs ``needed``."""
        return _ROLE_RANK[self] >= _ROLE_RANK[needed]


_ROLE_RANK = {Role.READ: 0, Role.RUN: 1, Role.ADMIN: 2}


class Params:
    """Base of every params class; ``method()`` turns subclasses into frozen dataclasses."""

    rpc_spec: ClassVar[MethodSpec]


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    annotation: Any
    meta: Param
    required: bool
    default: Any

    def describe(self) -> dict[str, Any]:
        """The OpenRPC ContentDescriptor for this param."""
        entry: dict[str, Any] = {"name": self.name, "required": self.required,
                                 "schema": json_schema(self.annotation)}
        if self.meta.doc:
            entry["description"] = self.meta.doc
        if not self.required:
            entry["schema"]["default"] = self.default
        return entry


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """Everything the daemon and clients know about one method."""

    name: str
    params_class: type[Params]
    params: tuple[ParamSpec, ...]
    result: Any
    lane: Lane
    timeout: float
    timeout_is_work: bool
    doc: str
    role: Role = Role.RUN

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def validate(self, raw: dict[str, Any] | list[Any]) -> Params:
        """Build the params object, or raise InvalidParams naming the field.

        ``raw`` is by name, or by position (a list, in the declared order).
        """
        if not raw:
            shared = self.no_args()
            if shared is not None:
                return shared
        if isinstance(raw, list):
            raw = self.by_name(raw)
        by_name = self._by_name
        for key in raw:
            if key not in by_name:
                raise InvalidParams(key, "unknown param")
        values: dict[str, Any] = {}
        for spec in self.params:
            if spec.name in raw:
                base, meta = unwrap(spec.annotation)
                values[spec.name] = check(raw[spec.name], base, spec.name, meta)
            elif spec.required:
                raise InvalidParams(spec.name, "required")
        return self.params_class(**values)

    def by_name(self, values: list[Any]) -> dict[str, Any]:
        """Params by position, named in the declared order (``rpc.discover``'s order).

        Required params are declared first, so a call may stop after them. A param added
        later belongs at the end: one inserted before others shifts every positional caller.
        """
        if len(values) > len(self.params):
            takes = (f"at most {len(self.params)}: " + ", ".join(p.name for p in self.params)
                     if self.params else "none")
            raise InvalidParams(f"params[{len(self.params)}]",
                                f"unexpected; {self.name} takes {takes}")
        return {spec.name: value for spec, value in zip(self.params, values, strict=False)}

    def no_args(self) -> Params | None:
        """What ``validate({})`` returns, where one object can serve every such call.

        It can when every param has an immutable default: the object is frozen.
        """
        return _NO_ARGS.get(self.name)

    @property
    def _by_name(self) -> dict[str, ParamSpec]:
        return _PARAM_INDEX[self.name]

    def deadline(self, params: Params, *, allowance: float, maximum: float) -> float:
        """Seconds this call may take: the ``timeout`` param lowers the default.

        Where ``timeout`` is the work's own length (a container's run time, a
        wait), the allowance for the surrounding Podman calls is added.
        """
        requested = getattr(params, "timeout", None)
        if self.timeout_is_work:
            seconds = (requested if requested is not None else self.timeout) + allowance
        else:
            seconds = self.timeout if requested is None else min(requested, self.timeout)
        return min(seconds, maximum)

    def describe(self) -> dict[str, Any]:
        """The OpenRPC Method object."""
        return {
            "name": self.name,
            "summary": self.summary,
            "description": self.doc.strip(),
            "params": [p.describe() for p in self.params],
            "result": {"name": "result", "schema": json_schema(self.result)},
            "paramStructure": "either",
            "x-lane": self.lane.value,
            "x-role": self.role.value,
            "x-timeout": self.timeout,
        }


_PARAM_INDEX: dict[str, dict[str, ParamSpec]] = {}
_NO_ARGS: dict[str, Params] = {}  # the params object of a call with no params, where shareable
METHODS: dict[str, MethodSpec] = {}
"""Every declared method by name, in declaration order."""


def method(name: str, *, lane: Lane, timeout: float, result: Any, role: Role,
           timeout_is_work: bool = False):
    """Declare a method: the decorated class's annotated fields are its params.

    ``role`` is the weakest role that may call it (``daemon.guard.access`` enforces it).
    """

    def register(cls: type[Params]) -> type[Params]:
        cls = dataclass(frozen=True, kw_only=True, slots=True)(cls)
        hints = typing.get_type_hints(cls, include_extras=True)
        params = []
        fields = dataclasses.fields(cast(Any, cls))  # a dataclass since the line above
        for field in fields:
            _, meta = unwrap(hints[field.name])
            factory = cast(Callable[[], Any], field.default_factory)
            required = field.default is _REQUIRED and factory is _REQUIRED
            default = None if required else (
                field.default if field.default is not _REQUIRED else factory())
            params.append(ParamSpec(field.name, hints[field.name], meta, required, default))
        spec = MethodSpec(name, cls, tuple(params), result, lane, float(timeout),
                          timeout_is_work, cls.__doc__ or "", role)
        if name in METHODS:
            raise ValueError(f"method {name!r} declared twice")
        METHODS[name] = spec
        _PARAM_INDEX[name] = {p.name: p for p in params}
        if all(f.default_factory is _REQUIRED and f.default is not _REQUIRED
               and isinstance(f.default, (type(None), bool, int, float, str))
               for f in fields):
            _NO_ARGS[name] = cls()
        cls.rpc_spec = spec
        return cls

    return register


def openrpc_document(version: str) -> dict[str, Any]:
    """The ``rpc.discover`` answer: every method, its params, results and the error table."""
    return {
        "openrpc": "1.2.6",
        "info": {"title": "podman-rpc", "version": version},
        "methods": [spec.describe() for spec in METHODS.values()],
        "components": {"errors": error_table()},
    }
