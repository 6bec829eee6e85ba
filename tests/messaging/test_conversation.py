"""Conversation logs: one order on every replica, exactly once, receipts, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.messaging.conversation import (
    ConversationLog,
    InsertResult,
    LogEntry,
    ReceiptKind,
)
from hopline.messaging.envelope import (
    MessageError,
    MessageKind,
    open_envelope,
    seal_envelope,
)

Device = Any  # the conftest Device
CONV = b"conv-1"


def entry(clock: int, device: bytes, message_id: bytes, text: str = "hi") -> LogEntry:
    return LogEntry(CONV, message_id, "user", device, clock, 1000 + clock, text)


entries_strategy = st.lists(
    st.builds(
        entry,
        clock=st.integers(min_value=0, max_value=20),
        device=st.sampled_from([b"a", b"b", b"bb", b"c"]),
        message_id=st.binary(min_size=16, max_size=16),
    ),
    max_size=40,
    unique_by=lambda e: e.message_id,
)


@settings(max_examples=150, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_every_arrival_order_gives_the_same_log(entries: list[LogEntry], data: Any) -> None:
    replicas = []
    for _ in range(3):
        copies = data.draw(st.lists(st.sampled_from(entries))) if entries else []
        arrivals = data.draw(st.permutations(entries + copies))
        log = ConversationLog(CONV)
        results = [log.add(e).result for e in arrivals]
        assert results.count(InsertResult.ADDED) == len(entries)
        assert results.count(InsertResult.DUPLICATE) == len(copies)
        replicas.append(log.entries())
    expected = sorted(entries, key=lambda e: e.key)
    assert all(replica == expected for replica in replicas)


@settings(max_examples=100, deadline=None)
@given(entries=entries_strategy, cap=st.integers(min_value=1, max_value=10), data=st.data())
def test_bounded_window_agrees_too(entries: list[LogEntry], cap: int, data: Any) -> None:
    """With a small window, every replica keeps the same newest ``cap`` messages."""
    windows = []
    for _ in range(2):
        log = ConversationLog(CONV, max_entries=cap)
        evicted: list[LogEntry] = []
        for e in data.draw(st.permutations(entries)):
            evicted += log.add(e).evicted
        assert len(log) == min(cap, len(entries))
        assert sorted(evicted + log.entries(), key=lambda e: e.key) == sorted(
            entries, key=lambda e: e.key
        )
        windows.append(log.entries())
    assert windows[0] == windows[1] == sorted(entries, key=lambda e: e.key)[-cap:]


def test_late_message_is_inserted_in_place_and_clock_follows() -> None:
    log = ConversationLog(CONV)
    log.add(entry(1, b"a", b"1" * 16))
    log.add(entry(5, b"a", b"3" * 16))
    result = log.add(entry(3, b"b", b"2" * 16))
    assert result.result is InsertResult.ADDED
    assert result.position == 1
    assert [e.clock for e in log.entries()] == [1, 3, 5]
    assert log.next_clock() == 6
    assert log.next_clock() == 7


def test_ties_on_clock_break_by_device_then_id() -> None:
    log = ConversationLog(CONV)
    for e in (entry(2, b"b", b"1" * 16), entry(2, b"a", b"9" * 16), entry(2, b"a", b"2" * 16)):
        log.add(e)
    assert [(e.sender_device, e.message_id[:1]) for e in log.entries()] == [
        (b"a", b"2"),
        (b"a", b"9"),
        (b"b", b"1"),
    ]


def test_duplicates_are_counted_and_conflicts_refused() -> None:
    log = ConversationLog(CONV)
    original = entry(1, b"a", b"1" * 16, "first")
    assert log.add(original).result is InsertResult.ADDED
    assert log.add(original).result is InsertResult.DUPLICATE
    assert log.dropped["duplicate"] == 1
    with pytest.raises(MessageError) as text_changed:
        log.add(entry(1, b"a", b"1" * 16, "edited"))
    with pytest.raises(MessageError) as moved:
        log.add(entry(9, b"a", b"1" * 16, "first"))
    assert text_changed.value.reason == moved.value.reason == "conflict"
    assert log.entries() == [original]
    with pytest.raises(MessageError) as other:
        log.add(LogEntry(b"other", b"2" * 16, "user", b"a", 1, 1, "x"))
    assert other.value.reason == "wrong-conversation"


def test_evicted_ids_are_still_duplicates() -> None:
    log = ConversationLog(CONV, max_entries=2)
    old = entry(1, b"a", b"1" * 16)
    log.add(old)
    log.add(entry(2, b"a", b"2" * 16))
    result = log.add(entry(3, b"a", b"3" * 16))
    assert result.evicted == (old,)
    assert log.add(old).result is InsertResult.DUPLICATE
    late = log.add(entry(0, b"z", b"0" * 16))
    assert late.result is InsertResult.ADDED
    assert late.position == -1
    assert [e.clock for e in late.evicted] == [0]


def test_receipts_attach_even_before_the_message() -> None:
    log = ConversationLog(CONV)
    message_id = b"m" * 16
    bob_phone = ("bob", b"phone")
    assert not log.add_receipt(message_id, bob_phone, ReceiptKind.READ, 50)
    assert log.pending_receipts == 1
    log.add(entry(1, b"a", message_id))
    assert log.pending_receipts == 0
    receipt = log.receipts(message_id)[bob_phone]
    assert (receipt.delivered_at_ms, receipt.read_at_ms) == (50, 50)
    bob_desktop = ("bob", b"desktop")
    assert log.add_receipt(message_id, bob_desktop, ReceiptKind.DELIVERED, 60)
    assert not log.add_receipt(message_id, bob_desktop, ReceiptKind.DELIVERED, 70)
    assert log.add_receipt(message_id, bob_desktop, ReceiptKind.READ, 80)
    receipt = log.receipts(message_id)[bob_desktop]
    assert (receipt.delivered_at_ms, receipt.read_at_ms) == (60, 80)


def test_pending_receipts_are_bounded() -> None:
    log = ConversationLog(CONV, max_pending=3)
    for i in range(5):
        log.add_receipt(bytes([i]) * 16, ("bob", b"d"), ReceiptKind.DELIVERED, i)
    assert log.pending_receipts == 3
    assert log.dropped["pending-overflow"] == 2
    log.add(entry(1, b"a", bytes([0]) * 16))  # its receipt was the oldest: dropped
    assert log.receipts(bytes([0]) * 16) == {}
    log.add(entry(1, b"a", bytes([4]) * 16))
    assert ("bob", b"d") in log.receipts(bytes([4]) * 16)


def test_devices_agree_through_real_envelopes(
    alice: Device, alice_phone: Device, bob: Device, bob_phone: Device
) -> None:
    """Alice and bob each on two devices; messages, own copies and replies cross in
    different orders; all four logs end identical, with the receipt attached."""
    devices = {d.device: d for d in (alice, alice_phone, bob, bob_phone)}
    logs = {d.device: ConversationLog(CONV) for d in devices.values()}
    inboxes: dict[bytes, list[bytes]] = {d: [] for d in devices}

    def send(sender: Device, text: str) -> bytes:
        clock = logs[sender.device].next_clock()
        first = sender.record(sender, text.encode(), clock=clock, conversation=CONV)
        logs[sender.device].add(LogEntry.from_record(first))
        for other in devices.values():
            if other.device == sender.device:
                continue
            kind = MessageKind.SYNC if other.user == sender.user else MessageKind.TEXT
            record = sender.record(
                other, text.encode(), kind=kind, clock=clock, message_id=first.message_id
            )
            sealed = seal_envelope(record, sender.keys.signing, other.keys.static.public)
            inboxes[other.device].append(sealed)
        return first.message_id

    def receive(device: Device, reverse: bool = False) -> None:
        for sealed in reversed(inboxes[device.device]) if reverse else inboxes[device.device]:
            record = open_envelope(
                sealed, device.recipient, lambda u, d: devices[d].keys.signing.public
            )
            logs[device.device].apply(record)
        inboxes[device.device].clear()

    first = send(alice, "hello bob")
    send(alice_phone, "sent from my phone")
    receive(bob)
    send(bob, "hi alice")
    receipt = bob_phone.record(
        alice, first, kind=MessageKind.RECEIPT_READ, clock=logs[bob_phone.device].next_clock()
    )
    logs[alice.device].apply(
        open_envelope(
            seal_envelope(receipt, bob_phone.keys.signing, alice.keys.static.public),
            alice.recipient,
            bob_phone.keys.signing.public,
        )
    )
    for device, reverse in ((bob_phone, True), (alice, False), (alice_phone, True), (bob, False)):
        receive(device, reverse)
    views = [[(e.sender_device, e.text) for e in log.entries()] for log in logs.values()]
    assert all(view == views[0] for view in views)
    assert len(views[0]) == 3
    assert views[0][-1] == (bob.device, "hi alice")  # bob answered after seeing both
    assert logs[alice.device].receipts(first)[("bob", bob_phone.device)].read_at_ms is not None


def test_apply_refuses_kinds_that_are_not_log_items(alice: Device, bob: Device) -> None:
    log = ConversationLog(CONV)
    with pytest.raises(MessageError) as caught:
        log.apply(alice.record(bob, b"x", kind=MessageKind.PRESENCE, conversation=CONV))
    assert caught.value.reason == "bad-kind"
    with pytest.raises(MessageError):
        LogEntry.from_record(alice.record(bob, b"x", kind=MessageKind.GROUP_OP))
