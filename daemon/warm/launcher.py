"""The stdin launcher of a warm container, and the one line a claim sends it: pure, no I/O.

Why not exec (bench/RESULTS.md, issue 20): Podman runs a conmon and a ``runc
exec`` per exec, which costs about what starting a container costs. Instead a
warm container's entrypoint is the host's static busybox, bound read-only at
``TARGET``, running ``SCRIPT``: a shell that blocks on its stdin until a claim
attaches and writes one line, which ``eval`` runs: change to the workdir, export
the env, then ``exec`` the argv, so the command replaces the shell as the
container's process, as on the cold path, and its exit ends the container.

The line is printable ASCII and ends at its one newline: every word is quoted
with ``shlex.quote``, and any other byte (a newline, a control character such as
the attach's detach keys, UTF-8) is written as an ``$'\\ooo'`` octal escape. A
NUL cannot be in an argv or an env, so a run with one is not launchable (cold).

Debian's busybox prefers its own applets even over ``PATH`` (``exec ls`` runs
busybox's ls), so ``SCRIPT`` looks the command up in ``PATH`` itself and execs
it by its path, as runc would: an image's own binaries run, never the host's.
"""

from __future__ import annotations

import re
import shlex

from podman_rpc.daemon.warm.keys import ExecSpec

TARGET = "/.podman-rpc/busybox"
# f: nothing of the command ran (no such workdir or command): say so with the line's
# nonce, which the command never sees, so the claim can let the cold path answer.
# w DIR: cd, creating DIR if missing (as Podman does for a workdir); x ARGV: exec the
# command found by PATH as runc finds it, with /dev/null as stdin, as cold.
SCRIPT = (
    'f() { echo "$_prpc_n" >&2; exit 127; }; '
    f'w() {{ cd -- "$1" 2>/dev/null || {{ {TARGET} mkdir -p -- "$1" 2>/dev/null && '
    'cd -- "$1" 2>/dev/null; } || f; }; '
    'x() { p=$1; shift; case $p in */*) ;; *) s=$IFS; IFS=:; for d in $PATH; do '
    'd=${d:-.}; if [ -f "$d/$p" ] && [ -x "$d/$p" ]; then p=$d/$p; break; fi; done; '
    'IFS=$s; case $p in */*) ;; *) f;; esac;; esac; exec "$p" "$@" </dev/null; }; '
    'IFS= read -r line || exit 125; eval "$line"')
NOT_LAUNCHED = 127  # f's exit code
ENTRYPOINT = [TARGET, "sh", "-c", SCRIPT]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRINTABLE = re.compile(r"[ -~]+")


def word(text: str) -> str:
    """``text`` as one shell word of printable ASCII; every other byte as an octal escape."""
    parts: list[str] = []
    pos = 0
    for match in _PRINTABLE.finditer(text):
        if match.start() > pos:
            parts.append(_escaped(text[pos:match.start()]))
        parts.append(shlex.quote(match.group()))
        pos = match.end()
    if pos < len(text):
        parts.append(_escaped(text[pos:]))
    return "".join(parts) or "''"


def _escaped(text: str) -> str:
    return "$'" + "".join(f"\\{byte:03o}" for byte in text.encode()) + "'"


def launchable(spec: ExecSpec) -> bool:
    """Whether the line can carry this run exactly: env names a shell can export, no NUL,
    an absolute workdir; else the cold path serves it and says what Podman makes of it."""
    texts = [*spec.argv, *spec.env, spec.workdir or ""]
    if spec.workdir and not spec.workdir.startswith("/"):
        return False  # Podman's to judge
    try:
        if any("\0" in text for text in texts) or any(
                not _NAME.match(entry.partition("=")[0]) for entry in spec.env):
            return False
        for text in texts:
            text.encode()
    except UnicodeEncodeError:  # a lone surrogate: the cold path says what Podman makes of it
        return False
    return True


def line(spec: ExecSpec, nonce: str) -> bytes:
    """The one line a claim writes to the launcher (``launchable(spec)`` must hold)."""
    steps = [f"_prpc_n={word(nonce)}"]
    if spec.workdir:
        steps.append(f"w {word(spec.workdir)}")
    steps.append("unset OLDPWD PWD SHLVL")  # the shell's own; runc sets none of them
    steps += [f"export {word(entry)}" for entry in spec.env]
    steps.append("x " + " ".join(word(arg) for arg in spec.argv))
    text = " && ".join(steps) + "\n"
    assert text.count("\n") == 1 and text.isascii()
    return text.encode()
