"""Fragmentation and bounded reassembly, alone and through whole links."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.testing import FakeNet, ImpairmentConfig
from hopline.transport import (
    ConfigError,
    InOrderAssembler,
    Link,
    LinkConfig,
    MessageTooLarge,
    Reassembler,
    ReassemblyError,
    ReassemblyLimits,
    split_message,
)
from hopline.transport.packet import DataFrame, encode_datagram


@given(st.binary(max_size=5000), st.integers(1, 1500))
def test_split_message_rejoins_and_respects_size(data: bytes, size: int) -> None:
    pieces = split_message(data, size)
    assert b"".join(pieces) == data
    assert all(len(p) <= size for p in pieces)
    assert len(pieces) == max(1, -(-len(data) // size))


def test_split_message_rejects_zero_size() -> None:
    with pytest.raises(ConfigError):
        split_message(b"abc", 0)


# -- Reassembler ---------------------------------------------------------------


def limits(**kwargs: float) -> ReassemblyLimits:
    base: dict[str, float] = {
        "max_message_size": 1000,
        "max_fragments": 10,
        "max_partial_messages": 4,
        "max_total_bytes": 2000,
        "timeout": 1.0,
    }
    base.update(kwargs)
    return ReassemblyLimits(**base)  # type: ignore[arg-type]


def test_fragments_in_any_order_complete_the_message() -> None:
    r = Reassembler(limits())
    parts = [b"aa", b"bb", b"cc", b"d"]
    order = [2, 0, 3, 1]
    results = [r.add(7, i, 4, parts[i], now=0.0) for i in order]
    assert results[:-1] == [None, None, None]
    assert results[-1] == b"aabbccd"
    assert r.buffered_bytes == 0
    assert r.partial_count == 0
    assert r.stats.completed == 1


@pytest.mark.parametrize(
    ("index", "count", "reason"),
    [(0, 11, "too_many_fragments"), (3, 3, "bad_fragment"), (0, 0, "bad_fragment")],
)
def test_refused_shapes_store_nothing(index: int, count: int, reason: str) -> None:
    r = Reassembler(limits())
    with pytest.raises(ReassemblyError) as info:
        r.add(1, index, count, b"x" * 100, now=0.0)
    assert info.value.reason == reason
    assert r.buffered_bytes == 0
    assert r.partial_count == 0


def test_duplicate_and_inconsistent_fragments_are_refused() -> None:
    r = Reassembler(limits())
    r.add(1, 0, 3, b"a", now=0.0)
    with pytest.raises(ReassemblyError, match="already") as dup:
        r.add(1, 0, 3, b"a", now=0.0)
    assert dup.value.reason == "duplicate_fragment"
    with pytest.raises(ReassemblyError) as mismatch:
        r.add(1, 1, 4, b"b", now=0.0)
    assert mismatch.value.reason == "fragment_mismatch"
    assert r.buffered_bytes == 1


def test_message_over_the_size_limit_is_discarded_before_storing() -> None:
    r = Reassembler(limits(max_message_size=1000))
    r.add(1, 0, 3, bytes(600), now=0.0)
    with pytest.raises(ReassemblyError) as info:
        r.add(1, 1, 3, bytes(600), now=0.0)
    assert info.value.reason == "message_too_large"
    assert r.buffered_bytes == 0
    assert r.partial_count == 0
    with pytest.raises(ReassemblyError):
        r.add(2, 0, 1, bytes(1001), now=0.0)


def test_flood_of_never_completed_messages_stays_bounded() -> None:
    lim = limits(max_partial_messages=8, max_total_bytes=3000, max_message_size=1000)
    r = Reassembler(lim)
    peak_bytes = peak_partials = 0
    for message_id in range(10_000):
        r.add(message_id, 0, 10, bytes(700), now=message_id * 1e-4)
        peak_bytes = max(peak_bytes, r.buffered_bytes)
        peak_partials = max(peak_partials, r.partial_count)
    assert peak_bytes <= lim.max_total_bytes
    assert peak_partials <= lim.max_partial_messages
    assert r.stats.evicted >= 10_000 - lim.max_partial_messages
    # a legitimate message still gets through right after the flood
    assert r.add(99_999, 1, 2, b"yz", now=1.0) is None
    assert r.add(99_999, 0, 2, b"wx", now=1.0) == b"wxyz"


def test_partial_messages_expire() -> None:
    r = Reassembler(limits(timeout=2.0))
    r.add(1, 0, 2, b"a", now=10.0)
    r.add(2, 0, 2, b"b", now=11.0)
    assert r.next_deadline() == 12.0
    assert r.expire(11.9) == 0
    assert r.expire(12.0) == 1
    assert r.partial_count == 1
    assert r.next_deadline() == 13.0
    assert r.expire(100.0) == 1
    assert r.buffered_bytes == 0
    assert r.next_deadline() is None
    assert r.stats.expired == 2


def test_limits_that_cannot_hold_one_message_are_refused() -> None:
    with pytest.raises(ConfigError):
        ReassemblyLimits(max_message_size=100, max_total_bytes=50)


# -- InOrderAssembler ------------------------------------------------------------


def test_in_order_assembler_joins_and_refuses_gaps() -> None:
    a = InOrderAssembler(max_message_size=10)
    assert a.push(0, 1, b"solo") == b"solo"
    assert a.push(0, 3, b"ab") is None
    assert a.push(1, 3, b"cd") is None
    assert a.push(2, 3, b"e") == b"abcde"
    assert a.push(0, 3, b"xx") is None
    with pytest.raises(ReassemblyError) as gap:
        a.push(2, 3, b"zz")
    assert gap.value.reason == "bad_fragment"
    with pytest.raises(ReassemblyError) as rest:
        a.push(2, 3, b"zz")
    assert rest.value.reason == "broken_message"
    assert a.push(0, 1, b"ok") == b"ok"


def test_in_order_assembler_bounds_message_size_and_counts_abandoned() -> None:
    a = InOrderAssembler(max_message_size=5)
    a.push(0, 3, b"abc")
    with pytest.raises(ReassemblyError) as big:
        a.push(1, 3, b"def")
    assert big.value.reason == "message_too_large"
    assert a.buffered_bytes == 0
    a.push(0, 2, b"x")
    assert a.push(0, 1, b"y") == b"y"
    assert a.abandoned == 1


# -- through links -------------------------------------------------------------


@pytest.mark.parametrize("reliable", [True, False])
def test_messages_up_to_the_max_size_round_trip(reliable: bool) -> None:
    a, b = Link(), Link()
    net = FakeNet(a, b, a_to_b=ImpairmentConfig(delay=0.01), b_to_a=ImpairmentConfig(delay=0.01))
    rng = random.Random(1)
    sizes = [0, 1, 1163, 1164, 1165, 5000, 65535, 65536]
    messages = [rng.randbytes(n) for n in sizes]
    for message in messages:
        a.send(message, net.clock.now(), reliable=reliable)
        b.send(message, net.clock.now(), reliable=reliable)
    assert net.run_until_idle()
    assert net.b_messages == messages
    assert net.a_messages == messages
    with pytest.raises(MessageTooLarge):
        a.send(bytes(65537), net.clock.now(), reliable=reliable)


def test_large_reliable_messages_survive_loss() -> None:
    a, b = Link(), Link()
    bad = ImpairmentConfig(drop=0.2, delay=0.01, jitter=0.002, duplicate=0.05)
    net = FakeNet(a, b, a_to_b=bad, b_to_a=bad, seed=3)
    rng = random.Random(2)
    messages = [rng.randbytes(rng.randrange(0, 65537)) for _ in range(30)]
    for message in messages:
        a.send(message, net.clock.now())
    assert net.run_until_idle()
    assert net.b_messages == messages
    assert b.stats.receive_buffer_bytes == 0


def test_unreliable_message_with_a_lost_fragment_is_lost_and_expires() -> None:
    cfg = LinkConfig(reassembly_timeout=0.5)
    a, b = Link(cfg), Link(cfg)
    net = FakeNet(a, b, a_to_b=ImpairmentConfig(drop=0.3), seed=5)
    rng = random.Random(3)
    messages = [rng.randbytes(10_000) for _ in range(40)]
    for message in messages:
        a.send(message, net.clock.now(), reliable=False)
    net.run_for(1.0)
    got = net.b_messages
    assert set(got) <= set(messages)
    assert 0 < len(got) < len(messages)
    stats = b.stats
    assert stats.partial_messages_expired + stats.partial_messages_evicted > 0
    assert stats.reassembly_bytes == 0
    assert a.stats.segments_retransmitted == 0


def test_link_reassembly_memory_is_bounded_under_a_fragment_flood() -> None:
    cfg = LinkConfig(max_partial_messages=16, max_reassembly_bytes=256 * 1024)
    victim = Link(cfg)
    now = 0.0
    peak = 0
    for i in range(5000):
        # first fragment of a 50-fragment message that never completes
        frame = DataFrame(False, i * 50, 0, 50, bytes(cfg.max_fragment_payload))
        victim.receive_datagram(encode_datagram([frame]), now)
        peak = max(peak, victim.stats.reassembly_bytes)
        now += 1e-4
    stats = victim.stats
    assert peak <= cfg.max_reassembly_bytes
    assert stats.partial_messages_evicted >= 5000 - cfg.max_partial_messages
    victim.handle_timer(now + cfg.reassembly_timeout)
    assert victim.stats.reassembly_bytes == 0
    assert victim.next_event() is None


def test_link_refuses_fragment_counts_beyond_the_max_message() -> None:
    cfg = LinkConfig()
    victim = Link(cfg)
    frame = DataFrame(False, 0, 0, cfg.max_fragments + 1, b"x")
    victim.receive_datagram(encode_datagram([frame]), 0.0)
    stats = victim.stats
    assert stats.dropped == {"too_many_fragments": 1}
    assert stats.reassembly_bytes == 0
