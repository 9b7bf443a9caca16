"""The rules of the run policy, one function per concern (see ``daemon.guard.policy``).

Each raises PolicyDenied naming its rule; keys are compared lower-cased, as
Podman's Go decoder matches them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from podman_rpc.protocol.errors import PolicyDenied

if TYPE_CHECKING:
    from podman_rpc.daemon.guard.policy import PolicyConfig

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
}  # userns is judged by daemon.guard.confine.check_privileges
_NS_RULE = {"pidns": "host_pid", "ipcns": "host_ipc", "utsns": "host_uts",
            "cgroupns": "host_cgroupns"}

# Podman's own storage and sockets: a container that can reach them is root on the host.
STORAGE_PATHS = (
    "/var/lib/containers", "/run/containers", "/var/run/containers", "/run/podman",
    "/var/run/podman", "/run/libpod", "/var/run/libpod", "/etc/containers",
    "/usr/share/containers", "/var/run/docker.sock", "/run/docker.sock", "/run/podman-rpc",
    "/run/user", "/proc", "/sys", "/dev",
)

PROPAGATION = frozenset({"shared", "rshared", "private", "rprivate", "slave", "rslave",
                         "unbindable", "runbindable"})
# Options that only narrow a mount. Everything else is denied, among them "U" (chown the
# host source to the container's ids), "idmap", "suid", "dev" and "exec" (they undo a
# restriction the daemon decides, not the caller), "O" (overlay) and any unknown word.
MOUNT_OPTIONS = frozenset({"ro", "rw", "z", "Z", "nosuid", "nodev", "noexec", *PROPAGATION})
VALUED_OPTIONS = frozenset({"size", "mode"})  # size=, mode=: tmpfs and named volumes only
FORCED_HOST_OPTIONS = ("nosuid", "nodev")  # on every mount of a host path
# Keys of a mount entry (OCI spec.Mount, libpod NamedVolume): uidMappings would idmap it.
_MOUNT_KEYS = {"mounts": {"destination", "type", "source", "options"},
               "volumes": {"name", "dest", "options", "isanonymous"}}


def deny(rule: str, message: str, **data: Any) -> PolicyDenied:
    return PolicyDenied(f"Denied by policy ({rule}): {message}", {"rule": rule, **data})


def fold(value: Any, where: str) -> Mapping[str, Any]:
    """Keys lower-cased, as Podman's Go decoder matches them; two spellings of one key deny."""
    if not isinstance(value, Mapping):
        return {}
    folded = {str(k).lower(): v for k, v in value.items()}
    if len(folded) != len(value):
        raise deny("field", f"{where} names a key twice in different case", field=where)
    return folded


def present(value: Any) -> bool:
    """Podman-py drops None and empty values before posting; so do we."""
    return value is not None and not (isinstance(value, (list, dict, str)) and not value)


def check_image(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    for key in ("image", "raw_image_name"):
        image = body.get(key)
        if key == "image" and not isinstance(image, str):
            raise deny("image", "an image is required")
        if isinstance(image, str) and not any(fnmatchcase(image, p) for p in policy.images):
            raise deny("image", f"image {image[:200]!r} matches no allowed pattern",
                        image=image[:200])


def _nsmode(value: Any) -> str:
    if isinstance(value, Mapping):
        value = fold(value, "nsmode").get("nsmode", "")
    return str(value or "").split(":", 1)[0].lower()


def check_namespaces(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    for key, private in _PRIVATE_NS.items():
        mode = _nsmode(body.get(key))
        rule = _NS_RULE[key]
        if mode not in private and not getattr(policy, "allow_" + rule):
            raise deny(rule, f"{key} mode {mode!r} is not allowed", mode=mode[:50])


def check_devices(devices: Any, policy: PolicyConfig) -> None:
    if not present(devices):
        return
    for device in devices if isinstance(devices, list) else [devices]:
        path = fold(device, "devices").get("path") if isinstance(device, Mapping) else device
        path = str(path).split(":", 1)[0]
        if "*" not in policy.allow_devices and path not in policy.allow_devices:
            raise deny("devices", f"device {path[:200]!r} is not allowed", device=path[:200])


def check_network(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    mode = _nsmode(body.get("netns")) or "bridge"  # Podman's default when unset
    if mode in {"host", "path", "ns"}:
        if not policy.allow_host_network:
            raise deny("host_network", f"network mode {mode!r} is not allowed", mode=mode)
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
            raise deny("network", f"network {name[:100]!r} is not allowed", network=name[:100])


def check_ports(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    mappings = body.get("portmappings")
    publishing = present(mappings) or bool(body.get("publish_image_ports"))
    if publishing and not policy.allow_ports:
        raise deny("ports", "published ports are not allowed")
    low, high = policy.port_range
    for mapping in mappings if isinstance(mappings, list) else []:
        host_port = fold(mapping, "portmappings").get("host_port")
        if not isinstance(host_port, int) or not low <= host_port <= high:
            raise deny("ports", f"host port {host_port!r} is outside {low}-{high}",
                        host_port=host_port if isinstance(host_port, int) else None)


def _inside(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _check_host_path(source: str, policy: PolicyConfig) -> None:
    if not source.startswith("/"):
        raise deny("mount", f"bind source {source[:200]!r} is not an absolute path")
    candidates = {os.path.normpath(source), os.path.realpath(source)}
    for path in candidates:
        if not policy.allow_socket_mounts:
            is_socket = False
            try:
                is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
            except OSError:
                pass
            if is_socket or any(part.endswith(".sock") for part in path.split("/")):
                raise deny("mount_socket", f"mounting a socket ({path[:200]!r}) is not allowed",
                            source=path[:200])
        if not policy.allow_storage_mounts:
            for guarded in (*STORAGE_PATHS, *policy.protected_paths):
                if _inside(path, guarded) or _inside(guarded, path):
                    raise deny("mount_storage", f"{path[:200]!r} reaches {guarded}",
                                source=path[:200])
        if not any(_inside(path, root) for root in policy.mount_roots):
            raise deny("mount", f"{path[:200]!r} is outside the allowed mount roots",
                        source=path[:200])


def check_mount_options(entry: Mapping[str, Any], *, host_path: bool, where: str) -> None:
    """Deny any option outside the allowlist; a host path must be nosuid,nodev."""
    extra = [k for k, v in entry.items() if k not in _MOUNT_KEYS[where] and present(v)]
    if extra:
        raise deny("field", f"{where}.{str(extra[0])[:50]} is not allowed",
                   field=f"{where}.{str(extra[0])[:50]}")
    options = entry.get("options")
    if options is not None and not isinstance(options, list):
        raise deny("mount_option", f"{where} options must be a list", option=str(options)[:100])
    words = [str(o) for o in options or []]
    for option in words:
        key, sep, _ = option.partition("=")
        if option in MOUNT_OPTIONS or (sep and key in VALUED_OPTIONS and not host_path):
            continue
        raise deny("mount_option", f"mount option {option[:100]!r} is not allowed",
                   option=option[:100])
    for forced in FORCED_HOST_OPTIONS if host_path else ():
        if forced not in words:
            raise deny("mount_option", f"a host path must be mounted {forced}", option=forced)


def check_mounts(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    """Where each mount comes from, then its options (``check_mount_options``)."""
    mounts = body.get("mounts")
    for mount in mounts if isinstance(mounts, list) else ([mounts] if present(mounts) else []):
        if not isinstance(mount, Mapping):
            raise deny("mount", "a mount must be an object")
        mount = fold(mount, "mounts")
        kind = str(mount.get("type") or "bind").lower()
        if kind == "volume" and not policy.allow_named_volumes:
            raise deny("volume", "named volumes are not allowed")
        if kind not in {"tmpfs", "devpts", "ramfs", "volume", "bind"}:
            raise deny("mount", f"mount type {kind[:50]!r} is not allowed")
        if kind == "bind":
            _check_host_path(str(mount.get("source") or ""), policy)
        check_mount_options(mount, host_path=kind == "bind", where="mounts")
    volumes = body.get("volumes")
    for volume in volumes if isinstance(volumes, list) else ([volumes] if present(volumes) else []):
        volume = fold(volume, "volumes") if isinstance(volume, Mapping) else {"name": volume}
        name = volume.get("name")
        host_path = isinstance(name, str) and name.startswith("/")
        if isinstance(name, str) and host_path:
            _check_host_path(name, policy)
        elif not policy.allow_named_volumes:
            raise deny("volume", "named volumes are not allowed")
        check_mount_options(volume, host_path=host_path, where="volumes")


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_resources(limits: Any, policy: PolicyConfig) -> None:
    limits = fold(limits, "resource_limits")
    for key, value in limits.items():
        if key not in _RESOURCE_KEYS and present(value):
            raise deny("field", f"resource_limits.{str(key)[:50]} is not allowed",
                        field=f"resource_limits.{str(key)[:50]}")
    memory, cpu, pids = (fold(limits.get(k), k) for k in ("memory", "cpu", "pids"))
    for group, keys, name in ((memory, _MEMORY_KEYS, "memory"), (cpu, _CPU_KEYS, "cpu")):
        extra = [k for k, v in group.items() if k not in keys and present(v)]
        if extra:
            raise deny("field", f"resource_limits.{name}.{str(extra[0])[:50]} is not allowed",
                        field=f"resource_limits.{name}.{str(extra[0])[:50]}")
    if policy.max_memory is not None:
        limit = _number(memory.get("limit"))
        if limit is None or limit <= 0 or limit > policy.max_memory:
            raise deny("memory", f"memory must be set and at most {policy.max_memory} bytes",
                        limit=policy.max_memory, requested=limit)
    swap = _number(memory.get("swap"))
    if policy.max_memory_swap is not None and swap is not None and (
            swap < 0 or swap > policy.max_memory_swap):
        raise deny("memory_swap", f"memory plus swap must be at most {policy.max_memory_swap}",
                    limit=policy.max_memory_swap, requested=swap)
    if policy.max_cpus is not None:
        quota, period = _number(cpu.get("quota")), _number(cpu.get("period")) or 100000
        cpus = None if quota is None or quota <= 0 or period <= 0 else quota / period
        if cpus is None or cpus > policy.max_cpus + 1e-9:
            raise deny("cpus", f"cpus must be set and at most {policy.max_cpus:g}",
                        limit=policy.max_cpus, requested=cpus)
    limit = _number(pids.get("limit"))
    if policy.require_pids_limit and (limit is None or limit <= 0):
        raise deny("pids", "a pids limit is required")
    if policy.max_pids is not None and limit is not None and limit > policy.max_pids:
        raise deny("pids", f"pids limit above {policy.max_pids}", limit=policy.max_pids,
                    requested=limit)
