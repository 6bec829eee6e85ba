"""The asyncio shells over real loopback sockets: UDP and TCP, IPv4 and IPv6, lossy paths."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest

from hopline.runtime import (
    FramingError,
    LengthPrefixDecoder,
    LinkHandle,
    TcpListener,
    UdpEndpoint,
    tcp_connect,
)
from hopline.runtime.loop import loop_factory, run, uvloop_available
from hopline.runtime.tcp import frame
from hopline.testing import ImpairingForwarder, ImpairmentConfig
from hopline.transport import LinkClosedError, LinkConfig

HOSTS = ["127.0.0.1", "::1"]


async def exchange(left: LinkHandle, right: LinkHandle, count: int = 50) -> None:
    """Send ``count`` messages each way at once and check both arrive in order."""
    out = [b"L%d" % i for i in range(count)]
    back = [b"R%d" % i for i in range(count)]
    for a, b in zip(out, back, strict=True):
        await left.send(a)
        await right.send(b)

    async def collect(handle: LinkHandle) -> list[bytes]:
        return [(await handle.receive()).data for _ in range(count)]

    got_right, got_left = await asyncio.wait_for(
        asyncio.gather(collect(right), collect(left)), 10.0
    )
    assert got_right == out
    assert got_left == back


# -- UDP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_udp_link_delivers_both_ways(host: str) -> None:
    server = await UdpEndpoint.bind(host, 0)
    client = await UdpEndpoint.bind(host, 0)
    link = await client.connect(server.local_address)
    await link.send(b"hello")
    peer = await asyncio.wait_for(server.accept(), 5.0)
    assert (await peer.receive()).data == b"hello"
    assert peer.remote_address == client.local_address
    await exchange(link, peer)
    big = random.Random(1).randbytes(65536)
    await peer.send(big)
    assert (await asyncio.wait_for(link.receive(), 5.0)).data == big
    await asyncio.wait_for(link.flush(), 5.0)
    assert link.stats.in_flight == 0
    assert link.stats.srtt is not None
    client.close()
    server.close()


async def test_udp_unreliable_messages_arrive_flagged() -> None:
    async with await UdpEndpoint.bind() as server, await UdpEndpoint.bind() as client:
        link = await client.send(server.local_address, b"voice", reliable=False)
        assert client.links == {server.local_address: link}
        peer = await asyncio.wait_for(server.accept(), 5.0)
        message = await asyncio.wait_for(peer.receive(), 5.0)
        assert message.data == b"voice" and not message.reliable


async def test_udp_close_reaches_the_peer_and_ends_iteration() -> None:
    server = await UdpEndpoint.bind()
    client = await UdpEndpoint.bind()
    link = await client.connect(server.local_address)
    await link.send(b"one")
    await link.send(b"two")
    await link.flush()
    peer = await server.accept()
    link.close()
    got = [m.data async for m in peer]
    assert got == [b"one", b"two"]
    assert peer.close_reason == "peer_closed"
    assert server.links == {}
    with pytest.raises(LinkClosedError):
        await link.send(b"late")
    client.close()
    server.close()


async def test_udp_endpoint_drops_foreign_datagrams_without_creating_links() -> None:
    server = await UdpEndpoint.bind()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for junk in (b"", b"GET / HTTP/1.1\r\n", b"\x00\x01stun"):
            raw.sendto(junk, server.local_address)
        await asyncio.sleep(0.05)
    finally:
        raw.close()
    assert server.links == {}
    assert server.dropped["not_hopline"] == 3
    server.close()


async def test_udp_endpoint_that_does_not_accept_counts_unknown_peers() -> None:
    server = await UdpEndpoint.bind(accept=False)
    client = await UdpEndpoint.bind()
    link = await client.connect(server.local_address)
    await link.send(b"anyone?")
    await asyncio.sleep(0.05)
    assert server.links == {}
    assert server.dropped["unknown_peer"] >= 1
    client.close()
    server.close()


# -- TCP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_tcp_link_delivers_both_ways(host: str) -> None:
    listener = await TcpListener.listen(host, 0)
    client = await tcp_connect(host, listener.local_address[1])
    server_side = await asyncio.wait_for(listener.accept(), 5.0)
    await exchange(client, server_side)
    big = random.Random(2).randbytes(65536)
    await client.send(big)
    assert (await asyncio.wait_for(server_side.receive(), 5.0)).data == big
    await asyncio.wait_for(client.flush(), 5.0)
    assert client.stats.segments_retransmitted == 0
    client.close()
    with pytest.raises(LinkClosedError):
        await asyncio.wait_for(server_side.receive(), 5.0)
    listener.close()


@pytest.mark.parametrize(
    ("junk", "reason"),
    [(b"\x00\x00", "empty_frame"), (b"\x05\x00" + bytes(1280), "frame_too_large")],
)
async def test_tcp_bad_framing_closes_the_connection_with_a_counted_reason(
    junk: bytes, reason: str
) -> None:
    listener = await TcpListener.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*listener.local_address)
    handle = await asyncio.wait_for(listener.accept(), 5.0)
    writer.write(junk)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # server hung up
    assert handle.close_reason == reason
    assert listener.closed_by_reason[reason] == 1
    writer.close()
    listener.close()


def test_length_prefix_decoder_handles_split_and_coalesced_frames() -> None:
    stream = frame(b"abc") + frame(b"d") + frame(bytes(300))
    decoder = LengthPrefixDecoder(max_frame_size=1200)
    frames: list[bytes] = []
    for i in range(0, len(stream), 7):
        frames += decoder.feed(stream[i : i + 7])
    assert frames == [b"abc", b"d", bytes(300)]
    assert decoder.buffered == 0
    with pytest.raises(FramingError) as info:
        LengthPrefixDecoder(max_frame_size=100).feed(b"\x00\x65")
    assert info.value.reason == "frame_too_large"  # refused before any body arrives
    with pytest.raises(ValueError):
        frame(b"")


# -- lossy end to end -----------------------------------------------------------------------


async def test_10000_messages_over_real_udp_through_a_lossy_forwarder() -> None:
    count = 10_000
    server = await UdpEndpoint.bind("127.0.0.1", 0)
    path = ImpairmentConfig(
        drop=0.20, duplicate=0.05, reorder=0.05, reorder_delay=0.004, delay=0.001, jitter=0.0005
    )
    lossy = await ImpairingForwarder.start(server.local_address, path, seed=2024)
    client = await UdpEndpoint.bind("127.0.0.1", 0)
    link = await client.connect(lossy.address)
    messages = [i.to_bytes(4, "big") + b"." * (i % 64) for i in range(count)]
    started = time.monotonic()

    async def receive_all() -> list[bytes]:
        peer = await server.accept()
        return [(await peer.receive()).data for _ in range(count)]

    receiver = asyncio.create_task(receive_all())
    for message in messages:
        await link.send(message)
    got = await asyncio.wait_for(receiver, 60.0)
    await asyncio.wait_for(link.flush(), 30.0)
    assert got == messages
    assert time.monotonic() - started < 30.0
    up, down = lossy.stats.upstream, lossy.stats.downstream
    assert up.dropped > 0.15 * up.offered and down.dropped > 0
    assert up.duplicated > 0 and up.reordered > 0
    stats = link.stats
    assert stats.segments_retransmitted > 0 and stats.loss_estimate > 0.1
    assert stats.srtt is not None and stats.srtt < 0.1
    client.close()
    lossy.close()
    server.close()


# -- event loop ---------------------------------------------------------------------------------


async def _udp_round_trip() -> bytes:
    async with await UdpEndpoint.bind("::1") as server, await UdpEndpoint.bind("::1") as client:
        link = await client.connect(server.local_address)
        await link.send(b"via run()")
        peer = await server.accept()
        return (await asyncio.wait_for(peer.receive(), 5.0)).data


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_run_helper_drives_the_runtime(use_uvloop: bool) -> None:
    if use_uvloop and not uvloop_available():
        pytest.skip("uvloop not installed")
    assert run(_udp_round_trip(), use_uvloop=use_uvloop) == b"via run()"
    loop = loop_factory(use_uvloop=use_uvloop)()
    try:
        assert ("uvloop" in type(loop).__module__) == use_uvloop
    finally:
        loop.close()


def test_link_config_is_shared_with_the_shell() -> None:
    async def main() -> int:
        endpoint = await UdpEndpoint.bind(config=LinkConfig(window=32))
        other = await UdpEndpoint.bind()
        link = await endpoint.connect(other.local_address)
        endpoint.close()
        other.close()
        return link.link.config.window

    assert run(main(), use_uvloop=False) == 32
