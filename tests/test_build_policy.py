"""Attacks on ``build`` and ``pull`` by an unprivileged peer (role ``run``), through a real daemon.

Each refusal is checked twice: the reply is PolicyDenied with its rule, and on
the host nothing happened: no image, nothing written into the context, no
upload left in Podman's temp directories.
"""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podman_rpc.daemon.handlers.build_leftovers import builder_dirs
from tests.rig.peer import GROUP_ACCESS, PEER_UID, as_peer, request
from tests.rig.podman import BUSYBOX_IMAGE, podman


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def listing(directory: Path) -> list[str]:
    """Every path below ``directory`` (links not followed), to compare before and after."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture
def host() -> Iterator[dict[str, Path]]:
    """A root-only vault, a build root with one context, and an attacker's directory, where
    the peer can reach them (pytest's own temp directory is closed to other uids)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="prpc-bp-"))
    tmp_path.chmod(0o755)
    yield _host(tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)


def _host(tmp_path: Path) -> dict[str, Path]:
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    (vault / "secret.txt").write_text(f"TOPSECRET-{secrets.token_hex(8)}\n")
    (vault / "secret.txt").chmod(0o600)
    roots = tmp_path / "builds"
    context = roots / "app"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY . /ctx/\n")
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    (attacker / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY secret.txt /s\n")
    for path in (roots, context, attacker):
        path.chmod(0o777)
    return {"vault": vault, "roots": roots, "context": context, "attacker": attacker}


def policy(roots: Path | None, extra: str = "") -> str:
    table = f'build_roots = ["{roots}"]\n' if roots is not None else ""
    return GROUP_ACCESS + "[daemon.policy]\n" + table + extra


def denied(reply: dict[str, Any], rule: str) -> dict[str, Any]:
    assert "error" in reply, reply
    error = reply["error"]
    assert error["code"] == -32003 and error["data"]["kind"] == "PolicyDenied", error
    assert error["data"]["rule"] == rule, error
    return error  # type: ignore[no-any-return]


def build_as_peer(daemon: Any, params: dict[str, Any]) -> dict[str, Any]:
    return as_peer(daemon.socket_path, [request("build", params)])[0]  # type: ignore[no-any-return]


def assert_untouched(tag: str, before: set[str], *dirs: tuple[Path, list[str]]) -> None:
    assert not image_exists(tag)
    assert set(builder_dirs()) <= before, "an upload was left in Podman's temp directory"
    for directory, files in dirs:
        assert listing(directory) == files, f"{directory} changed"


def test_vault_as_context_is_denied(open_daemons: Callable[..., Any], host: dict[str, Path],
                                    tag: str) -> None:
    """Attack 1: any directory as the context, the Dockerfile elsewhere: COPY reads the vault."""
    daemon = open_daemons(policy(host["roots"]))
    before, vault = set(builder_dirs()), listing(host["vault"])
    reply = build_as_peer(daemon, {"context": str(host["vault"]), "tag": tag,
                                   "file": str(host["attacker"] / "Dockerfile")})
    denied(reply, "build_root")
    assert_untouched(tag, before, (host["vault"], vault))


@pytest.mark.parametrize("file", ["outside", "../../attacker/Dockerfile", "link"])
def test_dockerfile_outside_context_is_denied(open_daemons: Callable[..., Any],
                                              host: dict[str, Path], tag: str,
                                              file: str) -> None:
    """Attack 2: a Dockerfile outside the context (absolute, ``..``, a link) is refused,
    and nothing (podman-py's ``.containerfile.*`` copy) is written into the context."""
    context = host["context"]
    (context / "link").symlink_to(host["attacker"] / "Dockerfile")
    daemon = open_daemons(policy(host["roots"]))
    before, files = set(builder_dirs()), listing(context)
    target = str(host["attacker"] / "Dockerfile") if file == "outside" else file
    denied(build_as_peer(daemon, {"context": str(context), "tag": tag, "file": target}),
           "dockerfile")
    assert_untouched(tag, before, (context, files))


def test_context_linked_out_of_the_root_is_denied(open_daemons: Callable[..., Any],
                                                  host: dict[str, Path], tag: str) -> None:
    """A link inside a build root that points at the vault resolves outside: refused."""
    (host["roots"] / "sneaky").symlink_to(host["vault"])
    (host["vault"] / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY secret.txt /s\n")
    daemon = open_daemons(policy(host["roots"]))
    before, vault = set(builder_dirs()), listing(host["vault"])
    denied(build_as_peer(daemon, {"context": str(host["roots"] / "sneaky"), "tag": tag}),
           "build_root")
    assert_untouched(tag, before, (host["vault"], vault))


def test_no_build_roots_means_admin_only(open_daemons: Callable[..., Any],
                                         host: dict[str, Path], tag: str) -> None:
    """By default a peer cannot build at all; root (admin) still can, and owns the image."""
    daemon = open_daemons(policy(None))
    before, files = set(builder_dirs()), listing(host["context"])
    denied(build_as_peer(daemon, {"context": str(host["context"]), "tag": tag}), "build_root")
    assert_untouched(tag, before, (host["context"], files))
    with daemon.connect() as conn:
        result = conn.call("build", {"context": str(host["context"]), "tag": tag})
    assert result["built"] is True and image_exists(tag)
    assert _label(tag) == "0"
    assert listing(host["context"]) == files


def _label(image: str) -> str:
    return podman("image", "inspect", "--format",
                  '{{index .Labels "io.podman-rpc.uid"}}', image).stdout.strip()


def test_peer_build_sends_links_as_links_and_is_labelled(
        open_daemons: Callable[..., Any], host: dict[str, Path], tag: str) -> None:
    """Inside a build root a peer builds; a link out of the context arrives as a link (its
    target's content is not in the image); the image carries the peer's uid, whatever
    its Dockerfile's LABEL says."""
    context = host["context"]
    (context / "leak").symlink_to(host["vault"] / "secret.txt")
    (context / "data.txt").write_text("ordinary\n")
    with open(context / "Dockerfile", "a") as fh:
        fh.write("LABEL io.podman-rpc.uid=0\n")  # claims root's ownership: overridden
    daemon = open_daemons(policy(host["roots"]))
    files = listing(context)
    reply = build_as_peer(daemon, {"context": str(context), "tag": tag})
    assert reply.get("result", {}).get("built") is True, reply
    assert _label(tag) == str(PEER_UID)
    assert listing(context) == files, "the daemon wrote into the context"
    secret = (host["vault"] / "secret.txt").read_text().strip()
    with daemon.connect() as conn:
        out = conn.call("run", {"image": tag, "command": [
            "sh", "-c", "test -L /ctx/leak && echo is-link; readlink /ctx/leak; "
            "cat /ctx/leak 2>&1; cat /ctx/data.txt"]})["stdout"]
    assert "is-link" in out and str(host["vault"] / "secret.txt") in out
    assert "ordinary" in out and secret not in out


def test_a_peer_cannot_retag_another_users_image(open_daemons: Callable[..., Any],
                                                 host: dict[str, Path], tag: str) -> None:
    """A tag is a name others run: pointing root's image name at a peer's build would
    have root run the peer's image. The peer may rebuild its own tags."""
    podman("tag", BUSYBOX_IMAGE, tag)
    image_id = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    daemon = open_daemons(policy(host["roots"]))
    params = {"context": str(host["context"]), "tag": tag, "force": True}
    denied(build_as_peer(daemon, params), "tag_owner")
    assert podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip() == image_id
    podman("rmi", tag)
    assert build_as_peer(daemon, params)["result"]["built"] is True  # a new name: the peer's
    assert build_as_peer(daemon, params)["result"]["built"] is True  # and again: its own


def test_build_runs_without_network_by_default(open_daemons: Callable[..., Any],
                                               host: dict[str, Path], tag: str) -> None:
    """RUN steps get no network unless build_networks allows one (libpod's default is the
    host's network namespace); a network outside the list is refused."""
    context = host["context"]
    (context / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nRUN cat /proc/net/dev > /netdev\n")
    daemon = open_daemons(policy(host["roots"]))
    denied(build_as_peer(daemon, {"context": str(context), "tag": tag, "network": "host"}),
           "network")
    assert not image_exists(tag)
    assert build_as_peer(daemon, {"context": str(context), "tag": tag})["result"]["built"]
    with daemon.connect() as conn:
        out = conn.call("run", {"image": tag, "command": ["cat", "/netdev"]})["stdout"]
        # the run's container is removed just after its reply; rmi waits for that
        conn.call("rmi", {"name": tag})
    assert _interfaces(out) <= {"lo"}, out
    # The check can see a network: where the operator allows the host's, the build has it.
    daemon = open_daemons(policy(host["roots"], 'build_networks = ["host"]\n'
                                 "allow_host_network = true\n"))
    assert build_as_peer(daemon, {"context": str(context), "tag": tag,
                                  "network": "host"})["result"]["built"]
    with daemon.connect() as conn:
        out = conn.call("run", {"image": tag, "command": ["cat", "/netdev"]})["stdout"]
    assert _interfaces(out) - {"lo"}, out


def _interfaces(proc_net_dev: str) -> set[str]:
    return {line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line}


def test_another_users_file_under_a_shared_root_is_denied(
        open_daemons: Callable[..., Any], host: dict[str, Path], tag: str) -> None:
    """The daemon reads as root; a peer's build may hold only what the peer could read."""
    context = host["context"]
    (context / "private.txt").write_text("someone else's\n")
    (context / "private.txt").chmod(0o600)
    daemon = open_daemons(policy(host["roots"]))
    before, files = set(builder_dirs()), listing(context)
    error = denied(build_as_peer(daemon, {"context": str(context), "tag": tag}),
                   "context_access")
    assert error["data"]["path"] == "private.txt"
    assert_untouched(tag, before, (context, files))


def test_base_image_read_from_a_host_file_is_denied(open_daemons: Callable[..., Any],
                                                    host: dict[str, Path], tag: str) -> None:
    """``FROM docker-archive:/root-only.tar`` would have root read the file as an image."""
    archive = host["vault"] / "saved.tar"
    podman("save", "-o", str(archive), BUSYBOX_IMAGE)
    context = host["context"]
    (context / "Dockerfile").write_text(f"ARG BASE=docker-archive:{archive}\nFROM $BASE\n")
    daemon = open_daemons(policy(host["roots"]))
    before, files = set(builder_dirs()), listing(context)
    denied(build_as_peer(daemon, {"context": str(context), "tag": tag}), "transport")
    assert_untouched(tag, before, (context, files))


def test_add_of_a_url_is_denied_without_network(open_daemons: Callable[..., Any],
                                                host: dict[str, Path], tag: str) -> None:
    """buildah fetches ADD's URLs itself, from the host's network, whatever the build's
    network (measured: a server on the host's 127.0.0.1 answered a build with network
    none): a build without network may not ADD a URL. The host's server sees nothing."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"from the host\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/meta-data"
        (host["context"] / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nADD {url} /m\n")
        daemon = open_daemons(policy(host["roots"]))
        denied(build_as_peer(daemon, {"context": str(host["context"]), "tag": tag}), "network")
    finally:
        server.shutdown()
        server.server_close()
    assert hits == [] and not image_exists(tag)


def test_context_over_the_size_cap_is_denied(open_daemons: Callable[..., Any],
                                             host: dict[str, Path], tag: str) -> None:
    context = host["context"]
    (context / "big.bin").write_bytes(os.urandom(300 << 10))
    daemon = open_daemons(policy(host["roots"], 'max_build_context_bytes = "256k"\n'))
    before, files = set(builder_dirs()), listing(context)
    error = denied(build_as_peer(daemon, {"context": str(context), "tag": tag}),
                   "build_context_size")
    assert error["data"]["limit"] == 256 << 10
    assert_untouched(tag, before, (context, files))


@pytest.mark.parametrize("reference, rule", [
    ("docker-archive:{archive}", "transport"),
    ("oci-archive:{archive}", "transport"),
    ("dir:/root", "transport"),
    ("containers-storage:localhost/busybox:latest", "transport"),
    ("docker://docker.io/library/alpine:latest", "transport"),
    ("{archive}", "transport"),
    ("oci:latest", "transport"),
    ("docker.io/library/alpine:latest", "image"),
])
def test_pull_takes_only_allowed_registry_references(
        open_daemons: Callable[..., Any], tmp_path: Path, reference: str, rule: str) -> None:
    """Another transport would read a root-only file on the host as an image; a registry
    reference must match an ``images`` pattern. Podman is never asked."""
    archive = tmp_path / "saved.tar"
    archive.write_bytes(b"not really an archive")
    archive.chmod(0o600)
    daemon = open_daemons(policy(None, 'images = ["localhost/*"]\n'))
    reply = as_peer(daemon.socket_path, [request(
        "pull", {"image": reference.format(archive=archive)})])[0]
    denied(reply, rule)
