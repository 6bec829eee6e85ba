"""Two PathCheckers back to back through simulated NATs, relays and a simulated clock."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.nat.stun import MessageClass, decode
from hopline.path.candidates import CandidateKind
from hopline.path.checks import ChecksFailed, PairSucceeded, PathSelected
from hopline.testing.fakenat import Behaviour, FakeNat, PortMode
from hopline.wire.types import Address

from .fakenet import FakeNet, Peer, connect, signalled

EI = Behaviour.ENDPOINT_INDEPENDENT
APD = Behaviour.ADDRESS_AND_PORT_DEPENDENT
_seeds = itertools.count(1)


def make_peer(name: str, nat: str, index: int) -> Peer:
    """A peer behind ``nat``: none, full-cone, port-restricted, symmetric or blocked."""
    public_ip = f"203.0.113.{10 + index}"
    relay = Address.of(f"198.51.100.{10 + index}", 50000 + index)
    private = Address.of("192.168.1.10", 5000)
    if nat == "none":
        return Peer(name, Address.of(public_ip, 5000), relay=relay)
    if nat == "blocked":
        return Peer(name, private, relay=relay, relay_base="tcp-relay:1", blocked=True)
    behaviours = {
        "full-cone": (EI, EI, PortMode.PRESERVE),
        "port-restricted": (EI, APD, PortMode.PRESERVE),
        "symmetric": (APD, APD, PortMode.RANDOM),
    }
    mapping, filtering, ports = behaviours[nat]
    box = FakeNat(mapping, filtering, public_ip, ports, seed=next(_seeds))
    return Peer(name, private, nat=box, relay=relay)


OPEN = {"none", "full-cone"}


def expect_direct(a: str, b: str) -> bool:
    """Direct when both map endpoint-independently or either side accepts anyone."""
    if "blocked" in (a, b):
        return False
    if a in OPEN or b in OPEN:
        return True
    return a == b == "port-restricted"


KINDS = ["none", "full-cone", "port-restricted", "symmetric", "blocked"]
MATRIX = [(a, b) for a in KINDS for b in KINDS]


def last_selection(peer: Peer) -> PathSelected:
    assert peer.selections, f"{peer.name} selected nothing: {peer.events}"
    return peer.selections[-1]


def assert_agree(a: Peer, b: Peer) -> None:
    """Both sides selected the same path, seen from either end."""
    sa, sb = last_selection(a), last_selection(b)
    assert sa.direct == sb.direct
    assert sa.local.address == sb.remote.address
    assert sb.local.address == sa.remote.address
    assert sa.local.base == a.checker.selected_base  # type: ignore[union-attr]


@pytest.mark.parametrize(("nat_a", "nat_b"), MATRIX, ids=[f"{a}-{b}" for a, b in MATRIX])
def test_selected_pair_kind_for_each_nat_combination(nat_a: str, nat_b: str) -> None:
    a, b = make_peer("a", nat_a, 1), make_peer("b", nat_b, 2)
    net = connect(a, b)
    net.run(until=12.0)
    assert_agree(a, b)
    sa = last_selection(a)
    assert sa.direct is expect_direct(nat_a, nat_b)
    if not sa.direct:
        # a relayed path is never selected before direct pairs had their chance
        assert sa.at >= 2.0
        assert CandidateKind.RELAYED in (sa.local.kind, sa.remote.kind)
    else:
        assert sa.local.base == "udp"
        assert sa.remote.kind is not CandidateKind.RELAYED
    assert not any(isinstance(e, ChecksFailed) for e in a.events + b.events)
    assert a.checker is not None and b.checker is not None
    assert not a.checker.dropped and not b.checker.dropped


def test_relay_over_tcp_ranks_last_when_udp_is_blocked() -> None:
    a, b = make_peer("a", "blocked", 1), make_peer("b", "port-restricted", 2)
    net = connect(a, b)
    net.run(until=12.0)
    sa = last_selection(a)
    assert sa.local.base == "tcp-relay:1"
    assert not sa.direct


def test_symmetric_peer_is_learned_as_peer_reflexive() -> None:
    a, b = make_peer("a", "full-cone", 1), make_peer("b", "symmetric", 2)
    net = connect(a, b)
    net.run(until=5.0)
    sa, sb = last_selection(a), last_selection(b)
    assert sa.direct
    # a reaches b at the port b's NAT opened towards a, which b never signalled
    assert sa.remote.kind is CandidateKind.PRFLX
    assert sa.remote.address not in {c.address for c in b.candidates()}
    # b learns how a's NAT-less... full-cone side sees it: the server-reflexive one
    assert sb.remote.kind is CandidateKind.SRFLX
    # b's own mapping towards a is a local peer-reflexive candidate
    assert sb.local.kind is CandidateKind.PRFLX
    assert sb.local.address == sa.remote.address


def test_ipv6_pair_is_preferred_and_direct_between_symmetric_nats() -> None:
    a, b = make_peer("a", "symmetric", 1), make_peer("b", "symmetric", 2)
    a.v6 = Address.of("2001:db8:1::10", 6000)
    b.v6 = Address.of("2001:db8:2::10", 6000)
    net = connect(a, b)
    net.run(until=5.0)
    assert_agree(a, b)
    sa = last_selection(a)
    assert sa.direct
    assert sa.local.address == a.v6 and sa.remote.address == b.v6
    assert sa.local.kind is CandidateKind.HOST


def test_ipv6_beats_ipv4_when_both_work() -> None:
    a, b = make_peer("a", "none", 1), make_peer("b", "none", 2)
    a.v6 = Address.of("2001:db8:1::10", 6000)
    b.v6 = Address.of("2001:db8:2::10", 6000)
    net = connect(a, b)
    net.run(until=5.0)
    assert last_selection(a).remote.address == b.v6
    assert last_selection(b).remote.address == a.v6


def test_upgrade_from_relay_to_direct_when_a_candidate_arrives_late() -> None:
    a, b = make_peer("a", "port-restricted", 1), make_peer("b", "port-restricted", 2)
    b_relayed_only = [c for c in b.candidates() if c.kind is CandidateKind.RELAYED]
    net = connect(a, b, a_remote=b_relayed_only)
    net.run(until=4.0)
    first = last_selection(a)
    assert not first.direct
    assert not last_selection(b).direct
    b_srflx = [c for c in b.candidates() if c.kind is CandidateKind.SRFLX]
    assert a.checker is not None
    a.checker.add_remote(signalled(b_srflx), net.now)
    net.run(until=8.0)
    assert [s.direct for s in a.selections] == [False, True]
    assert [s.direct for s in b.selections] == [False, True]
    assert_agree(a, b)
    assert last_selection(a).remote.address == b_srflx[0].address


def test_upgrade_when_a_relay_selected_pair_meets_a_late_direct_path() -> None:
    """Both sides start with only relayed candidates and trickle their srflx later."""
    a, b = make_peer("a", "full-cone", 1), make_peer("b", "port-restricted", 2)
    a_all, b_all = a.candidates(), b.candidates()
    relayed = CandidateKind.RELAYED
    net = connect(
        a,
        b,
        a_remote=[c for c in b_all if c.kind is relayed],
        b_remote=[c for c in a_all if c.kind is relayed],
    )
    net.run(until=3.0)
    assert not last_selection(a).direct
    assert a.checker is not None and b.checker is not None
    b.checker.add_remote(signalled([c for c in a_all if c.kind is not relayed]), net.now)
    net.run(until=7.0)
    assert last_selection(a).direct and last_selection(b).direct
    assert_agree(a, b)


def test_relay_learned_late_replaces_its_peer_reflexive_entry() -> None:
    """A check from the peer's relay that arrives before its signalling is a prflx at first."""
    a, b = make_peer("a", "symmetric", 1), make_peer("b", "symmetric", 2)
    b_all = b.candidates()
    net = connect(a, b, a_remote=[])
    net.run(until=1.0)
    assert a.checker is not None
    assert b.relay is not None
    assert ("relay:1", b.relay) in a.checker.pair_states()
    assert a.checker.remote_candidates[b.relay].kind is CandidateKind.PRFLX
    a.checker.add_remote(signalled(b_all), net.now)
    assert a.checker.remote_candidates[b.relay].kind is CandidateKind.RELAYED
    net.run(until=12.0)
    sa = last_selection(a)
    assert not sa.direct
    assert_agree(a, b)


def test_no_path_fails_after_timeout() -> None:
    a, b = make_peer("a", "symmetric", 1), make_peer("b", "symmetric", 2)
    a.relay = b.relay = None
    net = connect(a, b, timeout_s=6.0)
    net.run(until=20.0)
    for peer in (a, b):
        failures = [e for e in peer.events if isinstance(e, ChecksFailed)]
        assert len(failures) == 1
        assert failures[0].at == pytest.approx(6.0)
        assert not peer.selections
        assert peer.checker is not None and peer.checker.get_timer() is None


def test_pair_succeeded_events_carry_the_seen_address() -> None:
    a, b = make_peer("a", "port-restricted", 1), make_peer("b", "full-cone", 2)
    net = connect(a, b)
    net.run(until=3.0)
    successes = [e for e in a.events if isinstance(e, PairSucceeded)]
    assert successes
    assert all(e.rtt > 0 for e in successes)
    direct = [e for e in successes if e.local.base == "udp"]
    assert direct and direct[0].local.kind is CandidateKind.SRFLX


def test_keepalives_flow_on_the_selected_pair() -> None:
    a, b = make_peer("a", "port-restricted", 1), make_peer("b", "port-restricted", 2)
    net = connect(a, b)
    net.run(until=60.0)
    sa = last_selection(a)
    late = [
        (t, name, base, dest, data)
        for t, name, base, dest, data in net.sent
        if t > sa.at + 10.0 and decode(data).message_class is MessageClass.REQUEST
    ]
    from_a = [x for x in late if x[1] == "a"]
    from_b = [x for x in late if x[1] == "b"]
    assert from_a and from_b
    assert {x[3] for x in from_a} == {sa.remote.address}
    # the controlling side's keep-alives repeat the nomination
    assert all(decode(x[4]).use_candidate for x in from_a)
    assert not any(decode(x[4]).use_candidate for x in from_b)
    assert 3 <= len(from_a) <= 5  # one per 15 s of simulated time over ~50 s
    assert len(a.selections) == len(b.selections) == 1


def test_direct_selection_stops_the_checks() -> None:
    a, b = make_peer("a", "full-cone", 1), make_peer("b", "port-restricted", 2)
    net = connect(a, b, keepalive_s=1000.0)
    net.run(until=3.0)
    assert last_selection(a).direct
    sent_before = len(net.sent)
    net.run(until=30.0)
    assert len(net.sent) == sent_before


def test_both_sides_agree_over_many_seeds() -> None:
    kinds = ["full-cone", "port-restricted", "symmetric", "none"]
    for a_kind, b_kind in itertools.product(kinds, kinds):
        for _ in range(3):
            a, b = make_peer("a", a_kind, 1), make_peer("b", b_kind, 2)
            net = connect(a, b)
            net.run(until=12.0)
            assert_agree(a, b)


def test_fakenet_is_deterministic_apart_from_transaction_ids() -> None:
    def run() -> list[tuple[float, str, str, Address]]:
        a = Peer("a", Address.of("203.0.113.1", 5000))
        b = Peer("b", Address.of("203.0.113.2", 5000))
        net = connect(a, b)
        net.run(until=3.0)
        return [(t, n, base, dest) for t, n, base, dest, _ in net.sent]

    assert run() == run()


def test_a_lone_net_has_nothing_to_do() -> None:
    a = Peer("a", Address.of("203.0.113.1", 5000))
    b = Peer("b", Address.of("203.0.113.2", 5000))
    net = connect(a, b, a_remote=[], b_remote=[], timeout_s=1.0)
    net.run(until=2.0)
    assert isinstance(a.events[-1], ChecksFailed)
    assert not net.sent
    assert isinstance(net, FakeNet)


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize(
    ("nat_a", "nat_b"),
    [
        ("port-restricted", "port-restricted"),
        ("symmetric", "full-cone"),
        ("symmetric", "symmetric"),
    ],
)
def test_lossy_network_still_agrees_on_the_expected_path(nat_a: str, nat_b: str, seed: int) -> None:
    a, b = make_peer("a", nat_a, 1), make_peer("b", nat_b, 2)
    net = connect(a, b, loss=0.25, seed=seed)
    net.run(until=12.0)
    assert net.lost > 0
    assert_agree(a, b)
    assert last_selection(a).direct is expect_direct(nat_a, nat_b)


@pytest.mark.parametrize(("nat_a", "nat_b"), MATRIX, ids=[f"{a}-{b}" for a, b in MATRIX])
def test_callee_starting_late_changes_nothing_but_timing(nat_a: str, nat_b: str) -> None:
    """The callee starts when the offer reaches it; the caller's early checks are lost."""
    a, b = make_peer("a", nat_a, 1), make_peer("b", nat_b, 2)
    net = connect(a, b, b_start=0.4)
    net.run(until=12.0)
    assert_agree(a, b)
    assert last_selection(a).direct is expect_direct(nat_a, nat_b)


@given(
    st.sampled_from(KINDS),
    st.sampled_from(KINDS),
    st.floats(0.0, 0.2),
    st.integers(0, 2**16),
    st.floats(0.0, 1.0),
)
@settings(max_examples=60, deadline=None)
def test_any_nats_loss_and_start_skew_agree_on_the_expected_path(
    nat_a: str, nat_b: str, loss: float, seed: int, b_start: float
) -> None:
    a, b = make_peer("a", nat_a, 1), make_peer("b", nat_b, 2)
    net = connect(a, b, loss=loss, seed=seed, b_start=b_start)
    net.run(until=12.0)
    assert_agree(a, b)
    assert last_selection(a).direct is expect_direct(nat_a, nat_b)
