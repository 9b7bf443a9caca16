"""The shipped units and snippets, checked by systemd's own tools; sd_notify/activation parsing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from podman_rpc.daemon.ops.systemd import Notifier, activation_socket

UNITS = Path(__file__).resolve().parents[1] / "systemd"
SHIPPED_EXEC = "/usr/local/bin/podman-rpcd"


def unit_options(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values, keeping repeated keys (systemd allows them, configparser does not)."""
    options: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        options.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return options


def installed_script() -> Path:
    script = Path(sys.executable).with_name("podman-rpcd")
    if not script.exists():
        pytest.fail(f"console script not installed next to {sys.executable}: pip install -e .")
    return script


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The units as installed: ExecStart pointing at the real console script."""
    service = (UNITS / "podman-rpc.service").read_text()
    assert SHIPPED_EXEC in service
    (tmp_path / "podman-rpc.service").write_text(service.replace(SHIPPED_EXEC, str(installed_script())))
    shutil.copy(UNITS / "podman-rpc.socket", tmp_path)
    unit_dirs = ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
    if not any(Path(d, "podman.socket").exists() for d in unit_dirs):
        (tmp_path / "podman.socket").write_text(  # stand-in where Podman's unit is not installed
            "[Unit]\nDescription=stub\n[Socket]\nListenStream=/run/podman/podman.sock\n")
    return tmp_path


def test_systemd_analyze_verify_accepts_units(unit_dir: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(["systemd-analyze", "verify", "podman-rpc.socket", "podman-rpc.service"],
                            cwd=unit_dir, capture_output=True, text=True, timeout=60,
                            env=os.environ | {"SYSTEMD_UNIT_PATH": f"{unit_dir}:"})
    # Unknown keys are only warnings (exit 0), so any output at all is a failure too.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def test_socket_unit_matches_the_issue() -> None:
    opts = unit_options(UNITS / "podman-rpc.socket")
    assert opts["Socket.ListenStream"] == ["/run/podman-rpc/podman-rpc.sock"]
    assert opts["Socket.SocketMode"] == ["0660"]
    assert opts["Socket.SocketGroup"] == ["podman-rpc"]
    assert opts["Socket.Accept"] == ["no"]
    assert opts["Socket.FileDescriptorName"] == ["podman-rpc"]


def test_service_unit_lifecycle_and_hardening() -> None:
    opts = unit_options(UNITS / "podman-rpc.service")
    assert opts["Service.Type"] == ["notify"]
    assert "podman.socket" in opts["Unit.Requires"][0].split()
    assert "podman.socket" in opts["Unit.After"][0].split()
    exec_start = opts["Service.ExecStart"][0].split()
    assert exec_start[0] == SHIPPED_EXEC and "--idle-timeout" in exec_start
    assert float(opts["Service.WatchdogSec"][0]) > 0
    config = tomllib.loads((UNITS / "podman-rpc.toml").read_text())["daemon"]
    assert config["embedded_podman"] is False
    # drain_grace, then up to 30 s for cancelled requests and 30 s for their cleanup.
    assert float(opts["Service.TimeoutStopSec"][0]) > config["drain_grace"] + 60
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups"):
        assert opts[f"Service.{key}"] == ["yes"], key
    assert opts["Service.ProtectSystem"] == ["strict"]
    assert opts["Service.RestrictAddressFamilies"] == ["AF_UNIX"]
    assert opts["Service.IPAddressDeny"] == ["any"]
    assert "@system-service" in opts["Service.SystemCallFilter"]
    writable = " ".join(opts["Service.ReadWritePaths"]).split()
    assert "-/run/podman" in writable or "/run/podman" in writable


def test_sysusers_and_tmpfiles_make_group_and_runtime_dir(tmp_path: Path) -> None:
    if shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None:
        pytest.skip("systemd-sysusers/systemd-tmpfiles are not installed")
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(UNITS / "podman-rpc.sysusers.conf")],
                   check=True, capture_output=True, timeout=60)
    groups = {line.split(":")[0]: int(line.split(":")[2])
              for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert "podman-rpc" in groups
    subprocess.run(["systemd-tmpfiles", "--create", f"--root={tmp_path}",
                    str(UNITS / "podman-rpc.tmpfiles.conf")], check=True, capture_output=True,
                   timeout=60)
    runtime = (tmp_path / "run/podman-rpc").stat()
    assert runtime.st_gid == groups["podman-rpc"]
    assert runtime.st_mode & 0o777 == 0o750


def test_notifier_ignores_watchdog_meant_for_another_process() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = Notifier(env)
    assert notifier.watchdog_interval is None
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(env)
    notifier.notify("READY=1")  # an unreachable NOTIFY_SOCKET is logged, never raised
    notifier.close()


def test_notifier_half_watchdog_and_abstract_address() -> None:
    name = f"prpc-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000",
                         "WATCHDOG_PID": str(os.getpid())})
    try:
        assert notifier.watchdog_interval == 1.5
        notifier.status("serving:   idle")
        notifier.status("serving: idle")  # unchanged after whitespace folding: not resent
        notifier.notify("READY=1")
        assert receiver.recv(4096) == b"STATUS=serving: idle"
        assert receiver.recv(4096) == b"READY=1"
    finally:
        notifier.close()
        receiver.close()


def test_activation_ignores_variables_meant_for_another_process() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "podman-rpc"}
    assert activation_socket(env) is None
    assert env == {}
