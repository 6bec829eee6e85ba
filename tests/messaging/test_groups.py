"""The group table: who may change a group, and every device ending with the same state."""

from __future__ import annotations

import pytest

from hopline.messaging.envelope import MessageError
from hopline.messaging.groups import (
    MAX_MEMBERS,
    Group,
    GroupOp,
    GroupOpBody,
    GroupTable,
    decode_group_op,
    new_group_id,
)
from hopline.wire import encode_record

ALICE_DEV, BOB_DEV, CAROL_DEV = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16


def body(op: GroupOp, version: int, name: str, members: tuple[str, ...]) -> bytes:
    return encode_record(GroupOpBody(op=op, version=version, name=name, members=members))


def test_create_reaches_members_and_invite_rename_leave_converge() -> None:
    alice = GroupTable("alice", ALICE_DEV)
    bob = GroupTable("bob", BOB_DEV)
    carol = GroupTable("carol", CAROL_DEV)
    gid = new_group_id()
    group, audience, created = alice.local(GroupOp.CREATE, gid, name="hike", users=("bob",))
    assert audience == {"alice", "bob"}
    assert bob.apply(gid, "alice", ALICE_DEV, created) == group

    invited, audience, invite = bob.local(GroupOp.INVITE, gid, users=("carol",))
    assert invited.members == {"alice", "bob", "carol"}
    assert audience == {"alice", "bob", "carol"}
    for table in (alice, carol):
        assert table.apply(gid, "bob", BOB_DEV, invite) == invited

    _, _, renamed = carol.local(GroupOp.RENAME, gid, name="long hike")
    _, audience, left = alice.local(GroupOp.LEAVE, gid)
    assert audience == {"alice", "bob", "carol"}  # the leaver tells everybody
    # bob sees the leave before the rename; carol the other way round.
    bob.apply(gid, "alice", ALICE_DEV, left)
    bob.apply(gid, "carol", CAROL_DEV, renamed)
    carol.apply(gid, "alice", ALICE_DEV, left)
    assert bob.get(gid) == carol.get(gid)
    final = bob.get(gid)
    assert final is not None
    assert final.members == {"bob", "carol"}
    assert not alice.is_member(gid, "alice")


def test_only_members_change_a_group_and_nobody_removes_others() -> None:
    alice = GroupTable("alice", ALICE_DEV)
    bob = GroupTable("bob", BOB_DEV)
    gid = new_group_id()
    _, _, created = alice.local(GroupOp.CREATE, gid, name="x", users=("bob", "carol"))
    bob.apply(gid, "alice", ALICE_DEV, created)
    with pytest.raises(MessageError, match="not a member"):
        bob.apply(gid, "mallory", b"\x09" * 16, body(GroupOp.RENAME, 5, "owned", ("bob",)))
    # an operation only adds members or removes its author: a list without carol
    # does not remove her.
    bob.apply(gid, "alice", ALICE_DEV, body(GroupOp.INVITE, 2, "x", ("alice", "bob")))
    bob.apply(gid, "alice", ALICE_DEV, body(GroupOp.LEAVE, 3, "x", ("bob",)))
    assert bob.dropped["group-refused"] == 1
    with pytest.raises(MessageError, match="not a member"):  # alice has left
        bob.apply(gid, "alice", ALICE_DEV, body(GroupOp.INVITE, 4, "x", ("dave",)))
    group = bob.get(gid)
    assert group is not None and group.members == {"bob", "carol"}


def test_nobody_plants_a_group_and_stale_states_are_ignored() -> None:
    bob = GroupTable("bob", BOB_DEV)
    gid = new_group_id()
    with pytest.raises(MessageError, match="not in"):
        bob.apply(gid, "mallory", b"\x09" * 16, body(GroupOp.CREATE, 1, "spam", ("mallory",)))
    assert bob.get(gid) is None
    newer = body(GroupOp.RENAME, 3, "new", ("alice", "bob"))
    older = body(GroupOp.RENAME, 2, "old", ("alice", "bob"))
    assert bob.apply(gid, "alice", ALICE_DEV, newer) is not None
    assert bob.apply(gid, "alice", ALICE_DEV, older) is None
    assert bob.dropped["group-stale"] == 1
    group = bob.get(gid)
    assert group is not None and group.name == "new"


def test_local_changes_need_membership() -> None:
    alice = GroupTable("alice", ALICE_DEV)
    with pytest.raises(MessageError, match="not a member"):
        alice.local(GroupOp.RENAME, new_group_id(), name="x")
    gid = new_group_id()
    alice.local(GroupOp.CREATE, gid, name="solo")
    with pytest.raises(MessageError, match="exists"):
        alice.local(GroupOp.CREATE, gid, name="again")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xff\xff", "malformed"),
        (b"\x00" * 20000, "too-large"),
        (body(GroupOp.CREATE, 1, "x" * 101, ("a",)), "bad-field"),
        (body(GroupOp.CREATE, 1, "x", ()), "bad-field"),
        (body(GroupOp.CREATE, 1, "x", ("a", "a")), "bad-field"),
        (body(GroupOp.CREATE, 1, "x", ("Alice",)), "bad-field"),
        (body(9, 1, "x", ("a",)), "bad-field"),  # type: ignore[arg-type]
        (body(GroupOp.INVITE, 1, "x", tuple(f"u{n}" for n in range(MAX_MEMBERS + 1))), "bad-field"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as refused:
        decode_group_op(data)
    assert refused.value.reason == reason


def test_groups_round_trip_through_json() -> None:
    group = Group(new_group_id(), "club", frozenset({"a", "b"}), 4, BOB_DEV)
    assert Group.from_json(group.to_json()) == group
    table = GroupTable("a", ALICE_DEV)
    table.restore(group)
    assert table.get(group.group_id) == group
