"""What a ``run`` may ask Podman for: checked on the final libpod create body.

Access to Podman's socket is root on the host, so this is the one place where
that power is narrowed. Every rule denies by default; the ``[daemon.policy]``
table relaxes them one by one. A field of the body that no rule knows is
denied too (rule ``field``): a new Podman option must be judged before it is
let through. Each denial is ``PolicyDenied`` with ``data.rule`` naming the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from podman_rpc.daemon.guard.confine import USERNS_MODES, check_privileges
from podman_rpc.daemon.guard.policy_rules import (
    check_devices,
    check_image,
    check_mounts,
    check_namespaces,
    check_network,
    check_ports,
    check_resources,
    deny,
    fold,
    present,
)
from podman_rpc.protocol.sizes import GRAMMAR as SIZE_GRAMMAR
from podman_rpc.protocol.sizes import parse_size

# Fields of the create body that need no judgement (they cannot reach the host).
HARMLESS_FIELDS = frozenset({
    "image", "raw_image_name", "name", "command", "entrypoint", "env", "labels",
    "annotations", "work_dir", "remove", "stdin", "terminal", "hostname", "timeout",
    "stop_signal", "stop_timeout", "read_only_filesystem",
    "read_write_tmpfs", "user", "groups", "init", "dns_server", "dns_search", "dns_option",
    "healthconfig", "shm_size", "timezone", "umask", "expose", "hostadd", "oom_score_adj",
    "restart_policy", "restart_tries", "use_image_hosts", "use_image_resolve_conf",
    "image_volume_mode", "systemd", "httpproxy",
})
# Fields the rules below judge.
JUDGED_FIELDS = frozenset({
    "privileged", "cap_add", "cap_drop", "no_new_privileges", "idmappings", "devices", "netns",
    "pidns", "ipcns", "userns", "utsns", "cgroupns", "mounts", "volumes", "portmappings",
    "publish_image_ports", "networks", "cni_networks", "resource_limits", "log_configuration",
})


def size_setting(key: str, value: object) -> int | None:
    """A ceiling as bytes: ``"1.5g"`` (``protocol.sizes``) or ``536870912``; None: no ceiling."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError(f"not {SIZE_GRAMMAR}: {value!r}")
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"[daemon.policy] {key}: {exc}") from None


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The ``[daemon.policy]`` table. Defaults deny everything that reaches the host."""

    allow_privileged: bool = False
    allow_host_network: bool = False
    allow_host_pid: bool = False
    allow_host_ipc: bool = False
    allow_host_uts: bool = False
    allow_host_cgroupns: bool = False
    allow_devices: tuple[str, ...] = ()  # host device paths, or "*"
    mount_roots: tuple[str, ...] = ()  # host directories bind mounts may come from
    allow_socket_mounts: bool = False
    allow_storage_mounts: bool = False
    allow_named_volumes: bool = False
    allow_ports: bool = False
    port_range: tuple[int, int] = (1024, 65535)
    allow_networks: tuple[str, ...] = ("none",)
    max_memory: int | None = 1 << 30
    max_memory_swap: int | None = 2 << 30  # memory plus swap; -1 (unlimited) is denied
    max_cpus: float | None = 2.0
    require_pids_limit: bool = True
    max_pids: int | None = 4096
    images: tuple[str, ...] = ("*",)  # fnmatch patterns over the image reference
    allow_fields: tuple[str, ...] = ()  # extra create-body fields to let through unjudged
    protected_paths: tuple[str, ...] = ()  # more paths treated like Podman's storage
    # builds and pulls (daemon.guard.build_policy)
    build_roots: tuple[str, ...] = ()  # where a non-admin build context may be (none: admin only)
    build_networks: tuple[str, ...] = ("none",)  # networks a build's RUN steps may use
    max_build_context_bytes: int = 1 << 30  # the context tar is cut off past this

    # what a container gets
    capabilities: tuple[str, ...] = ()  # its only capabilities, e.g. "NET_BIND_SERVICE"; "ALL"
    userns: str = "auto"  # "auto": its own user namespace (root is not host root); "host"
    subid_files: tuple[str, ...] = ("/etc/subuid", "/etc/subgid")  # where Podman finds "auto" ids

    def __post_init__(self) -> None:
        if self.userns not in USERNS_MODES:
            raise ValueError(f"[daemon.policy] userns must be one of {', '.join(USERNS_MODES)}, "
                             f"not {self.userns!r}")


def policy_from_mapping(raw: Mapping[str, Any]) -> PolicyConfig:
    """Build a PolicyConfig from the TOML table; unknown keys are a config error."""
    known = {f.name for f in fields(PolicyConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown [daemon.policy] keys: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("max_memory", "max_memory_swap", "max_build_context_bytes"):
            value = size_setting(key, value)
        elif key == "port_range":
            low, high = (int(v) for v in value)
            value = (low, high)
        elif isinstance(value, list):
            value = tuple(str(v) for v in value)
        elif key.startswith(("allow_", "require_")) and not isinstance(value, bool):
            raise ValueError(f"[daemon.policy] {key} must be true or false")
        values[key] = value
    return PolicyConfig(**values)


def check_run_spec(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    """Raise PolicyDenied (``data.rule``) if the create body breaks a rule; else return."""
    if not isinstance(body, Mapping):
        raise deny("field", "the container spec must be an object")
    body = fold(body, "spec")
    allowed = HARMLESS_FIELDS | JUDGED_FIELDS | set(policy.allow_fields)
    for key, value in body.items():
        if key not in allowed and present(value) and value is not False:
            raise deny("field", f"{key!r} is not allowed", field=str(key)[:100])
    check_image(body, policy)
    if body.get("privileged") and not policy.allow_privileged:
        raise deny("privileged", "privileged containers are not allowed")
    check_privileges(body, policy)
    check_namespaces(body, policy)
    check_devices(body.get("devices"), policy)
    check_network(body, policy)
    check_ports(body, policy)
    check_mounts(body, policy)
    check_resources(body.get("resource_limits"), policy)
    if present(fold(body.get("log_configuration"), "log_configuration").get("path")):
        raise deny("log_path", "a host path for the container log is not allowed")
