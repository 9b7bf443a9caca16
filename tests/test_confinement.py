"""Code in a container gets nothing of the host (issue #15 part C): real peer, daemon, Podman.

The attack this replaces: a ``run`` peer mounted a directory under ``mount_roots``,
copied a binary there, ``chown 0:0`` and ``chmod 4755`` from inside, and ran the
setuid-root file on the host. Now container root is not host root (its own user
namespace), has no capabilities and no new privileges, host paths are mounted
nosuid,nodev, and mount options come from an allowlist.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.daemon import DaemonProcess
from tests.rig.peer import GROUP_ACCESS, PEER_UID, as_peer, request, setpriv_args
from tests.rig.podman import podman

pytestmark = pytest.mark.podman

SUBID_START = 2147483647  # the containers range daemon/subids.sh adds
PROBE = "/usr/bin/id"  # dynamically linked: runs on the host, prints the effective uid


@pytest.fixture
def jail() -> Iterator[Path]:
    """A mount root the peer (uid 65534) can reach, with okdir writable by anyone."""
    root = Path(tempfile.mkdtemp(prefix="prpc-jail-"))
    root.chmod(0o755)
    (root / "okdir").mkdir()
    (root / "okdir").chmod(0o777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def jailed(open_daemons: Callable[..., DaemonProcess], jail: Path) -> DaemonProcess:
    return open_daemons(GROUP_ACCESS + f'[daemon.policy]\nmount_roots = ["{jail}"]\n')


def peer_run(daemon: DaemonProcess, params: dict[str, Any]) -> dict[str, Any]:
    return as_peer(daemon.socket_path, [request("run", {
        "image": "localhost/busybox:latest", "timeout": 20, **params})])[0]


def ownership(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def setuid_files(root: Path) -> list[tuple[str, int]]:
    """(path, owner) of every setuid or setgid file under root."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                found.append((os.path.join(directory, name), info.st_uid))
    return found


def run_on_host_as_peer(path: Path, *args: str) -> str:
    done = subprocess.run([*setpriv_args(), str(path), *args], capture_output=True, text=True,
                          timeout=10, cwd="/")
    return done.stdout.strip()


def test_setuid_copy_attack_leaves_nothing_root_on_the_host(jailed: DaemonProcess,
                                                            jail: Path) -> None:
    okdir = jail / "okdir"
    shutil.copy(PROBE, okdir / "id")  # as if the peer had put it there
    os.chown(okdir / "id", PEER_UID, PEER_UID)
    before = {p: ownership(p) for p in (jail, okdir)}
    script = ("cp /bin/busybox /j/bb; chown 0:0 /j/bb; chmod 4755 /j/bb; echo bb=$?;"
              "chown 0:0 /j/id; echo chown=$?; chmod 4755 /j/id; echo chmod=$?;"
              "cp /j/id /j/id2; chown 0:0 /j/id2; chmod 4755 /j/id2; echo id2=$?;"
              "mknod /j/null c 1 3; echo mknod=$?; chown 0:0 /j; echo chowndir=$?;"
              "chmod 4777 /j; echo chmoddir=$?")
    reply = peer_run(jailed, {"volumes": [f"{okdir}:/j"], "command": ["sh", "-c", script]})
    out = reply["result"]["stdout"]
    # Without CAP_CHOWN, CAP_FOWNER, CAP_MKNOD the peer's file, the device and the
    # host-root directory are out of reach; the container's own copies it may chmod.
    for refused in ("chown=1", "chmod=1", "mknod=1", "chowndir=1", "chmoddir=1"):
        assert refused in out, out
    assert not (okdir / "null").exists()
    assert {p: ownership(p) for p in (jail, okdir)} == before
    assert ownership(okdir / "id") == (PEER_UID, PEER_UID, 0o755)
    # On the host: nothing setuid belongs to root, or to any id outside the containers range.
    flagged = setuid_files(jail)
    assert all(owner >= SUBID_START for _, owner in flagged), flagged
    assert subprocess.run(["find", str(jail), "-uid", "0", "-perm", "/6000"],
                          capture_output=True, text=True, check=True).stdout == ""
    # And running them as the peer gives it no root: the probe reports the effective uid.
    assert run_on_host_as_peer(okdir / "id", "-u") == str(PEER_UID)
    assert run_on_host_as_peer(okdir / "id2", "-u") not in ("0", "")


@pytest.mark.parametrize("option", ["U", "idmap", "suid", "dev", "exec", "O", "ro,U",
                                    "idmap=uids=0-0-1"])
def test_mount_options_that_reach_the_host_are_denied(jailed: DaemonProcess, jail: Path,
                                                      option: str) -> None:
    okdir = jail / "okdir"
    before = ownership(okdir)
    name = f"prpc-opt-{os.getpid()}-{abs(hash(option)) % 10000}"
    reply = peer_run(jailed, {"name": name, "volumes": [f"{okdir}:/j:{option}"],
                              "command": ["touch", "/j/x"]})
    assert reply["error"]["data"]["kind"] == "PolicyDenied", reply
    assert reply["error"]["data"]["rule"] == "mount_option"
    assert reply["error"]["data"]["option"] == option.split(",")[-1]
    # the mounts param has its own grammar: an option outside it is bad input
    reply = peer_run(jailed, {"name": name, "mounts": [f"{okdir}:/j:{option}"],
                              "command": ["touch", "/j/x"]})
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "mounts"
    assert ownership(okdir) == before and not (okdir / "x").exists()
    assert podman("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").stdout == ""


@pytest.mark.parametrize("extra", [{"cap_add": ["SYS_ADMIN"]}, {"privileged": True},
                                   {"userns": "host"}, {"security_opt": ["seccomp=unconfined"]},
                                   {"user": "0:0"}])
def test_no_param_asks_for_privileges(jailed: DaemonProcess, extra: dict[str, Any]) -> None:
    reply = peer_run(jailed, {"command": ["true"], **extra})
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["data"]["field"] == next(iter(extra))


def test_inside_the_container_root_is_nobody_on_the_host(jailed: DaemonProcess,
                                                         jail: Path) -> None:
    script = "cat /proc/self/status; echo @@; cat /proc/self/uid_map; echo @@; mount"
    reply = peer_run(jailed, {"volumes": [f"{jail / 'okdir'}:/j"],
                              "command": ["sh", "-c", script]})
    status, uid_map, mounts = reply["result"]["stdout"].split("@@")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
        assert int(fields[cap].strip(), 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Uid"].split()[0] == "0"  # root inside...
    inside, host, size = (int(v) for v in uid_map.split())  # ...one range, not the identity
    assert inside == 0 and host >= SUBID_START and size == 65536, uid_map
    line = next(m for m in mounts.splitlines() if " on /j " in m)
    options = line.rsplit("(", 1)[1].rstrip(")").split(",")
    assert "nosuid" in options and "nodev" in options, line


def test_daemon_refuses_to_start_without_the_containers_range(
        make_daemon: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:100000:65536\ncontainers:200000:10\n")  # too few for one container
    subgid.write_text(f"containers:{SUBID_START}:2147483648\n")
    files = f'subid_files = ["{subuid}", "{subgid}"]\n'
    daemon = make_daemon(f"[daemon.policy]\n{files}", start=False)
    with pytest.raises(RuntimeError, match="exited with 1"):
        daemon.start()
    log = daemon.log()
    assert "cannot start" in log and str(subuid) in log and str(subgid) not in log
    assert "daemon/subids.sh" in log and 'userns = \\"host\\"' in log
    # userns = "host" is the operator saying container root may be host root: no range needed
    make_daemon(f'[daemon.policy]\nuserns = "host"\n{files}')


def test_rm_of_a_userns_container_reports_success(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """Podman 4.3 answers some removes of userns containers 500 (shm busy) yet removes them."""
    daemon = make_daemon()
    with daemon.connect() as conn:
        for index in range(8):  # the EBUSY came about 1 time in 4
            name = f"prpc-rm-{os.getpid()}-{index}"
            ran = conn.request("run", {"image": "localhost/busybox:latest", "command": ["true"],
                                       "name": name, "auto_remove": False})
            assert ran["result"]["exit_code"] == 0, ran
            reply = conn.request("rm", {"name": name})
            assert "result" in reply, reply
            assert podman("container", "exists", name, check=False).returncode == 1
