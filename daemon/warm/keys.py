"""Which ``run`` calls a warm container may serve, and the key that matches them: pure, no I/O.

The key is the create body the cold path would send, less what the launcher sets
per call (command, entrypoint, env, workdir: ``warm.launcher``) and what the daemon sets per
container (name, labels, conmon's timeout), plus the owning peer's uid. So the
same limits, mounts, network, user namespace and confinement, and the same
policy verdict (a function of that body under the daemon's one frozen policy),
are what a claimed container was created with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from podman_rpc.daemon.guard.policy import PolicyConfig
from podman_rpc.daemon.handlers.run_spec import create_body, parse_key_values, split_command
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import InvalidParams

PER_CALL = ("name", "labels", "env", "command", "entrypoint", "work_dir", "timeout")


@dataclass(frozen=True, slots=True)
class WarmSpec:
    """What a pool's containers are created from, and what a claim must match."""

    key: str  # short and printable: the pool's name in ``status``
    uid: int
    image: str
    body: dict[str, Any]  # the cold path's create body without the PER_CALL fields
    memory: int  # bytes, counted against the memory budget


def eligible(params: m.Run, kill_margin: float, max_run_seconds: float) -> bool:
    """Runs a single-use container can serve: attached, removed after, no fixed name or port."""
    return (not params.detach and params.auto_remove and params.name is None
            and not params.ports and params.timeout + kill_margin <= max_run_seconds)


def spec_of(params: m.Run, uid: int, policy: PolicyConfig) -> WarmSpec | None:
    """The spec of this run's container, or None when its params are bad (the cold path says why)."""
    try:
        body = create_body(params, name="", labels={}, kill_margin=0.0, policy=policy)
    except InvalidParams:
        return None
    for name in PER_CALL:
        body.pop(name, None)
    digest = hashlib.sha256(orjson.dumps([uid, body], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return WarmSpec(key=f"{params.image}@{uid}#{digest[:10]}", uid=uid, image=params.image,
                    body=body, memory=int(body["resource_limits"]["memory"]["limit"]))


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """What the launcher of one warm run gets: its argv, environment and working directory."""

    argv: list[str]
    env: list[str]
    workdir: str | None


def exec_spec(params: m.Run, image_entrypoint: list[str] | None,
              image_cmd: list[str] | None) -> ExecSpec | None:
    """argv as Docker composes it (an entrypoint override drops the image's Cmd); None if empty."""
    entrypoint = split_command(params.entrypoint, "entrypoint")
    command = split_command(params.command, "command")
    if entrypoint is None:
        entrypoint = list(image_entrypoint or [])
        if command is None:
            command = list(image_cmd or [])
    argv = entrypoint + (command or [])
    if not argv:
        return None
    env = [f"{k}={v}" for k, v in parse_key_values(params.env, "env").items()]
    return ExecSpec(argv=argv, env=env, workdir=params.workdir or None)
