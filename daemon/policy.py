"""What a ``run`` may ask Podman for: checked on the final libpod create body.

Access to Podman's socket is root on the host, so this is the one place where
that power is narrowed. Every rule denies by default; the ``[daemon.policy]``
table relaxes them one by one. A field of the body that no rule knows is
denied too (rule ``field``): a new Podman option must be judged before it is
let through. Each denial is ``PolicyDenied`` with ``data.rule`` naming the rule.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, fields
from fnmatch import fnmatchcase
from typing import Any, Mapping

from protocol.errors import PolicyDenied

# Fields of the create body that need no judgement (they cannot reach the host).
HARMLESS_FIELDS = frozenset({
    "image", "raw_image_name", "name", "command", "entrypoint", "env", "labels",
    "annotations", "work_dir", "remove", "stdin", "terminal", "hostname", "timeout",
    "stop_signal", "stop_timeout", "cap_drop", "no_new_privileges", "read_only_filesystem",
    "read_write_tmpfs", "user", "groups", "init", "dns_server", "dns_search", "dns_option",
    "healthconfig", "shm_size", "timezone", "umask", "expose", "hostadd", "oom_score_adj",
    "restart_policy", "restart_tries", "use_image_hosts", "use_image_resolve_conf",
    "image_volume_mode", "systemd", "httpproxy",
})
# Fields the rules below judge.
JUDGED_FIELDS = frozenset({
    "privileged", "cap_add", "devices", "netns", "pidns", "ipcns", "userns", "utsns",
    "cgroupns", "mounts", "volumes", "portmappings", "publish_image_ports", "networks",
    "cni_networks", "resource_limits", "log_configuration",
})
_RESOURCE_KEYS = {"memory", "cpu", "pids"}
_MEMORY_KEYS = {"limit", "swap", "reservation", "swappiness", "kernel", "kerneltcp",
                "disableoomkiller", "usehierarchy"}
_CPU_KEYS = {"quota", "period", "shares", "cpus", "mems"}

# Namespace modes that stay inside the container (anything else may reach the host).
_PRIVATE_NS = {
    "pidns": {"", "private", "default"},
    "ipcns": {"", "private", "default", "shareable", "none"},
    "utsns": {"", "private", "default"},
    "cgroupns": {"", "private", "default"},
    "userns": {"", "private", "default", "auto", "nomap", "keep-id"},
}
_NS_RULE = {"pidns": "host_pid", "ipcns": "host_ipc", "utsns": "host_uts",
            "cgroupns": "host_cgroupns", "userns": "host_userns"}

# Podman's own storage and sockets: a container that can reach them is root on the host.
STORAGE_PATHS = (
    "/var/lib/containers", "/run/containers", "/var/run/containers", "/run/podman",
    "/var/run/podman", "/run/libpod", "/var/run/libpod", "/etc/containers",
    "/usr/share/containers", "/var/run/docker.sock", "/run/docker.sock", "/run/podman-rpc",
    "/run/user", "/proc", "/sys", "/dev",
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(value: int | str | None) -> int | None:
    """``"512m"`` or ``536870912`` as bytes; None stays None (no ceiling)."""
    if value is None or isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"bad size {value!r}: expected bytes or a number with b/k/m/g/t")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgt".index((unit or "b").lower()))


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The ``[daemon.policy]`` table. Defaults deny everything that reaches the host."""

    allow_privileged: bool = False
    allow_cap_add: tuple[str, ...] = ()  # capability names, or "ALL"
    allow_host_network: bool = False
    allow_host_pid: bool = False
    allow_host_ipc: bool = False
    allow_host_userns: bool = False
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


def policy_from_mapping(raw: Mapping[str, Any]) -> PolicyConfig:
    """Build a PolicyConfig from the TOML table; unknown keys are a config error."""
    known = {f.name for f in fields(PolicyConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown [daemon.policy] keys: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("max_memory", "max_memory_swap"):
            value = parse_size(value)
        elif key == "port_range":
            low, high = (int(v) for v in value)
            value = (low, high)
        elif isinstance(value, list):
            value = tuple(str(v) for v in value)
        elif key.startswith(("allow_", "require_")) and not isinstance(value, bool):
            raise ValueError(f"[daemon.policy] {key} must be true or false")
        values[key] = value
    return PolicyConfig(**values)


def _deny(rule: str, message: str, **data: Any) -> PolicyDenied:
    return PolicyDenied(f"Denied by policy ({rule}): {message}", {"rule": rule, **data})


def _fold(value: Any, where: str) -> Mapping[str, Any]:
    """Keys lower-cased, as Podman's Go decoder matches them; two spellings of one key deny."""
    if not isinstance(value, Mapping):
        return {}
    folded = {str(k).lower(): v for k, v in value.items()}
    if len(folded) != len(value):
        raise _deny("field", f"{where} names a key twice in different case", field=where)
    return folded


def _present(value: Any) -> bool:
    """Podman-py drops None and empty values before posting; so do we."""
    return value is not None and not (isinstance(value, (list, dict, str)) and not value)


def check_run_spec(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    """Raise PolicyDenied (``data.rule``) if the create body breaks a rule; else return."""
    if not isinstance(body, Mapping):
        raise _deny("field", "the container spec must be an object")
    body = _fold(body, "spec")
    allowed = HARMLESS_FIELDS | JUDGED_FIELDS | set(policy.allow_fields)
    for key, value in body.items():
        if key not in allowed and _present(value) and value is not False:
            raise _deny("field", f"{key!r} is not allowed", field=str(key)[:100])
    _check_image(body, policy)
    if body.get("privileged") and not policy.allow_privileged:
        raise _deny("privileged", "privileged containers are not allowed")
    _check_caps(body.get("cap_add"), policy)
    _check_namespaces(body, policy)
    _check_devices(body.get("devices"), policy)
    _check_network(body, policy)
    _check_ports(body, policy)
    _check_mounts(body, policy)
    _check_resources(body.get("resource_limits"), policy)
    if _present(_fold(body.get("log_configuration"), "log_configuration").get("path")):
        raise _deny("log_path", "a host path for the container log is not allowed")


def _check_image(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    for key in ("image", "raw_image_name"):
        image = body.get(key)
        if key == "image" and not isinstance(image, str):
            raise _deny("image", "an image is required")
        if isinstance(image, str) and not any(fnmatchcase(image, p) for p in policy.images):
            raise _deny("image", f"image {image[:200]!r} matches no allowed pattern",
                        image=image[:200])


def _check_caps(caps: Any, policy: PolicyConfig) -> None:
    if not _present(caps):
        return
    allowed = {c.upper().removeprefix("CAP_") for c in policy.allow_cap_add}
    for cap in caps if isinstance(caps, list) else [caps]:
        name = str(cap).upper().removeprefix("CAP_")
        if "ALL" not in allowed and name not in allowed:
            raise _deny("capabilities", f"adding capability {name[:50]} is not allowed",
                        capability=name[:50])


def _nsmode(value: Any) -> str:
    if isinstance(value, Mapping):
        value = _fold(value, "nsmode").get("nsmode", "")
    return str(value or "").split(":", 1)[0].lower()


def _check_namespaces(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    for key, private in _PRIVATE_NS.items():
        mode = _nsmode(body.get(key))
        rule = _NS_RULE[key]
        if mode not in private and not getattr(policy, "allow_" + rule):
            raise _deny(rule, f"{key} mode {mode!r} is not allowed", mode=mode[:50])


def _check_devices(devices: Any, policy: PolicyConfig) -> None:
    if not _present(devices):
        return
    for device in devices if isinstance(devices, list) else [devices]:
        path = _fold(device, "devices").get("path") if isinstance(device, Mapping) else device
        path = str(path).split(":", 1)[0]
        if "*" not in policy.allow_devices and path not in policy.allow_devices:
            raise _deny("devices", f"device {path[:200]!r} is not allowed", device=path[:200])


def _check_network(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    mode = _nsmode(body.get("netns")) or "bridge"  # Podman's default when unset
    if mode in {"host", "path", "ns"}:
        if not policy.allow_host_network:
            raise _deny("host_network", f"network mode {mode!r} is not allowed", mode=mode)
        return
    names: list[str] = []
    for key in ("networks", "cni_networks"):
        value = body.get(key)
        if isinstance(value, Mapping):
            names += [str(k) for k in value]
        elif isinstance(value, list):
            names += [str(v) for v in value if v is not None]
    for name in [mode, *names]:
        if name not in policy.allow_networks:
            raise _deny("network", f"network {name[:100]!r} is not allowed", network=name[:100])


def _check_ports(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    mappings = body.get("portmappings")
    publishing = _present(mappings) or bool(body.get("publish_image_ports"))
    if publishing and not policy.allow_ports:
        raise _deny("ports", "published ports are not allowed")
    low, high = policy.port_range
    for mapping in mappings if isinstance(mappings, list) else []:
        host_port = _fold(mapping, "portmappings").get("host_port")
        if not isinstance(host_port, int) or not low <= host_port <= high:
            raise _deny("ports", f"host port {host_port!r} is outside {low}-{high}",
                        host_port=host_port if isinstance(host_port, int) else None)


def _inside(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _check_host_path(source: str, policy: PolicyConfig) -> None:
    if not source.startswith("/"):
        raise _deny("mount", f"bind source {source[:200]!r} is not an absolute path")
    candidates = {os.path.normpath(source), os.path.realpath(source)}
    for path in candidates:
        if not policy.allow_socket_mounts:
            is_socket = False
            try:
                is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
            except OSError:
                pass
            if is_socket or any(part.endswith(".sock") for part in path.split("/")):
                raise _deny("mount_socket", f"mounting a socket ({path[:200]!r}) is not allowed",
                            source=path[:200])
        if not policy.allow_storage_mounts:
            for guarded in (*STORAGE_PATHS, *policy.protected_paths):
                if _inside(path, guarded) or _inside(guarded, path):
                    raise _deny("mount_storage", f"{path[:200]!r} reaches {guarded}",
                                source=path[:200])
        if not any(_inside(path, root) for root in policy.mount_roots):
            raise _deny("mount", f"{path[:200]!r} is outside the allowed mount roots",
                        source=path[:200])


def _check_mounts(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    mounts = body.get("mounts")
    for mount in mounts if isinstance(mounts, list) else ([mounts] if _present(mounts) else []):
        if not isinstance(mount, Mapping):
            raise _deny("mount", "a mount must be an object")
        mount = _fold(mount, "mounts")
        kind = str(mount.get("type") or "bind").lower()
        if kind in {"tmpfs", "devpts", "ramfs"}:
            continue
        if kind == "volume":
            if not policy.allow_named_volumes:
                raise _deny("volume", "named volumes are not allowed")
            continue
        if kind != "bind":
            raise _deny("mount", f"mount type {kind[:50]!r} is not allowed")
        _check_host_path(str(mount.get("source") or ""), policy)
    volumes = body.get("volumes")
    for volume in volumes if isinstance(volumes, list) else ([volumes] if _present(volumes) else []):
        name = _fold(volume, "volumes").get("name") if isinstance(volume, Mapping) else volume
        if isinstance(name, str) and name.startswith("/"):
            _check_host_path(name, policy)
        elif not policy.allow_named_volumes:
            raise _deny("volume", "named volumes are not allowed")


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_resources(limits: Any, policy: PolicyConfig) -> None:
    limits = _fold(limits, "resource_limits")
    for key, value in limits.items():
        if key not in _RESOURCE_KEYS and _present(value):
            raise _deny("field", f"resource_limits.{str(key)[:50]} is not allowed",
                        field=f"resource_limits.{str(key)[:50]}")
    memory, cpu, pids = (_fold(limits.get(k), k) for k in ("memory", "cpu", "pids"))
    for group, keys, name in ((memory, _MEMORY_KEYS, "memory"), (cpu, _CPU_KEYS, "cpu")):
        extra = [k for k, v in group.items() if k not in keys and _present(v)]
        if extra:
            raise _deny("field", f"resource_limits.{name}.{str(extra[0])[:50]} is not allowed",
                        field=f"resource_limits.{name}.{str(extra[0])[:50]}")
    if policy.max_memory is not None:
        limit = _number(memory.get("limit"))
        if limit is None or limit <= 0 or limit > policy.max_memory:
            raise _deny("memory", f"memory must be set and at most {policy.max_memory} bytes",
                        limit=policy.max_memory, requested=limit)
    swap = _number(memory.get("swap"))
    if policy.max_memory_swap is not None and swap is not None and (
            swap < 0 or swap > policy.max_memory_swap):
        raise _deny("memory_swap", f"memory plus swap must be at most {policy.max_memory_swap}",
                    limit=policy.max_memory_swap, requested=swap)
    if policy.max_cpus is not None:
        quota, period = _number(cpu.get("quota")), _number(cpu.get("period")) or 100000
        cpus = None if quota is None or quota <= 0 or period <= 0 else quota / period
        if cpus is None or cpus > policy.max_cpus + 1e-9:
            raise _deny("cpus", f"cpus must be set and at most {policy.max_cpus:g}",
                        limit=policy.max_cpus, requested=cpus)
    limit = _number(pids.get("limit"))
    if policy.require_pids_limit and (limit is None or limit <= 0):
        raise _deny("pids", "a pids limit is required")
    if policy.max_pids is not None and limit is not None and limit > policy.max_pids:
        raise _deny("pids", f"pids limit above {policy.max_pids}", limit=policy.max_pids,
                    requested=limit)
