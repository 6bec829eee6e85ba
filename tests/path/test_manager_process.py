"""Paths between two logged-in clients, against real supernode processes on loopback.

Each test logs two users in (real login server, real supernodes), starts a
:class:`~hopline.path.manager.PathManager` on each session and has one call
the other: the callee's side comes out of ``accept()``. What is checked is
what the application sees: the kind of path, requests and datagrams in both
directions, and that the same :class:`PeerPath` keeps working when the path
underneath changes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopline.client.race import RaceConfig, Transport
from hopline.client.session import ClientSession, SessionConfig
from hopline.connection import Expectation
from hopline.identity import Role
from hopline.path.checks import CheckConfig
from hopline.path.hosts import interface_addresses
from hopline.path.manager import PathConfig, PathManager
from hopline.path.peer import PeerPath
from hopline.testing.network import FAST_SESSION, LoopbackNet, logged_in, loopback_net, until
from hopline.wire import Address, encode
from hopline.wire.commands import Echo, EchoReply, Forward, Ping, Pong
from hopline.wire.path import PathAnswer, PathOffer

TCP_ONLY = SessionConfig(
    keepalive_s=0.5,
    ping_timeout_s=1.0,
    connect_timeout_s=2.0,
    race=RaceConfig(transports=(Transport.TCP,), alternate_transports=()),
)
FAST_CHECKS = CheckConfig(direct_wait_s=0.5, timeout_s=8.0)
FAST = PathConfig(checks=FAST_CHECKS, keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=5.0)
NAMES = itertools.count(1)
SOURCES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    """A login server and two supernodes, shared by the tests of this module."""
    with loopback_net(tmp_path_factory.mktemp("paths"), supernodes=2) as running:
        yield running


@dataclass
class Side:
    """One logged-in user with a path manager."""

    session: ClientSession
    paths: PathManager
    keeper: asyncio.Task[None]


async def side(net: LoopbackNet, name: str, session: SessionConfig, paths: PathConfig) -> Side:
    """Log ``name`` in, find a home, and start a path manager."""
    bind = f"127.0.0.{10 + next(SOURCES)}"  # the login server throttles per source address
    profile = await logged_in(net.workdir, net.ls, name, bind=bind)
    client = ClientSession(profile, session)
    await client.connect()
    manager = PathManager(client, paths)
    await manager.start()
    keeper = asyncio.get_running_loop().create_task(client.run())
    return Side(client, manager, keeper)


async def stop(*sides: Side) -> None:
    for one in sides:
        one.keeper.cancel()
        await one.paths.close()
        await one.session.close()


@pytest.fixture
async def pair(net: LoopbackNet) -> AsyncIterator[tuple[str, str]]:
    """Fresh usernames for one test."""
    n = next(NAMES)
    yield f"caller{n}", f"callee{n}"


async def call(caller: Side, callee: Side, timeout: float = 15.0) -> tuple[PeerPath, PeerPath]:
    """``caller`` connects to ``callee``; both ends of the path."""
    outgoing = await caller.paths.connect(callee.session.user, timeout=timeout)
    incoming = await asyncio.wait_for(callee.paths.accept(), timeout)
    return outgoing, incoming


async def both_ways(a: PeerPath, b: PeerPath) -> None:
    """Requests and datagrams work in both directions."""
    pong = await a.request(Ping(nonce=7), timeout=5)
    assert isinstance(pong, Pong) and pong.nonce == 7
    echoed = await b.request(Echo(data=b"from the callee"), timeout=5)
    assert isinstance(echoed, EchoReply) and echoed.data == b"from the callee"
    for n in range(3):  # datagrams may be lost: one of a few must arrive
        a.send_datagram(b"a->b %d" % n)
        b.send_datagram(b"b->a %d" % n)
    assert (await b.recv_datagram(5)).startswith(b"a->b")
    assert (await a.recv_datagram(5)).startswith(b"b->a")


async def test_direct_path_both_ways(net: LoopbackNet, pair: tuple[str, str]) -> None:
    caller = await side(net, pair[0], FAST_SESSION, FAST)
    callee = await side(net, pair[1], FAST_SESSION, FAST)
    try:
        outgoing, incoming = await call(caller, callee)
        assert outgoing.kind == "direct" and incoming.kind == "direct"
        assert outgoing.user == callee.session.user and incoming.user == caller.session.user
        ipv6 = any(ip.version == 6 and not ip.is_loopback for ip in await interface_addresses())
        assert outgoing.family == incoming.family == ("ipv6" if ipv6 else "ipv4")  # v6 preferred
        await both_ways(outgoing, incoming)
        described = json.loads(json.dumps(outgoing.describe()))
        assert described["kind"] == "direct" and described["changes"][0]["reason"] == "established"
        assert outgoing.first_packet_ms is not None and outgoing.established_ms is not None
        assert outgoing.first_packet_ms <= outgoing.established_ms
        assert await caller.paths.connect(callee.session.user) is outgoing  # reused
    finally:
        await stop(caller, callee)


async def test_forced_relay_both_ways(net: LoopbackNet, pair: tuple[str, str]) -> None:
    relayed = PathConfig(
        direct=False, checks=FAST_CHECKS, keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=5.0
    )
    caller = await side(net, pair[0], FAST_SESSION, relayed)
    callee = await side(net, pair[1], FAST_SESSION, relayed)
    try:
        outgoing, incoming = await call(caller, callee)
        assert outgoing.kind == "relay" and incoming.kind == "relay"
        await both_ways(outgoing, incoming)
        assert caller.paths.relay_stats()["allocations"] >= 1
        # both sides bound a channel to the peer (the callee once it took the
        # connection), so datagrams travel as channel-data frames both ways
        for one in (caller, callee):
            assert await until(lambda one=one: one.paths.relay_stats()["channels"] >= 1, 5)
    finally:
        await stop(caller, callee)


async def test_udp_blocked_client_gets_a_tcp_relay(net: LoopbackNet, pair: tuple[str, str]) -> None:
    blocked = PathConfig(
        udp=False, checks=FAST_CHECKS, keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=5.0
    )
    caller = await side(net, pair[0], FAST_SESSION, FAST)
    callee = await side(net, pair[1], TCP_ONLY, blocked)
    try:
        assert callee.session.home_transport == "tcp"
        assert callee.session.endpoint.local_address is None  # no UDP socket at all
        outgoing, incoming = await call(caller, callee)
        assert outgoing.kind == "tcp-relay" and incoming.kind == "tcp-relay"
        await both_ways(outgoing, incoming)
    finally:
        await stop(caller, callee)


class Firewall:
    """Real kernel rules (nftables, root only) dropping UDP between two local ports."""

    def __init__(self, ports: tuple[int, int]) -> None:
        self.table = f"hopline_pathtest_{os.getpid()}"
        self.ports = ports

    def __enter__(self) -> Firewall:
        a, b = self.ports
        script = (
            f"add table inet {self.table}\n"
            f"add chain inet {self.table} out {{ type filter hook output priority 0 ; }}\n"
            f"add rule inet {self.table} out udp sport {a} udp dport {b} drop\n"
            f"add rule inet {self.table} out udp sport {b} udp dport {a} drop\n"
        )
        subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)
        return self

    def open(self) -> None:
        command = ["nft", "delete", "table", "inet", self.table]
        subprocess.run(command, check=False, stderr=subprocess.DEVNULL)

    def __exit__(self, *exc: object) -> None:
        self.open()


def needs_nft() -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("blocking the direct path needs root and nftables")


def udp_port(one: Side) -> int:
    local = one.session.endpoint.local_address
    assert local is not None
    return local[1]


async def test_relay_is_upgraded_to_direct(net: LoopbackNet, pair: tuple[str, str]) -> None:
    needs_nft()
    slow = PathConfig(
        checks=CheckConfig(direct_wait_s=0.5, timeout_s=30.0, background_s=0.5),
        keepalive_s=0.5,
        ping_timeout_s=1.0,
        connect_timeout_s=5.0,
    )
    caller = await side(net, pair[0], FAST_SESSION, slow)
    callee = await side(net, pair[1], FAST_SESSION, slow)
    try:
        with Firewall((udp_port(caller), udp_port(callee))) as firewall:
            outgoing, incoming = await call(caller, callee)
            assert outgoing.kind == "relay" and incoming.kind == "relay"
            await both_ways(outgoing, incoming)
            firewall.open()  # the direct path starts working
            assert await until(lambda: outgoing.kind == incoming.kind == "direct", 20)
        assert [c.reason for c in outgoing.changes] == ["established", "upgrade"]
        await both_ways(outgoing, incoming)  # the same objects, now direct
        assert await until(lambda: caller.paths.relay_stats()["allocations"] == 0, 10)
        assert await until(lambda: callee.paths.relay_stats()["allocations"] == 0, 10)
    finally:
        await stop(caller, callee)


async def test_path_is_reestablished_after_the_peer_drops_it(
    net: LoopbackNet, pair: tuple[str, str]
) -> None:
    caller = await side(net, pair[0], FAST_SESSION, FAST)
    callee = await side(net, pair[1], FAST_SESSION, FAST)
    try:
        outgoing, incoming = await call(caller, callee)
        first = outgoing.connection
        assert first is not None and incoming.connection is not None
        incoming.connection.close()  # the callee's side of the connection goes away
        assert await until(lambda: outgoing.live and outgoing.connection is not first, 20)
        assert await until(lambda: incoming.live, 10)
        assert outgoing.changes[-1].reason == "reestablished"
        assert incoming.changes[-1].reason == "reestablished"
        await both_ways(outgoing, incoming)  # the PeerPaths the application holds still work
        assert caller.paths.paths == [outgoing] and callee.paths.paths == [incoming]
    finally:
        await stop(caller, callee)


@pytest.fixture
def own_net(tmp_path: Path) -> Iterator[LoopbackNet]:
    """A network of its own (a supernode of it gets killed)."""
    with loopback_net(tmp_path) as running:
        yield running


async def test_relayed_path_survives_its_supernode_dying(own_net: LoopbackNet) -> None:
    relayed = PathConfig(
        direct=False, checks=FAST_CHECKS, keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=5.0
    )
    caller = await side(own_net, "alice", FAST_SESSION, relayed)
    callee = await side(own_net, "bob", FAST_SESSION, relayed)
    try:
        outgoing, incoming = await call(caller, callee)
        assert outgoing.kind == "relay"
        by_address = {Address.parse(p.ready["listen"]): p for p in own_net.nodes}
        home = caller.session.home_address
        assert home is not None
        by_address[home].kill()  # kill -9 the supernode holding the caller's relay
        assert await until(lambda: caller.session.rehomes >= 1, 20)
        assert await until(lambda: len(outgoing.changes) >= 2 and outgoing.live, 40)
        assert await until(lambda: len(incoming.changes) >= 2 and incoming.live, 20)
        assert outgoing.changes[-1].reason == "reestablished"
        assert outgoing.kind == "relay" and caller.session.home_address != home
        await both_ways(outgoing, incoming)
    finally:
        await stop(caller, callee)


async def test_forged_and_unsolicited_signals_are_dropped(
    net: LoopbackNet, pair: tuple[str, str]
) -> None:
    caller = await side(net, pair[0], FAST_SESSION, FAST)
    callee = await side(net, pair[1], FAST_SESSION, FAST)
    try:
        home = caller.session.home
        assert home is not None
        to = callee.session.user
        unsolicited = PathAnswer(path_id=os.urandom(16), ufrag="x", candidates=())
        forged = PathOffer(
            path_id=os.urandom(16),
            ufrag="y",
            certificate=callee.session.profile.certificate or b"",  # not the sender's
        )
        # the callee must be reached through its own home supernode
        link = home
        if callee.session.home_address != caller.session.home_address:
            assert callee.session.home_address is not None
            link = await caller.session.endpoint.connect(
                callee.session.home_address.as_tuple(), Expectation(role=Role.SUPERNODE)
            )
        for message in (unsolicited, forged):
            link.notify(Forward(payload=encode(message), to_user=to))
        dropped = callee.paths.dropped
        assert await until(lambda: sum(dropped.values()) >= 2, 5)
        assert dropped["signal:unsolicited"] == 1
        assert dropped["offer:certificate:wrong-name"] == 1
        assert callee.paths.attempts == 0  # nothing started, nothing answered
    finally:
        await stop(caller, callee)


async def test_path_is_reestablished_after_the_peer_changes_address(
    net: LoopbackNet, pair: tuple[str, str]
) -> None:
    caller = await side(net, pair[0], FAST_SESSION, FAST)
    callee = await side(net, pair[1], FAST_SESSION, FAST)
    try:
        outgoing, incoming = await call(caller, callee)
        old_port = udp_port(callee)
        endpoint = callee.session.endpoint
        assert endpoint._udp is not None
        endpoint._udp.close()  # a new socket, a new port: as after a NAT rebinding
        await endpoint.open_udp("::", 0, dual=True)
        assert udp_port(callee) != old_port
        assert await until(lambda: len(outgoing.changes) >= 2 and outgoing.live, 40)
        assert await until(lambda: len(incoming.changes) >= 2 and incoming.live, 10)
        assert outgoing.remote is not None and outgoing.remote.port == udp_port(callee)
        await both_ways(outgoing, incoming)
    finally:
        await stop(caller, callee)


async def test_concurrent_connects_share_one_attempt(
    net: LoopbackNet, pair: tuple[str, str]
) -> None:
    # a message, a receipt and a file offer can all want the same path at once, while
    # the peer connects to us: five callers here plus the peer's own attempt would
    # exceed the per-peer attempt limit if each caller ran an attempt of its own
    caller = await side(net, pair[0], FAST_SESSION, FAST)
    callee = await side(net, pair[1], FAST_SESSION, FAST)
    try:
        wanted = [caller.paths.connect(callee.session.user, timeout=15) for _ in range(5)]
        back = callee.paths.connect(caller.session.user, timeout=15)
        *outgoing, reverse = await asyncio.gather(*wanted, back)
        assert all(path is outgoing[0] for path in outgoing)
        assert reverse.live and outgoing[0].live, (reverse.describe(), outgoing[0].describe())
        await both_ways(outgoing[0], reverse)
        assert not caller.paths._connecting and not callee.paths._connecting
    finally:
        await stop(caller, callee)
