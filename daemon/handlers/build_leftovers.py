"""What libpod leaves behind when a build's upload is cut short, and its removal.

libpod's POST /build copies the request body into ``$TMPDIR/libpod_builder*/tarBall``
and only then extracts it; when the body ends early the copy fails and the
handler returns without removing that directory (podman 4.3,
``pkg/api/handlers/compat/images_build.go``, ``extractTarFile``). The daemon
cancels uploads on purpose, so it removes these itself: directories created
since its upload began that hold nothing but a ``tarBall`` no larger than what
it sent. A build whose upload finished is cleaned by libpod itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

BUILDER_PREFIX = "libpod_builder"
TEMP_DIRS = ("/var/tmp", "/tmp")  # podman's service sets TMPDIR=/var/tmp when it is unset
CLOCK_SLACK = 2.0  # seconds: directory times and our clock may differ this much


def builder_dirs() -> list[str]:
    """Every ``libpod_builder*`` directory in the temp directories Podman may use."""
    found: list[str] = []
    for base in dict.fromkeys((os.environ.get("TMPDIR") or tempfile.gettempdir(), *TEMP_DIRS)):
        try:
            with os.scandir(base) as entries:
                found += [e.path for e in entries
                          if e.name.startswith(BUILDER_PREFIX) and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return found


def _interrupted(path: str, since: float, sent: int) -> bool:
    try:
        if os.lstat(path).st_mtime < since - CLOCK_SLACK or os.listdir(path) != ["tarBall"]:
            return False
        tar = os.lstat(os.path.join(path, "tarBall"))
    except OSError:
        return False
    return stat.S_ISREG(tar.st_mode) and tar.st_size <= sent


def remove_interrupted_uploads(since: float, sent: int) -> list[str]:
    """Remove upload directories of a build cut short after ``since`` with ``sent`` bytes."""
    removed = []
    for path in builder_dirs():
        if _interrupted(path, since, sent):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
