"""route(): where a forward envelope goes (pure logic)."""

from __future__ import annotations

import dataclasses
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


def device_of(identity: PeerIdentity, device_id: bytes) -> PeerIdentity:
    """The same user's identity on another device (route() reads, not verifies, it)."""
    assert identity.certificate is not None
    body = dataclasses.replace(identity.certificate.body, device_id=device_id)
    return PeerIdentity(identity.static_key, dataclasses.replace(identity.certificate, body=body))


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


def test_to_device_picks_that_device_of_a_user_with_several() -> None:
    phone, laptop = (device_of(peer("bob"), bytes([n]) * 16) for n in (1, 2))
    peers = {("udp", ("127.0.0.1", 3)): phone, ("udp", ("127.0.0.1", 4)): laptop}
    for wanted, key in ((phone, 3), (laptop, 4)):
        assert wanted.certificate is not None
        device = wanted.certificate.body.device_id
        envelope = Forward(payload=b"p", to_user="bob", to_device=device)
        decision = route(envelope, peer("alice"), peers, None)
        assert isinstance(decision, Route) and decision.key == ("udp", ("127.0.0.1", key))
    unknown = Forward(payload=b"p", to_user="bob", to_device=b"\x00" * 16)
    assert route(unknown, peer("alice"), peers, None) == Drop("no-route")


def test_the_newest_connection_of_a_device_wins() -> None:
    """After a network change the device's old connection lingers here until it times
    out; envelopes must go to the one it made from its new address."""
    bob = peer("bob")
    old, new = ("udp", ("127.0.0.1", 5)), ("udp", ("10.0.0.9", 6))
    peers = {old: bob, ("udp", ("127.0.0.1", 1)): peer("alice"), new: bob}
    decision = route(Forward(payload=b"p", to_user="bob"), peer("alice"), peers, None)
    assert isinstance(decision, Route) and decision.key == new
