"""Path signalling messages and the probe key (no network)."""

from __future__ import annotations

import os

from hopline.crypto.noise import DHKeyPair
from hopline.path.candidates import CandidateKind, from_endpoint
from hopline.path.hosts import _parse_ip_json, probe_key
from hopline.wire import Address, decode, encode
from hopline.wire.commands import Endpoint
from hopline.wire.path import PathAnswer, PathCancel, PathCandidates, PathOffer


def test_both_ends_derive_the_same_probe_key_and_nobody_else_does() -> None:
    alice, bob, mallory = DHKeyPair.generate(), DHKeyPair.generate(), DHKeyPair.generate()
    path_id = os.urandom(16)
    key = probe_key(alice, bob.public, path_id)
    assert len(key) == 32
    assert probe_key(bob, alice.public, path_id) == key
    assert probe_key(mallory, bob.public, path_id) != key  # a supernode knows only publics
    assert probe_key(alice, bob.public, os.urandom(16)) != key  # one key per attempt


def test_path_messages_round_trip() -> None:
    relayed = Endpoint(address=Address.parse("203.0.113.5:4000"), transport=1, kind=2)
    home = Endpoint(address=Address.parse("[2001:db8::1]:33033"), kind=5)
    messages = [
        PathOffer(
            path_id=b"\x01" * 16,
            ufrag="abcd",
            candidates=(Endpoint(address=Address.parse("192.0.2.7:5000")), relayed),
            nat_class=4,
            reply_via=home,
            tie_breaker=2**62,
            to_device=b"dev",
            certificate=b"cert",
        ),
        PathAnswer(path_id=b"\x02" * 16, ufrag="efgh", candidates=(), reply_via=home),
        PathCandidates(path_id=b"\x03" * 16, candidates=(relayed,)),
        PathCancel(path_id=b"\x04" * 16, reason="busy"),
    ]
    for message in messages:
        assert decode(encode(message)) == message
    assert messages[0].command_id == 0x0051 and messages[3].command_id == 0x0054


def test_a_relayed_candidate_over_tcp_keeps_its_transport() -> None:
    record = Endpoint(address=Address.parse("203.0.113.5:4000"), transport=1, kind=2)
    candidate = from_endpoint(record)
    assert candidate.kind is CandidateKind.RELAYED


def test_interface_addresses_come_from_ip_json() -> None:
    out = (
        b'[{"addr_info":[{"local":"127.0.0.1"},{"local":"fe80::1"}]},'
        b'{"addr_info":[{"local":"192.0.2.9"},{"local":"2001:db8::9"},{"local":"junk"}]}]'
    )
    assert [str(a) for a in _parse_ip_json(out)] == ["127.0.0.1", "192.0.2.9", "2001:db8::9"]
    assert _parse_ip_json(b"not json") == []
