"""Every method the daemon serves, declared once (see ``protocol.registry``).

Names, params and results mirror the old ``podman_client.py`` CLI: its long
options become snake_case params and its ``data`` object becomes the result.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from podman_rpc.protocol.registry import Lane, Params, Role, method
from podman_rpc.protocol.schema import Param

# List params default to () (immutable, one object shared by every call); the
# validated value is a list. That mismatch is each "type: ignore[assignment]" below.
Seconds = Annotated[float | None, Param("Lower this call's deadline, in seconds", ge=0.001)]


# --- daemon and system -------------------------------------------------------------

@method("rpc.discover", lane=Lane.LOCAL, timeout=5, result=dict[str, Any], role=Role.READ)
class Discover(Params):
    """The OpenRPC document: every method, its params, result schema and the error table."""


class LaneStatus(TypedDict):
    in_flight: int
    queued: int
    cap: int
    queue_limit: int


class StatusResult(TypedDict):
    version: str
    protocol_version: str
    instance_id: str
    uptime_s: float
    podman: dict[str, Any]
    connections: int
    lanes: dict[str, LaneStatus]
    requests: dict[str, dict[str, int]]
    containers_reaped: int
    warm: dict[str, dict[str, Any]]  # per pool: ready, starting, claimed, missed, removing...
    draining: bool


@method("status", lane=Lane.LOCAL, timeout=5, result=StatusResult, role=Role.READ)
class Status(Params):
    """The daemon's own state: uptime, Podman reachability, lanes, counters."""


@method("ping", lane=Lane.QUERY, timeout=10, result=Literal["Pong"], role=Role.READ)
class Ping(Params):
    """Ask Podman whether it answers; the result is "Pong"."""

    timeout: Seconds = None


@method("version", lane=Lane.QUERY, timeout=10, result=str, role=Role.READ)
class Version(Params):
    """Podman's version string, as the CLI printed it."""

    timeout: Seconds = None


@method("info", lane=Lane.QUERY, timeout=30, result=Any, role=Role.READ)
class Info(Params):
    """Podman's info object, or with ``format`` (e.g. "{{.Host.Arch}}") the rendered string."""

    format: Annotated[str | None, Param("Go-style template over the info object")] = None
    timeout: Seconds = None


# --- images --------------------------------------------------------------------------

class BuildResult(TypedDict):
    image_id: str
    tags: list[str]
    platform: str | None
    logs: list[str]
    built: bool


@method("build", lane=Lane.BUILD, timeout=600, result=BuildResult, role=Role.RUN)
class Build(Params):
    """Build an image from a Dockerfile in a directory on the daemon's host.

    Without ``force``, an existing ``tag`` is not rebuilt (``built`` is false).
    """

    context: Annotated[str, Param("Build context: a directory on the daemon's host")]
    tag: Annotated[str | None, Param("Image tag, e.g. myapp:latest")] = None
    file: Annotated[str, Param("Dockerfile name, relative to the context")] = "Dockerfile"
    build_args: Annotated[list[str], Param("Build arguments as KEY=VALUE", max_items=256)] = ()  # type: ignore[assignment]
    platform: Annotated[str | None, Param("Target platform, e.g. linux/amd64")] = None
    no_cache: Annotated[bool, Param("Do not use the build cache")] = False
    force: Annotated[bool, Param("Rebuild even if the tag exists")] = False
    network: Annotated[str, Param("Network of RUN steps: none, bridge or a network name "
                                  "(the policy's build_networks)")] = "none"
    progress: Annotated[bool, Param("Stream build log lines as $/progress notifications")] = False
    timeout: Seconds = None


class ImageSummary(TypedDict):
    id: str
    tags: list[str]
    size: int
    created: str
    digest: str | None


@method("images", lane=Lane.QUERY, timeout=30, result=list[ImageSummary], role=Role.READ)
class Images(Params):
    """List images."""

    all: Annotated[bool, Param("Include intermediate images")] = False
    timeout: Seconds = None


@method("exists", lane=Lane.QUERY, timeout=10, result=bool, role=Role.READ)
class Exists(Params):
    """Whether an image exists locally."""

    name: Annotated[str, Param("Image name or id")]
    timeout: Seconds = None


@method("inspect", lane=Lane.QUERY, timeout=10, result=Any, role=Role.READ)
class Inspect(Params):
    """An image's (or with ``kind: "container"``, a container's) inspect object, or with
    ``format`` (e.g. "{{.Size}}") the rendered string."""

    name: Annotated[str, Param("Image name or id (container name or id with kind)")]
    format: Annotated[str | None, Param("Go-style template over the inspect object")] = None
    timeout: Seconds = None
    kind: Annotated[Literal["image", "container"],
                    Param("What ``name`` names: an image (the old CLI's inspect) or a container")
                    ] = "image"


class RmiResult(TypedDict):
    image: str
    message: str


@method("rmi", lane=Lane.QUERY, timeout=60, result=RmiResult, role=Role.RUN)
class Rmi(Params):
    """Remove an image."""

    name: Annotated[str, Param("Image name or id")]
    force: Annotated[bool, Param("Remove even if containers use it")] = False
    timeout: Seconds = None


class PruneResult(TypedDict):
    images_deleted: list[str]
    space_reclaimed: int
    message: str


@method("prune", lane=Lane.BUILD, timeout=300, result=PruneResult, role=Role.ADMIN)
class Prune(Params):
    """Remove unused (dangling) images, whoever made them: admin only."""

    timeout: Seconds = None


class PullResult(TypedDict):
    image: str
    image_id: str


@method("pull", lane=Lane.BUILD, timeout=600, result=PullResult, role=Role.RUN)
class Pull(Params):
    """Pull an image from a registry."""

    image: Annotated[str, Param("Image reference, e.g. docker.io/library/alpine:latest")]
    progress: Annotated[bool, Param("Stream pull lines as $/progress notifications")] = False
    timeout: Seconds = None


# --- containers ----------------------------------------------------------------------

class RunTiming(TypedDict, total=False):
    """Where a run's latency went, in milliseconds (a detached run has no run/collect)."""

    create_ms: float  # POST create
    start_ms: float  # attach (libpod prepares the container: runc create) and POST start
    run_ms: float  # start's return -> exit code and output known (or the overrun's kill)
    collect_ms: float  # exit code known -> the output's end (attach EOF)
    warm: bool  # true when a warm container served it (issue 20; its start_ms is 0)


class RunResult(TypedDict):
    container_id: str
    name: str
    status: Literal["exited", "running"]
    exit_code: int | None
    image: list[str]  # a list, as the old CLI printed it
    auto_remove: bool
    duration_ms: float
    timing: RunTiming
    stdout: Any
    stderr: str
    truncated: bool


@method("run", lane=Lane.RUN, timeout=5, result=RunResult, timeout_is_work=True,
        role=Role.RUN)
class Run(Params):
    """Create, start and wait for a container within ``timeout``; return its output.

    A non-zero exit is ContainerFailed; past ``timeout`` the container is killed
    and removed and the error is Timeout. With ``auto_remove`` nothing is left.
    """

    image: Annotated[str, Param("Image to run")]
    name: Annotated[str | None, Param("Container name (generated if omitted)")] = None
    entrypoint: Annotated[str | list[str] | None, Param("Entrypoint override")] = None
    command: Annotated[str | list[str] | None,
                       Param("Command: a list, or a string split like a shell does")] = None
    detach: Annotated[bool, Param("Return once the container runs; the deadline still applies")] = False
    ports: Annotated[list[str], Param("Published ports as HOST:CONTAINER", max_items=64)] = ()  # type: ignore[assignment]
    env: Annotated[list[str], Param("Environment as KEY=VALUE", max_items=1024)] = ()  # type: ignore[assignment]
    volumes: Annotated[list[str], Param("Volumes as HOST:CONTAINER[:OPTS]", max_items=64)] = ()  # type: ignore[assignment]
    mounts: Annotated[list[str], Param("Mounts as source:target:relabel,propagation,size",
                                       max_items=64)] = ()  # type: ignore[assignment]
    auto_remove: Annotated[bool, Param("Remove the container when done")] = True
    network_mode: Annotated[str, Param("Network mode")] = "none"
    memory: Annotated[str, Param("Memory limit, e.g. 20m")] = "20m"
    memory_swap: Annotated[str, Param("Memory plus swap limit, e.g. 20m")] = "20m"
    cpus: Annotated[float, Param("CPUs, applied as quota/period", ge=0.01, le=1024)] = 0.5
    pids_limit: Annotated[int, Param("Maximum processes in the container", ge=1)] = 64
    timeout: Annotated[float, Param("Seconds the container may run", ge=0.001)] = 5.0
    workdir: Annotated[str | None, Param("Working directory inside the container")] = None
    progress: Annotated[bool, Param("Stream output lines as $/progress notifications")] = False


class ContainerSummary(TypedDict):
    id: str
    name: str
    status: str
    image: list[str]  # a list, as the old CLI printed it
    created: str


@method("ps", lane=Lane.QUERY, timeout=10, result=list[ContainerSummary], role=Role.READ)
class Ps(Params):
    """List containers (running only unless ``all``)."""

    all: Annotated[bool, Param("Include stopped containers")] = False
    timeout: Seconds = None


class ContainerMessage(TypedDict):
    container_id: str
    message: str


@method("kill", lane=Lane.QUERY, timeout=10, result=ContainerMessage, role=Role.RUN)
class Kill(Params):
    """Send a signal to a running container."""

    name: Annotated[str, Param("Container name or id")]
    signal: Annotated[str, Param("Signal name, e.g. SIGTERM")] = "SIGKILL"
    timeout: Seconds = None


@method("rm", lane=Lane.QUERY, timeout=30, result=ContainerMessage, role=Role.RUN)
class Rm(Params):
    """Remove a container."""

    name: Annotated[str, Param("Container name or id")]
    force: Annotated[bool, Param("Kill it first if it runs")] = False
    timeout: Seconds = None


class LogsResult(TypedDict):
    container_id: str
    stdout: str
    stderr: str


@method("logs", lane=Lane.QUERY, timeout=30, result=LogsResult, role=Role.READ)
class Logs(Params):
    """A container's output so far."""

    name: Annotated[str, Param("Container name or id")]
    tail: Annotated[int | None, Param("Only the last N lines", ge=0)] = None
    timeout: Seconds = None


@method("stop", lane=Lane.WAIT, timeout=10, result=ContainerMessage, timeout_is_work=True,
        role=Role.RUN)
class Stop(Params):
    """Stop a container: SIGTERM, then SIGKILL after ``timeout`` seconds."""

    name: Annotated[str, Param("Container name or id")]
    timeout: Annotated[float, Param("Seconds before SIGKILL", ge=0)] = 10.0


class WaitResult(TypedDict):
    container_id: str
    exit_code: int


@method("wait", lane=Lane.WAIT, timeout=60, result=WaitResult, timeout_is_work=True,
        role=Role.RUN)
class Wait(Params):
    """Wait until a container exits and return its exit code (Timeout if it does not)."""

    name: Annotated[str, Param("Container name or id")]
    timeout: Annotated[float, Param("Seconds to wait", ge=0.001)] = 60.0
