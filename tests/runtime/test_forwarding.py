"""Forward envelopes delivered through an intermediate node, over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from hopline.connection import Expectation
from hopline.identity import Role
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.testing.pki import TestAuthority
from hopline.wire import Address, decode, encode
from hopline.wire.commands import Echo, Forward


@pytest.fixture
def authority() -> TestAuthority:
    return TestAuthority()


async def relay_and_two_users(
    authority: TestAuthority,
) -> tuple[Endpoint, dict[str, Endpoint], dict[str, PeerConnection]]:
    ident = authority.identity(Role.SUPERNODE, "sn-relay")
    relay = Endpoint(
        static=ident.static,
        certificate=ident.certificate,
        verifier=authority.verifier(),
        accept=Expectation(role=Role.USER),
        forwarding=True,
    )
    address = await relay.open_udp("127.0.0.1", 0)
    users, links = {}, {}
    for name in ("alice", "bob"):
        own = authority.identity(Role.USER, name)
        users[name] = Endpoint(
            static=own.static, certificate=own.certificate, verifier=authority.verifier()
        )
        links[name] = await users[name].connect(address, Expectation(role=Role.SUPERNODE))
    return relay, users, links


async def test_an_envelope_reaches_its_user_with_the_certified_sender(
    authority: TestAuthority,
) -> None:
    relay, users, links = await relay_and_two_users(authority)
    try:
        inner = encode(Echo(data=b"sealed end to end in real use"))
        links["alice"].notify(Forward(payload=inner, to_user="Bob", from_user="mallory"))
        got = await asyncio.wait_for(links["bob"].incoming.get(), 5)
        assert isinstance(got, Forward)
        assert got.from_user == "alice"  # stamped by the relay from alice's certificate
        assert got.hop_limit == 3
        assert decode(got.payload) == Echo(data=b"sealed end to end in real use")
        assert relay.forwarded == 1
    finally:
        for endpoint in (*users.values(), relay):
            endpoint.close()


async def test_undeliverable_envelopes_are_counted(authority: TestAuthority) -> None:
    relay, users, links = await relay_and_two_users(authority)
    try:
        links["alice"].notify(Forward(payload=b"x", to_user="carol"))
        links["alice"].notify(Forward(payload=b"x", to_user="bob", hop_limit=0))
        links["alice"].notify(Forward(payload=b"x", to_address=Address.parse("127.0.0.1:9")))
        for _ in range(50):
            if sum(relay.dropped.values()) >= 3:
                break
            await asyncio.sleep(0.02)
        assert relay.dropped["forward:no-route"] == 2
        assert relay.dropped["forward:hop-limit"] == 1
        assert links["bob"].incoming.empty()
    finally:
        for endpoint in (*users.values(), relay):
            endpoint.close()
