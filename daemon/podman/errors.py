"""Translate podman-py and transport exceptions into the protocol's errors, in one place.

Modelled on httpx's ``map_httpcore_exceptions``: every Podman call made by the
daemon goes through :func:`map_podman_errors`, so no handler catches podman-py
exceptions itself and no traceback reaches the wire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from podman_rpc.protocol.errors import (
    Conflict,
    InvalidParams,
    NotFound,
    PodmanError,
    PodmanUnavailable,
    RpcError,
)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return status


def _explanation(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def _is_unreachable(exc: BaseException) -> bool:
    """podman-py wraps a refused or missing socket in APIError; look at the causes."""
    import requests  # lazy, like podman: keeps both off the cold-start path

    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, (requests.ConnectionError, ConnectionError, FileNotFoundError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def translate(exc: BaseException, *, subject: str = "container") -> RpcError:
    """The protocol error for one exception raised while talking to Podman."""
    import requests
    from podman import errors as podman_errors  # imported lazily: podman costs ~0.3 s

    if isinstance(exc, RpcError):
        return exc
    if _is_unreachable(exc):
        return PodmanUnavailable("Podman service is unreachable")
    if isinstance(exc, requests.Timeout) or isinstance(exc.__cause__, requests.Timeout):
        return PodmanUnavailable("Podman service did not answer in time")
    if isinstance(exc, podman_errors.ImageNotFound):
        return NotFound(_explanation(exc), kind="ImageNotFound")
    status = _status(exc)
    message = _explanation(exc)
    lowered = message.lower()
    if "image not known" in lowered or "no such image" in lowered:
        return NotFound(message, kind="ImageNotFound")  # libpod create answers 500 for these
    if status is not None and status >= 400 and "invalid signal" in lowered:
        return InvalidParams("signal", message)  # libpod answers 500 for a bad signal name
    if "for attach" in lowered and "preparing container" in lowered:
        # attach initialises a created container (runc create); its 409 is a start failure
        return PodmanError(message, {"status": status})
    if "container state improper" in lowered:
        return Conflict(message, {"status": status})  # e.g. kill on a stopped container
    if status == 404 or isinstance(exc, podman_errors.NotFound):
        kind = "ImageNotFound" if ("image" in lowered and "container" not in lowered) else (
            "ContainerNotFound" if subject == "container" else "ImageNotFound")
        return NotFound(message, kind=kind)
    if status == 409:
        return Conflict(message, {"status": status})
    if status == 400 and "signal" in message.lower():
        return InvalidParams("signal", message)
    if status is not None:
        return PodmanError(message, {"status": status})
    if isinstance(exc, podman_errors.PodmanError):
        return PodmanError(message, {"status": None})
    return PodmanError(f"{type(exc).__name__}: {message}", {"status": None})


@contextlib.contextmanager
def map_podman_errors(subject: str = "container") -> Iterator[None]:
    """Re-raise anything Podman-related as the matching RpcError."""
    try:
        yield
    except RpcError:
        raise
    except Exception as exc:  # noqa: BLE001 - this is the single translation point
        raise translate(exc, subject=subject) from exc
