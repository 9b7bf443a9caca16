"""What libpod leaves behind when a build's upload is cut short, and its removal.

libpod's POST /build copies the request body into ``$TMPDIR/libpod_builder*/tarBall``
and only then extracts it; when the body ends early the copy fails and the
handler returns without removing that directory (podman 4.3,
``pkg/api/handlers/compat/images_build.go``, ``extractTarFile``; measured: a
160 MB ``tarBall`` stayed after a cut upload). The daemon cuts uploads on
purpose, so it removes these itself: directories created since its upload
began that hold nothing but a ``tarBall`` no larger than what it sent and no
longer growing. A build whose upload finished is cleaned by libpod itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time

BUILDER_PREFIX = "libpod_builder"
TEMP_DIRS = ("/var/tmp", "/tmp")  # podman's service sets TMPDIR=/var/tmp when it is unset
CLOCK_SLACK = 2.0  # seconds: directory times and our clock may differ this much


def temp_dirs() -> tuple[str, ...]:
    """The temp directories Podman's service may use."""
    return tuple(dict.fromkeys((os.environ.get("TMPDIR") or tempfile.gettempdir(), *TEMP_DIRS)))


def builder_dirs(bases: tuple[str, ...] | None = None) -> list[str]:
    """Every ``libpod_builder*`` directory in ``bases`` (Podman's temp directories)."""
    found: list[str] = []
    for base in bases or temp_dirs():
        try:
            with os.scandir(base) as entries:
                found += [e.path for e in entries
                          if e.name.startswith(BUILDER_PREFIX) and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return found


def _upload_size(path: str, since: float, sent: int) -> int | None:
    """The size of an upload that may be ours: begun since ``since``, only a ``tarBall``
    of at most ``sent`` bytes; None for anything else."""
    try:
        if os.lstat(path).st_mtime < since - CLOCK_SLACK or os.listdir(path) != ["tarBall"]:
            return None
        tar = os.lstat(os.path.join(path, "tarBall"))
    except OSError:
        return None
    return tar.st_size if stat.S_ISREG(tar.st_mode) and tar.st_size <= sent else None


def remove_interrupted_uploads(since: float, sent: int, settle: float = 0.2,
                               patience: float = 2.0,
                               bases: tuple[str, ...] | None = None) -> list[str]:
    """Remove upload directories of a build cut short after ``since`` with ``sent`` bytes.

    Only an upload that stopped growing is removed: one still being written belongs to
    a client whose upload goes on (ours ended when its connection was shut down).
    """
    removed: list[str] = []
    until = time.monotonic() + patience
    sizes = {p: size for p in builder_dirs(bases) if (size := _upload_size(p, since, sent)) is not None}
    while sizes and time.monotonic() < until:
        time.sleep(settle)
        for path, size in list(sizes.items()):
            now = _upload_size(path, since, sent)
            if now == size:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            if now is None or now == size:
                del sizes[path]
            else:
                sizes[path] = now
    return removed
