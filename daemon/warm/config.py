"""The ``[daemon.warm]`` table: which warm pools exist and what bounds them.

Example::

    [daemon.warm]
    threshold = 3            # a spec seen 3 times within a minute gets a reactive pool (0: never)
    min = 1                  # a reactive pool keeps at least this many while in use
    max = 4                  # and at most this many
    ttl = 60                 # seconds a warm container may sit idle; a pool unused as long goes
    max_warm_total = 16      # warm containers over all pools, ready or starting
    memory_budget = "1g"     # sum of their memory limits (reactive pools: a fair share per uid)
    max_run_seconds = 60     # a claimed container's runs may last this long (conmon's backstop)
    fill_parallel = 2        # warm containers being created at once, over all pools
    launcher_binary = "/bin/busybox"   # static (busybox-static); bound read-only in each

    [[daemon.warm.pools]]    # a static pool: always ``count`` ready
    image = "localhost/busybox:latest"
    count = 2
    memory = "20m"           # limits as ``run`` takes them (its defaults otherwise)
    cpus = 0.5
    uid = 0                  # the peer uid whose runs may claim it (default root)

Everything is off by default: no static pools and ``threshold = 0``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from podman_rpc.daemon.guard.policy import parse_size
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import RpcError

PT_INTERP = 3

BUSYBOX = "/bin/busybox"  # Debian's busybox-static; a dynamic one would need the host's libc
_POOL_FIELDS = {"image", "count", "memory", "memory_swap", "cpus", "pids_limit",
                "network_mode", "uid"}


@dataclass(frozen=True, slots=True)
class StaticPool:
    """One ``[[daemon.warm.pools]]`` entry: a spec kept ``count`` times ready."""

    image: str
    count: int = 1
    uid: int = 0
    params: m.Run | None = None  # the run params its limits make (validated as a call's are)


@dataclass(frozen=True, slots=True)
class WarmConfig:
    """Bounds of every warm pool (see the module docstring for each key)."""

    pools: tuple[StaticPool, ...] = ()
    threshold: int = 0
    min: int = 1
    max: int = 4
    ttl: float = 60.0
    max_warm_total: int = 16
    memory_budget: int = 1 << 30
    max_run_seconds: float = 60.0
    launcher_binary: str = BUSYBOX
    fill_parallel: int = 2  # containers started at once over all pools

    @property
    def enabled(self) -> bool:
        return bool(self.pools) or self.threshold > 0


def _static_pool(raw: Mapping[str, Any]) -> StaticPool:
    unknown = set(raw) - _POOL_FIELDS
    if unknown:
        raise ValueError(f"unknown [[daemon.warm.pools]] keys: {', '.join(sorted(unknown))}")
    if "image" not in raw:
        raise ValueError("[[daemon.warm.pools]] needs an image")
    count = int(raw.get("count", 1))
    if count < 0:
        raise ValueError("[[daemon.warm.pools]] count must be 0 or more")
    try:
        params = m.Run.rpc_spec.validate({k: v for k, v in raw.items() if k not in {"count", "uid"}})
    except RpcError as error:
        raise ValueError(f"[[daemon.warm.pools]] {error.message}: {error.data}") from None
    assert isinstance(params, m.Run)
    return StaticPool(image=str(raw["image"]), count=count, uid=int(raw.get("uid", 0)),
                      params=params)


def warm_from_mapping(raw: Mapping[str, Any]) -> WarmConfig:
    """Build a WarmConfig from the TOML table; unknown keys are a config error."""
    known = {f.name for f in fields(WarmConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown [daemon.warm] keys: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(raw)
    if "pools" in values:
        values["pools"] = tuple(_static_pool(p) for p in values["pools"])
    if "memory_budget" in values:
        values["memory_budget"] = parse_size(values["memory_budget"])
    config = WarmConfig(**values)
    if config.min < 0 or config.max < config.min or config.ttl <= 0:
        raise ValueError("[daemon.warm] needs 0 <= min <= max and ttl > 0")
    if config.enabled and not is_static_elf(config.launcher_binary):
        raise ValueError(f"[daemon.warm] launcher {config.launcher_binary} is missing or not a "
                         "static executable (Debian: the busybox-static package)")
    return config


def is_static_elf(path: str) -> bool:
    """An ELF executable without a program interpreter (PT_INTERP): it runs in any image."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False  # 64-bit little-endian only: what this daemon runs on
            phoff, = struct.unpack_from("<Q", head, 32)
            size, count = struct.unpack_from("<HH", head, 54)
            fh.seek(phoff)
            table = fh.read(size * count)
    except OSError:
        return False
    if len(table) < size * count or size < 4:
        return False
    return all(struct.unpack_from("<I", table, i * size)[0] != PT_INTERP for i in range(count))
