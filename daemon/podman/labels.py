"""Labels the daemon puts on every container it creates; the reaper trusts only these."""

from __future__ import annotations

OWNER = "io.podman-rpc.owner"
OWNER_VALUE = "podman-rpc"
INSTANCE = "io.podman-rpc.instance"
REQUEST = "io.podman-rpc.request"
DEADLINE = "io.podman-rpc.deadline"  # Unix time (seconds, float as text) after which it must be gone
AUTO_REMOVE = "io.podman-rpc.auto-remove"  # "true" when nobody will collect the result
OWNER_UID = "io.podman-rpc.uid"  # the creating peer's uid, on containers and built images
DETACHED = "io.podman-rpc.detached"  # "true" on a detached run: no request supervises it
WARM_EXPIRES = "io.podman-rpc.warm-expires"  # a warm container: Unix time its idle ttl ends


def container_labels(instance_id: str, request_id: object, deadline_unix: float,
                     auto_remove: bool, owner_uid: int) -> dict[str, str]:
    return {
        OWNER: OWNER_VALUE,
        OWNER_UID: str(owner_uid),
        INSTANCE: instance_id,
        REQUEST: str(request_id)[:200],
        DEADLINE: f"{deadline_unix:.3f}",
        AUTO_REMOVE: "true" if auto_remove else "false",
    }
