"""daemon.podman.attach: the frame decoder without sockets, and the reader on a real Podman."""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

from podman_rpc.daemon.podman.attach import AttachStream, FrameDecoder
from podman_rpc.daemon.podman.http import API_PREFIX, PodmanHTTP
from podman_rpc.protocol.errors import NotFound
from tests.rig.podman import PodmanService


class Sink:
    def __init__(self, cap: int = 1 << 30) -> None:
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.cap = cap
        self.pieces = 0

    @property
    def full(self) -> bool:
        return all(len(b) >= self.cap for b in self.data.values())

    def feed(self, stream: str, chunk: bytes) -> None:
        self.pieces += 1
        self.data[stream] += chunk


def _frames(seed: int) -> tuple[bytes, dict[str, bytes]]:
    rng = random.Random(seed)
    raw, expected = bytearray(), {"stdout": bytearray(), "stderr": bytearray()}
    for _ in range(rng.randint(0, 30)):
        kind = rng.choice([1, 2, 0, 3])  # 0 and 3 are not output: dropped
        payload = rng.randbytes(rng.randint(0, 400))
        raw += struct.pack(">BxxxL", kind, len(payload)) + payload
        if kind in (1, 2):
            expected["stdout" if kind == 1 else "stderr"] += payload
    return bytes(raw), {k: bytes(v) for k, v in expected.items()}


@pytest.mark.parametrize("seed", range(40))
def test_decoder_splits_anywhere(seed: int) -> None:
    """Frames cut at any byte (header or payload) decode to the same streams."""
    raw, expected = _frames(seed)
    rng = random.Random(seed + 1000)
    sink = Sink()
    decoder = FrameDecoder(sink)
    pos = 0
    while pos < len(raw):
        step = rng.randint(1, 64)
        decoder.feed(raw[pos:pos + step])
        pos += step
    assert {k: bytes(v) for k, v in sink.data.items()} == expected
    whole = Sink()
    FrameDecoder(whole).feed(raw)
    assert {k: bytes(v) for k, v in whole.data.items()} == expected


def _create(client: PodmanHTTP, image: str, command: list[str]) -> asyncio.Future:
    body = {"image": image, "command": command, "netns": {"nsmode": "none"}}
    return asyncio.ensure_future(client.request("POST", f"{API_PREFIX}/containers/create", body))


async def _attached_run(socket_path: str, image: str, command: list[str],
                        sink: Sink) -> AttachStream:
    client = PodmanHTTP(socket_path)
    cid = (await _create(client, image, command)).json()["Id"]
    try:
        stream = await AttachStream.open(
            client, "POST", f"{API_PREFIX}/containers/{cid}/attach?stream=true&stdout=true&stderr=true")
        try:
            started = await client.request("POST", f"{API_PREFIX}/containers/{cid}/start")
            assert started.ok, started.body
            await asyncio.wait_for(stream.pump(sink), 60)
        finally:
            stream.close()
    finally:
        await client.request("DELETE", f"{API_PREFIX}/containers/{cid}?force=true&timeout=0")
        client.close()
    return stream


@pytest.mark.podman
def test_stdout_and_stderr_exact(podman_service: PodmanService, busybox: str) -> None:
    sink = Sink()
    asyncio.run(_attached_run(str(podman_service.socket_path), busybox,
                              ["sh", "-c", "seq 20000; echo oops >&2; printf tail"], sink))
    expected = "".join(f"{i}\n" for i in range(1, 20001)) + "tail"
    assert sink.data["stdout"].decode() == expected
    assert sink.data["stderr"] == b"oops\n"


@pytest.mark.podman
def test_full_sink_drains_without_decoding(podman_service: PodmanService, busybox: str) -> None:
    """Past ``full`` the stream is read to its end but nothing more is fed."""
    sink = Sink(cap=1000)
    # stderr passes the cap first, so the sink is full once stdout does too: had stderr
    # come only after all of stdout, whether stdout was cut hung on the order conmon read
    # its two pipes in (the last 64 KiB of stdout against stderr's first bytes).
    script = ("yes x | head -c 2000 >&2; yes | head -c 3000000; "
              "yes x | head -c 3000000 >&2")
    stream = asyncio.run(_attached_run(str(podman_service.socket_path), busybox,
                                       ["sh", "-c", script], sink))
    assert stream.bytes_read > 6_000_000  # every byte was read, so the container never blocked
    assert 1000 <= len(sink.data["stdout"]) < 3_000_000
    assert len(sink.data["stderr"]) >= 1000


@pytest.mark.podman
def test_attach_to_a_missing_container_is_not_found(podman_service: PodmanService) -> None:
    async def go() -> None:
        client = PodmanHTTP(podman_service.socket_path)
        try:
            await AttachStream.open(client, "POST",
                                    f"{API_PREFIX}/containers/no-such-ctr-x/attach?stream=true")
        finally:
            client.close()

    with pytest.raises(NotFound):
        asyncio.run(go())


@pytest.mark.podman
def test_exec_start_is_read_by_the_same_reader(podman_service: PodmanService,
                                               busybox: str) -> None:
    """POST /exec/{id}/start with Detach false is hijacked with the same framing (issue 20)."""
    async def go() -> tuple[Sink, int]:
        client = PodmanHTTP(podman_service.socket_path)
        cid = (await _create(client, busybox, ["sleep", "30"])).json()["Id"]
        try:
            assert (await client.request("POST", f"{API_PREFIX}/containers/{cid}/start")).ok
            made = await client.request("POST", f"{API_PREFIX}/containers/{cid}/exec", {
                "Cmd": ["sh", "-c", "seq 3; echo e >&2"], "AttachStdout": True,
                "AttachStderr": True})
            exec_id = made.json()["Id"]
            stream = await AttachStream.open(client, "POST", f"{API_PREFIX}/exec/{exec_id}/start",
                                             {"Detach": False, "Tty": False})
            sink = Sink()
            try:
                await asyncio.wait_for(stream.pump(sink), 30)
            finally:
                stream.close()
            code = (await client.request("GET", f"{API_PREFIX}/exec/{exec_id}/json")).json()
            return sink, int(code["ExitCode"])
        finally:
            await client.request("DELETE", f"{API_PREFIX}/containers/{cid}?force=true&timeout=0")
            client.close()

    sink, code = asyncio.run(go())
    assert sink.data["stdout"] == b"1\n2\n3\n" and sink.data["stderr"] == b"e\n"
    assert code == 0
