"""Who may connect, and what each peer may call.

Identity is the kernel's: uid, gid and pid from ``SO_PEERCRED`` at accept, plus
the peer's supplementary groups. Admission and the peer's role are decided
once, before any byte is read; the role (``read`` < ``run`` < ``admin``) is
checked per request against the method's declared role (``protocol.methods``)
from the single hook the Dispatcher calls, so batches and single calls cannot
differ. uid 0 is ``admin`` unless ``uid_roles`` says otherwise.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from podman_rpc.protocol.errors import PolicyDenied, RpcError
from podman_rpc.protocol.registry import METHODS, MethodSpec, Role

if TYPE_CHECKING:
    from podman_rpc.daemon.rpc.peer import Peer
    from podman_rpc.daemon.rpc.transport import Connection

log = structlog.get_logger("podman_rpc.access")

READ, RUN, ADMIN = Role.READ, Role.RUN, Role.ADMIN
ROLE_FREE = frozenset(name for name, spec in METHODS.items() if spec.role is Role.READ)
"""What the weakest role may call: no peer needs a role check for these."""


def _uid(value: int | str) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return pwd.getpwnam(str(value)).pw_uid
    except KeyError:
        raise ValueError(f"[daemon.access] unknown user {value!r}") from None


def _gid(value: int | str) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return grp.getgrnam(str(value)).gr_gid
    except KeyError:
        raise ValueError(f"[daemon.access] unknown group {value!r}") from None


def _role(value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"[daemon.access] role must be 'read', 'run' or 'admin', "
                         f"not {value!r}") from None


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """The ``[daemon.access]`` table, with user and group names resolved to ids.

    ``allow_groups`` None means "the socket file's group" (the default, with root).
    """

    allow_uids: tuple[int, ...] = (0,)
    allow_groups: tuple[int, ...] | None = None
    uid_roles: Mapping[int, Role] = field(default_factory=dict)
    group_roles: Mapping[int, Role] = field(default_factory=dict)
    default_role: Role = RUN


def access_from_mapping(raw: Mapping[str, Any]) -> AccessConfig:
    """Build an AccessConfig from the TOML table; names that do not resolve are errors."""
    known = {"allow_uids", "allow_groups", "uid_roles", "group_roles", "default_role"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown [daemon.access] keys: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if "allow_uids" in raw:
        values["allow_uids"] = tuple(_uid(v) for v in raw["allow_uids"])
    if "allow_groups" in raw:
        values["allow_groups"] = tuple(_gid(v) for v in raw["allow_groups"])
    if "uid_roles" in raw:
        values["uid_roles"] = {_uid(k): _role(v) for k, v in raw["uid_roles"].items()}
    if "group_roles" in raw:
        values["group_roles"] = {_gid(k): _role(v) for k, v in raw["group_roles"].items()}
    if "default_role" in raw:
        values["default_role"] = _role(raw["default_role"])
    return AccessConfig(**values)


def socket_group(listener: socket.socket) -> int | None:
    """The group owning the listening socket's file, if it has one."""
    try:
        name = listener.getsockname()
        return os.stat(name).st_gid if isinstance(name, str) and name.startswith("/") else None
    except OSError:
        return None


def peer_groups(peer: Peer) -> frozenset[int]:
    """The peer's primary group plus its supplementary groups (from /proc).

    The /proc entry is only trusted if its real uid is the peer's, so a pid
    reused by another process after the peer left cannot lend its groups.
    """
    groups = {peer.gid}
    try:
        with open(f"/proc/{peer.pid}/status", "rb") as fh:
            status = dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)
        real_uid = int(status[b"Uid"].split()[0])
        if real_uid == peer.uid:
            groups.update(int(g) for g in status.get(b"Groups", b"").split())
    except (OSError, KeyError, ValueError, IndexError):
        pass
    return frozenset(groups)


class AccessControl:
    """Decides admission (``check``) and per-request roles (``authorize``).

    ``role_free``: the methods every admitted peer may call, so callers may skip
    ``authorize`` for them (the daemon-local fast path does).
    """

    role_free = ROLE_FREE

    def __init__(self, config: AccessConfig, socket_gid: int | None) -> None:
        self.config = config
        self.allow_uids = frozenset(config.allow_uids)
        if config.allow_groups is None:
            self.allow_groups = frozenset({socket_gid} if socket_gid is not None else ())
        else:
            self.allow_groups = frozenset(config.allow_groups)
        self._roles: weakref.WeakKeyDictionary[Any, Role] = weakref.WeakKeyDictionary()

    def check(self, peer: Peer | None) -> RpcError | None:
        """The refusal for a new connection, or None to admit it."""
        if peer is None:
            log.warning("connection refused", reason="no peer credentials")
            return PolicyDenied("Connection refused: peer credentials unavailable",
                                {"rule": "connect"})
        if peer.uid in self.allow_uids or peer_groups(peer) & self.allow_groups:
            return None
        log.warning("connection refused", reason="uid not allowed", uid=peer.uid, pid=peer.pid)
        return PolicyDenied(f"Connection refused: uid {peer.uid} is not allowed",
                            {"rule": "connect", "uid": peer.uid})

    def role_of(self, peer: Peer) -> Role:
        """The uid's own role, else admin for uid 0, else the strongest role of its
        groups, else the default."""
        if peer.uid in self.config.uid_roles:
            return self.config.uid_roles[peer.uid]
        if peer.uid == 0:
            return ADMIN
        found = [self.config.group_roles[g] for g in peer_groups(peer)
                 if g in self.config.group_roles]
        if found:
            return max(found, key=lambda role: role.rank)
        return self.config.default_role

    def connection_role(self, connection: Connection | None) -> Role:
        """The role of a connection, decided once; in-process calls (no connection) are admin."""
        if connection is None:
            return ADMIN
        role = self._roles.get(connection)
        if role is None:
            peer = connection.peer
            role = self.role_of(peer) if peer is not None else READ
            self._roles[connection] = role
        return role

    def authorize(self, connection: Connection | None, spec: MethodSpec) -> None:
        """Raise PolicyDenied if this connection's role may not call ``spec``."""
        role = self.connection_role(connection)
        if not role.allows(spec.role):
            raise PolicyDenied(f"Method {spec.name} needs the '{spec.role.value}' role; this "
                               f"peer has '{role.value}'",
                               {"rule": "role", "role": role.value, "method": spec.name,
                                "needs": spec.role.value})


class OpenAccess:
    """No access control: every caller is admitted, as admin (a daemon's own in-process use).

    What ``DaemonState`` gets when no ``AccessControl`` is passed to it.
    """

    role_free: frozenset[str] = frozenset(METHODS)

    def check(self, peer: Peer | None) -> RpcError | None:
        return None

    def authorize(self, connection: Connection | None, spec: MethodSpec) -> None:
        return None

    def connection_role(self, connection: Connection | None) -> Role:
        return ADMIN
