"""The relay core: allocations, permissions, channels, quotas, buckets, expiry (MockClock)."""

from __future__ import annotations

import ipaddress

import pytest

from hopline.relay import (
    ChannelBound,
    Deliver,
    Drop,
    Permitted,
    Refusal,
    RelayAllocation,
    RelayConfig,
    RelayTable,
    Released,
    TokenBucket,
    Transmit,
    take_all,
)
from hopline.testing import MockClock
from hopline.wire import Address

ALICE = ("alice", b"dev-a")
ALICE_PHONE = ("alice", b"dev-b")
BOB = ("bob", b"dev-b")
PEER = Address.parse("203.0.113.7:4000")
PEER_OTHER_PORT = Address.parse("203.0.113.7:4001")
STRANGER = Address.parse("198.51.100.9:4000")


def allocated(table: RelayTable, clock: MockClock, owner=ALICE, lifetime=None) -> RelayAllocation:
    allocation = table.allocate(owner, lifetime, clock.now())
    assert isinstance(allocation, RelayAllocation)
    table.attach(allocation.relay_id, Address.parse(f"192.0.2.1:{40000 + allocation.relay_id}"))
    return allocation


def test_allocation_lifetime_default_clamped_refreshed_and_deleted() -> None:
    clock = MockClock(1000.0)
    table = RelayTable(now=clock.now())
    first = allocated(table, clock)
    assert first.expires == 1600.0 and first.relayed is not None
    long = allocated(table, clock, lifetime=100_000)
    assert long.expires == 1000.0 + 3600.0

    clock.advance(500)
    refreshed = table.refresh(ALICE, first.relay_id, 300, clock.now())
    assert isinstance(refreshed, RelayAllocation) and refreshed.expires == 1800.0
    assert table.refresh(BOB, first.relay_id, 300, clock.now()) == Refusal("no-allocation")

    deleted = table.refresh(ALICE, first.relay_id, 0, clock.now())
    assert deleted == Released(first.relay_id, ALICE, "deleted")
    assert first.relay_id not in table.allocations and len(table) == 1
    assert table.refresh(ALICE, first.relay_id, 300, clock.now()) == Refusal("no-allocation")
    assert table.refused["no-allocation"] == 2


def test_expiry_frees_the_allocation_via_the_timer() -> None:
    clock = MockClock()
    table = RelayTable(now=clock.now())
    assert table.get_timer() is None
    short = allocated(table, clock, lifetime=10)
    long = allocated(table, clock, lifetime=60)
    assert table.get_timer() == 10.0
    assert table.handle_timer(clock.advance(9.9)) == []
    released = table.handle_timer(clock.advance_to(10.0))
    assert released == [Released(short.relay_id, ALICE, "expired")]
    assert set(table.allocations) == {long.relay_id}
    assert table.get_timer() == 60.0
    # an expired allocation relays nothing, even before the timer fires
    table.permit(ALICE, long.relay_id, [PEER.host], clock.now())
    clock.advance_to(60.0)
    assert table.from_peer(long.relay_id, PEER, 100, clock.now()) == Drop("no-allocation")
    assert table.counters["released:expired"] == 1


def test_quota_per_user_and_per_supernode() -> None:
    clock = MockClock()
    table = RelayTable(RelayConfig(max_per_user=2, max_allocations=3), now=clock.now())
    allocated(table, clock, ALICE)
    allocated(table, clock, ALICE_PHONE)  # the same user on another device counts too
    assert table.allocate(ALICE, None, clock.now()) == Refusal("quota-user")
    bob = allocated(table, clock, BOB)
    assert table.allocate(("carol", b"c"), None, clock.now()) == Refusal("capacity")
    table.release(bob.relay_id, "deleted")
    assert isinstance(table.allocate(("carol", b"c"), None, clock.now()), RelayAllocation)
    assert table.refused == {"quota-user": 1, "capacity": 1}


def test_data_from_peers_needs_a_permission_per_ip_that_expires() -> None:
    clock = MockClock()
    table = RelayTable(now=clock.now())
    allocation = allocated(table, clock)
    rid = allocation.relay_id
    assert table.from_peer(rid, PEER, 200, clock.now()) == Drop("no-permission")

    assert table.permit(ALICE, rid, [PEER.host], clock.now()) == Permitted(rid, 300.0)
    assert table.from_peer(rid, PEER, 200, clock.now()) == Deliver(rid, ALICE, PEER, None)
    # the permission is for the IP address, any port
    assert isinstance(table.from_peer(rid, PEER_OTHER_PORT, 200, clock.now()), Deliver)
    assert table.from_peer(rid, STRANGER, 200, clock.now()) == Drop("no-permission")

    clock.advance(299.0)
    assert isinstance(table.from_peer(rid, PEER, 200, clock.now()), Deliver)
    assert table.get_timer() == 300.0  # the permission's expiry is a deadline too
    table.handle_timer(clock.advance_to(300.0))
    assert table.from_peer(rid, PEER, 200, clock.now()) == Drop("no-permission")
    assert PEER.host not in allocation.permissions
    assert table.counters["expired-permissions"] == 1
    assert table.dropped["no-permission"] == 3
    assert table.counters["packets_in"] == 3 and table.counters["bytes_in"] == 600


def test_sending_to_peers_needs_ownership_and_a_permission() -> None:
    clock = MockClock()
    table = RelayTable(now=clock.now())
    rid = allocated(table, clock).relay_id
    assert table.to_peer(ALICE, rid, PEER, 100, clock.now()) == Drop("no-permission")
    table.permit(ALICE, rid, [PEER.host], clock.now())
    assert table.to_peer(ALICE, rid, PEER, 100, clock.now()) == Transmit(rid, PEER)
    assert table.to_peer(BOB, rid, PEER, 100, clock.now()) == Drop("no-allocation")
    assert table.to_peer(ALICE_PHONE, rid, PEER, 100, clock.now()) == Drop("no-allocation")
    assert table.counters["packets_out"] == 1


def test_permissions_refuse_bad_peers_and_are_bounded() -> None:
    clock = MockClock()
    table = RelayTable(RelayConfig(max_permissions=2), now=clock.now())
    rid = allocated(table, clock).relay_id
    for bad in ("127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "ff02::1"):
        host = ipaddress.ip_address(bad)
        assert table.permit(ALICE, rid, [host], clock.now()) == Refusal("peer-denied"), bad
    assert table.permit(ALICE, rid, [], clock.now()) == Refusal("peer-denied")
    hosts = [ipaddress.ip_address(f"203.0.113.{n}") for n in (1, 2, 3)]
    assert table.permit(ALICE, rid, hosts, clock.now()) == Refusal("quota-permissions")
    assert isinstance(table.permit(ALICE, rid, hosts[:2], clock.now()), Permitted)
    assert isinstance(table.permit(ALICE, rid, hosts[:1], clock.now()), Permitted)  # refresh
    assert table.permit(ALICE, rid, hosts[2:], clock.now()) == Refusal("quota-permissions")
    assert table.permit(BOB, rid, hosts[:1], clock.now()) == Refusal("no-allocation")
    loopback = RelayTable(RelayConfig(allow_loopback_peers=True), now=clock.now())
    lrid = allocated(loopback, clock).relay_id
    assert isinstance(
        loopback.permit(ALICE, lrid, [ipaddress.ip_address("127.0.0.1")], 0), Permitted
    )


def test_channels_bind_one_peer_permit_it_and_expire() -> None:
    clock = MockClock()
    table = RelayTable(now=clock.now())
    rid = allocated(table, clock, lifetime=3600).relay_id
    other = allocated(table, clock, lifetime=3600).relay_id
    bound = table.bind_channel(ALICE, rid, 0x4001, PEER, clock.now())
    assert bound == ChannelBound(rid, 0x4001, PEER, 600.0)
    # binding permits the peer's IP, and its datagrams come with the channel number
    assert table.from_peer(rid, PEER, 50, clock.now()) == Deliver(rid, ALICE, PEER, 0x4001)
    assert table.from_peer(rid, PEER_OTHER_PORT, 50, clock.now()) == Deliver(
        rid, ALICE, PEER_OTHER_PORT, None
    )
    assert table.channel_to_peer(ALICE, 0x4001, 50, clock.now()) == Transmit(rid, PEER)
    assert table.channel_to_peer(BOB, 0x4001, 50, clock.now()) == Drop("no-channel")
    assert table.channel_to_peer(ALICE, 0x4002, 50, clock.now()) == Drop("no-channel")

    now = clock.now()
    assert table.bind_channel(ALICE, rid, 0x3FFF, PEER, now) == Refusal("bad-channel")
    assert table.bind_channel(ALICE, rid, 0x8000, PEER, now) == Refusal("bad-channel")
    assert table.bind_channel(ALICE, rid, 0x4001, STRANGER, now) == Refusal("channel-in-use")
    assert table.bind_channel(ALICE, rid, 0x4002, PEER, now) == Refusal("peer-has-channel")
    assert table.bind_channel(ALICE, other, 0x4001, STRANGER, now) == Refusal("channel-in-use")
    assert isinstance(table.bind_channel(ALICE, rid, 0x4001, PEER, now), ChannelBound)  # refresh

    clock.advance(400)  # the permission (300 s) lapsed, the channel (600 s) did not
    assert table.channel_to_peer(ALICE, 0x4001, 50, clock.now()) == Drop("no-permission")
    table.bind_channel(ALICE, rid, 0x4001, PEER, clock.now())  # rebinding refreshes both
    assert isinstance(table.channel_to_peer(ALICE, 0x4001, 50, clock.now()), Transmit)
    table.handle_timer(clock.advance(600))
    assert table.channel_to_peer(ALICE, 0x4001, 50, clock.now()) == Drop("no-channel")
    assert (ALICE, 0x4001) not in table.channels and table.counters["expired-channels"] == 1
    # the number is free again, for another allocation of the same owner
    table.permit(ALICE, other, [STRANGER.host], clock.now())
    assert isinstance(table.bind_channel(ALICE, other, 0x4001, STRANGER, clock.now()), ChannelBound)


def test_release_frees_the_owner_quota_and_channels() -> None:
    clock = MockClock()
    table = RelayTable(RelayConfig(max_per_user=1), now=clock.now())
    rid = allocated(table, clock).relay_id
    table.bind_channel(ALICE, rid, 0x4000, PEER, clock.now())
    assert table.release(rid, "owner-left") == Released(rid, ALICE, "owner-left")
    assert table.release(rid, "owner-left") is None
    assert table.channels == {} and table.per_user == {}
    assert table.from_peer(rid, PEER, 10, clock.now()) == Drop("no-allocation")
    assert isinstance(table.allocate(ALICE, None, clock.now()), RelayAllocation)


def test_packet_rate_limit_per_allocation_refills_with_time() -> None:
    clock = MockClock()
    config = RelayConfig(packets_per_s=10, packet_burst=5, bulk_packets_per_s=0)
    table = RelayTable(config, now=clock.now())
    rid = allocated(table, clock).relay_id
    table.permit(ALICE, rid, [PEER.host], clock.now())
    results = [table.from_peer(rid, PEER, 100, clock.now()) for _ in range(8)]
    assert sum(isinstance(r, Deliver) for r in results) == 5
    assert results[5:] == [Drop("rate-packets")] * 3
    clock.advance(0.2)  # two more tokens, shared by both directions
    assert isinstance(table.to_peer(ALICE, rid, PEER, 100, clock.now()), Transmit)
    assert isinstance(table.from_peer(rid, PEER, 100, clock.now()), Deliver)
    assert table.from_peer(rid, PEER, 100, clock.now()) == Drop("rate-packets")
    # another allocation has its own bucket
    rid2 = allocated(table, clock).relay_id
    table.permit(ALICE, rid2, [PEER.host], clock.now())
    assert isinstance(table.from_peer(rid2, PEER, 100, clock.now()), Deliver)


def test_byte_rate_total_bandwidth_and_payload_limits() -> None:
    clock = MockClock()
    config = RelayConfig(
        bytes_per_s=1000,
        byte_burst=1000,
        total_bytes_per_s=1500,
        total_byte_burst=1500,
        bulk_bytes_per_s=0,
    )
    table = RelayTable(config, now=clock.now())
    a = allocated(table, clock).relay_id
    b = allocated(table, clock, BOB).relay_id
    table.permit(ALICE, a, [PEER.host], clock.now())
    table.permit(BOB, b, [PEER.host], clock.now())
    assert isinstance(table.from_peer(a, PEER, 800, clock.now()), Deliver)
    assert table.from_peer(a, PEER, 300, clock.now()) == Drop("rate-bytes")
    assert isinstance(table.from_peer(b, PEER, 700, clock.now()), Deliver)
    assert table.from_peer(b, PEER, 100, clock.now()) == Drop("bandwidth")
    assert table.from_peer(a, PEER, 1501, clock.now()) == Drop("too-large")
    # a refused packet takes nothing from the buckets it did not fail
    allocation = table.allocations[a]
    assert allocation.packets.tokens == config.packet_burst - 1
    clock.advance(1.0)
    assert isinstance(table.from_peer(b, PEER, 300, clock.now()), Deliver)


def _flow(table: RelayTable, rid: int, clock: MockClock, seconds: float, rate: float) -> int:
    """Offer ``rate`` bytes/s of 1,100-byte datagrams to ``rid`` for ``seconds``; bytes passed."""
    passed, step = 0, 1100 / rate
    for _ in range(round(seconds / step)):
        clock.advance(step)
        if isinstance(table.from_peer(rid, PEER, 1100, clock.now()), Deliver):
            passed += 1100
    return passed


def test_default_budget_carries_a_file_transfer_and_still_bounds_a_flood() -> None:
    clock = MockClock()
    table = RelayTable(RelayConfig(), now=clock.now())
    rid = allocated(table, clock).relay_id
    table.permit(ALICE, rid, [PEER.host], clock.now())
    # 24 MB/s of bulk data (over 20 MiB/s of file) goes through untouched
    assert _flow(table, rid, clock, 2.0, 24_000_000) == round(2.0 * 24_000_000 / 1100) * 1100
    assert table.counters["bulk_packets"] > 0 and not table.dropped
    # a flood is held to the guaranteed plus the bulk budget (36 MB/s), bursts aside
    config = table.config
    budget = config.bytes_per_s + config.bulk_bytes_per_s
    passed = _flow(table, rid, clock, 2.0, 100_000_000)
    bursts = config.byte_burst + config.bulk_byte_burst
    assert passed <= 2.0 * budget + bursts
    assert passed >= 2.0 * budget * 0.9
    assert table.dropped["rate-bytes"] > 0


def test_bulk_traffic_uses_only_spare_relay_bandwidth() -> None:
    clock = MockClock()
    config = RelayConfig(total_bytes_per_s=30_000_000, total_byte_burst=3_000_000)
    table = RelayTable(config, now=clock.now())
    bulk = allocated(table, clock).relay_id
    call = allocated(table, clock, BOB).relay_id
    for owner, rid in ((ALICE, bulk), (BOB, call)):
        table.permit(owner, rid, [PEER.host], clock.now())
    # the bulk flow alone wants more than the relay has: it is cut at the reserve
    _flow(table, bulk, clock, 1.0, 60_000_000)
    assert table.dropped["bulk-bandwidth"] > 0
    assert table.total.tokens >= config.bulk_reserve * config.total_byte_burst - 1100
    # a call beside it (guaranteed tier) still gets every packet through
    calls = [table.from_peer(call, PEER, 200, clock.now()) for _ in range(50)]
    assert all(isinstance(c, Deliver) for c in calls)
    # without a bulk tier the same allocation stops at its guaranteed budget
    plain = RelayTable(RelayConfig(bulk_bytes_per_s=0), now=clock.now())
    rid = allocated(plain, clock).relay_id
    plain.permit(ALICE, rid, [PEER.host], clock.now())
    passed = _flow(plain, rid, clock, 1.0, 24_000_000)
    assert passed <= plain.config.bytes_per_s + plain.config.byte_burst


def test_no_amplification_nothing_ever_goes_back_to_a_source() -> None:
    """Whatever arrives on a relayed port, the only possible output is to the owner."""
    clock = MockClock()
    table = RelayTable(RelayConfig(packets_per_s=100, packet_burst=20), now=clock.now())
    rid = allocated(table, clock).relay_id
    table.permit(ALICE, rid, [PEER.host], clock.now())
    sources = [PEER, PEER_OTHER_PORT, STRANGER, Address.parse("[2001:db8::1]:9")]
    outcomes = []
    for n in range(200):
        clock.advance(0.001)
        outcomes.append(table.from_peer(rid, sources[n % 4], 1 + n % 1500, clock.now()))
        outcomes.append(table.from_peer(rid + 99, sources[n % 4], 10, clock.now()))
    assert all(isinstance(o, Deliver | Drop) for o in outcomes)
    assert all(o.owner == ALICE for o in outcomes if isinstance(o, Deliver))
    delivered = [o for o in outcomes if isinstance(o, Deliver)]
    assert delivered and all(o.peer.host == PEER.host for o in delivered)
    assert table.counters["packets_out"] == 0 and table.dropped["no-permission"] == 100


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=100, burst=10, now=0.0)
    assert bucket.take(10, 0.0) and not bucket.take(1, 0.0)
    assert bucket.take(5, 0.05) and not bucket.take(1, 0.05)
    assert bucket.refill(10.0) == 10  # never more than the burst
    assert bucket.refill(5.0) == 10  # time going backwards adds nothing
    other = TokenBucket(rate=1, burst=1, now=0.0)
    assert take_all([(bucket, 3), (other, 2)], 10.0) == 1
    assert bucket.tokens == 10 and other.tokens == 1  # all or nothing
    assert take_all([(bucket, 3), (other, 1)], 10.0) is None
    assert bucket.tokens == 7 and other.tokens == 0
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0, now=0.0)
