"""SWIM membership: convergence, failure detection, refutation, churn, hostile input.

Everything runs in :class:`~hopline.testing.overlay_sim.OverlaySim` (seeded,
mock clock) or drives one :class:`Membership` directly. Bounds come from
:class:`MembershipConfig` so the tests check the documented formulas.
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.overlay.membership import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    Membership,
    MembershipConfig,
    MemberState,
    MemberSuspected,
)
from hopline.testing.lossy import ImpairmentConfig
from hopline.testing.overlay_sim import OverlaySim
from hopline.testing.wire_strategies import records
from hopline.wire import Address, decode, encode
from hopline.wire.membership import (
    MEMBERSHIP_MESSAGES,
    MembershipGossip,
    MembershipJoin,
    MembershipJoinReply,
    MembershipPing,
    MemberUpdate,
)

CONFIG = MembershipConfig()
SIZE_BOUND = CONFIG.max_message_bytes


def build(
    n: int, *, seed: int = 1, wire: bool = False, spacing: float = 0.02, **net: float
) -> OverlaySim:
    """``n`` nodes joining through the first, one every ``spacing`` seconds."""
    network = ImpairmentConfig(delay=0.02, jitter=0.01, **net)
    sim = OverlaySim(seed=seed, wire=wire, network=network)
    first = sim.add_node()
    for _ in range(n - 1):
        sim.add_node([first.address])
        sim.run_for(spacing)
    return sim


def converged_sim(n: int, **kwargs: float) -> OverlaySim:
    sim = build(n, **kwargs)  # type: ignore[arg-type]
    assert sim.run_until(sim.converged, CONFIG.convergence_bound(n))
    return sim


def address(i: int) -> Address:
    return Address(ipaddress.IPv4Address(0x0A000000 + i), 7000)


def core(node_id: str = "sn-self", **kwargs: int) -> Membership:
    m = Membership(node_id, address(1), rng=random.Random(7), now=0.0, **kwargs)
    m.join([], 0.0)
    return m


def update(
    node_id: str, i: int, incarnation: int = 0, state: MemberState = MemberState.ALIVE
) -> MemberUpdate:
    return MemberUpdate(node_id=node_id, address=address(i), incarnation=incarnation, state=state)


# ---------------------------------------------------------------- convergence


def test_50_nodes_join_through_one_seed_and_converge_within_the_bound() -> None:
    sim = build(50, wire=True)
    joined_at = sim.clock.now()
    bound = CONFIG.convergence_bound(50)
    assert sim.run_until(sim.converged, bound)
    assert sim.clock.now() - joined_at <= bound
    for node in sim.nodes.values():
        seen = {m.node_id for m in node.core.members(include_self=True)}
        assert seen == set(sim.nodes)
        assert all(m.state == MemberState.ALIVE for m in node.core.members())
    assert 0 < sim.largest_message < SIZE_BOUND
    assert sum(sum(n.core.dropped.values()) for n in sim.nodes.values()) == 0


def test_500_nodes_converge() -> None:
    sim = build(500, spacing=0.01)
    joined_at = sim.clock.now()
    assert sim.run_until(sim.converged, CONFIG.convergence_bound(500), check_every=0.5)
    assert sim.clock.now() - joined_at <= CONFIG.convergence_bound(500)


def test_simultaneous_joins_converge_by_anti_entropy() -> None:
    sim = build(40, spacing=0.0)
    assert sim.run_until(sim.converged, CONFIG.convergence_bound(40))


# ---------------------------------------------------------------- failure detection


def test_crash_is_detected_by_everyone_within_the_bound_and_not_before() -> None:
    n = 40
    sim = converged_sim(n, seed=3)
    victim = sorted(sim.nodes)[7]
    crashed_at = sim.clock.now()
    sim.crash(victim)
    bound = CONFIG.detection_bound(n)
    assert sim.run_until(lambda: len(sim.first_event(MemberFailed, victim)) == n - 1, bound)
    failed = [e.event.at for e in sim.first_event(MemberFailed, victim)]
    assert max(failed) - crashed_at <= bound
    # suspicion first, then a full suspicion timeout: never sooner
    assert min(failed) - crashed_at >= CONFIG.suspicion_timeout(n)
    assert all(
        e.event.member.node_id == victim for e in sim.events if isinstance(e.event, MemberFailed)
    )
    for node in sim.live_nodes():
        assert node.core.member(victim).state == MemberState.DEAD
        assert node.core.live_count == n - 2


def test_no_false_failures_with_5_percent_loss_over_200_periods() -> None:
    n = 30
    sim = converged_sim(n, seed=5, drop=0.05)
    start = len(sim.events)
    sim.run_for(200 * CONFIG.protocol_period)
    later = sim.events[start:]
    assert not [e for e in later if isinstance(e.event, MemberFailed | MemberLeft)]
    assert any(isinstance(e.event, MemberSuspected) for e in later)  # loss did bite...
    assert any(isinstance(e.event, MemberAlive) for e in later)  # ...and was refuted
    assert sim.run_until(sim.converged, CONFIG.convergence_bound(n))
    assert sim.impairment.stats.dropped > 0.04 * sim.impairment.stats.offered


def test_suspected_but_alive_node_refutes() -> None:
    n = 20
    sim = converged_sim(n, seed=9)
    target = sorted(sim.nodes)[3]
    sim.isolate(target)
    assert sim.run_until(lambda: bool(sim.first_event(MemberSuspected, target)), 60)
    sim.reconnect(target)
    refuted = lambda: len(sim.first_event(MemberAlive, target)) >= 1 and sim.converged()  # noqa: E731
    assert sim.run_until(refuted, CONFIG.suspicion_timeout(n))
    assert not sim.first_event(MemberFailed, target)
    assert sim.nodes[target].core.incarnation >= 1
    assert sim.nodes[target].core.stats["refutations"] >= 1


def test_graceful_leave_propagates_fast() -> None:
    n = 50
    sim = converged_sim(n, seed=11)
    leaver = sorted(sim.nodes)[5]
    left_at = sim.clock.now()
    sim.leave(leaver)
    assert sim.run_until(
        lambda: len(sim.first_event(MemberLeft, leaver)) == n - 1, CONFIG.leave_bound(n)
    )
    assert sim.clock.now() - left_at < 0.5  # told directly: one network delay
    assert not sim.first_event(MemberFailed, leaver)
    assert sim.converged()


def test_restarted_node_rejoins_with_a_new_incarnation() -> None:
    n = 20
    sim = converged_sim(n, seed=13)
    ids = sorted(sim.nodes)
    victim, seed = ids[4], sim.nodes[ids[0]]
    sim.crash(victim)
    assert sim.run_until(
        lambda: len(sim.first_event(MemberFailed, victim)) == n - 1, CONFIG.detection_bound(n)
    )
    restarted_at = sim.clock.now()
    fresh = sim.restart(victim, [seed.address], address=sim.new_address())
    assert fresh.core.incarnation == 0
    assert sim.run_until(sim.converged, CONFIG.convergence_bound(n))
    assert fresh.core.incarnation >= 1  # refuted its own tombstone
    rejoined = [e for e in sim.first_event(MemberJoined, victim) if e.event.at >= restarted_at]
    assert {e.observer for e in rejoined} == set(ids) - {victim}
    for node in sim.live_nodes():
        seen = node.core.member(victim)
        assert seen is not None and seen.state == MemberState.ALIVE
        assert seen.address == fresh.address


def test_dead_members_are_forgotten_after_retention() -> None:
    config = MembershipConfig(dead_retention=5.0)
    sim = OverlaySim(seed=2, config=config)
    first = sim.add_node()
    for _ in range(9):
        sim.add_node([first.address])
    assert sim.run_until(sim.converged, config.convergence_bound(10))
    victim = sorted(sim.nodes)[2]
    sim.crash(victim)
    assert sim.run_until(lambda: len(sim.first_event(MemberFailed, victim)) == 9, 60)
    assert all(n.core.member(victim) is not None for n in sim.live_nodes())
    sim.run_for(config.dead_retention + 2 * config.protocol_period)
    assert all(n.core.member(victim) is None for n in sim.live_nodes())


# ---------------------------------------------------------------- hostile and odd input


def test_a_node_claiming_our_id_is_refuted_or_dropped() -> None:
    me = core()
    me.receive(address(9), MembershipPing(source=update("sn-self", 9, 5), target="sn-self"), 1.0)
    assert me.dropped["from_self_id"] == 1
    assert me.messages_to_send(1.0) == []
    claim = MembershipGossip(source=update("sn-other", 2), updates=(update("sn-self", 9, 5),))
    me.receive(address(2), claim, 1.0)
    assert me.incarnation == 6  # refuted: higher than the impostor
    assert me.member("sn-self").address == address(1)
    dead = MembershipGossip(
        source=update("sn-other", 2), updates=(update("sn-self", 9, 6, MemberState.DEAD),)
    )
    me.receive(address(2), dead, 2.0)
    assert me.incarnation == 7


def test_absurd_and_malformed_updates_are_dropped_and_counted() -> None:
    me = core()
    bad = (
        update("sn-huge", 3, 2**40),
        update("", 4),
        update("x" * 100, 5),
        MemberUpdate(node_id="sn-state", address=address(6), incarnation=0, state=9),
        update("sn-self", 7, 2**40, MemberState.DEAD),
    )
    me.receive(address(2), MembershipGossip(source=update("sn-other", 2), updates=bad), 1.0)
    assert me.dropped["absurd_incarnation"] == 2
    assert me.dropped["bad_node_id"] == 2
    assert me.dropped["bad_state"] == 1
    assert me.incarnation == 0
    assert [m.node_id for m in me.members()] == ["sn-other"]
    jump = update("sn-other", 2, 10**6)
    me.receive(address(2), MembershipGossip(source=update("sn-other", 2), updates=(jump,)), 2.0)
    assert me.dropped["incarnation_jump"] == 1
    assert me.member("sn-other").incarnation == 0


def test_table_is_bounded() -> None:
    me = core(node_id="sn-self")
    small = Membership(
        "sn-b", address(1), config=MembershipConfig(max_members=10), rng=random.Random(1), now=0.0
    )
    small.join([], 0.0)
    many = tuple(update(f"sn-{i}", i + 10) for i in range(20))
    small.receive(address(2), MembershipGossip(source=many[0], updates=many[1:]), 1.0)
    assert small.live_count == 10
    assert small.dropped["table_full"] == 10
    assert me.live_count == 0


def test_join_snapshot_and_messages_stay_under_the_size_bound() -> None:
    seed = core(node_id="sn-seed")
    members = tuple(update(f"sn-{i:016x}", i + 10) for i in range(300))
    for start in range(0, 300, 20):
        gossip = MembershipGossip(source=members[start], updates=members[start + 1 : start + 20])
        seed.receive(address(2), gossip, 1.0)
    seed.messages_to_send(1.0)
    seed.receive(address(999), MembershipJoin(source=update("sn-new", 999)), 2.0)
    seed.handle_timer(5.0)
    out = seed.messages_to_send(5.0)
    replies = [m for _, m in out if isinstance(m, MembershipJoinReply)]
    assert len(replies) > 5
    assert {m.parts for m in replies} == {len(replies)}
    carried = {u.node_id for m in replies for u in m.members}
    assert carried == {u.node_id for u in members} | {"sn-seed", "sn-new"}
    sizes = [len(encode(m)) for _, m in out]
    assert max(sizes) < SIZE_BOUND
    assert all(decode(encode(m)) == m for _, m in out)


def _membership_message() -> st.SearchStrategy[object]:
    return st.sampled_from(MEMBERSHIP_MESSAGES).flatmap(records)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_membership_message(), min_size=1, max_size=6), st.floats(0.0, 100.0))
def test_receive_never_raises_on_arbitrary_messages(messages: list[object], dt: float) -> None:
    me = core(node_id="sn-self")
    me.receive(address(2), MembershipGossip(source=update("sn-peer", 2), updates=()), 0.0)
    now = 0.0
    for message in messages:
        me.receive(address(3), message, now)
        now += dt / len(messages)
        me.handle_timer(now)
    me.handle_timer(now + 60.0)
    for _, out in me.messages_to_send(now):
        assert len(encode(out)) < SIZE_BOUND


def test_a_simulated_run_is_deterministic() -> None:
    def run() -> list[tuple[str, str, float]]:
        sim = build(15, seed=21, drop=0.05)
        sim.run_for(20)
        return [(e.observer, type(e.event).__name__, e.event.at) for e in sim.events]

    assert run() == run()


@pytest.mark.parametrize("n", [2, 3])
def test_tiny_clusters_detect_a_crash(n: int) -> None:
    sim = converged_sim(n, seed=n)
    victim = sorted(sim.nodes)[-1]
    sim.crash(victim)
    assert sim.run_until(
        lambda: len(sim.first_event(MemberFailed, victim)) == n - 1, CONFIG.detection_bound(n)
    )
