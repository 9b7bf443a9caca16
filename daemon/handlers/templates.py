"""Go-template-style ``{{.A.B}}`` rendering, as the old CLI's ``--format`` did."""

from __future__ import annotations

import re
from typing import Any

import orjson

from podman_rpc.protocol.errors import InvalidParams

_FIELD = re.compile(r"\{\{\s*\.([A-Za-z0-9_.]*)\s*\}\}")


def _lookup(obj: Any, path: str, fmt: str) -> Any:
    value = obj
    for part in filter(None, path.split(".")):
        if isinstance(value, dict):
            match = next((k for k in value if k.lower() == part.lower()), None)
            if match is not None:
                value = value[match]
                continue
        raise InvalidParams("format", f"no field {path!r} in {fmt!r}")
    return value


def render(obj: Any, fmt: str) -> str:
    """Replace each ``{{.Path}}`` with the value at that path (JSON for objects)."""

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(obj, match.group(1), fmt)
        if isinstance(value, (dict, list)):
            return orjson.dumps(value).decode()
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return _FIELD.sub(substitute, fmt)
