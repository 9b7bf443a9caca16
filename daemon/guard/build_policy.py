"""What a ``build`` may read and reach, and what a ``pull`` may fetch.

A build runs as root on the daemon's host: its context is read by the daemon
and its RUN steps run where Podman puts them. So the context and the
Dockerfile are resolved with symlinks followed and must lie under a configured
build root (``[daemon.policy] build_roots``; an admin may build from anywhere),
the Dockerfile inside the context. The network of RUN steps is judged against
``build_networks``. A pull takes a registry reference only: another transport
(``docker-archive:``, ``oci:``, ``dir:``...) would read files on the host.
The Dockerfile's base images (``FROM``, ``--from=``, ``from=``) are held to the
same transport rule, since buildah pulls them the way ``pull`` does. Each
denial is ``PolicyDenied`` with ``data.rule``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import orjson

from podman_rpc.daemon.guard.policy import PolicyConfig
from podman_rpc.daemon.guard.policy_rules import deny
from podman_rpc.protocol.errors import InvalidParams

# containers/image transports; "name:rest" with one of these names is not a registry reference.
TRANSPORTS = frozenset({
    "docker", "docker-archive", "docker-daemon", "oci", "oci-archive", "dir",
    "containers-storage", "tarball", "ostree", "sif", "atomic",
})
# distribution/reference's grammar: [domain[:port]/]path[:tag][@digest]
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL})(?:\.{_LABEL})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


MAX_DOCKERFILE_BYTES = 1 << 20
_DIRECTIVE = re.compile(r"#[ \t]*escape[ \t]*=[ \t]*(\S)", re.IGNORECASE)
_NOISE = re.compile(r"^[ \t]*(?:#[^\n]*)?\r?\n", re.MULTILINE)  # comment and blank lines
_FROM_LINE = re.compile(r"^[ \t]*FROM[ \t]+([^\n]*)", re.IGNORECASE | re.MULTILINE)
_FROM_FLAG = re.compile(r"(?:^|[\s,])(?:--)?from=([^\s,]+)", re.IGNORECASE)
_ARG_LINE = re.compile(r"^[ \t]*ARG[ \t]+(\w+)=(\S*)", re.IGNORECASE | re.MULTILINE)
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_ADD_REMOTE = re.compile(r"^[ \t]*ADD[ \t][^\n]*?(?:\w+://|git@)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class BuildSource:
    """A build's context directory (real path) and its Dockerfile relative to it."""

    context: str
    dockerfile: str


def inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (both already real, absolute paths)."""
    return os.path.commonpath([path, root]) == root


def resolve_source(context: str, file: str, policy: PolicyConfig, is_admin: bool) -> BuildSource:
    """The context and Dockerfile with symlinks resolved, or the rule they break."""
    if not os.path.isabs(context):
        raise InvalidParams("context", "must be an absolute path on the daemon's host")
    real = os.path.realpath(context)
    if not is_admin:
        if not policy.build_roots:
            raise deny("build_root", "no build roots are configured: only admin may build")
        if not any(inside(real, os.path.realpath(root)) for root in policy.build_roots):
            raise deny("build_root", f"context {real[:200]!r} is outside the build roots",
                       context=real[:200])
    if not os.path.isdir(real):
        raise InvalidParams("context", f"not a directory on the daemon's host: {context[:200]}")
    dockerfile = os.path.realpath(os.path.join(real, file))
    if dockerfile == real or not inside(dockerfile, real):
        raise deny("dockerfile", f"the Dockerfile {file[:200]!r} is not inside the context",
                   file=file[:200])
    if not os.path.isfile(dockerfile):
        raise InvalidParams("file", f"no {file[:200]} in {context[:200]}")
    relative = os.path.relpath(dockerfile, real)
    if relative.startswith("["):  # libpod would read a JSON list of host paths from it
        raise deny("dockerfile", "a Dockerfile path may not start with '['", file=file[:200])
    return BuildSource(real, relative)


def build_namespace(network: str, policy: PolicyConfig) -> dict[str, str]:
    """libpod's ``nsoptions`` and ``networkmode`` for a build's RUN steps.

    Without ``nsoptions`` libpod runs RUN steps in the host's network namespace,
    so the daemon always sends it.
    """
    if network not in policy.build_networks:
        raise deny("network", f"build network {network[:100]!r} is not allowed",
                   network=network[:100])
    option: dict[str, Any] = {"Name": "network"}
    if network == "none":
        mode = "NetworkDisabled"
    elif network == "host":
        if not policy.allow_host_network:
            raise deny("host_network", "a build on the host network is not allowed")
        option["Host"], mode = True, "NetworkEnabled"
    elif network in ("bridge", "private", "default"):
        mode = "NetworkEnabled"
    elif re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", network):
        option["Path"], mode = network, "NetworkEnabled"  # a named network
    else:
        raise InvalidParams("network", f"unknown network {network[:100]!r}")
    return {"nsoptions": orjson.dumps([option]).decode(), "networkmode": mode}


def _transport(reference: str) -> str | None:
    """The containers/image transport ``reference`` names, or None for a registry one."""
    head, colon, _ = reference.partition(":")
    return head.lower() if colon and "/" not in head and head.lower() in TRANSPORTS else None


def _join_lines(text: str) -> str:
    """The Dockerfile with continuations joined, as its parser sees it: the escape
    character from a leading ``# escape=`` directive; comment and blank lines inside a
    continuation dropped."""
    escape = "\\"
    for line in text.lstrip("\ufeff").splitlines():
        if not line.lstrip().startswith("#"):
            break
        if directive := _DIRECTIVE.match(line.strip()):
            escape = directive.group(1)
    text = _NOISE.sub("", text + "\n")
    return re.sub(re.escape(escape) + r"[ \t]*\r?\n", " ", text)


def check_dockerfile(text: bytes, build_args: Mapping[str, str], network: str) -> None:
    """Deny base images read from the host: a transport in FROM, ``--from=`` or ``from=``;
    and, for a build without network, ``ADD`` of a URL (buildah fetches it itself, from
    the host's network).

    Variables are expanded from ``build_args`` and the ARG defaults; one that cannot
    be expanded is denied, since it could hide a transport.
    """
    if len(text) > MAX_DOCKERFILE_BYTES:
        raise deny("dockerfile", f"the Dockerfile is larger than {MAX_DOCKERFILE_BYTES} bytes")
    joined = _join_lines(text.decode("utf-8", "replace"))
    if network == "none" and _ADD_REMOTE.search(joined):
        raise deny("network", "ADD of a URL is fetched over the host's network; this build "
                   "has none", network=network)
    values = {name: value.strip("\"'") for name, value in _ARG_LINE.findall(joined)}
    values.update(build_args)
    operands = [next((t for t in line.split() if not t.startswith("--")), "")
                for line in _FROM_LINE.findall(joined)]
    operands += _FROM_FLAG.findall(joined)
    for operand in operands:
        image = _VARIABLE.sub(lambda v: values.get(v.group(1) or v.group(2), "$"), operand)
        if "$" in image:
            raise deny("from", f"base image {operand[:100]!r} uses a variable the daemon "
                       "cannot expand", image=operand[:100])
        if _transport(image):
            raise deny("transport", f"base image {image[:100]!r} is not from a registry",
                       image=image[:100])


def check_pull_reference(reference: str, policy: PolicyConfig) -> None:
    """Let a registry reference through if an ``images`` pattern allows it; deny the rest."""
    if transport := _transport(reference):
        raise deny("transport", f"transport {transport[:50]!r} is not allowed; pull from a "
                   "registry", image=reference[:200])
    if reference.startswith("/") or "://" in reference or not _REFERENCE.match(reference):
        raise deny("transport", f"{reference[:200]!r} is not a registry reference",
                   image=reference[:200])
    if not any(fnmatchcase(reference, pattern) for pattern in policy.images):
        raise deny("image", f"image {reference[:200]!r} matches no allowed pattern",
                   image=reference[:200])
