"""Choosing the supernodes a home offers its clients (pure)."""

from __future__ import annotations

import random

from hopline.overlay.membership import Member, MemberState
from hopline.supernode.hosts import sample_hosts
from hopline.wire import Address, decode, encode
from hopline.wire.hosts import MAX_SAMPLE, SupernodeSample, SupernodeSampleReply


def member(n: int, state: MemberState = MemberState.ALIVE, host: str = "10.0.0.1") -> Member:
    return Member(f"sn-{n:03d}", Address.parse(f"{host}:{4000 + n}"), 0, state)


def test_self_first_then_alive_then_suspects() -> None:
    members = [member(0), *(member(n) for n in range(1, 4))]
    members += [member(n, MemberState.SUSPECT) for n in range(4, 6)]
    hosts = sample_hosts(members, "sn-000", 32, random.Random(1))
    ids = [h.node_id for h in hosts]
    assert ids[0] == "sn-000"
    assert set(ids[1:4]) == {"sn-001", "sn-002", "sn-003"}
    assert set(ids[4:]) == {"sn-004", "sn-005"}
    assert hosts[1].address == next(m.address for m in members if m.node_id == ids[1])


def test_bounded_and_random_over_a_large_overlay() -> None:
    members = [member(n) for n in range(500)]
    first = sample_hosts(members, "sn-000", 1000, random.Random(1))
    second = sample_hosts(members, "sn-000", 1000, random.Random(2))
    assert len(first) == len(second) == MAX_SAMPLE
    assert len({h.node_id for h in first}) == MAX_SAMPLE  # no duplicates
    assert first[0].node_id == second[0].node_id == "sn-000"
    assert {h.node_id for h in first} != {h.node_id for h in second}
    assert len(sample_hosts(members, "sn-000", 5, random.Random(1))) == 5
    assert sample_hosts(members, "sn-000", 0, random.Random(1)) == []


def test_suspects_only_fill_what_alive_members_leave() -> None:
    members = [member(n) for n in range(40)]
    members += [member(n, MemberState.SUSPECT) for n in range(40, 50)]
    hosts = sample_hosts(members, "sn-999", 32, random.Random(3))  # asked by a non-member
    assert len(hosts) == 32
    assert all(int(h.node_id[3:]) < 40 for h in hosts)


def test_undialable_addresses_are_left_out() -> None:
    members = [member(0, host="0.0.0.0"), member(1, host="224.0.0.1"), member(2)]
    hosts = sample_hosts(members, "sn-000", 32, random.Random(1))
    assert [h.node_id for h in hosts] == ["sn-002"]


def test_the_reply_fits_one_message() -> None:
    members = [member(n, host="2001:db8::1") for n in range(MAX_SAMPLE)]
    reply = SupernodeSampleReply(hosts=tuple(sample_hosts(members, "x", 32, random.Random(1))))
    assert decode(encode(reply)) == reply
    assert SupernodeSample().limit == MAX_SAMPLE
