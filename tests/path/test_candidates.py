"""Candidate gathering, priorities and the signalling form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.path.candidates import (
    Candidate,
    CandidateError,
    CandidateKind,
    candidate_priority,
    from_endpoint,
    gather,
    pair_priority,
    to_endpoint,
)
from hopline.wire.codec import decode, encode
from hopline.wire.commands import Endpoint
from hopline.wire.path import PathOffer
from hopline.wire.types import Address

V4 = Address.of("192.168.1.10", 5000)
V6 = Address.of("2001:db8::10", 5000)
SRFLX = Address.of("203.0.113.7", 40001)
RELAY = Address.of("198.51.100.9", 50000)


def test_kinds_rank_host_prflx_srflx_predicted_relayed_tcp_relayed() -> None:
    ranks = [
        candidate_priority(CandidateKind.HOST, V4, "udp"),
        candidate_priority(CandidateKind.PRFLX, V4, "udp"),
        candidate_priority(CandidateKind.SRFLX, V4, "udp"),
        candidate_priority(CandidateKind.PREDICTED, V4, "udp"),
        candidate_priority(CandidateKind.RELAYED, RELAY, "relay:1"),
        candidate_priority(CandidateKind.RELAYED, RELAY, "tcp-relay:1"),
    ]
    assert ranks == sorted(ranks, reverse=True)
    assert len(set(ranks)) == len(ranks)


@pytest.mark.parametrize(
    "kind",
    [CandidateKind.HOST, CandidateKind.PRFLX, CandidateKind.SRFLX, CandidateKind.PREDICTED],
)
def test_ipv6_beats_ipv4_within_a_direct_kind(kind: CandidateKind) -> None:
    assert candidate_priority(kind, V6, "udp") > candidate_priority(kind, V4, "udp")


def test_ipv6_never_lifts_a_kind_above_the_next_better_kind() -> None:
    assert candidate_priority(CandidateKind.SRFLX, V6, "udp") < candidate_priority(
        CandidateKind.PRFLX, V4, "udp"
    )
    assert candidate_priority(CandidateKind.RELAYED, V6, "relay:1") < candidate_priority(
        CandidateKind.PREDICTED, V4, "udp"
    )


def test_priorities_fit_in_32_bits_and_follow_rfc_8445_layout() -> None:
    p = candidate_priority(CandidateKind.HOST, V6, "udp")
    assert p < 2**32
    assert p >> 24 == 126
    assert p & 0xFF == 255  # component 1


def test_gather_skips_loopback_and_link_local_when_something_else_exists() -> None:
    hosts = [Address.of("127.0.0.1", 5000), Address.of("fe80::1", 5000), V4, V6]
    found = gather(hosts, None)
    assert [c.address for c in found] == [V6, V4]
    assert all(c.kind is CandidateKind.HOST and c.base == "udp" for c in found)


def test_gather_keeps_loopback_when_it_is_all_there_is() -> None:
    lo = Address.of("127.0.0.1", 5000)
    found = gather([lo], None)
    assert [(c.address, c.kind) for c in found] == [(lo, CandidateKind.HOST)]


def test_gather_drops_srflx_equal_to_a_host_address() -> None:
    public = Address.of("203.0.113.7", 5000)
    found = gather([public], public)
    assert [c.kind for c in found] == [CandidateKind.HOST]


def test_gather_orders_by_priority_and_adds_relays() -> None:
    found = gather(
        [V4], SRFLX, [(RELAY, "relay:3"), (Address.of("198.51.100.9", 50001), "tcp-relay:4")]
    )
    assert [c.kind for c in found] == [
        CandidateKind.HOST,
        CandidateKind.SRFLX,
        CandidateKind.RELAYED,
        CandidateKind.RELAYED,
    ]
    assert [c.base for c in found] == ["udp", "udp", "relay:3", "tcp-relay:4"]
    assert [c.priority for c in found] == sorted((c.priority for c in found), reverse=True)
    for c in found:
        assert c.priority == candidate_priority(c.kind, c.address, c.base)
        assert c.foundation


def test_port_preserving_nat_predicts_public_ip_with_host_port() -> None:
    found = gather([V4], SRFLX, port_preserving=True)
    predicted = [c for c in found if c.kind is CandidateKind.PREDICTED]
    assert [c.address for c in predicted] == [Address(SRFLX.host, V4.port)]


def test_port_preserving_prediction_equal_to_srflx_is_a_duplicate() -> None:
    srflx = Address(SRFLX.host, V4.port)
    found = gather([V4], srflx, port_preserving=True)
    assert [c.kind for c in found] == [CandidateKind.HOST, CandidateKind.SRFLX]


def test_sequential_nat_predicts_the_next_ports() -> None:
    found = gather([V4], SRFLX, sequential=True, predict=3)
    predicted = [c.address.port for c in found if c.kind is CandidateKind.PREDICTED]
    assert sorted(predicted) == [40002, 40003, 40004]


def test_sequential_prediction_stops_at_the_last_port() -> None:
    found = gather([V4], Address(SRFLX.host, 65534), sequential=True, predict=5)
    assert [c.address.port for c in found if c.kind is CandidateKind.PREDICTED] == [65535]


def test_no_prediction_without_a_server_reflexive_address() -> None:
    found = gather([V4], None, port_preserving=True, sequential=True, predict=4)
    assert [c.kind for c in found] == [CandidateKind.HOST]


def test_duplicates_keep_the_best_kind() -> None:
    found = gather([V4, V4], SRFLX, [(SRFLX, "relay:1")], sequential=True, predict=0)
    assert [(c.address, c.kind) for c in found] == [
        (V4, CandidateKind.HOST),
        (SRFLX, CandidateKind.SRFLX),
    ]


def _cand(priority: int) -> Candidate:
    return Candidate(V4, CandidateKind.HOST, "udp", priority)


def test_pair_priority_is_the_rfc_8445_formula() -> None:
    g, d = _cand(7), _cand(5)
    assert pair_priority(g, d) == (5 << 32) + 2 * 7 + 1
    assert pair_priority(d, g) == (5 << 32) + 2 * 7


@given(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1))
def test_pair_priority_orders_by_the_weaker_candidate_first(a: int, b: int, c: int) -> None:
    if min(a, b) > min(a, c):
        assert pair_priority(_cand(a), _cand(b)) > pair_priority(_cand(a), _cand(c))


@pytest.mark.parametrize("kind", list(CandidateKind))
def test_endpoint_round_trip_keeps_address_kind_and_rank(kind: CandidateKind) -> None:
    base = "relay:2" if kind is CandidateKind.RELAYED else "udp"
    local = Candidate(SRFLX, kind, base, candidate_priority(kind, SRFLX, base))
    endpoint = to_endpoint(local)
    assert (endpoint.address, endpoint.kind, endpoint.transport) == (SRFLX, int(kind), 0)
    remote = from_endpoint(endpoint)
    assert (remote.address, remote.kind, remote.base) == (SRFLX, kind, "remote")
    assert remote.priority == local.priority


def test_tcp_relay_travels_as_transport_1_and_keeps_its_low_rank() -> None:
    local = gather([V4], None, [(RELAY, "tcp-relay:9")])[-1]
    endpoint = to_endpoint(local)
    assert endpoint.transport == 1
    remote = from_endpoint(endpoint)
    assert remote.priority == local.priority
    assert remote.priority < candidate_priority(CandidateKind.RELAYED, RELAY, "relay:1")


def test_candidates_survive_the_wire_in_a_path_offer() -> None:
    found = gather([V4, V6], SRFLX, [(RELAY, "relay:1")])
    offer = PathOffer(
        path_id=b"p" * 16,
        ufrag="abcd",
        candidates=tuple(to_endpoint(c) for c in found),
    )
    back = decode(encode(offer))
    assert isinstance(back, PathOffer)
    remote = [from_endpoint(e) for e in back.candidates]
    assert [(c.address, c.kind, c.priority) for c in remote] == [
        (c.address, c.kind, c.priority) for c in found
    ]


@pytest.mark.parametrize(("kind", "transport"), [(5, 0), (99, 0), (0, 2)])
def test_unknown_endpoint_kind_or_transport_is_a_candidate_error(kind: int, transport: int) -> None:
    with pytest.raises(CandidateError):
        from_endpoint(Endpoint(address=V4, kind=kind, transport=transport))
