"""What a container gets of the host: capabilities, privileges, user namespace, mount options.

Container root used to be host root: a container could leave a setuid-root file
on a bind mount and a peer could run it. So every container runs in its own user
namespace (Podman's ``--userns=auto``, ids from the ``containers`` subordinate
range), with ``no_new_privileges``, no capabilities but the policy's list, and
bind mounts ``nosuid,nodev``. ``create_body`` asks for all of it
(``confinement``, ``harden_options``); the policy checks the final body
(``check_privileges`` here, ``check_mount_options`` with the other mount rules),
so a body built any other way is judged the same. ``subid_problem`` is the
start-up check for the id range.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from podman_rpc.daemon.guard.policy_rules import FORCED_HOST_OPTIONS, deny, fold, present

if TYPE_CHECKING:
    from podman_rpc.daemon.guard.policy import PolicyConfig

USERNS_MODES = ("auto", "host")
SUBID_OWNER = "containers"  # the user Podman takes --userns=auto ranges from
MIN_SUBIDS = 1024  # Podman's smallest automatic user namespace
# ids per container. Given explicitly because Podman 4.3 otherwise sizes the namespace by
# mounting and scanning the image, and concurrent creates doing that deadlocked its
# storage locks here (2 of 4 rounds of 10 parallel creates hung; 0 of 5 with a size).
USERNS_SIZE = 65536
_MAX_USERNS_SIZE = 1 << 24


def confinement(policy: PolicyConfig) -> dict[str, Any]:
    """The create-body fields that keep a container away from the host, per the policy."""
    fields: dict[str, Any] = {"no_new_privileges": True, "cap_drop": ["ALL"]}
    if policy.capabilities:
        fields["cap_add"] = list(policy.capabilities)
    if policy.userns == "auto":
        # Over the API the nsmode alone is not enough: Podman 4.3 allocates the range only
        # when idmappings asks for it (its CLI sets this itself), else it maps ids 1:1.
        fields["userns"] = {"nsmode": "auto"}
        fields["idmappings"] = {"AutoUserNs": True, "AutoUserNsOpts": {"Size": USERNS_SIZE}}
    return fields


def harden_options(options: list[str]) -> list[str]:
    """A host path's mount options with nosuid and nodev added where missing."""
    return options + [o for o in FORCED_HOST_OPTIONS if o not in options]


def _cap_name(cap: Any) -> str:
    return str(cap).upper().removeprefix("CAP_")[:50]


def _as_list(value: Any) -> list[Any]:
    if not present(value):
        return []
    return value if isinstance(value, list) else [value]


def check_privileges(body: Mapping[str, Any], policy: PolicyConfig) -> None:
    """No new privileges, no capability beyond the policy's list, and the policy's userns."""
    if body.get("no_new_privileges") is not True:
        raise deny("no_new_privileges", "containers must run with no_new_privileges")
    allowed = {_cap_name(c) for c in policy.capabilities}
    if "ALL" not in allowed:
        # Without ALL dropped the container keeps Podman's defaults (containers.conf decides
        # which): that is asking for capabilities the policy does not list.
        if "ALL" not in {_cap_name(c) for c in _as_list(body.get("cap_drop"))}:
            raise deny("capabilities", "containers must drop ALL capabilities",
                       capability="ALL")
        for cap in _as_list(body.get("cap_add")):
            if _cap_name(cap) not in allowed:
                raise deny("capabilities", f"capability {_cap_name(cap)} is not allowed",
                           capability=_cap_name(cap))
    mappings = body.get("idmappings")
    if present(mappings) and not isinstance(mappings, Mapping):
        raise deny("userns", "idmappings must be an object", field="idmappings")
    mappings = fold(mappings, "idmappings")
    for key, value in mappings.items():  # explicit maps could map container root to host root
        if key == "autousernsopts":
            _check_auto_options(value)
        elif key != "autouserns" and present(value) and value is not False:
            raise deny("userns", f"idmappings.{key[:50]} is not allowed",
                       field=f"idmappings.{key[:50]}")
    userns = fold(body.get("userns"), "userns")
    mode = str(userns.get("nsmode") or "").lower()
    auto = mode == "auto" and mappings.get("autouserns") is True
    if policy.userns == "auto" and (not auto or present(userns.get("value"))):
        shown = mode + (":" + str(userns.get("value"))[:50] if present(userns.get("value")) else "")
        raise deny("userns", f"user namespace {shown or 'host'!r} is not allowed: each container "
                   "gets its own (policy userns = \"auto\")", mode=shown[:60] or "host")


def _check_auto_options(value: Any) -> None:
    """Only a size: extra mappings or passwd files could place host ids in the namespace."""
    if not present(value):
        return
    options = fold(value, "autousernsopts") if isinstance(value, Mapping) else {"?": value}
    for key, item in options.items():
        if key == "size" and isinstance(item, int) and not isinstance(item, bool) \
                and 0 <= item <= _MAX_USERNS_SIZE:
            continue
        if present(item) and key != "size":
            raise deny("userns", f"idmappings.autousernsopts.{key[:50]} is not allowed",
                       field=f"idmappings.autousernsopts.{key[:50]}")
        if key == "size":
            raise deny("userns", f"user namespace size must be 0 to {_MAX_USERNS_SIZE}",
                       field="idmappings.autousernsopts.size")


def subid_owner_names(owner: str = SUBID_OWNER) -> set[str]:
    """The spellings /etc/subuid may use for ``owner``: its name, and its uid if it exists."""
    names = {owner}
    try:
        names.add(str(pwd.getpwnam(owner).pw_uid))
    except KeyError:
        pass
    return names


def subid_count(path: str, owners: Iterable[str]) -> int:
    """How many subordinate ids ``path`` gives the owner (0 when the file is missing)."""
    owners = set(owners)
    total = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in owners and parts[2].isdigit():
                    total += int(parts[2])
    except FileNotFoundError:
        return 0
    return total


def subid_problem(policy: PolicyConfig, euid: int | None = None) -> str | None:
    """Why Podman could not give containers their own user namespace, or None.

    Only a root daemon is checked: rootless Podman maps its containers into the
    user's own range, where container root is never host root.
    """
    if policy.userns != "auto" or (os.geteuid() if euid is None else euid) != 0:
        return None
    owners = subid_owner_names()
    missing = [path for path in policy.subid_files if subid_count(path, owners) < MIN_SUBIDS]
    if not missing:
        return None
    return (f"policy userns = \"auto\" gives each container its own user namespace from the "
            f"subordinate ids of the user {SUBID_OWNER!r}, and {' and '.join(missing)} "
            f"give it fewer than {MIN_SUBIDS}. Add the range with `sudo bash daemon/subids.sh` "
            f"(it appends {SUBID_OWNER}:2147483647:2147483648 to /etc/subuid and /etc/subgid), "
            f"or set userns = \"host\" under [daemon.policy] to accept that container root "
            f"is host root.")
