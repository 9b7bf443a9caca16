"""What one Podman exchange costs the event-loop client (daemon/podman/http.py), in process.

    python -m bench.http_cost --socket /path/to/podman.sock [--calls 3000]

Two figures: the client's own work per exchange with no I/O (format the request,
parse libpod's real ``_ping`` replies: HEAD with 12 headers and no length, GET with
Content-Length), best of five rounds; then sequential ``HEAD _ping`` calls on one
kept-alive socket to a running ``podman system service`` (p50 wall time and the
process's CPU time per call). To measure an older client, check its http.py out
in the work tree and run the same command (an h11 client is measured with h11).
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from typing import Any

from podman_rpc.daemon.podman import http

HEAD_REPLY = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nBuilder-Version: \r\nBuildkit-Version: \r\n"
              b"Cache-Control: no-cache\r\nDocker-Experimental: true\r\nLibpod-Api-Version: 4.3.1\r\n"
              b"Libpod-Buildah-Version: 1.28.2\r\nPragma: no-cache\r\nServer: Libpod/4.3.1 (linux)\r\n"
              b"X-Reference-Id: 0xc000124a78\r\nDate: Wed, 02 Dec 2026 07:52:30 GMT\r\n\r\n")
GET_REPLY = (HEAD_REPLY[:-2] + b"Content-Length: 2\r\nContent-Type: text/plain; charset=utf-8"
             b"\r\n\r\nOK")


def _httptools_exchange(method: str, reply: bytes) -> None:
    http.format_request(method, http.PING_PATH, None)
    response = http.Response(head_only=method == "HEAD")
    response.feed(reply)
    assert response.done and response.keep_alive
    http.Reply(response.status, response.raw_headers, response.body)


def _h11_exchange(method: str, reply: bytes, conn: Any) -> None:  # an h11-era http.py
    import h11  # only installed when measuring the old client

    conn.send(h11.Request(method=method, target=http.PING_PATH, headers=[("Host", "d")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(reply)
    while type(conn.next_event()) is not h11.EndOfMessage:
        pass
    conn.start_next_cycle()


def parse_cost(method: str, reply: bytes, calls: int) -> float:
    """Microseconds per exchange, best of five rounds."""
    if hasattr(http, "Response"):
        def one() -> None:
            _httptools_exchange(method, reply)
    else:
        import h11

        conn = h11.Connection(h11.CLIENT)

        def one() -> None:
            _h11_exchange(method, reply, conn)
    return min(timeit.repeat(one, number=calls, repeat=5)) / calls * 1e6


async def ping_cost(socket_path: str, calls: int) -> tuple[float, float]:
    """p50 wall and CPU microseconds per sequential HEAD _ping on one kept-alive socket."""
    client = http.PodmanHTTP(socket_path)
    try:
        await client.ping()
        latencies = []
        cpu = time.process_time()
        for _ in range(calls):
            start = time.perf_counter()
            await client.ping()
            latencies.append((time.perf_counter() - start) * 1e6)
        return statistics.median(latencies), (time.process_time() - cpu) / calls * 1e6
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="a Podman API socket")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    import uvloop

    name = "httptools" if hasattr(http, "Response") else "h11"
    head, get = (parse_cost(m, r, 10_000) for m, r in (("HEAD", HEAD_REPLY), ("GET", GET_REPLY)))
    p50, cpu = uvloop.run(ping_cost(args.socket, args.calls))
    print(f"{name}: format + parse, no I/O: HEAD _ping {head:.1f} us, GET _ping {get:.1f} us; "
          f"{args.calls} HEAD _ping on one socket: p50 {p50:.0f} us, client CPU {cpu:.0f} us/call")


if __name__ == "__main__":
    main()
