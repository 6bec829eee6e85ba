"""Secure connections over real loopback sockets (UDP and TCP, IPv4 and IPv6)."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable

import pytest

from hopline.connection import Connection, Expectation
from hopline.crypto.noise import DHKeyPair
from hopline.identity import Role
from hopline.runtime.endpoint import (
    ConnectError,
    Endpoint,
    PeerConnection,
    RequestError,
    ServiceError,
)
from hopline.testing.pki import TestAuthority
from hopline.wire import Address, ErrorCode, Message
from hopline.wire.commands import Echo, EchoReply, Ping, Pong


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def echo_handler(pc: PeerConnection, message: Message) -> Message | None:
    if isinstance(message, Echo) and message.data == b"13":
        raise ServiceError(ErrorCode.FORBIDDEN, "unlucky data")
    if isinstance(message, Echo):
        return EchoReply(data=message.data)
    return None


@pytest.fixture
def authority() -> TestAuthority:
    return TestAuthority()


async def start_server(
    authority: TestAuthority, host: str, tcp: bool = False
) -> tuple[Endpoint, tuple[str, int]]:
    ident = authority.identity(Role.SUPERNODE, "sn-1")
    server = Endpoint(
        static=ident.static,
        certificate=ident.certificate,
        verifier=authority.verifier(),
        accept=Expectation(role=Role.USER),
        handler=echo_handler,
    )
    address = await server.open_udp(host, 0)
    if tcp:
        await server.open_tcp(host, address[1])
    return server, address


def client_endpoint(authority: TestAuthority, name: str = "alice") -> Endpoint:
    ident = authority.identity(Role.USER, name)
    return Endpoint(
        static=ident.static, certificate=ident.certificate, verifier=authority.verifier()
    )


@pytest.mark.parametrize(
    ("host", "tcp"),
    [("127.0.0.1", False), ("127.0.0.1", True), ("::1", False), ("::1", True)],
)
async def test_requests_over_udp_and_tcp(authority: TestAuthority, host: str, tcp: bool) -> None:
    if ":" in host and not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    server, address = await start_server(authority, host, tcp=tcp)
    client = client_endpoint(authority)
    try:
        pc = await client.connect(address, Expectation(role=Role.SUPERNODE), tcp=tcp)
        assert pc.peer is not None and pc.peer.name == "sn-1"
        replies = await asyncio.gather(
            *(pc.request(Echo(data=bytes([i]) * 3000)) for i in range(50))
        )
        assert [r.data for r in replies] == [bytes([i]) * 3000 for i in range(50)]  # type: ignore[attr-defined]
        with pytest.raises(RequestError) as caught:
            await pc.request(Echo(data=b"13"))
        assert caught.value.code == ErrorCode.FORBIDDEN
        pong = await pc.request(Ping(nonce=77))  # answered by the endpoint itself
        assert isinstance(pong, Pong) and pong.nonce == 77
        assert pong.observed is not None
        if not tcp:  # over UDP the server sees our UDP socket's port
            assert client.local_address is not None
            assert pong.observed.port == client.local_address[1]
        server_side = next(iter(server.connections.values()))
        assert server_side.peer is not None and server_side.peer.name == "alice"
    finally:
        client.close()
        server.close()


async def test_client_refuses_server_with_unexpected_name(authority: TestAuthority) -> None:
    server, address = await start_server(authority, "127.0.0.1")
    client = client_endpoint(authority)
    try:
        with pytest.raises(ConnectError, match="wrong-name"):
            await client.connect(address, Expectation(role=Role.SUPERNODE, subject="sn-9"))
    finally:
        client.close()
        server.close()


async def test_server_refuses_client_certified_by_another_authority(
    authority: TestAuthority,
) -> None:
    server, address = await start_server(authority, "127.0.0.1")
    other = TestAuthority()
    ident = other.identity(Role.USER, "mallory")
    client = Endpoint(
        static=ident.static, certificate=ident.certificate, verifier=authority.verifier()
    )
    try:
        pc = await client.connect(address, Expectation(role=Role.SUPERNODE), timeout=3)
        # the client accepts the server; the server refuses the client and never answers
        with pytest.raises(Exception):  # noqa: B017 -- timeout or lost connection
            await pc.request(Ping(nonce=1), timeout=1.5)
        await asyncio.sleep(0.1)
        assert not any(c.core.established for c in server.connections.values())
    finally:
        client.close()
        server.close()


async def test_garbage_datagrams_are_counted_not_fatal(authority: TestAuthority) -> None:
    server, address = await start_server(authority, "127.0.0.1")
    client = client_endpoint(authority)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        junk = [
            b"\x00" * 20,  # not a handshake: unknown peer
            bytes(range(256)) * 4,  # same
            b"\xe1" * 50,  # below the anti-amplification size: not an init at all
            b"\xe1" + b"\x01" * 1300,  # an init whose Noise message carries a payload
        ]
        for payload in junk:
            raw.sendto(payload, address)
        pc = await client.connect(address, Expectation(role=Role.SUPERNODE))
        pong = await pc.request(Ping(nonce=5))
        assert isinstance(pong, Pong) and pong.nonce == 5
        assert server.dropped["unknown-peer"] == 3
        assert server.dropped["init:handshake-framing"] == 1
        assert len(server.connections) == 1  # only the real client got state
    finally:
        raw.close()
        client.close()
        server.close()


async def test_a_spoofed_init_does_not_displace_a_live_session(authority: TestAuthority) -> None:
    server, address = await start_server(authority, "127.0.0.1")
    client = client_endpoint(authority)
    try:
        pc = await client.connect(address, Expectation(role=Role.SUPERNODE))
        assert client.local_address is not None
        # someone sends a fresh init "from" the client's address (here: really from it)
        init = Connection(
            initiator=True,
            static=DHKeyPair.generate(),
            certificate=None,
            verifier=None,
            expect=Expectation(),
            now=time.time(),
        ).datagrams_to_send(time.time())[0]
        server.udp_received(init, ("127.0.0.1", client.local_address[1]))
        # the live session keeps working while that handshake goes nowhere
        for nonce in range(5):
            pong = await pc.request(Ping(nonce=nonce))
            assert isinstance(pong, Pong) and pong.nonce == nonce
        assert len(server.connections) == 1
    finally:
        client.close()
        server.close()


async def test_a_restarted_client_replaces_its_old_session(authority: TestAuthority) -> None:
    server, address = await start_server(authority, "127.0.0.1")
    ident = authority.identity(Role.USER, "alice")
    first = Endpoint(
        static=ident.static, certificate=ident.certificate, verifier=authority.verifier()
    )
    await first.open_udp("127.0.0.1", 0)
    assert first.local_address is not None
    port = first.local_address[1]
    try:
        await first.connect(address, Expectation(role=Role.SUPERNODE))
        first.close()
        await asyncio.sleep(0.05)  # let the socket close before reusing its port
        second = Endpoint(
            static=ident.static, certificate=ident.certificate, verifier=authority.verifier()
        )
        await second.open_udp("127.0.0.1", port)  # same address, fresh session
        pc = await second.connect(address, Expectation(role=Role.SUPERNODE))
        pong = await pc.request(Ping(nonce=1))
        assert isinstance(pong, Pong)
        await asyncio.sleep(0.05)
        assert len(server.connections) == 1
        second.close()
    finally:
        server.close()


async def test_simultaneous_open_yields_one_connection_each_way(authority: TestAuthority) -> None:
    nodes = []
    for name in ("sn-a", "sn-b"):
        ident = authority.identity(Role.SUPERNODE, name)
        node = Endpoint(
            static=ident.static,
            certificate=ident.certificate,
            verifier=authority.verifier(),
            accept=Expectation(role=Role.SUPERNODE),
            handler=echo_handler,
        )
        await node.open_udp("127.0.0.1", 0)
        nodes.append(node)
    a, b = nodes
    assert a.local_address is not None and b.local_address is not None
    try:
        started = time.monotonic()
        to_b, to_a = await asyncio.gather(
            a.connect(b.local_address, Expectation(role=Role.SUPERNODE, subject="sn-b")),
            b.connect(a.local_address, Expectation(role=Role.SUPERNODE, subject="sn-a")),
        )
        assert time.monotonic() - started < 3
        assert to_b.peer is not None and to_b.peer.name == "sn-b"
        assert to_a.peer is not None and to_a.peer.name == "sn-a"
        reply = await to_b.request(Echo(data=b"x"))
        assert isinstance(reply, EchoReply)
        assert len(a.connections) == 1 and len(b.connections) == 1
    finally:
        a.close()
        b.close()


async def test_datagrams_of_one_loop_turn_are_serviced_once(authority: TestAuthority) -> None:
    """Cores take each datagram at once; the connection is serviced once per loop turn."""
    got: list[bytes] = []
    server, address = await start_server(authority, "127.0.0.1")
    server.datagram_handler = lambda _pc, data: got.append(data)
    client = client_endpoint(authority)
    try:
        pc = await client.connect(address, Expectation(role=Role.SUPERNODE))
        assert await _until(lambda: len(server.connections) == 1)
        server_pc = next(iter(server.connections.values()))
        services = 0
        service = server_pc.service

        def counting() -> None:
            nonlocal services
            services += 1
            service()

        server_pc.service = counting  # type: ignore[method-assign]
        now = time.time()
        for i in range(10):
            pc.core.send_media(bytes([i]) * 1000, now)  # one datagram each
        datagrams = pc.core.datagrams_to_send(now)  # taken here, not sent on the socket
        assert len(datagrams) == 10
        for datagram in datagrams:  # as if one socket read brought them all
            server.udp_received(datagram, server_pc.address)
        assert got == [] and services == 0  # taken by the core, not yet handed out
        await asyncio.sleep(0)
        assert got == [bytes([i]) * 1000 for i in range(10)]
        assert services == 1
    finally:
        client.close()
        server.close()


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_port_0_listen_tries_another_port_when_tcp_has_the_one_udp_got(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = Endpoint(static=DHKeyPair.generate(), certificate=None, verifier=None)
    real_open_tcp = endpoint.open_tcp
    refused: list[int] = []

    async def open_tcp(host: str, port: int) -> tuple[str, int]:
        if not refused:  # the first port the kernel gave UDP is taken on TCP
            refused.append(port)
            raise OSError(errno.EADDRINUSE, "address already in use")
        return await real_open_tcp(host, port)

    monkeypatch.setattr(endpoint, "open_tcp", open_tcp)
    try:
        bound = await endpoint.listen(Address.parse("127.0.0.1:0"))
        assert refused and bound[1] != refused[0]
        assert endpoint.local_address == bound
    finally:
        endpoint.close()


async def test_a_fixed_port_taken_on_tcp_is_an_error() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    endpoint = Endpoint(static=DHKeyPair.generate(), certificate=None, verifier=None)
    try:
        with pytest.raises(OSError) as caught:
            await endpoint.listen(Address.of("127.0.0.1", taken.getsockname()[1]))
        assert caught.value.errno == errno.EADDRINUSE
    finally:
        endpoint.close()
        taken.close()
