"""build, images, exists, inspect, rmi, prune and pull against real Podman through a real daemon."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.daemon import RawConnection
from tests.rig.podman import BUSYBOX_IMAGE, podman

DOCKERFILE = """FROM localhost/busybox:latest
ARG GREETING=unset
RUN echo "$GREETING" > /greeting
CMD ["cat", "/greeting"]
"""


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


@pytest.fixture
def tag() -> Iterator[str]:
    name = f"localhost/t3img-{uuid.uuid4().hex[:10]}:latest"
    yield name
    podman("rmi", "-f", name, check=False)


def build(conn: RawConnection, context: Path, tag: str, **extra: Any) -> dict[str, Any]:
    return conn.request("build", {"context": str(context), "tag": tag, **extra})


def test_build_with_arg_then_skip_then_force(conn: RawConnection, context: Path,
                                             tag: str) -> None:
    result = build(conn, context, tag, build_args=["GREETING=hello from arg"])["result"]
    assert result["built"] is True and result["tags"] == [tag]
    assert len(result["image_id"]) == 64 and result["platform"] is None
    assert any("GREETING" in line for line in result["logs"])
    run = conn.call("run", {"image": tag})
    assert run["stdout"] == "hello from arg\n"

    again = build(conn, context, tag, build_args=["GREETING=other"])["result"]
    assert again["built"] is False and again["image_id"] == result["image_id"]
    assert again["tags"] == [tag]

    forced = build(conn, context, tag, build_args=["GREETING=forced"], force=True,
                   no_cache=True)["result"]
    assert forced["built"] is True and forced["image_id"] != result["image_id"]
    assert conn.call("run", {"image": tag})["stdout"] == "forced\n"
    podman("rmi", "-f", result["image_id"], check=False)  # now untagged


def test_build_other_file_and_progress(conn: RawConnection, context: Path, tag: str) -> None:
    (context / "Other.dockerfile").write_text("FROM localhost/busybox:latest\nRUN echo built-line\n")
    conn.send({"jsonrpc": "2.0", "id": "b1", "method": "build",
               "params": {"context": str(context), "tag": tag, "file": "Other.dockerfile",
                          "progress": True}})
    lines = []
    while (message := conn.read()).get("method") == "$/progress":
        assert message["params"]["id"] == "b1" and message["params"]["stream"] == "build"
        lines.append(message["params"]["line"])
    assert message["result"]["built"] is True
    assert "built-line" in lines and lines == message["result"]["logs"]


@pytest.mark.parametrize("params, field", [
    ({"context": "/nonexistent/t3"}, "context"),
    ({"file": "Missing.dockerfile"}, "file"),
    ({"build_args": ["NOEQUALS"]}, "build_args"),
])
def test_build_bad_params(conn: RawConnection, context: Path, tag: str,
                          params: dict[str, Any], field: str) -> None:
    error = conn.request("build", {"context": str(context), "tag": tag, **params})["error"]
    assert error["code"] == -32602 and error["data"]["field"] == field
    assert not image_exists(tag)


def test_build_failure_is_podman_error(conn: RawConnection, context: Path, tag: str) -> None:
    (context / "Dockerfile").write_text("FROM localhost/busybox:latest\nRUN exit 7\n")
    error = build(conn, context, tag)["error"]
    assert error["code"] == -32014 and "Build failed" in error["message"]
    assert not image_exists(tag)


def test_images_exists_inspect(conn: RawConnection) -> None:
    listed = conn.call("images")
    busybox = next(i for i in listed if BUSYBOX_IMAGE in i["tags"])
    assert set(busybox) == {"id", "tags", "size", "created", "digest"}
    assert busybox["size"] > 0 and busybox["created"].endswith("Z")
    assert len(conn.call("images", {"all": True})) >= len(listed)

    assert conn.call("exists", {"name": BUSYBOX_IMAGE}) is True
    assert conn.call("exists", {"name": f"localhost/t3-none-{uuid.uuid4().hex[:8]}"}) is False

    attrs = conn.call("inspect", {"name": BUSYBOX_IMAGE})
    assert attrs["Id"] == busybox["id"] and attrs["Size"] == busybox["size"]
    assert conn.call("inspect", {"name": BUSYBOX_IMAGE, "format": "{{.Size}}"}) == str(
        busybox["size"])
    assert conn.call("inspect", {"name": BUSYBOX_IMAGE, "format": "{{.Os}}/{{.Architecture}}"}
                     ) == f"{attrs['Os']}/{attrs['Architecture']}"
    error = conn.request("inspect", {"name": BUSYBOX_IMAGE, "format": "{{.NoSuchField}}"})["error"]
    assert error["code"] == -32602 and error["data"]["field"] == "format"


@pytest.mark.parametrize("method", ["inspect", "rmi"])
def test_unknown_image(conn: RawConnection, method: str) -> None:
    error = conn.request(method, {"name": f"localhost/t3-none-{uuid.uuid4().hex[:8]}"})["error"]
    assert error["code"] == -32011 and error["data"]["kind"] == "ImageNotFound"


def test_rmi_in_use_then_force(conn: RawConnection, context: Path, tag: str) -> None:
    build(conn, context, tag)
    name = f"t3user-{uuid.uuid4().hex[:10]}"
    conn.call("run", {"image": tag, "name": name, "auto_remove": False})
    try:
        error = conn.request("rmi", {"name": tag})["error"]
        assert error["code"] == -32012 and error["data"]["kind"] == "Conflict"
        assert image_exists(tag)
        assert conn.call("rmi", {"name": tag, "force": True}) == {
            "image": tag, "message": "Image deleted successfully"}
        assert not image_exists(tag)
        # Podman removes the containers that used it, as `podman rmi -f` does
        assert podman("container", "exists", name, check=False).returncode == 1
    finally:
        podman("rm", "-f", name, check=False)


def test_rmi(conn: RawConnection, context: Path, tag: str) -> None:
    build(conn, context, tag)
    assert conn.call("rmi", {"name": tag}) == {"image": tag, "message": "Image deleted successfully"}
    assert not image_exists(tag)


def test_prune_removes_a_dangling_image(conn: RawConnection, context: Path, tag: str) -> None:
    first = build(conn, context, tag, build_args=["GREETING=first"])["result"]
    build(conn, context, tag, build_args=["GREETING=second"], force=True)  # first is now dangling
    result = conn.call("prune")
    assert result["message"] == "Images pruned successfully"
    assert first["image_id"] in result["images_deleted"]
    assert result["space_reclaimed"] >= 0
    assert not image_exists(first["image_id"])
    assert image_exists(tag)


def test_pull_from_unreachable_registry(conn: RawConnection) -> None:
    error = conn.request("pull", {"image": "localhost:1/t3/nothing:latest"})["error"]
    assert error["code"] == -32014 and "Pull failed" in error["message"]
