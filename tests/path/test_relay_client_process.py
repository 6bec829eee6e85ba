"""RelayClient against a real supernode process: keep-alive, channels, release, and
one flush for the sends of one loop turn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc
from hopline.identity import CertificateVerifier, Role
from hopline.relay.client import RelayClient
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.testing.network import logged_in, start_network
from hopline.wire import Address


class UdpPeer(asyncio.DatagramProtocol):
    """A plain UDP socket recording what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, Address.of(addr[0], addr[1])))

    @property
    def address(self) -> Address:
        assert self.transport is not None
        return Address.of(*self.transport.get_extra_info("sockname")[:2])


@pytest.fixture
def supernode(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    with Cluster(tmp_path / "logs") as cluster:
        ls, nodes = start_network(cluster, tmp_path, supernodes=1)
        yield ls, nodes[0]


async def home_connection(
    supernode: tuple[Proc, Proc], tmp_path: Path, tcp: bool
) -> tuple[Endpoint, PeerConnection]:
    """alice, logged in, connected to the supernode (over TCP or UDP)."""
    ls, sn = supernode
    profile = await logged_in(tmp_path, ls, "alice")
    endpoint = Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )
    home = Address.parse(sn.ready["listen"]).as_tuple()
    return endpoint, await endpoint.connect(home, Expectation(role=Role.SUPERNODE), tcp=tcp)


@pytest.mark.parametrize("tcp", [False, True])
async def test_allocation_is_kept_alive_and_carries_both_ways(
    supernode: tuple[Proc, Proc], tmp_path: Path, tcp: bool
) -> None:
    endpoint, pc = await home_connection(supernode, tmp_path, tcp)
    client = RelayClient(pc, tcp=tcp)
    endpoint.datagram_handler = lambda _pc, data: client.handle_datagram(data) and None
    loop = asyncio.get_running_loop()
    _, bob = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    got: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
    try:
        allocation = await client.allocate(lifetime=2)
        assert allocation.base == ("tcp-relay:" if tcp else "relay:") + str(allocation.relay_id)
        allocation.on_data = lambda data, peer, _address: got.put_nowait((data, peer))
        await allocation.permit([bob.address])
        await asyncio.sleep(3)  # past the 2 s lifetime: refreshed on its own
        assert allocation.alive
        assert bob.transport is not None
        bob.transport.sendto(b"hello", allocation.relayed.as_tuple())
        assert await asyncio.wait_for(got.get(), 5) == (b"hello", bob.address)
        allocation.send(b"plain", bob.address)  # relay.send
        assert await asyncio.wait_for(bob.received.get(), 5) == (b"plain", allocation.relayed)
        channel = await allocation.bind(bob.address)
        assert 0x4000 <= channel <= 0x7FFF
        allocation.send(b"framed", bob.address)  # a channel frame now
        assert (await asyncio.wait_for(bob.received.get(), 5))[0] == b"framed"
        bob.transport.sendto(b"back", allocation.relayed.as_tuple())
        assert await asyncio.wait_for(got.get(), 5) == (b"back", bob.address)
        # a large datagram travels as a channel datagram both ways, outside the link:
        # the link may carry an ACK or a keep-alive meanwhile, never the payload
        link = client.pc.core.link
        before = (link.stats.bytes_sent, link.stats.bytes_received)
        allocation.send_to(b"F" * 1000, bob.address.as_tuple())
        assert await asyncio.wait_for(bob.received.get(), 5) == (b"F" * 1000, allocation.relayed)
        bob.transport.sendto(b"B" * 1100, allocation.relayed.as_tuple())
        assert await asyncio.wait_for(got.get(), 5) == (b"B" * 1100, bob.address)
        sent, received = (link.stats.bytes_sent, link.stats.bytes_received)
        assert sent - before[0] < 1000 and received - before[1] < 1100
        await allocation.release()
        assert not allocation.alive and client.allocations == {}
        bob.transport.sendto(b"after", allocation.relayed.as_tuple())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(got.get(), 0.5)
    finally:
        if bob.transport is not None:
            bob.transport.close()
        endpoint.close()


async def test_sends_of_one_loop_turn_leave_in_one_flush(
    supernode: tuple[Proc, Proc], tmp_path: Path
) -> None:
    endpoint, pc = await home_connection(supernode, tmp_path, tcp=False)
    client = RelayClient(pc)
    _, bob = await asyncio.get_running_loop().create_datagram_endpoint(
        UdpPeer, local_addr=("127.0.0.1", 0)
    )
    try:
        allocation = await client.allocate()
        await allocation.bind(bob.address)
        await asyncio.sleep(0.2)  # the bind's ACK is out: the link is quiet
        before = pc.core.link.stats.datagrams_sent
        for i in range(40):
            allocation.send(b"frame %02d" % i, bob.address)
        # queued on the home connection's core, nothing sent yet
        assert pc.core.link.stats.datagrams_sent == before
        assert allocation.sent == 40
        got = [await asyncio.wait_for(bob.received.get(), 5) for _ in range(40)]
        assert [data for data, _ in got] == [b"frame %02d" % i for i in range(40)]
        # one flush for the turn: the link bundled the 40 small frames
        assert pc.core.link.stats.datagrams_sent - before <= 4
        pc.close()
        allocation.send(b"after close", bob.address)
        assert client.dropped["send:closed"] == 1 and allocation.sent == 40
    finally:
        if bob.transport is not None:
            bob.transport.close()
        endpoint.close()
