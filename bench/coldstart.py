"""Cold start under socket activation: time from connect to the first ``ping`` reply.

Each run puts ``podman-rpcd`` behind ``systemd-socket-activate`` on a fresh
socket, connects (which makes systemd-socket-activate exec the daemon), sends
``ping`` and times the reply; then a ``ping`` on a second connection to the now
warm process, for comparison. The daemon is stopped before the next run, so
every run pays the full interpreter start and import cost. The daemon's CPU
time up to its first reply is reported too: on a busy machine the wall time
swings with the load, the CPU time does not.

Standalone on purpose (the benchmark harness calls it as a script)::

    python bench/coldstart.py --runs 10 [--podman-socket PATH] [--json]

Without ``--podman-socket`` it starts a private ``podman system service`` with
``CONTAINERS_CONF`` from the test rig, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.rig.podman import PodmanService, podman_env  # noqa: E402


def serve_command(sock_dir: Path, podman_socket: Path, extra: list[str]) -> list[str]:
    """The console script when installed next to this Python, else ``python -m podman_rpc.daemon``."""
    script = Path(sys.executable).with_name("podman-rpcd")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "podman_rpc.daemon"]
    config = sock_dir / "daemon.toml"
    config.write_text(f'[daemon]\nruntime_dir = "{sock_dir / "run"}"\nembedded_podman = false\n')
    return [*base, "--podman-socket", str(podman_socket), "--config", str(config), *extra]


def ping(sock: socket.socket) -> dict:
    sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    buffer = b""
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("daemon closed the connection without a reply")
        buffer += chunk
    return json.loads(buffer.split(b"\n", 1)[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(podman_socket: Path, extra: list[str]) -> tuple[float, float, float]:
    """(cold, warm, cpu): seconds from connect to the ``ping`` reply, cold and warm, and
    the CPU seconds the daemon used up to its first reply (independent of machine load)."""
    with tempfile.TemporaryDirectory(prefix="prpc-cold-") as tmp:
        directory = Path(tmp)
        path = directory / "rpc.sock"
        env = podman_env()
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(directory / "daemon.log", "wb")
        activator = subprocess.Popen(
            ["systemd-socket-activate", "-l", str(path), "--",
             *serve_command(directory, podman_socket, extra)],
            env=env, stdout=log, stderr=log, cwd=REPO)
        try:
            until = time.monotonic() + 10
            # "Listening on" is printed after listen(); the file exists from bind() on, and a
            # connect between the two is refused (a CI run hit that window).
            while b"Listening on" not in (directory / "daemon.log").read_bytes():
                if time.monotonic() > until or activator.poll() is not None:
                    raise RuntimeError("systemd-socket-activate did not listen")
                time.sleep(0.01)
            timings = []
            for _ in range(2):
                try:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                        sock.settimeout(30)
                        start = time.perf_counter()
                        sock.connect(str(path))
                        reply = ping(sock)
                        timings.append(time.perf_counter() - start)
                        if len(timings) == 1:  # systemd-socket-activate exec'd the daemon: same pid
                            cpu = cpu_seconds(activator.pid)
                except OSError as exc:
                    log.flush()
                    tail = (directory / "daemon.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{exc}; daemon log:\n{tail}") from exc
                if reply.get("result") != "Pong":
                    raise RuntimeError(f"ping failed: {reply}")
            return timings[0], timings[1], cpu
        finally:
            activator.send_signal(signal.SIGTERM)
            try:
                activator.wait(30)
            except subprocess.TimeoutExpired:
                activator.kill()
                activator.wait()
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--podman-socket", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("serve_args", nargs="*", help="extra arguments for serve (after --)")
    args = parser.parse_args(argv)
    if shutil.which("systemd-socket-activate") is None:
        print("systemd-socket-activate is not installed", file=sys.stderr)
        return 2
    service = None
    rig = None
    podman_socket = args.podman_socket
    if podman_socket is None:
        rig = tempfile.mkdtemp(prefix="prpc-cold-podman-")
        service = PodmanService(Path(rig))
        service.start()
        podman_socket = service.socket_path
    try:
        one_run(podman_socket, args.serve_args)  # warm the page cache, not counted
        results = [one_run(podman_socket, args.serve_args) for _ in range(args.runs)]
    finally:
        if service is not None:
            service.stop()
        if rig is not None:
            shutil.rmtree(rig, ignore_errors=True)
    cold = [c for c, _, _ in results]
    warm = [w for _, w, _ in results]
    cpu = [c for _, _, c in results]
    summary = {
        "runs": args.runs,
        "cold_ping_s": {"median": statistics.median(cold), "min": min(cold), "max": max(cold)},
        "warm_ping_s": {"median": statistics.median(warm), "min": min(warm), "max": max(warm)},
        "cold_cpu_s": {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu)},
        "cold_samples_s": cold,
        "loadavg_1min": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"cold start, connect -> first ping reply over {args.runs} runs: "
              f"median {summary['cold_ping_s']['median'] * 1000:.0f} ms, "
              f"min {min(cold) * 1000:.0f} ms, max {max(cold) * 1000:.0f} ms")
        print(f"daemon CPU time up to its first reply: median "
              f"{summary['cold_cpu_s']['median'] * 1000:.0f} ms (1-min load average "
              f"{summary['loadavg_1min']:.1f})")
        print(f"second connection on the warm process: "
              f"median {summary['warm_ping_s']['median'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
