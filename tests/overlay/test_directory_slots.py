"""Slots and rendezvous ownership: determinism, balance, minimal churn on handover."""

from __future__ import annotations

from collections import Counter

import pytest

from hopline.identity.names import InvalidUsername
from hopline.overlay.slots import OwnershipMap, handover, owners, slot_of, slot_of_key

SLOTS = 4096
R = 3
MEMBERS = [f"sn-{n:03d}" for n in range(100)]


@pytest.fixture(scope="module")
def base() -> OwnershipMap:
    return OwnershipMap(MEMBERS, R, SLOTS)


def test_slot_of_is_canonical_deterministic_and_in_range() -> None:
    assert slot_of("Alice") == slot_of("alice") == slot_of_key("alice")
    assert 0 <= slot_of("alice") < SLOTS
    assert slot_of("alice", 16) < 16
    with pytest.raises(InvalidUsername):
        slot_of("a!")


def test_slots_spread_users_evenly() -> None:
    counts = Counter(slot_of(f"user{i:05d}", 64) for i in range(64_000))
    assert len(counts) == 64
    assert max(counts.values()) < 1300 and min(counts.values()) > 700  # mean 1000


def test_owners_are_distinct_ranked_and_independent_of_member_order(base: OwnershipMap) -> None:
    for slot in (0, 17, 4095):
        found = owners(slot, MEMBERS, R)
        assert len(set(found)) == R
        assert found == owners(slot, list(reversed(MEMBERS)), R)
        assert found == base.owners_of_slot(slot)
    assert base.owners_of_user("Bob") == base.owners_of_slot(slot_of("bob"))


def test_fewer_members_than_replicas_and_no_members() -> None:
    assert sorted(owners(5, ["a", "b"], 3)) == ["a", "b"]
    assert owners(5, [], 3) == ()
    with pytest.raises(ValueError):
        owners(5, ["a"], 0)


def test_slots_owned_by_matches_table_and_is_balanced(base: OwnershipMap) -> None:
    total = sum(len(base.slots_owned_by(node)) for node in MEMBERS)
    assert total == R * SLOTS
    for node in MEMBERS:
        held = base.slots_owned_by(node)
        assert all(node in base.owners_of_slot(slot) for slot in held)
        assert 60 < len(held) < 190  # mean 122.9
    assert base.slots_owned_by("stranger") == ()


def test_join_moves_about_r_slots_over_n_plus_one_all_to_the_newcomer(
    base: OwnershipMap,
) -> None:
    joined = OwnershipMap([*MEMBERS, "sn-new"], R, SLOTS)
    moves = base.transfers_to(joined)
    expected = R * SLOTS / (len(MEMBERS) + 1)  # 121.7, binomial sd about 11
    assert abs(len(moves) - expected) < 45
    assert {move.to_node for move in moves} == {"sn-new"}
    assert len(moves) == len(joined.slots_owned_by("sn-new"))
    for move in moves:
        assert move.from_nodes == base.owners_of_slot(move.slot)
    changed = sum(a != b for a, b in zip(base.table, joined.table, strict=True))
    assert changed == len({move.slot for move in moves})


def test_leave_moves_exactly_the_leavers_replicas(base: OwnershipMap) -> None:
    leaver = MEMBERS[7]
    left = OwnershipMap([m for m in MEMBERS if m != leaver], R, SLOTS)
    moves = base.transfers_to(left)
    assert len(moves) == len(base.slots_owned_by(leaver))
    assert sorted(move.slot for move in moves) == sorted(base.slots_owned_by(leaver))
    for move in moves:
        assert leaver not in move.from_nodes
        assert len(move.from_nodes) == R - 1
        assert move.to_node not in base.owners_of_slot(move.slot)
        assert move.to_node in left.owners_of_slot(move.slot)


def test_handover_function_and_total_loss() -> None:
    members = ["a", "b", "c", "d", "e"]
    assert handover(members, members, R, 64) == []
    moves = handover(members, ["a", "b", "c", "d"], R, 64)
    old = OwnershipMap(members, R, 64)
    assert moves == old.transfers_to(OwnershipMap(["a", "b", "c", "d"], R, 64))
    # Every old owner of slot 0 crashes at once: nothing alive to copy from.
    survivors = [m for m in members if m not in old.owners_of_slot(0)] + ["x", "y", "z"]
    lost = [move for move in handover(members, survivors, R, 64) if move.slot == 0]
    assert len(lost) == R
    assert all(move.from_nodes == () for move in lost)


def test_transfers_refuse_mismatched_maps(base: OwnershipMap) -> None:
    with pytest.raises(ValueError):
        base.transfers_to(OwnershipMap(MEMBERS, 2, SLOTS))
