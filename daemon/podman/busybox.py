"""``localhost/busybox:latest`` without a registry: busybox-static imported as an image.

The README's examples and the tests run this image; the quickstart and the test
rig both make it here, so a fresh machine with no registry can run them.
``python -m podman_rpc.daemon.podman.busybox`` makes it (and says so); nothing if it exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

BUSYBOX_IMAGE = "localhost/busybox:latest"


def _podman(env: Mapping[str, str] | None, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=env, check=check, text=True,
                          capture_output=True, timeout=120)


def ensure_busybox_image(env: Mapping[str, str] | None = None) -> bool:
    """Import a busybox-static rootfs as :data:`BUSYBOX_IMAGE`; False if it was there already.

    ``env`` is the podman CLI's environment (the test rig passes its CONTAINERS_CONF).
    """
    if _podman(env, "image", "exists", BUSYBOX_IMAGE, check=False).returncode == 0:
        return False
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "bin").mkdir(parents=True)
        (root / "tmp").mkdir(mode=0o1777)
        shutil.copy2(busybox, root / "bin" / "busybox")
        applets = subprocess.run([busybox, "--list"], check=True, text=True,
                                 capture_output=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        _podman(env, "import", "--change", "ENV=PATH=/bin", "-q", str(archive), BUSYBOX_IMAGE)
    return True


def main() -> int:
    try:
        made = ensure_busybox_image()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        print(f"cannot make {BUSYBOX_IMAGE}: {str(detail).strip()}", file=sys.stderr)
        return 1
    print(f"{BUSYBOX_IMAGE}: {'imported from busybox-static' if made else 'already there'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
