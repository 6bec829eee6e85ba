"""Planning a graceful leave (pure): who gains which slot, records and profiles, batches."""

from __future__ import annotations

import pytest

from hopline.overlay.search import profile_slots
from hopline.overlay.slots import OwnershipMap, slot_of
from hopline.supernode.handover import (
    HandoverPlan,
    HandoverReport,
    leave_targets,
    profile_batches,
    record_batches,
    route_items,
)
from hopline.wire import decode, encode
from hopline.wire.commands import DeviceRecord, PresenceRecord
from hopline.wire.directory import PublicProfile, StoreReplica
from hopline.wire.search_replica import ProfileReplica

NODES = [f"sn-{n:02d}" for n in range(7)]
SLOTS = 512  # a smaller key space keeps the exhaustive checks fast


def record(user: str, certificate_bytes: int = 300) -> PresenceRecord:
    device = DeviceRecord(
        device_id=user.encode().ljust(16, b"\0")[:16],
        identity_key=bytes(32),
        certificate=b"c" * certificate_bytes,
    )
    return PresenceRecord(user=user, status=1, devices=(device,), last_seen=1, expires=2)


@pytest.mark.parametrize("replication", [1, 2, 3])
@pytest.mark.parametrize("members", [2, 3, 5, 7])
def test_each_slot_goes_to_exactly_the_owners_it_gains(replication: int, members: int) -> None:
    nodes = NODES[:members]
    old = OwnershipMap(nodes, replication, SLOTS)
    for me in nodes:
        remaining = [n for n in nodes if n != me]
        new = OwnershipMap(remaining, replication, SLOTS)
        targets = leave_targets(old, nodes, me)  # ``me`` in the list is ignored
        assert set(targets) <= set(old.slots_owned_by(me))
        for slot in old.slots_owned_by(me):
            before, after = old.owners_of_slot(slot), new.owners_of_slot(slot)
            gained = targets.get(slot, ())
            assert me not in gained
            assert set(gained) == set(after) - set(before)
            # after the handover every new owner holds the slot: the old co-owners or a target
            assert set(after) <= (set(before) - {me}) | set(gained)
            if len(remaining) >= replication:  # HRW: the next node in the ranking steps in
                assert len(gained) == 1


def test_slots_the_leaver_does_not_hold_move_nowhere() -> None:
    old = OwnershipMap(NODES[:5], 2, SLOTS)
    targets = leave_targets(old, NODES[:5], "sn-00")
    held = set(old.slots_owned_by("sn-00"))
    assert targets and set(targets) <= held
    assert leave_targets(old, [], "sn-00") == {}  # the last node has no one to hand to
    assert leave_targets(old, NODES[:5], "sn-99") == {}  # not a member: holds nothing


def test_records_follow_their_slot() -> None:
    old = OwnershipMap(NODES[:4], 1, SLOTS)
    targets = leave_targets(old, NODES[:4], "sn-01")
    users = [f"user{n}" for n in range(300)]
    held = [u for u in users if old.owners_of_user(u) == ("sn-01",)]
    assert held, "some users live on sn-01"
    routed = route_items(targets, ((u, (slot_of(u, SLOTS),)) for u in users))
    new = OwnershipMap([n for n in NODES[:4] if n != "sn-01"], 1, SLOTS)
    assert sorted(u for items in routed.values() for u in items) == sorted(held)
    for node, items in routed.items():
        assert all(new.owners_of_user(u) == (node,) for u in items)


def test_a_profile_goes_once_to_each_node_that_gains_one_of_its_slots() -> None:
    profile = PublicProfile(username="ann", full_name="Ann Lee", city="Oslo", country="NO")
    slots = profile_slots(profile, SLOTS)
    first, second = sorted(slots)[:2]
    targets = {first: ("sn-a",), second: ("sn-a", "sn-b"), 10_000: ("sn-c",)}
    routed = route_items(targets, [(profile, slots)])
    assert routed == {"sn-a": [profile], "sn-b": [profile]}


def test_record_batches_stay_under_the_bound_and_keep_order() -> None:
    records = [record(f"user{n}", certificate_bytes=900) for n in range(200)]
    batches = record_batches(records, max_bytes=16 * 1024)
    assert len(batches) > 1
    assert [r for b in batches for r in b.records] == records
    for batch in batches:
        data = encode(batch)
        assert len(data) <= 16 * 1024 + 64  # the message header on top
        assert decode(data) == batch
    assert record_batches([]) == []
    assert [len(b.records) for b in record_batches(records[:3])] == [3]


def test_profile_batches_hold_at_most_fifty() -> None:
    profiles = [PublicProfile(username=f"u{n}") for n in range(120)]
    batches = profile_batches(profiles)
    assert [len(b.profiles) for b in batches] == [50, 50, 20]
    assert all(isinstance(b, ProfileReplica) for b in batches)


def test_plan_counts_and_messages() -> None:
    plan = HandoverPlan(
        records={"sn-a": [record("ann"), record("bob")], "sn-b": [record("cat")]},
        profiles={"sn-c": [PublicProfile(username="ann")]},
    )
    assert plan.nodes == ["sn-a", "sn-b", "sn-c"]
    assert (plan.record_count(), plan.profile_count()) == (3, 1)
    messages = plan.messages_for("sn-a")
    assert len(messages) == 1 and isinstance(messages[0], StoreReplica)
    assert [type(m) for m in plan.messages_for("sn-c")] == [ProfileReplica]
    assert plan.messages_for("sn-z") == []


def test_report_fields_are_plain_values() -> None:
    report = HandoverReport(records=3, nodes=2, failed_nodes=["sn-b", "sn-a"], seconds=0.12345)
    fields = report.fields()
    assert fields["records"] == 3 and fields["nodes"] == 2
    assert fields["failed_nodes"] == ["sn-a", "sn-b"]
    assert fields["seconds"] == 0.123
