"""offline.* wire messages and the glue between them and the store."""

from __future__ import annotations

import pytest

from hopline.offline.store import Envelope, OfflineStore, ReplicaBatch, StoreLimits
from hopline.offline.wireform import (
    MAX_REPLICA_BYTES,
    batch_from_replica,
    envelope_to_wire,
    fetch_reply,
    handle_ack,
    handle_replica,
    put_envelopes,
    replica_messages,
    stamp_envelopes,
    store_reply,
)
from hopline.wire import WireError, decode, encode
from hopline.wire.offline import (
    OFFLINE_MESSAGES,
    AckRecord,
    OfflineAck,
    OfflineFetch,
    OfflineReplica,
    OfflineStoreRequest,
    SealedEnvelope,
    TombstoneRecord,
)

NOW = 1_700_000_000.0
PHONE, LAPTOP = b"phone-0123456789", b"laptop-012345678"


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def sealed(n: int, *, to: str = "bob", size: int = 64, sender: str | None = None) -> SealedEnvelope:
    return SealedEnvelope(
        message_id=mid(n),
        recipient=to,
        devices=(PHONE, LAPTOP),
        ciphertext=bytes([n % 256]) * size,
        sender=sender,
    )


def roundtrip(message: object) -> object:
    return decode(encode(message))  # type: ignore[arg-type]


def test_every_offline_message_round_trips() -> None:
    samples = [
        OfflineStoreRequest(request_id=7, envelopes=(sealed(1),)),
        OfflineReplica(
            request_id=8,
            envelopes=(
                envelope_to_wire(Envelope(mid(1), "bob", frozenset({PHONE}), "alice", b"x", NOW)),
            ),
            acks=(AckRecord(recipient="bob", message_id=mid(2), devices=(PHONE,), at=5),),
            tombstones=(TombstoneRecord(recipient="bob", message_id=mid(3), until=9),),
        ),
        OfflineFetch(request_id=9, cursor=12, limit=30),
        OfflineAck(request_id=10, message_ids=(mid(1), mid(2))),
    ]
    for message in samples:
        assert roundtrip(message) == message
    commands = {cls.COMMAND for cls in OFFLINE_MESSAGES}
    assert commands == {0x0090, 0x0091, 0x0092, 0x0093}


def test_truncated_offline_message_raises_only_wire_error() -> None:
    data = encode(OfflineStoreRequest(envelopes=(sealed(1),)))
    decoded = []
    for cut in range(1, len(data)):
        try:
            decoded.append(decode(data[:cut]))
        except WireError:
            continue
    assert decoded == [OfflineStoreRequest()]  # only the bare header is a (empty) request


def test_the_sender_comes_from_the_session_never_the_envelope() -> None:
    request = OfflineStoreRequest(envelopes=(sealed(1, sender="mallory"), sealed(2, to="x")))
    good, refused = stamp_envelopes(request, "alice", NOW, StoreLimits())
    assert [(e.sender, e.received_at) for e in good] == [("alice", NOW)]
    assert [(r.message_id, r.outcome) for r in refused] == [(mid(2), "bad-envelope")]
    store = OfflineStore()
    outcomes, batch = put_envelopes(store, good, NOW)
    reply = roundtrip(store_reply(refused + outcomes, request_id=3))
    assert [r.outcome for r in reply.results] == ["bad-envelope", "stored"]  # type: ignore[attr-defined]
    assert [e.message_id for e in batch.envelopes] == [mid(1)]
    assert store.usage("bob", "alice") == (1, 64)


def test_refusals_are_reported_per_envelope() -> None:
    store = OfflineStore(StoreLimits(max_sender_messages=1, max_envelope_size=100))
    request = OfflineStoreRequest(envelopes=(sealed(1), sealed(2), sealed(3, size=101)))
    good, refused = stamp_envelopes(request, "alice", NOW, store.limits)
    outcomes, _ = put_envelopes(store, good, NOW)
    assert [o.outcome for o in refused + outcomes] == ["too-large", "stored", "sender-share"]
    assert "holds 1 messages" in outcomes[1].detail
    again, _ = put_envelopes(store, good[:1], NOW)
    assert again[0].outcome == "duplicate"


def test_two_owners_via_the_wire() -> None:
    """Client stores at owner A; A replicates to B; the device fetches from B and acks at A."""
    a, b = OfflineStore(), OfflineStore()
    good, _ = stamp_envelopes(
        OfflineStoreRequest(envelopes=tuple(sealed(n) for n in range(5))), "alice", NOW, a.limits
    )
    _, batch = put_envelopes(a, good, NOW)
    for message in replica_messages(batch):
        reply = handle_replica(b, roundtrip(message), NOW)  # type: ignore[arg-type]
        assert (reply.stored, reply.refused) == (5, 0)
    page = roundtrip(fetch_reply(b, "bob", PHONE, OfflineFetch(request_id=1, limit=3)))
    assert [e.message_id for e in page.envelopes] == [mid(0), mid(1), mid(2)]  # type: ignore[attr-defined]
    assert page.more == 1 and page.envelopes[0].sender == "alice"  # type: ignore[attr-defined]
    assert page.envelopes[0].devices == ()  # type: ignore[attr-defined]
    for device in (PHONE, LAPTOP):
        ack = OfflineAck(message_ids=(*[mid(n) for n in range(5)], b"junk"))
        reply, acks = handle_ack(a, "bob", device, roundtrip(ack), NOW + 1)  # type: ignore[arg-type]
        assert reply.acked == 5
        for message in replica_messages(acks):
            handle_replica(b, roundtrip(message), NOW + 1)  # type: ignore[arg-type]
    assert len(a) == len(b) == 0
    assert set(a.tombstones("bob")) == set(b.tombstones("bob")) == {mid(n) for n in range(5)}


def test_replica_messages_fit_the_wire_limit() -> None:
    store = OfflineStore()
    devices = frozenset(bytes([d]) * 64 for d in range(16))
    for n in range(300):
        store.put(Envelope(mid(n), "b" * 32, devices, "s" * 32, b"c" * 1000, NOW), NOW)
    for n in range(300):
        store.ack("b" * 32, bytes([1]) * 64, [mid(n), mid(1000 + n)], NOW)
    batch = store.export_for_replica()
    messages = replica_messages(batch)
    assert len(messages) > 5
    sizes = [len(encode(m)) for m in messages]
    assert max(sizes) <= MAX_REPLICA_BYTES
    other = OfflineStore()
    for message in messages:
        handle_replica(other, decode(encode(message)), NOW)  # type: ignore[arg-type]
    assert other.export_for_replica() == batch


@pytest.mark.parametrize("size", [1, 200, 4000, 32 * 1024])
def test_fetch_reply_fits_the_wire_limit(size: int) -> None:
    store = OfflineStore()
    devices = frozenset(bytes([d]) * 64 for d in range(16))
    for n in range(300):
        store.put(Envelope(mid(n), "b" * 32, devices, "s" * 32, b"c" * size, NOW), NOW)
    reply = fetch_reply(store, "b" * 32, bytes(64), OfflineFetch(limit=200))
    assert reply.envelopes and reply.more == 1
    assert len(encode(reply)) <= 65536


def test_malformed_replica_parts_are_counted_and_skipped() -> None:
    message = OfflineReplica(
        envelopes=(
            sealed(1),  # no sender or time: only a client sends that
            envelope_to_wire(Envelope(mid(2), "bob", frozenset({PHONE}), "alice", b"x", NOW)),
            SealedEnvelope(
                message_id=b"short",
                recipient="bob",
                devices=(PHONE,),
                ciphertext=b"x",
                sender="alice",
                received_at=1,
            ),
        ),
        acks=(AckRecord(recipient="bob", message_id=b"bad", devices=(PHONE,)),),
    )
    batch, bad = batch_from_replica(message, StoreLimits())
    assert bad == 3 and [e.message_id for e in batch.envelopes] == [mid(2)]
    store = OfflineStore()
    reply = handle_replica(store, message, NOW)
    assert (reply.stored, reply.refused) == (1, 3)
    assert batch_from_replica(OfflineReplica(), StoreLimits()) == (ReplicaBatch(), 0)
