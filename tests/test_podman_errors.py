"""The one translation point from podman-py exceptions to protocol errors (pure logic).

These build podman-py's own exception objects; the end-to-end behaviour against a
real Podman is covered by the integration tests.
"""

from __future__ import annotations

import pytest
import requests
from podman import errors as podman_errors

from podman_rpc.daemon.podman.errors import map_podman_errors, translate
from podman_rpc.protocol import errors


def _api_error(status: int, message: str) -> podman_errors.APIError:
    response = requests.Response()
    response.status_code = status
    return podman_errors.APIError(message, response=response, explanation=message)


def test_connection_refused_wrapped_by_podman_py_is_unavailable() -> None:
    try:
        try:
            raise requests.ConnectionError("Connection aborted")
        except requests.ConnectionError as inner:
            raise podman_errors.APIError("GET operation failed") from inner
    except podman_errors.APIError as exc:
        assert isinstance(translate(exc), errors.PodmanUnavailable)


@pytest.mark.parametrize("status, message, subject, cls, kind", [
    (404, "no such container", "container", errors.NotFound, "ContainerNotFound"),
    (404, "nope: image not known", "image", errors.NotFound, "ImageNotFound"),
    (409, "image is in use by a container", "image", errors.Conflict, "Conflict"),
    (500, "something broke", "container", errors.PodmanError, "PodmanError"),
])
def test_http_statuses(status: int, message: str, subject: str, cls: type, kind: str) -> None:
    error = translate(_api_error(status, message), subject=subject)
    assert type(error) is cls and error.data["kind"] == kind
    if cls is errors.PodmanError:
        assert error.data["status"] == status


def test_image_not_found_class() -> None:
    error = translate(podman_errors.ImageNotFound("no image"))
    assert isinstance(error, errors.NotFound) and error.data["kind"] == "ImageNotFound"


def test_context_manager_passes_rpc_errors_and_chains_others() -> None:
    with pytest.raises(errors.Timeout):
        with map_podman_errors():
            raise errors.Timeout()
    with pytest.raises(errors.PodmanError) as info:
        with map_podman_errors():
            raise _api_error(500, "boom")
    assert isinstance(info.value.__cause__, podman_errors.APIError)
    assert "Traceback" not in str(info.value.to_wire())
