"""Hostile load for ``bench.cases_hostile``, as a process of its own (asyncio, one thread).

Run apart from the bench so that its work never shares a GIL with the client whose
latency is measured. Prints one JSON line of figures at the end.

    python -m bench.hostile_load flood --socket S --total 100000
    python -m bench.hostile_load fuzz --socket S --conns 32 --seconds 20
    python -m bench.hostile_load slow --socket S --trickle 250 --big 250 --limit 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import orjson

LIMIT = 1 << 22


def _line(method: str, rid: Any, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        message["params"] = params
    return orjson.dumps(message) + b"\n"


async def flood(path: str, total: int) -> dict[str, Any]:
    """One connection sends ``total`` pings as fast as the daemon reads them."""
    reader, writer = await asyncio.open_unix_connection(path, limit=LIMIT)
    counts = {"ok": 0, "overloaded": 0, "other": 0}
    started = time.perf_counter()

    async def read() -> None:
        for _ in range(total):
            line = await reader.readline()
            if not line:
                return
            reply = orjson.loads(line)
            if "result" in reply:
                counts["ok"] += 1
            elif reply["error"]["code"] == -32000:
                counts["overloaded"] += 1
            else:
                counts["other"] += 1

    reading = asyncio.ensure_future(read())
    for start in range(0, total, 1000):
        writer.write(b"".join(_line("ping", i) for i in range(start, min(total, start + 1000))))
        await writer.drain()
    await reading
    writer.close()
    return {**counts, "seconds": time.perf_counter() - started}


FUZZ_KINDS = 10


def _fuzz_frames(rng: random.Random, kinds: list[int]) -> bytes:
    """A mix of what a broken or hostile client sends, each frame one line."""
    kind = rng.choice(kinds)
    rid = rng.randrange(1 << 30)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(
            b"\n", b" ") + b"\n"
    if kind == 1:
        return _line(rng.choice(["ping", "ps", "images", "version"]), rid)
    if kind == 2:
        return _line("status", rid)
    if kind == 3:
        return _line("no.such.method", rid)
    if kind == 4:
        return _line("ps", rid, {"all": "yes", "bogus": [1, 2, 3]})
    if kind == 5:
        return b"[" * 300 + b"]" * 300 + b"\n"
    if kind == 6:
        return orjson.dumps([{"jsonrpc": "2.0", "id": rid + i, "method": "ping"}
                             for i in range(5)]) + b"\n"
    if kind == 7:
        return b'{"jsonrpc":"2.0","method":"ping"}\n'  # a notification: no reply
    if kind == 8:
        return b" " * rng.randrange(10_000, 200_000) + _line("status", rid)
    return rng.choice([b"123\n", b'"x"\n', b"[]\n", b"{}\n", b"null\n", b"{\"jsonrpc\":\n"])


async def _fuzz_one(path: str, until: float, seed: int, sent: list[int],
                    kinds: list[int]) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=LIMIT)
        except OSError:
            await asyncio.sleep(0.1)
            continue

        async def drain_replies(reader: asyncio.StreamReader = reader) -> None:
            while await reader.read(1 << 16):
                pass

        draining = asyncio.ensure_future(drain_replies())
        try:
            while time.monotonic() < until and not draining.done():
                frames = [_fuzz_frames(rng, kinds) for _ in range(50)]
                writer.write(b"".join(frames))
                sent[0] += len(frames)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            draining.cancel()


async def fuzz(path: str, conns: int, seconds: float,
               kinds: list[int] | None = None) -> dict[str, Any]:
    """``conns`` connections send fuzz frames (of ``kinds``, default all) for ``seconds``."""
    until = time.monotonic() + seconds
    sent = [0]
    chosen = kinds or list(range(FUZZ_KINDS))
    await asyncio.gather(*(_fuzz_one(path, until, seed, sent, chosen)
                           for seed in range(conns)))
    return {"frames": sent[0], "conns": conns, "seconds": seconds}


async def _slow_one(path: str, big: bool, limit: float) -> float | None:
    """Seconds from the first byte to the daemon's close, or None if it never closed."""
    reader, writer = await asyncio.open_unix_connection(path, limit=LIMIT)
    started = time.monotonic()
    first = b" " * 1_000_000 if big else b'{"jsonrpc":"2.0","id":1,"method":"status"'
    step, pause = (b" ", 15.0) if big else (b" ", 1.0)
    try:
        writer.write(first if big else first[:1])
        closed = asyncio.ensure_future(reader.read())  # b"" or an error line, then EOF
        while time.monotonic() - started < limit:
            try:
                await asyncio.wait_for(asyncio.shield(closed), pause)
                return time.monotonic() - started
            except TimeoutError:
                writer.write(step)
    except (OSError, ConnectionError):
        return time.monotonic() - started
    finally:
        writer.close()
    return None


async def slow(path: str, trickle: int, big: int, limit: float) -> dict[str, Any]:
    """Clients that send one byte a second, and clients holding 1 MB partial lines."""
    tasks = [_slow_one(path, False, limit) for _ in range(trickle)]
    tasks += [_slow_one(path, True, limit) for _ in range(big)]
    times = await asyncio.gather(*tasks, return_exceptions=True)
    closed = sorted(t for t in times if isinstance(t, float))
    errors = [repr(t) for t in times if isinstance(t, BaseException)][:3]
    return {"clients": len(tasks), "closed": len(closed),
            "max_s": closed[-1] if closed else None,
            "p50_s": closed[len(closed) // 2] if closed else None, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_load")
    parser.add_argument("shape", choices=["flood", "fuzz", "slow"])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--trickle", type=int, default=250)
    parser.add_argument("--big", type=int, default=250)
    parser.add_argument("--limit", type=float, default=40.0)
    parser.add_argument("--kinds", help="fuzz: comma-separated frame kinds (0-9), default all")
    args = parser.parse_args()
    if args.shape == "flood":
        figures = asyncio.run(flood(args.socket, args.total))
    elif args.shape == "fuzz":
        kinds = [int(k) for k in args.kinds.split(",")] if args.kinds else None
        figures = asyncio.run(fuzz(args.socket, args.conns, args.seconds, kinds))
    else:
        figures = asyncio.run(slow(args.socket, args.trickle, args.big, args.limit))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
