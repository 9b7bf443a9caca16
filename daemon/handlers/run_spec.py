"""Build the libpod ``/containers/create`` body for ``run``: pure, no I/O.

The body is written by hand rather than through podman-py's ``containers.create``
because podman-py drops ``nano_cpus`` and cannot set the conmon ``timeout``; and
every param is checked here, so a bad ``mounts`` string fails before anything
exists in Podman.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import TYPE_CHECKING, Any

from podman_rpc.daemon.guard.confine import confinement, harden_options
from podman_rpc.daemon.guard.policy_rules import MOUNT_OPTIONS
from podman_rpc.daemon.podman.labels import DETACHED
from podman_rpc.protocol import methods as m
from podman_rpc.protocol.errors import InvalidParams
from podman_rpc.protocol.sizes import GRAMMAR as SIZE_GRAMMAR
from podman_rpc.protocol.sizes import is_size, parse_size

if TYPE_CHECKING:
    from podman_rpc.daemon.guard.policy import PolicyConfig

CPU_PERIOD = 100_000  # microseconds, Podman's default CFS period
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_NS_MODES = {"none", "host", "bridge", "private", "slirp4netns", "pasta"}


def size_param(text: str, field: str) -> int:
    """A size param in bytes (``protocol.sizes``: "20m", "1.5g"); "-1" is unlimited (swap only)."""
    text = text.strip()
    if text == "-1" and field == "memory_swap":
        return -1
    try:
        size = parse_size(text)
    except ValueError:
        raise InvalidParams(field, f"not {SIZE_GRAMMAR}: {text!r}") from None
    if size == 0:
        raise InvalidParams(field, f"must be more than 0 bytes: {text!r}")
    return size


def split_command(value: str | list[str] | None, field: str) -> list[str] | None:
    """A list as given, or a string split like a shell does (the CLI's --run-command)."""
    if value is None:
        return None
    if isinstance(value, list):
        return value
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InvalidParams(field, f"cannot split {value!r}: {exc}") from None
    if not words:
        raise InvalidParams(field, "empty")
    return words


def _mount(source: str, target: str, options: list[str], field: str,
           entry: str) -> tuple[str, dict[str, Any]]:
    """("mounts", bind mount) for a host path, ("volumes", named volume) otherwise."""
    if not source or not target:
        raise InvalidParams(field, f"source and target are required: {entry!r}")
    if not target.startswith("/"):
        raise InvalidParams(field, f"target must be an absolute path: {entry!r}")
    if source.startswith("/"):  # a host path: never setuid files or device nodes from it
        return "mounts", {"type": "bind", "source": source, "destination": target,
                          "options": harden_options(options)}
    if not _VOLUME_NAME.match(source):
        raise InvalidParams(field, f"source must be an absolute path or a volume name: {entry!r}")
    return "volumes", {"Name": source, "Dest": target, "Options": options}


def parse_mount(entry: str, field: str = "mounts") -> tuple[str, dict[str, Any]]:
    """ "source:target[:relabel,propagation,size]" as the CLI's --mount took it."""
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        raise InvalidParams(field, f"expected source:target[:options], got {entry!r}")
    options: list[str] = []
    for option in filter(None, (parts[2].split(",") if len(parts) == 3 else [])):
        if option in MOUNT_OPTIONS:
            options.append(option)
        elif option.startswith("size="):  # given to Podman as written, once it parses
            size_param(option[5:], field)
            options.append(option)
        elif is_size(option):
            size_param(option, field)
            options.append(f"size={option}")
        else:
            raise InvalidParams(field, f"unknown mount option {option!r} in {entry!r}")
    kind, mount = _mount(parts[0], parts[1], options, field, entry)
    if kind == "mounts" and any(o.startswith("size=") for o in options):
        raise InvalidParams(field, f"size applies to named volumes, not host paths: {entry!r}")
    return kind, mount


def parse_volume(entry: str) -> tuple[str, dict[str, Any]]:
    """ "HOST:CONTAINER[:OPTS]" (docker -v); the policy judges OPTS (rule mount_option)."""
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        raise InvalidParams("volumes", f"expected HOST:CONTAINER[:OPTS], got {entry!r}")
    options = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o]
    return _mount(parts[0], parts[1], options, "volumes", entry)


def parse_port(entry: str) -> dict[str, Any]:
    """ "[IP:]HOST:CONTAINER[/proto]" -> a libpod port mapping."""
    spec, _, protocol = entry.partition("/")
    parts = spec.rsplit(":", 2)
    try:
        if len(parts) == 2:
            mapping: dict[str, Any] = {"host_port": int(parts[0]), "container_port": int(parts[1])}
        elif len(parts) == 3:
            mapping = {"host_ip": parts[0], "host_port": int(parts[1]),
                       "container_port": int(parts[2])}
        else:
            raise ValueError
    except ValueError:
        raise InvalidParams("ports", f"expected HOST:CONTAINER, got {entry!r}") from None
    if not (0 < mapping["container_port"] < 65536 and 0 <= mapping["host_port"] < 65536):
        raise InvalidParams("ports", f"port out of range in {entry!r}")
    mapping["protocol"] = protocol or "tcp"
    return mapping


def parse_key_values(entries: list[str] | tuple[str, ...], field: str) -> dict[str, str]:
    """``["K=V", ...]`` (env, build args) as a dict; InvalidParams names the field."""
    parsed: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise InvalidParams(field, f"expected KEY=VALUE, got {entry!r}")
        parsed[key] = value
    return parsed


def network(mode: str) -> dict[str, Any]:
    """The libpod ``netns`` (and ``Networks``) for a docker-style network mode."""
    kind, _, value = mode.partition(":")
    if mode in _NS_MODES:
        return {"netns": {"nsmode": mode}}
    if kind == "container" and value:
        return {"netns": {"nsmode": "container", "value": value}}
    if kind == "ns" and value:
        return {"netns": {"nsmode": "path", "value": value}}
    if _VOLUME_NAME.match(mode):  # a named network
        return {"netns": {"nsmode": "bridge"}, "Networks": {mode: {}}}
    raise InvalidParams("network_mode", f"unknown network mode {mode!r}")


def podman_timeout(seconds: float, margin: float) -> int:
    """Whole seconds for conmon's own kill: a little over the request's timeout."""
    return max(1, math.ceil(seconds + margin))


def create_body(params: m.Run, *, name: str, labels: dict[str, str], kill_margin: float,
                policy: PolicyConfig) -> dict[str, Any]:
    """The complete create body; raises InvalidParams before anything is created.

    ``policy`` decides what the container gets of the host (``daemon.guard.confine``).
    """
    body: dict[str, Any] = {
        "image": params.image,
        "name": name,
        # A detached run outlives its request: the reaper must not take it for an orphan.
        "labels": {**labels, DETACHED: "true"} if params.detach else labels,
        "env": parse_key_values(params.env, "env"),
        "resource_limits": {
            "memory": {"limit": size_param(params.memory, "memory"),
                       "swap": size_param(params.memory_swap, "memory_swap")},
            "cpu": {"quota": max(1000, round(params.cpus * CPU_PERIOD)), "period": CPU_PERIOD},
            "pids": {"limit": params.pids_limit},
        },
        "timeout": podman_timeout(params.timeout, kill_margin),
        "stop_timeout": 0,
        "mounts": [],
        "volumes": [],
        "portmappings": [parse_port(p) for p in params.ports],
        **network(params.network_mode),
        **confinement(policy),
    }
    swap = body["resource_limits"]["memory"]["swap"]
    if swap != -1 and swap < body["resource_limits"]["memory"]["limit"]:
        raise InvalidParams("memory_swap", "must be at least memory (it is memory plus swap)")
    for kind, mount in [parse_mount(e) for e in params.mounts] + [
            parse_volume(e) for e in params.volumes]:
        body[kind].append(mount)
    command = split_command(params.command, "command")
    if command is not None:
        body["command"] = command
    entrypoint = split_command(params.entrypoint, "entrypoint")
    if entrypoint is not None:
        body["entrypoint"] = entrypoint
    if params.workdir:
        body["work_dir"] = params.workdir
    return body
