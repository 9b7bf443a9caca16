"""Compare ways to run a short container over Podman's REST API and collect its result.

Each strategy creates a container (with the limits ``run`` applies), starts it,
learns its exit code, collects stdout/stderr and removes it. Strategies run
interleaved so machine noise hits them alike; prints the median and p90.

    CONTAINERS_CONF=tests/rig/containers.conf python bench/run_strategies.py \
        --socket /run/podman/podman.sock --runs 30
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

from podman import PodmanClient

SCRIPT = "echo '{\"a\":1}'; echo err >&2; exit 3"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", default="/run/podman/podman.sock")
    parser.add_argument("--image", default="localhost/busybox:latest")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--daemon", help="a podman-rpc socket: also time its `run` method")
    args = parser.parse_args()
    api = PodmanClient(base_url=f"unix://{args.socket}").api

    def create(**extra: Any) -> str:
        body = {"image": args.image, "command": ["sh", "-c", SCRIPT],
                "netns": {"nsmode": "none"}, "timeout": 10,
                "resource_limits": {"memory": {"limit": 20 << 20, "swap": 20 << 20},
                                    "cpu": {"quota": 50000, "period": 100000},
                                    "pids": {"limit": 64}}, **extra}
        response = api.post("/containers/create", data=json.dumps(body))
        response.raise_for_status()
        return response.json()["Id"]

    def wait(cid: str, interval: str | None) -> int:
        params = {"condition": "exited", **({"interval": interval} if interval else {})}
        return api.post(f"/containers/{cid}/wait", params=params).json()

    def poll(interval: str | None) -> Callable[[], None]:
        def run() -> None:
            cid = create()
            api.post(f"/containers/{cid}/start").raise_for_status()
            code = wait(cid, interval)
            out = api.get(f"/containers/{cid}/logs", params={"stdout": True, "stderr": True})
            api.delete(f"/containers/{cid}", params={"force": True}).raise_for_status()
            assert code == 3 and b'{"a":1}' in out.content and b"err" in out.content
        return run

    def attach(**extra: Any) -> Callable[[], None]:
        def run() -> None:
            cid = create(**extra)
            stream = api.post(f"/containers/{cid}/attach", stream=True,
                              params={"stream": True, "stdout": True, "stderr": True})
            api.post(f"/containers/{cid}/start").raise_for_status()
            out: dict[int, bytes] = {1: b"", 2: b""}
            while header := stream.raw.read(8):
                kind, size = struct.unpack(">BxxxL", header)
                out[kind] = out.get(kind, b"") + stream.raw.read(size)
            code = wait(cid, "10ms")
            api.delete(f"/containers/{cid}", params={"force": True}).raise_for_status()
            assert code == 3 and out[1] == b'{"a":1}\n' and out[2] == b"err\n", (code, out)
        return run

    def cli() -> None:
        subprocess.run(["podman", "run", "--rm", "--network", "none", args.image,
                        "sh", "-c", "echo hi"], check=True, capture_output=True)

    strategies: dict[str, Callable[[], None]] = {
        "create/start/wait(default interval)/logs/rm": poll(None),
        "create/start/wait(interval=10ms)/logs/rm": poll("10ms"),
        "create/attach/start/EOF/wait(10ms)/rm": attach(),
        "same, log driver none": attach(log_configuration={"driver": "none"}),
        "podman run --rm (local CLI, reference)": cli,
    }
    if args.daemon:
        strategies["podman-rpc `run` (daemon, same work)"] = daemon_run(args.daemon, args.image)
    times: dict[str, list[float]] = {name: [] for name in strategies}
    for fn in strategies.values():
        fn()  # warm up
    for _ in range(args.runs):
        for name, fn in strategies.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    for name, samples in times.items():
        samples.sort()
        print(f"{name:45s} median {statistics.median(samples) * 1000:6.1f} ms"
              f"  p90 {samples[int(len(samples) * 0.9) - 1] * 1000:6.1f} ms  n={len(samples)}")


def daemon_run(path: str, image: str) -> Callable[[], None]:
    """One `run` request per call over a kept-open connection to the daemon."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    reader = sock.makefile("rb")
    counter = iter(range(1, 1 << 30))

    def run() -> None:
        request = {"jsonrpc": "2.0", "id": next(counter), "method": "run",
                   "params": {"image": image, "command": ["sh", "-c", SCRIPT]}}
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(reader.readline())
        data = reply.get("error", {}).get("data", {})
        assert data.get("exit_code") == 3 and data.get("stdout") == {"a": 1}, reply
    return run


if __name__ == "__main__":
    main()
