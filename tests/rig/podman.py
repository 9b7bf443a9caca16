"""A private ``podman system service`` for the tests, and the local busybox image (made by daemon code)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from podman_rpc.daemon.podman.busybox import BUSYBOX_IMAGE
from podman_rpc.daemon.podman.busybox import ensure_busybox_image as make_busybox_image

RIG_DIR = Path(__file__).resolve().parent
CONTAINERS_CONF = RIG_DIR / "containers.conf"
OWNER_LABEL = "io.podman-rpc.owner"


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the podman CLI with the rig's configuration."""
    return subprocess.run(["podman", *args], env=podman_env(), check=check, text=True,
                          capture_output=True, timeout=timeout)


def ensure_busybox_image() -> str:
    """The daemon's own busybox import (daemon/podman/busybox.py), with the rig's configuration."""
    make_busybox_image(podman_env())
    return BUSYBOX_IMAGE


def owned_containers() -> list[tuple[str, str]]:
    """(id, instance label) of containers carrying the daemon's owner label (all instances)."""
    out = podman("ps", "-a", "--filter", f"label={OWNER_LABEL}=podman-rpc", "--format",
                 '{{.ID}} {{index .Labels "io.podman-rpc.instance"}}').stdout
    return [(parts[0], parts[1] if len(parts) > 1 else "")
            for parts in (line.split() for line in out.splitlines()) if parts]


class PodmanService:
    """One private Podman API service on a socket in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket_path = directory / "podman.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 30.0) -> None:
        self.socket_path.unlink(missing_ok=True)
        log = open(self.directory / "podman-service.log", "ab")
        self.process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket_path}"],
            env=podman_env(), stdout=log, stderr=log, start_new_session=True)
        until = time.monotonic() + wait
        from podman_rpc.daemon.podman.http import podman_answers

        while time.monotonic() < until:
            if asyncio.run(podman_answers(self.socket_path, 0.5)):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()  # not left running for nobody: a fixture that failed never stops it
        raise RuntimeError(f"podman service did not come up; see {self.directory}/podman-service.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.socket_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """Stop the service abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
