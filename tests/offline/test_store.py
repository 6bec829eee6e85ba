"""The offline store core: put, fetch pages, acks from every device, quotas, expiry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.offline.store import (
    MAX_PAGE,
    BadEnvelope,
    Envelope,
    Forgotten,
    OfflineError,
    OfflineStore,
    PutOutcome,
    QuotaExceeded,
    Removed,
    ReplicaBatch,
    SenderShareExceeded,
    Stored,
    StoreLimits,
    Tombstone,
    Tombstoned,
    TooLarge,
)

NOW = 1_700_000_000.0
PHONE, LAPTOP = b"phone", b"laptop"


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def env(
    n: int,
    *,
    to: str = "bob",
    sender: str = "alice",
    devices: tuple[bytes, ...] = (PHONE, LAPTOP),
    size: int = 100,
    at: float = NOW,
) -> Envelope:
    return Envelope(mid(n), to, frozenset(devices), sender, bytes([n % 256]) * size, at)


def ids(page_messages: object) -> list[bytes]:
    return [m.envelope.message_id for m in page_messages]  # type: ignore[attr-defined]


def test_put_is_idempotent_by_message_id() -> None:
    store = OfflineStore()
    assert store.put(env(1), NOW) is PutOutcome.STORED
    assert store.put(env(1), NOW + 5) is PutOutcome.DUPLICATE
    assert len(store) == 1
    assert store.usage("bob") == (1, 100)
    with pytest.raises(BadEnvelope, match="other content"):
        store.put(env(1, size=101), NOW)
    assert store.refused["bad-envelope"] == 1


def test_names_are_canonical_and_received_at_clamped() -> None:
    store = OfflineStore()
    store.put(env(1, to="Bob", sender="ALICE", at=NOW + 999), NOW)
    (held,) = store.messages("bob")
    assert (held.envelope.recipient, held.envelope.sender) == ("bob", "alice")
    assert held.envelope.received_at == NOW


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (Envelope(b"short", "bob", frozenset({PHONE}), "alice", b"x", NOW), "bad-envelope"),
        (Envelope(mid(1), "bob", frozenset(), "alice", b"x", NOW), "bad-envelope"),
        (Envelope(mid(1), "b", frozenset({PHONE}), "alice", b"x", NOW), "bad-envelope"),
        (Envelope(mid(1), "bob", frozenset({PHONE}), "no spaces", b"x", NOW), "bad-envelope"),
        (Envelope(mid(1), "bob", frozenset({b""}), "alice", b"x", NOW), "bad-envelope"),
        (Envelope(mid(1), "bob", frozenset({PHONE}), "alice", b"", NOW), "bad-envelope"),
        (Envelope(mid(1), "bob", frozenset({PHONE}), "alice", b"x" * 40_000, NOW), "too-large"),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(envelope: Envelope, reason: str) -> None:
    store = OfflineStore()
    with pytest.raises((BadEnvelope, TooLarge)) as caught:
        store.put(envelope, NOW)
    assert caught.value.reason == reason
    assert store.refused[reason] == 1
    assert len(store) == 0


def test_too_many_devices_is_refused() -> None:
    store = OfflineStore(StoreLimits(max_devices=2))
    with pytest.raises(BadEnvelope, match="devices"):
        store.put(env(1, devices=(b"a", b"b", b"c")), NOW)


def test_fetch_pages_in_arrival_order_per_device() -> None:
    store = OfflineStore()
    for n in range(1, 8):
        store.put(env(n, devices=(PHONE,) if n == 4 else (PHONE, LAPTOP)), NOW + n)
    first = store.fetch("bob", LAPTOP, 0, 3)
    assert ids(first.messages) == [mid(1), mid(2), mid(3)] and first.more
    second = store.fetch("bob", LAPTOP, first.next_cursor, 3)
    assert ids(second.messages) == [mid(5), mid(6), mid(7)]  # 4 is for the phone only
    assert not second.more
    empty = store.fetch("bob", LAPTOP, second.next_cursor, 3)
    assert (empty.messages, empty.more, empty.next_cursor) == ((), False, second.next_cursor)
    assert len(store.fetch("bob", PHONE, 0, 100).messages) == 7
    assert store.fetch("nobody", PHONE).messages == ()


def test_fetch_limit_is_clamped_and_page_bytes_bounded() -> None:
    store = OfflineStore()
    for n in range(1, 301):
        store.put(env(n, size=10, devices=(PHONE,)), NOW)
    assert len(store.fetch("bob", PHONE, 0, 10_000).messages) == MAX_PAGE
    assert len(store.fetch("bob", PHONE, 0, 0).messages) == 1
    big = OfflineStore()
    for n in range(1, 6):
        big.put(env(n, size=30_000, devices=(PHONE,)), NOW)
    page = big.fetch("bob", PHONE, 0, 50)
    assert len(page.messages) == 1 and page.more  # each is about half a page


def test_message_is_removed_only_when_every_device_acked() -> None:
    store = OfflineStore()
    store.put(env(1), NOW)
    store.put(env(2), NOW)
    result = store.ack("bob", PHONE, [mid(1), mid(2)], NOW + 1)
    assert (result.acked, result.removed) == (2, 0)
    assert store.fetch("bob", PHONE).messages == ()
    assert ids(store.fetch("bob", LAPTOP).messages) == [mid(1), mid(2)]
    assert store.ack("bob", PHONE, [mid(1)], NOW + 2).acked == 0  # repeated ack: no change
    result = store.ack("bob", LAPTOP, [mid(1)], NOW + 3)
    assert (result.acked, result.removed) == (1, 1)
    assert ids(store.messages("bob")) == [mid(2)]
    assert mid(1) in store.tombstones("bob")
    assert store.put(env(1), NOW + 4) is PutOutcome.DELIVERED  # a late copy is not kept
    assert store.usage("bob") == (1, 100)


def test_ack_from_an_unlisted_device_changes_nothing() -> None:
    store = OfflineStore()
    store.put(env(1, devices=(PHONE,)), NOW)
    assert store.ack("bob", b"tablet", [mid(1)], NOW).acked == 0
    assert len(store) == 1


def test_ack_before_envelope_is_applied_when_it_arrives() -> None:
    store = OfflineStore()
    assert store.ack("bob", PHONE, [mid(1)], NOW).pending == 1
    assert store.pending_acks("bob") == {mid(1): frozenset({PHONE})}
    store.put(env(1), NOW)
    assert store.messages("bob")[0].acked == {PHONE}
    assert store.pending_acks("bob") == {}
    store.ack("bob", LAPTOP, [mid(2)], NOW)
    assert store.put(env(2, devices=(LAPTOP,)), NOW) is PutOutcome.DELIVERED
    assert len(store) == 1  # mid(2) was delivered on arrival
    assert mid(2) in store.tombstones("bob")


def test_pending_acks_are_bounded_per_user() -> None:
    store = OfflineStore(StoreLimits(max_pending_acks=10))
    store.ack("bob", PHONE, [mid(n) for n in range(100)], NOW)
    assert len(store.pending_acks("bob")) == 10
    assert set(store.pending_acks("bob")) == {mid(n) for n in range(90, 100)}  # oldest forgotten


def test_pending_acks_and_tombstones_are_bounded_over_the_store() -> None:
    store = OfflineStore(StoreLimits(max_total_pending_acks=3, max_total_tombstones=2))
    for user in ("bob", "carol"):
        store.ack(user, PHONE, [mid(n) for n in range(5)], NOW)
    assert store.total_pending == 3
    assert len(store.pending_acks("bob")) + len(store.pending_acks("carol")) == 3
    for n in range(10, 14):
        store.put(env(n, devices=(PHONE,)), NOW)
    store.ack("bob", PHONE, [mid(n) for n in range(10, 14)], NOW)
    assert len(store) == 0 and store.total_tombstones == 2
    assert len(store.tombstones("bob")) == 2
    full = store.import_replica(
        ReplicaBatch(tombstones=(Tombstone("dave", mid(1), NOW + 10),)), NOW
    )
    assert full.removed == 0 and "dave" not in store.users()  # no room: nothing kept
    store.expire(NOW + store.limits.retention + 1)
    assert (store.total_pending, store.total_tombstones, store.users()) == (0, 0, [])


def test_tombstones_are_bounded_per_user() -> None:
    store = OfflineStore(StoreLimits(max_tombstones=5))
    for n in range(20):
        store.put(env(n, devices=(PHONE,)), NOW)
    store.ack("bob", PHONE, [mid(n) for n in range(20)], NOW)
    assert len(store) == 0
    assert set(store.tombstones("bob")) == {mid(n) for n in range(15, 20)}


# ---------------------------------------------------------------- quotas


def test_one_sender_cannot_exceed_its_share() -> None:
    limits = StoreLimits(max_messages=100, max_sender_messages=10)
    store = OfflineStore(limits)
    for n in range(10):
        store.put(env(n, sender="mallory"), NOW)
    with pytest.raises(SenderShareExceeded) as caught:
        store.put(env(10, sender="mallory"), NOW)
    assert caught.value.reason == "sender-share"
    assert store.usage("bob", "mallory") == (10, 1000)
    store.put(env(11, sender="alice"), NOW)  # others still get through
    assert store.usage("bob") == (11, 1100)
    store.put(env(0, sender="mallory", to="carol"), NOW)  # the share is per recipient
    assert store.refused == {"sender-share": 1}


def test_sender_share_in_bytes() -> None:
    limits = StoreLimits(max_sender_bytes=1000, max_envelope_size=600)
    store = OfflineStore(limits)
    store.put(env(1, size=600, sender="mallory"), NOW)
    with pytest.raises(SenderShareExceeded, match="bytes"):
        store.put(env(2, size=401, sender="mallory"), NOW)
    store.put(env(3, size=400, sender="mallory"), NOW)


def test_many_senders_cannot_exceed_the_users_quota() -> None:
    limits = StoreLimits(max_messages=50, max_bytes=10_000, max_sender_messages=5)
    store = OfflineStore(limits)
    refused = 0
    for n in range(200):
        try:
            store.put(env(n, sender=f"sender{n // 5:03d}"), NOW)
        except QuotaExceeded as exc:
            assert exc.reason == "quota"
            refused += 1
    assert store.usage("bob") == (50, 5000)
    assert refused == 150 and store.refused["quota"] == 150
    with pytest.raises(QuotaExceeded, match="bytes"):
        OfflineStore(StoreLimits(max_bytes=150)).put(env(1, size=151), NOW)


def test_freed_quota_can_be_used_again() -> None:
    store = OfflineStore(StoreLimits(max_messages=2, max_sender_messages=5))
    store.put(env(1, devices=(PHONE,)), NOW)
    store.put(env(2, devices=(PHONE,)), NOW)
    with pytest.raises(QuotaExceeded):
        store.put(env(3, devices=(PHONE,)), NOW)
    store.ack("bob", PHONE, [mid(1)], NOW)
    assert store.put(env(3, devices=(PHONE,)), NOW) is PutOutcome.STORED
    assert store.usage("bob", "alice") == (2, 200)


def test_whole_store_bounds() -> None:
    store = OfflineStore(StoreLimits(max_users=2, max_total_messages=3, max_total_bytes=10_000))
    store.put(env(1, to="bob"), NOW)
    store.put(env(2, to="carol"), NOW)
    with pytest.raises(QuotaExceeded, match="users"):
        store.put(env(3, to="dave"), NOW)
    store.put(env(3, to="bob"), NOW)
    with pytest.raises(QuotaExceeded, match="messages"):
        store.put(env(4, to="carol"), NOW)
    assert store.ack("dave", PHONE, [mid(9)], NOW).pending == 0  # no room for a new user


# ---------------------------------------------------------------- expiry


def test_expire_after_retention() -> None:
    store = OfflineStore(StoreLimits(retention=100))
    store.put(env(1), NOW)
    store.put(env(2, at=NOW + 50), NOW + 50)
    store.ack("bob", PHONE, [mid(9)], NOW + 10)
    assert store.expire(NOW + 99) == 0
    assert store.expire(NOW + 100) == 1
    assert ids(store.messages("bob")) == [mid(2)]
    assert store.expire(NOW + 110) == 1  # the pending ack
    assert store.pending_acks("bob") == {}
    assert store.expire(NOW + 150) == 1
    assert store.users() == [] and store.total_bytes == 0 and store.expired == 2
    assert store.put(env(5, at=NOW), NOW + 100) is PutOutcome.EXPIRED


def test_tombstone_expires_with_its_message() -> None:
    store = OfflineStore(StoreLimits(retention=100))
    store.put(env(1, devices=(PHONE,)), NOW)
    store.ack("bob", PHONE, [mid(1)], NOW + 10)
    assert store.tombstones("bob") == {mid(1): NOW + 100}
    assert store.expire(NOW + 100) == 1
    assert store.users() == []


def test_expiry_heap_stays_bounded() -> None:
    store = OfflineStore()
    for n in range(20_000):
        store.put(env(n, devices=(PHONE,)), NOW)
        store.ack("bob", PHONE, [mid(n)], NOW)
    # every message was delivered; only the 20,000 tombstones remain
    assert len(store) == 0 and len(store.tombstones("bob")) == 20_000
    assert len(store._heap) <= 2 * 20_000 + 4096


def test_journal_records_changes_in_order() -> None:
    store = OfflineStore(journal=True)
    store.put(env(1, devices=(PHONE,)), NOW)
    store.ack("bob", PHONE, [mid(1)], NOW + 1)
    changes = store.drain_changes()
    assert [type(c) for c in changes] == [Stored, Removed, Tombstoned]
    assert store.drain_changes() == []
    store.ack("bob", PHONE, [mid(2)], NOW)
    store.put(env(2, devices=(PHONE, LAPTOP)), NOW)
    kinds = [type(c).__name__ for c in store.drain_changes()]
    assert kinds == ["Acked", "Stored", "Forgotten", "Acked"]
    assert OfflineStore().drain_changes() == []
    assert isinstance(Forgotten("bob", mid(1)), Forgotten)


def check_accounting(store: OfflineStore) -> None:
    """Every counter equals what recounting the held items gives; no empty mailbox is kept."""
    messages = [m for user in store.users() for m in store.messages(user)]
    assert store.total_messages == len(messages)
    assert store.total_bytes == sum(m.envelope.size for m in messages)
    assert store.total_pending == sum(len(store.pending_acks(u)) for u in store.users())
    assert store.total_tombstones == sum(len(store.tombstones(u)) for u in store.users())
    for user in store.users():
        held = store.messages(user)
        assert held or store.pending_acks(user) or store.tombstones(user)
        assert store.usage(user) == (len(held), sum(m.envelope.size for m in held))
        for sender in {m.envelope.sender for m in held}:
            mine = [m for m in held if m.envelope.sender == sender]
            assert store.usage(user, sender) == (len(mine), sum(m.envelope.size for m in mine))
        assert [m.seq for m in held] == sorted(m.seq for m in held)
    limits = store.limits
    assert store.total_messages <= limits.max_total_messages
    assert store.total_pending <= limits.max_total_pending_acks
    assert store.total_tombstones <= limits.max_total_tombstones
    assert len(store.users()) <= limits.max_users


_store_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 12),
            st.sampled_from(["bob", "carol", "dave"]),
            st.sampled_from(["alice", "mallory"]),
        ),
        st.tuples(
            st.just("ack"),
            st.integers(0, 14),
            st.sampled_from(["bob", "carol", "dave"]),
            st.sampled_from(["phone", "laptop"]),
        ),
        st.tuples(st.just("expire"), st.integers(0, 300), st.just(""), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_store_ops)
def test_accounting_holds_after_any_operations(ops: list[tuple[str, int, str, str]]) -> None:
    limits = StoreLimits(
        retention=100,
        max_users=2,
        max_messages=5,
        max_sender_messages=3,
        max_total_messages=8,
        max_pending_acks=3,
        max_tombstones=3,
        max_total_pending_acks=4,
        max_total_tombstones=4,
    )
    store = OfflineStore(limits)
    clock = NOW
    for kind, n, user, extra in ops:
        clock += 1
        if kind == "put":
            try:
                store.put(env(n, to=user, sender=extra, size=10 + n, at=clock), clock)
            except OfflineError as exc:
                assert exc.reason in {"quota", "sender-share", "bad-envelope"}
        elif kind == "ack":
            store.ack(user, extra.encode(), [mid(n)], clock)
        else:
            store.expire(NOW + n)
        check_accounting(store)
    store.expire(clock + 1000)
    check_accounting(store)
    assert store.users() == []
