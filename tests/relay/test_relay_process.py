"""The relay on a real supernode process: a certified client and plain UDP peers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.client.profile import Profile
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc
from hopline.identity import CertificateVerifier, Role
from hopline.relay import channel_frame, parse_channel_frame
from hopline.runtime.endpoint import Endpoint, PeerConnection, RequestError
from hopline.testing.network import logged_in, scrape_metrics, start_network
from hopline.wire import Address, decode, encode
from hopline.wire.relay import (
    RelayAllocate,
    RelayAllocateReply,
    RelayChannel,
    RelayData,
    RelayPermit,
    RelayRefresh,
    RelayRefreshReply,
    RelayReleased,
    RelaySend,
)

QUIET_S = 0.5  # how long "nothing arrives" is watched for


class UdpPeer(asyncio.DatagramProtocol):
    """A plain UDP socket (no Hopline at all) that records what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    def send(self, data: bytes, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to.as_tuple())

    @property
    def address(self) -> Address:
        assert self.transport is not None
        return Address.of(*self.transport.get_extra_info("sockname")[:2])


async def udp_peer(host: str) -> UdpPeer:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(host, 0))
    peer.transport = transport
    return peer


@pytest.fixture
def supernode(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    """A login server and one supernode."""
    with Cluster(tmp_path / "logs") as cluster:
        ls, nodes = start_network(cluster, tmp_path, supernodes=1)
        yield ls, nodes[0]


async def client(profile: Profile, sn: Proc, tcp: bool = False) -> tuple[Endpoint, PeerConnection]:
    endpoint = Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )
    address = Address.parse(sn.ready["listen"]).as_tuple()
    pc = await endpoint.connect(address, Expectation(role=Role.SUPERNODE), tcp=tcp)
    return endpoint, pc


async def nothing_arrives(queue: asyncio.Queue[object]) -> bool:
    try:
        await asyncio.wait_for(queue.get(), QUIET_S)
    except TimeoutError:
        return True
    return False


async def test_relay_both_ways_only_for_permitted_peers(
    supernode: tuple[Proc, Proc], tmp_path: Path
) -> None:
    ls, sn = supernode
    alice, pc = await client(await logged_in(tmp_path, ls, "alice"), sn)
    bob, stranger = await udp_peer("127.0.0.1"), await udp_peer("127.0.0.2")
    try:
        reply = await pc.request(RelayAllocate())
        assert isinstance(reply, RelayAllocateReply) and 590 <= reply.lifetime <= 600
        relayed, rid = reply.relayed, reply.relay_id
        assert str(relayed.host) == "127.0.0.1" and relayed.port != 0

        bob.send(b"before any permission", relayed)  # dropped: no permission yet
        assert await nothing_arrives(pc.media)  # type: ignore[arg-type]

        await pc.request(RelayPermit(relay_id=rid, peers=(bob.address,)))
        bob.send(b"hello alice", relayed)
        data = decode(await asyncio.wait_for(pc.media.get(), 5))
        assert isinstance(data, RelayData)
        assert (data.relay_id, data.peer, data.data) == (rid, bob.address, b"hello alice")

        pc.send_media(encode(RelaySend(relay_id=rid, peer=bob.address, data=b"hello bob")))
        got, source = await asyncio.wait_for(bob.received.get(), 5)
        assert (got, Address.of(*source)) == (b"hello bob", relayed)

        # a channel: two-byte frames both ways
        await pc.request(RelayChannel(relay_id=rid, channel=0x4000, peer=bob.address))
        bob.send(b"on the channel", relayed)
        frame = await asyncio.wait_for(pc.media.get(), 5)
        assert parse_channel_frame(frame) == (0x4000, b"on the channel")
        pc.send_media(channel_frame(0x4000, b"back on it"))
        assert (await asyncio.wait_for(bob.received.get(), 5))[0] == b"back on it"

        # someone without a permission gets nothing through and nothing back
        for _ in range(5):
            stranger.send(b"x" * 200, relayed)
        pc.send_media(encode(RelaySend(relay_id=rid, peer=stranger.address, data=b"no")))
        assert await nothing_arrives(pc.media)  # type: ignore[arg-type]
        assert await nothing_arrives(stranger.received)  # type: ignore[arg-type]

        await asyncio.sleep(1.2)  # one metrics snapshot
        metrics = scrape_metrics(sn.ready["metrics"])
        assert metrics["hopline_supernode_relay_allocations"] == 1
        assert metrics['hopline_supernode_relay_packets_total{direction="in"}'] == 2
        assert metrics['hopline_supernode_relay_packets_total{direction="out"}'] == 2
        drops = 'hopline_supernode_dropped_total{reason="relay:no-permission"}'
        assert metrics[drops] == 7  # the first, five from the stranger, one to the stranger

        # someone else's allocation does not exist for bob's owner... nor for another user
        carol, carol_pc = await client(await logged_in(tmp_path, ls, "carol"), sn)
        with pytest.raises(RequestError) as caught:
            await carol_pc.request(RelayPermit(relay_id=rid, peers=(bob.address,)))
        assert caught.value.code == 404
        carol.close()

        deleted = await pc.request(RelayRefresh(relay_id=rid, lifetime=0))
        assert isinstance(deleted, RelayRefreshReply) and deleted.lifetime == 0
        bob.send(b"after delete", relayed)
        assert await nothing_arrives(pc.media)  # type: ignore[arg-type]
    finally:
        alice.close()
        for peer in (bob, stranger):
            assert peer.transport is not None
            peer.transport.close()


async def port_closes(probe: socket.socket, within: float = 5.0) -> bool:
    """Whether datagrams to ``probe``'s peer start bouncing (ICMP port unreachable):
    the notice of release may arrive just before the port is closed, so keep trying."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        probe.send(b"still there?")
        try:
            probe.recv(100)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            await asyncio.sleep(0.05)  # still open (silently dropping): let the relay go on
    return False


async def test_allocation_expires_and_its_port_closes(
    supernode: tuple[Proc, Proc], tmp_path: Path
) -> None:
    ls, sn = supernode
    alice, pc = await client(await logged_in(tmp_path, ls, "alice"), sn)
    try:
        reply = await pc.request(RelayAllocate(lifetime=2))
        assert isinstance(reply, RelayAllocateReply) and reply.lifetime <= 2
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(reply.relayed.as_tuple())
        probe.settimeout(QUIET_S)
        probe.send(b"open?")
        with pytest.raises(TimeoutError):  # open, and silent: no permission, no answer
            probe.recv(100)

        released = await asyncio.wait_for(pc.incoming.get(), 10)
        assert isinstance(released, RelayReleased)
        assert (released.relay_id, released.reason) == (reply.relay_id, "expired")
        assert await port_closes(probe), "the relayed port still takes datagrams"
        probe.close()
        with pytest.raises(RequestError) as caught:
            await pc.request(RelayRefresh(relay_id=reply.relay_id))
        assert caught.value.code == 404
    finally:
        alice.close()


async def test_relay_over_tcp_and_quota_per_user(
    supernode: tuple[Proc, Proc], tmp_path: Path
) -> None:
    """A client whose UDP is blocked reaches the relay over TCP; a user holds at most four."""
    ls, sn = supernode
    dave, pc = await client(await logged_in(tmp_path, ls, "dave"), sn, tcp=True)
    bob = await udp_peer("127.0.0.1")
    try:
        replies = [await pc.request(RelayAllocate()) for _ in range(4)]
        with pytest.raises(RequestError) as caught:
            await pc.request(RelayAllocate())
        assert caught.value.code == 429
        first = replies[0]
        assert isinstance(first, RelayAllocateReply)
        await pc.request(RelayPermit(relay_id=first.relay_id, peers=(bob.address,)))
        bob.send(b"over tcp", first.relayed)
        data = decode(await asyncio.wait_for(pc.media.get(), 5))
        assert isinstance(data, RelayData) and data.data == b"over tcp"
        pc.send_media(encode(RelaySend(relay_id=first.relay_id, peer=bob.address, data=b"ok")))
        assert (await asyncio.wait_for(bob.received.get(), 5))[0] == b"ok"

        dave.close()  # the owner's connection goes: its allocations go with it
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(first.relayed.as_tuple())
        probe.settimeout(0.2)
        refused = False
        deadline = time.monotonic() + 5
        while not refused and time.monotonic() < deadline:
            probe.send(b"anyone?")
            try:
                probe.recv(100)
            except ConnectionRefusedError:
                refused = True
            except TimeoutError:
                continue
        probe.close()
        assert refused
    finally:
        dave.close()
        assert bob.transport is not None
        bob.transport.close()
