"""Account calls on a network that blocks UDP: the login-server connection falls back to TCP.

A login server stand-in (an Endpoint with a login-server certificate from a
throwaway authority) listens on real loopback sockets. "UDP blocked" is a
plain UDP socket on the server's port that swallows every datagram, with the
server's TCP listener on the same port.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile
from hopline.connection import Expectation
from hopline.identity import Role
from hopline.runtime.endpoint import ConnectError, Endpoint, PeerConnection
from hopline.testing.pki import TestAuthority
from hopline.wire import Address, Message
from hopline.wire.commands import BootstrapReply, GetBootstrap

SUPERNODE = Address.parse("203.0.113.11:33033")


@dataclass
class FakeLoginServer:
    """Answers GetBootstrap and notes the transport each request came over."""

    endpoint: Endpoint
    port: int
    transports: list[str] = field(default_factory=list)

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        kinds = [kind for (kind, _), conn in self.endpoint.connections.items() if conn is pc]
        self.transports += kinds
        if isinstance(message, GetBootstrap):
            return BootstrapReply(supernodes=(SUPERNODE,))
        return None


@pytest.fixture
def authority() -> TestAuthority:
    return TestAuthority()


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A UDP socket that receives and never answers (a firewall dropping UDP)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def fake_login_server(authority: TestAuthority) -> FakeLoginServer:
    ident = authority.identity(Role.LOGIN_SERVER, "login")
    endpoint = Endpoint(
        static=ident.static,
        certificate=ident.certificate,
        verifier=authority.verifier(),
        accept=Expectation(anonymous_ok=True),
    )
    server = FakeLoginServer(endpoint, 0)
    endpoint.handler = server.handle
    return server


@pytest.fixture
async def udp_blocked_server(
    authority: TestAuthority, black_hole: socket.socket
) -> AsyncIterator[FakeLoginServer]:
    server = fake_login_server(authority)
    server.port = black_hole.getsockname()[1]
    await server.endpoint.open_tcp("127.0.0.1", server.port)
    yield server
    server.endpoint.close()


def profile_for(tmp_path: Path, authority: TestAuthority, port: int) -> Profile:
    profile = Profile.open(tmp_path / "device")
    profile.pin_login_server(Address.parse(f"127.0.0.1:{port}"), authority.public)
    return profile


async def test_udp_blocked_falls_back_to_tcp(
    udp_blocked_server: FakeLoginServer,
    authority: TestAuthority,
    black_hole: socket.socket,
    tmp_path: Path,
) -> None:
    profile = profile_for(tmp_path, authority, udp_blocked_server.port)
    assert await account.bootstrap(profile) == [str(SUPERNODE)]
    assert udp_blocked_server.transports == ["tcp"]
    first = black_hole.recv(2048)  # UDP was tried first and swallowed
    assert len(first) >= 1200  # a padded handshake init


async def test_udp_is_used_when_it_works(authority: TestAuthority, tmp_path: Path) -> None:
    server = fake_login_server(authority)
    _, port = await server.endpoint.listen(Address.parse("127.0.0.1:0"))
    try:
        profile = profile_for(tmp_path, authority, port)
        assert await account.bootstrap(profile) == [str(SUPERNODE)]
        assert server.transports == ["udp"]
        assert not any(kind == "tcp" for kind, _ in server.endpoint.connections)
    finally:
        server.endpoint.close()


async def test_when_both_fail_the_udp_error_is_raised(
    authority: TestAuthority,
    black_hole: socket.socket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(account, "CONNECT_TIMEOUT", 0.5)
    port = black_hole.getsockname()[1]  # UDP swallowed, TCP refused (nothing listens)
    profile = profile_for(tmp_path, authority, port)
    with pytest.raises(ConnectError, match="timeout"):
        await account.bootstrap(profile)
