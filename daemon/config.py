"""The daemon's configuration: one frozen object, built once at start, passed explicitly.

Sources, later winning: built-in defaults, the TOML ``--config`` file, the
environment (``PODMAN_RPC_SOCKET``, ``PODMAN_SOCKET_PATH``), then command-line flags.
Tables: ``[daemon.access]``, ``[daemon.policy]``, ``[daemon.lanes.NAME]`` and
``[daemon.warm]`` with ``[[daemon.warm.pools]]`` (warm pools: every key is documented
in ``daemon.warm.config``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podman_rpc.daemon.guard.access import AccessConfig, access_from_mapping
from podman_rpc.daemon.guard.policy import PolicyConfig, policy_from_mapping
from podman_rpc.daemon.warm.config import WarmConfig, warm_from_mapping
from podman_rpc.protocol import paths
from podman_rpc.protocol.registry import Lane


def default_runtime_dir() -> Path:
    """``/run/podman-rpc`` as root, ``$XDG_RUNTIME_DIR/podman-rpc`` otherwise (``protocol.paths``,
    the rule the clients use to find the socket)."""
    return Path(paths.default_runtime_dir(os.geteuid(), os.environ))


@dataclass(frozen=True, slots=True)
class LaneConfig:
    """How many calls of a lane run at once, and how many may wait."""

    cap: int
    queue: int
    max_deadline: float


DEFAULT_LANES: dict[str, LaneConfig] = {
    Lane.LOCAL.value: LaneConfig(cap=0, queue=0, max_deadline=30.0),
    Lane.QUERY.value: LaneConfig(cap=16, queue=256, max_deadline=300.0),
    Lane.RUN.value: LaneConfig(cap=8, queue=256, max_deadline=3600.0),
    Lane.WAIT.value: LaneConfig(cap=16, queue=256, max_deadline=3600.0),
    Lane.BUILD.value: LaneConfig(cap=1, queue=16, max_deadline=3600.0),
}


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of one daemon run. Frozen: nothing changes it after start."""

    socket_path: Path = field(default_factory=lambda: default_runtime_dir() / paths.SOCKET_NAME)
    podman_socket: Path = Path("/run/podman/podman.sock")
    runtime_dir: Path = field(default_factory=default_runtime_dir)
    embedded_podman: bool = True
    log_level: str = "info"
    socket_mode: int = 0o660

    # framing and hostile input
    max_line_bytes: int = 1 << 20
    max_json_depth: int = 64
    max_batch: int = 100
    max_params_bytes: int = 256 << 10
    max_in_flight_per_connection: int = 64
    max_connections: int = 1024
    max_connections_per_uid: int = 256
    # One process may hold at most this many of its uid's connections (None: half the
    # per-uid cap), so one process cannot lock the rest of its uid out.
    max_connections_per_pid: int | None = None
    partial_line_timeout: float = 30.0
    max_partial_bytes_total: int = 64 << 20  # partial lines buffered over all connections
    write_timeout: float = 30.0
    write_buffer_high: int = 4 << 20

    # deadlines and lanes
    lanes: Mapping[str, LaneConfig] = field(default_factory=lambda: dict(DEFAULT_LANES))
    run_allowance: float = 10.0
    podman_kill_margin: float = 2.0
    podman_call_timeout: float = 300.0
    output_cap_bytes: int = 1 << 20
    # conmon's exit files (Podman's tmp_dir + "/exits", root's default); "" = ask libpod's wait only
    podman_exit_dir: str = "/run/libpod/exits"

    # lifecycle
    drain_grace: float = 30.0
    idle_timeout: float | None = None
    reap_interval: float = 5.0

    # who may connect ([daemon.access]) and what a run may ask of Podman ([daemon.policy])
    access: AccessConfig = field(default_factory=AccessConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # containers started ahead of a repeated run ([daemon.warm], daemon.warm.config); off by default
    warm: WarmConfig = field(default_factory=WarmConfig)

    @property
    def connections_per_pid(self) -> int:
        """The per-process connection cap in force (``max_connections_per_pid`` or its default)."""
        if self.max_connections_per_pid is not None:
            return self.max_connections_per_pid
        return max(1, self.max_connections_per_uid // 2)

    def lane(self, lane: Lane | str) -> LaneConfig:
        return self.lanes[lane.value if isinstance(lane, Lane) else lane]


def _coerce(name: str, value: Any) -> Any:
    if name in {"socket_path", "podman_socket", "runtime_dir"}:
        return Path(value)
    if name == "lanes":
        merged = dict(DEFAULT_LANES)
        for lane_name, settings in value.items():
            if lane_name not in merged:
                raise ValueError(f"unknown lane {lane_name!r}")
            merged[lane_name] = dataclasses.replace(merged[lane_name], **settings)
        return merged
    if name == "access" and not isinstance(value, AccessConfig):
        return access_from_mapping(value)
    if name == "policy" and not isinstance(value, PolicyConfig):
        return policy_from_mapping(value)
    if name == "warm" and not isinstance(value, WarmConfig):
        return warm_from_mapping(value)
    if name == "socket_mode" and isinstance(value, str):
        return int(value, 8)
    return value


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] = os.environ) -> Config:
    """Build the one Config of this run from file, environment and flag overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh).get("daemon", {}))
    if paths.SOCKET_ENV in environ:
        values["socket_path"] = environ[paths.SOCKET_ENV]
    if "PODMAN_SOCKET_PATH" in environ:
        values["podman_socket"] = environ["PODMAN_SOCKET_PATH"]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
    return Config(**{k: _coerce(k, v) for k, v in values.items()})
