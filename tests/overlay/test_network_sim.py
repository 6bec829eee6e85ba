"""Membership and directory in one simulation: 100 supernodes, 5,000 users, churn.

The large run (1,000 x 100,000) is ``benchmarks/network_sim.py``; here the same
code runs small enough for the suite, and the parts it is built from (the
incremental ownership, the FIFO timers, reliable delivery) are checked on
their own. Ownership is always compared with the real
:class:`~hopline.overlay.slots.OwnershipMap` of the node's own view.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hopline.overlay.slots import OwnershipMap
from hopline.supernode.handover import leave_targets
from hopline.testing.lossy import Impairment, ImpairmentConfig
from hopline.testing.network_sim import (
    HrwIndex,
    NetworkSim,
    NetworkSimConfig,
    ViewOwnership,
    summarize_lookups,
)
from hopline.testing.simnet import FifoTimers, SimNetwork
from hopline.wire.types import Address

SMALL = NetworkSimConfig(supernodes=100, users=5000, lookups=5000, lookup_window=10.0, seed=7)


def assert_owns_like_ownership_map(sim: NetworkSim, node_id: str) -> None:
    """The node's table is OwnershipMap's for the node's own membership view."""
    directory = sim.directories[node_id]
    ownership = sim.ownership(directory)
    view = {m.node_id for m in directory.sim_node.core.members(include_self=True)}
    assert ownership.view == view
    real = OwnershipMap(view, sim.config.replication, sim.config.slots)
    assert ownership.table == list(real.table)
    assert ownership.owned == set(real.slots_owned_by(node_id))
    assert directory.store.owned_slots == frozenset(real.slots_owned_by(node_id))


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    """One run at test size, with ownership checked against OwnershipMap on the way."""
    sim = NetworkSim(SMALL)
    phases: dict[str, Any] = {"bootstrap": sim.bootstrap()}
    phases["publish"] = sim.publish_all()
    phases["lookups"] = sim.lookup_phase()
    start, checked = sim.now(), []
    sim.net.call_at(start + 12.0, lambda _: checked.extend(check_sample(sim)))
    phases["churn"] = sim.churn_phase()
    phases["churn_start"] = start
    phases["checked_mid_churn"] = checked
    phases["checked_after_churn"] = check_sample(sim)
    sim.overlay.run_for(sim.config.refresh_every)  # every user refreshes once
    phases["settled"] = sim.lookup_phase("settled")
    before = sim.all_counters()
    phases["leave"] = sim.leave_phase()
    phases["leave"]["counters"] = sim.all_counters() - before
    phases["sim"] = sim
    return phases


def check_sample(sim: NetworkSim) -> list[str]:
    """Check a few live nodes (including a fresh joiner when there is one)."""
    sample = [*sim.up[:2], sim.up[-1]]
    for node_id in sample:
        assert_owns_like_ownership_map(sim, node_id)
    return sample


# ---------------------------------------------------------------- the run at test size


def test_membership_converges_and_every_user_is_stored_on_all_owners(run: dict[str, Any]) -> None:
    assert run["bootstrap"]["converged"]
    assert run["bootstrap"]["converge_s"] <= run["bootstrap"]["converge_bound_s"]
    publish = run["publish"]
    assert publish["publishes"] == SMALL.users
    assert publish["stored_pct"] == 100.0
    assert publish["replicas_per_publish"] == SMALL.replication
    assert publish["replicas_complete_pct"] == 100.0


def test_steady_lookups_are_all_answered_in_one_hop(run: dict[str, Any]) -> None:
    steady = run["lookups"]
    assert steady["lookups"] == SMALL.lookups
    assert steady["answered_pct"] == 100.0
    assert steady["hops_max"] == 1
    assert steady["hops_remote_mean"] == 1.0
    assert steady["messages_max"] == 2  # one request, one reply
    assert steady["timeouts"] == steady["misdirected"] == 0
    # latency: one round trip of two 5-80 ms messages
    assert 10.0 <= steady["latency_p50_ms"] <= 160.0


def test_churn_costs_timeouts_until_detection_then_nothing(run: dict[str, Any]) -> None:
    churn = run["churn"]
    assert churn["crashed"] == churn["joined"] == 5
    within, after = churn["within_bound"], churn["after_bound"]
    assert within["timeouts"] > 0  # crashed owners were asked, and timed out
    assert within["hops_max"] >= 2
    assert after["lookups"] > 1000
    assert after["answered_pct"] == 100.0
    assert after["timeouts"] == 0
    assert churn["all"]["answered_pct"] >= 99.9
    if churn["last_unanswered_s"] is not None:
        assert churn["last_unanswered_s"] < churn["detection_bound_s"]
    assert churn["converged"]
    assert churn["views_agreeing"] == SMALL.supernodes
    assert churn["replicas_complete_pct"] == 100.0  # a refresh period has passed


def test_after_convergence_every_lookup_is_answered_by_the_first_owner(run: dict[str, Any]) -> None:
    settled = run["settled"]
    assert settled["lookups"] == SMALL.lookups
    assert settled["answered_pct"] == 100.0
    assert settled["hops_max"] == 1
    assert settled["hops_remote_mean"] == 1.0
    assert settled["one_hop_pct"] + 100.0 * settled["answered_locally"] / SMALL.lookups == 100.0
    assert settled["misdirected"] == settled["timeouts"] == 0


def test_graceful_leave_hands_slots_over_and_is_seen_at_once(run: dict[str, Any]) -> None:
    leave, sim = run["leave"], run["sim"]
    assert leave["left"] == 5
    counters = leave["counters"]
    # every leaver pushed its slots to the nodes that gain them; only leavers refused
    assert counters["leave handover nodes"] > 0
    assert counters["leave handover stored"] >= 0.9 * counters["leave handover records"]
    assert counters.get("leave handover refused", 0) <= counters.get("replica refused leaving", 0)
    assert counters.get("leave handover failed nodes", 0) == 0
    # told directly: nobody waits for failure detection, so (almost) no timeouts
    assert leave["all"]["timeouts"] <= 5
    # a lookup fails only where a slot's owners and its next in line all left at once
    assert leave["all"]["answered_pct"] >= 99.9
    for miss in (m for m in sim.unanswered if m["phase"] == "leave"):
        assert miss["timeouts"] == 0
    assert leave["converged"]
    assert leave["views_agreeing"] == SMALL.supernodes - 5
    assert leave["replicas_complete_pct"] >= 99.9


def test_ownership_follows_each_nodes_own_view_during_churn(run: dict[str, Any]) -> None:
    assert len(run["checked_mid_churn"]) == 3
    assert len(run["checked_after_churn"]) == 3
    sim: NetworkSim = run["sim"]
    # views disagreed for a while: handovers raced the receivers' own views
    assert sim.counters["handover pushes"] > 0
    assert sim.counters["replica refused not-owner"] > 0


# ---------------------------------------------------------------- the parts


def _random_view(rng: random.Random, nodes: list[str], size: int) -> set[str]:
    return set(rng.sample(nodes, size))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_view_ownership_matches_ownership_map_through_joins_and_drops(seed: int) -> None:
    rng = random.Random(seed)
    slots, replication = 128, 3
    nodes = [f"sn-{rng.getrandbits(32):08x}" for _ in range(40)]
    index = HrwIndex(slots, replication)
    index.add_many(nodes[:30])
    for node in nodes[30:]:
        index.add(node)  # one at a time: must rank the same as add_many
    index.set_reference(nodes[:20])
    me = nodes[0]
    partial = ViewOwnership(index, me, _random_view(rng, nodes[1:], 5))  # lacks most of it
    full = ViewOwnership(index, me, nodes[:25])
    solo = ViewOwnership(index, me)
    for step in range(120):
        member = rng.choice(nodes[1:])
        for ownership in (partial, full, solo):
            changed: dict[int, tuple[str, ...]] = {}
            before = list(ownership.table)
            if member in ownership.view and rng.random() < 0.5:
                ownership.drop(member, changed)
            else:
                ownership.join(member, changed)
            real = OwnershipMap(ownership.view, replication, slots)
            assert ownership.table == list(real.table), step
            assert ownership.owned == set(real.slots_owned_by(me))
            assert ownership.missing == len(index.reference - ownership.view)
            moved = {s for s in range(slots) if before[s] != ownership.table[s]}
            assert moved <= set(changed)
            assert all(changed[s] == before[s] for s in changed)


def test_deferred_batch_rebuilds_to_the_same_table() -> None:
    rng = random.Random(5)
    nodes = [f"sn-{i:04d}" for i in range(30)]
    index = HrwIndex(64, 3)
    index.add_many(nodes)
    index.set_reference(nodes[:10])
    ownership = ViewOwnership(index, nodes[0])
    joined = rng.sample(nodes[1:], 20)
    ownership.defer(joined, [joined[0]])
    assert ownership.stale
    changed = ownership.rebuild()
    assert not ownership.stale
    real = OwnershipMap(ownership.view, 3, 64)
    assert ownership.table == list(real.table)
    assert set(changed) == {s for s in range(64) if real.table[s] != (nodes[0],)}
    assert ownership.missing == len(index.reference - ownership.view)
    ownership.reference_shrunk([n for n in nodes[:10] if n not in ownership.view])
    assert ownership.missing == 0


def test_leave_targets_are_the_supernodes_own() -> None:
    nodes = [f"sn-{i:04d}" for i in range(25)]
    index = HrwIndex(256, 3)
    index.add_many(nodes)
    view = set(nodes[:20])
    for me in nodes[:5]:
        ownership = ViewOwnership(index, me, view)
        expected = leave_targets(OwnershipMap(view, 3, 256), view - {me}, me)
        assert ownership.leave_targets() == expected
        assert expected  # a leaver always hands something over


def test_fifo_timers_fire_in_order_and_accept_timers_added_while_firing() -> None:
    net = SimNetwork(Impairment(ImpairmentConfig(), random.Random(1)))
    fired: list[tuple[float, int]] = []

    def callback(n: int) -> None:
        fired.append((net.clock.now(), n))
        if n == 1:
            timers.add(net.clock.now() + 1.5, 3)  # re-entrant add

    timers = FifoTimers(net, callback)
    timers.add(1.0, 1)
    timers.add(1.0, 2)
    timers.add(2.0, 4)
    with pytest.raises(ValueError, match="non-decreasing"):
        timers.add(1.5, 9)
    net.run_for(5.0)
    assert fired == [(1.0, 1), (1.0, 2), (2.0, 4), (2.5, 3)]
    assert len(timers) == 0
    assert net.pending == 0


def test_reliable_messages_survive_loss_and_unreliable_ones_do_not() -> None:
    net = SimNetwork(Impairment(ImpairmentConfig(drop=0.3, delay=0.01), random.Random(2)))
    got: list[object] = []
    a, b = Address.parse("10.0.0.1:7000"), Address.parse("10.0.0.2:7000")
    net.attach(b, lambda source, payload: got.append(payload))
    for n in range(200):
        net.send(a, b, ("reliable", n), reliable=True)
        net.send(a, b, ("datagram", n))
    net.run_for(10.0)
    reliable = [p for p in got if isinstance(p, tuple) and p[0] == "reliable"]
    assert len(reliable) + net.given_up == 200
    assert net.given_up <= 1
    assert net.resent > 40
    assert 100 < len(got) - len(reliable) < 170


def test_a_small_run_is_deterministic_and_travels_on_the_wire() -> None:
    config = NetworkSimConfig(
        supernodes=20,
        users=300,
        lookups=300,
        lookup_window=5.0,
        publish_window=5.0,
        churn=0.1,
        churn_observe=40.0,
        leave_observe=10.0,
        lookup_rate=20.0,
        loss=0.02,
        wire=True,
        seed=3,
    )

    def once() -> tuple[dict[str, Any], int]:
        sim = NetworkSim(config)
        report = sim.run()
        return report.summary()["phases"], sim.bytes_sent

    (first, sent), (second, _) = once(), once()
    assert first == second
    assert sent > 0
    assert first["lookups"]["answered_pct"] == 100.0
    assert first["churn"]["after_bound"]["answered_pct"] == 100.0


def test_summaries_of_no_lookups_and_of_some() -> None:
    assert summarize_lookups([]) == {"lookups": 0}
    rows = [(0.0, True, 1, 2, 0.05, 0, 0), (1.0, False, 3, 4, 4.1, 2, 1)]
    summary = summarize_lookups(rows)
    assert summary["answered_pct"] == 50.0
    assert summary["hops_max"] == 3
    assert summary["timeouts"] == 2
    assert summary["misdirected"] == 1
