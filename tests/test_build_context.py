"""The build context tar and the build policy, without Podman: what leaves the host is
exactly the context, links as links, capped, and never read through a link."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from podman_rpc.daemon.guard.build_policy import (
    BuildSource,
    build_namespace,
    check_dockerfile,
    resolve_source,
)
from podman_rpc.daemon.guard.policy import PolicyConfig, policy_from_mapping
from podman_rpc.daemon.handlers.build_context import ContextTar, Reader, Stopped
from podman_rpc.daemon.handlers.build_leftovers import remove_interrupted_uploads
from podman_rpc.protocol.errors import InvalidParams, PolicyDenied


def make_tar(src: BuildSource, limit: int, stop: threading.Event | None = None,
             reader: Reader | None = None) -> ContextTar:
    return ContextTar(src, limit, stop or threading.Event(),
                      lambda text: check_dockerfile(text, {}, "none"), reader)


def members(tar: ContextTar) -> dict[str, tarfile.TarInfo]:
    data = b"".join(tar.chunks())
    assert len(data) == tar.total
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: m for m in archive.getmembers()}


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "sub").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "sub" / "a.txt").write_text("a" * 1000)
    (root / "skip.log").write_text("noise")
    (root / ".dockerignore").write_text("# comment\n*.log\n")
    (tmp_path / "secret").write_text("TOPSECRET")
    (root / "out").symlink_to(tmp_path / "secret")
    os.mkfifo(root / "fifo")
    return root


def source(context: Path, dockerfile: str = "Dockerfile") -> BuildSource:
    return BuildSource(os.path.realpath(context), dockerfile)


def test_tar_holds_the_context_links_as_links(context: Path) -> None:
    tar = make_tar(source(context), 1 << 20)
    found = members(tar)
    assert set(found) == {"Dockerfile", "sub", "sub/a.txt", ".dockerignore", "out"}
    assert found["out"].issym() and found["out"].linkname == str(context.parent / "secret")
    assert found["sub/a.txt"].size == 1000 and found["sub"].isdir()
    assert all(m.uid == 0 and m.uname == "root" for m in found.values())
    assert tar.measure() == tar.total and tar.finished


def test_ignore_file_that_is_a_link_is_not_followed(context: Path) -> None:
    (context / ".dockerignore").unlink()
    (context / ".dockerignore").symlink_to(context.parent / "secret")
    assert "skip.log" in members(make_tar(source(context), 1 << 20))


def test_size_cap_denies_before_and_while_streaming(context: Path) -> None:
    tar = make_tar(source(context), 2048)
    with pytest.raises(PolicyDenied) as caught:
        tar.measure()
    assert caught.value.data["rule"] == "build_context_size"
    with pytest.raises(PolicyDenied):
        b"".join(tar.chunks())
    assert not tar.finished


def test_stop_signal_ends_the_stream(context: Path) -> None:
    (context / "big.bin").write_bytes(os.urandom(3 << 20))
    stop = threading.Event()
    chunks = make_tar(source(context), 1 << 30, stop).chunks()
    next(chunks)
    stop.set()
    with pytest.raises(Stopped):
        for _ in chunks:
            pass


def test_dockerfile_swapped_for_a_link_is_refused(context: Path) -> None:
    src = source(context)
    (context / "Dockerfile").unlink()
    (context / "Dockerfile").symlink_to(context.parent / "secret")
    with pytest.raises(PolicyDenied) as caught:
        b"".join(make_tar(src, 1 << 20).chunks())
    assert caught.value.data["rule"] == "dockerfile"


def test_resolve_source_rules(context: Path, tmp_path: Path) -> None:
    roots = PolicyConfig(build_roots=(str(tmp_path),))
    assert resolve_source(str(context), "Dockerfile", roots, False) == source(context)
    cases = [
        (str(context), "Dockerfile", PolicyConfig(), False, "build_root"),
        ("/etc", "Dockerfile", roots, False, "build_root"),
        (str(context), "../secret", roots, False, "dockerfile"),
        (str(context), "/etc/passwd", PolicyConfig(), True, "dockerfile"),
        (str(context), "out", roots, True, "dockerfile"),
    ]
    for ctx, file, policy, admin, rule in cases:
        with pytest.raises(PolicyDenied) as caught:
            resolve_source(ctx, file, policy, admin)
        assert caught.value.data["rule"] == rule, (ctx, file)
    (context / '["').mkdir()
    (context / '["' / "x").write_text("FROM scratch\n")
    with pytest.raises(PolicyDenied):
        resolve_source(str(context), '["/x', roots, False)
    with pytest.raises(InvalidParams):
        resolve_source("relative/dir", "Dockerfile", roots, True)


def test_build_network_follows_policy() -> None:
    assert build_namespace("none", PolicyConfig())["networkmode"] == "NetworkDisabled"
    with pytest.raises(PolicyDenied):
        build_namespace("bridge", PolicyConfig())
    policy = policy_from_mapping({"build_networks": ["none", "host"],
                                  "max_build_context_bytes": "1g"})
    assert policy.max_build_context_bytes == 1 << 30
    with pytest.raises(PolicyDenied) as caught:
        build_namespace("host", policy)
    assert caught.value.data["rule"] == "host_network"


@pytest.mark.parametrize("dockerfile, rule", [
    ("FROM docker-archive:/root/saved.tar\n", "transport"),
    ("ARG BASE=oci-archive:/root/x.tar\nFROM $BASE\n", "transport"),
    ("FROM busybox\nCOPY --from=dir:/root / /x\n", "transport"),
    ("FROM $NOT_SET\n", "from"),
    ("FROM busybox\nADD --chmod=644 http://169.254.169.254/latest/meta-data /m\n", "network"),
    ('FROM busybox\nadd ["https://example.com/x", "/x"]\n', "network"),
])
def test_base_images_from_the_host_are_denied_in_both_passes(context: Path, dockerfile: str,
                                                              rule: str) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    for run in (lambda t: t.measure(), lambda t: b"".join(t.chunks())):
        tar = make_tar(source(context), 1 << 20)
        with pytest.raises(PolicyDenied) as caught:
            run(tar)
        assert caught.value.data["rule"] == rule and not tar.finished


def test_only_a_stalled_upload_of_ours_is_removed(tmp_path: Path) -> None:
    """Ours: begun after the build, no larger than what we sent, no longer growing."""
    since = time.time()
    dirs = {name: tmp_path / f"libpod_builder{name}" for name in ("cut", "big", "live")}
    for name, directory in dirs.items():
        directory.mkdir()
        (directory / "tarBall").write_bytes(b"x" * (5000 if name == "big" else 1000))
    stop = threading.Event()

    def grow() -> None:
        with open(dirs["live"] / "tarBall", "ab") as fh:
            while not stop.wait(0.05):
                fh.write(b"x")
                fh.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        removed = remove_interrupted_uploads(since, 2000, patience=1.0, bases=(str(tmp_path),))
    finally:
        stop.set()
        writer.join()
    assert removed == [str(dirs["cut"])]
    assert dirs["big"].exists() and dirs["live"].exists() and not dirs["cut"].exists()


def test_a_peer_context_holds_only_what_the_peer_could_read(tmp_path: Path) -> None:
    """Read as root for uid 65534: another user's private file or directory is denied, as
    is a context the peer cannot reach; readable ones pass."""
    base = Path(tempfile.mkdtemp(prefix="prpc-reader-"))
    try:
        base.chmod(0o755)
        context = base / "ctx"
        context.mkdir(mode=0o755)
        (context / "Dockerfile").write_text("FROM scratch\n")
        (context / "Dockerfile").chmod(0o644)
        nobody = Reader(65534, frozenset({65534}))
        assert "Dockerfile" in members(make_tar(source(context), 1 << 20, reader=nobody))
        for name, mode in (("private.txt", 0o600), ("closed", 0o700)):
            path = context / name
            path.mkdir(mode=mode) if name == "closed" else path.write_text("mine")
            path.chmod(mode)
            for run in (lambda t: t.measure(), lambda t: b"".join(t.chunks())):
                with pytest.raises(PolicyDenied) as caught:
                    run(make_tar(source(context), 1 << 20, reader=nobody))
                assert caught.value.data == {"kind": "PolicyDenied", "rule": "context_access",
                                             "path": name}
            assert name in members(make_tar(source(context), 1 << 20))  # admin: no reader
            path.rmdir() if name == "closed" else path.unlink()
        base.chmod(0o700)
        with pytest.raises(PolicyDenied):
            make_tar(source(context), 1 << 20, reader=nobody).measure()
    finally:
        shutil.rmtree(base)
