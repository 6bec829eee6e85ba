"""route(): where a forward envelope goes (pure logic)."""

from __future__ import annotations

import time

from hopline.connection.events import PeerIdentity
from hopline.connection.forwarding import Drop, Route, route
from hopline.identity import Role
from hopline.testing.pki import TestAuthority
from hopline.wire.commands import Forward

CA = TestAuthority()


def peer(name: str, role: Role = Role.USER) -> PeerIdentity:
    ident = CA.identity(role, name)
    cert = CA.verifier().verify(ident.certificate, time.time())
    return PeerIdentity(ident.static.public, cert)


PEERS = {("udp", ("127.0.0.1", 1)): peer("alice"), ("udp", ("127.0.0.1", 2)): peer("bob")}


def test_anonymous_senders_cannot_forward() -> None:
    anonymous = PeerIdentity(b"\x01" * 32, None)
    assert route(Forward(payload=b"", to_user="bob"), anonymous, PEERS, "sn-1") == Drop("anonymous")


def test_envelope_for_this_node_is_local() -> None:
    assert route(Forward(payload=b"", to_node=b"sn-1"), peer("alice"), PEERS, "sn-1") == Drop(
        "local"
    )
    assert route(Forward(payload=b""), peer("alice"), PEERS, "sn-1") == Drop("local")


def test_route_by_name_stamps_the_sender() -> None:
    decision = route(
        Forward(payload=b"p", to_user="BOB", from_user="eve"), peer("alice"), PEERS, None
    )
    assert isinstance(decision, Route)
    assert decision.key == ("udp", ("127.0.0.1", 2))
    assert decision.envelope.from_user == "alice" and decision.envelope.hop_limit == 3
