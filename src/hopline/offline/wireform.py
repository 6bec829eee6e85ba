"""Between the offline store's plain data and its wire messages (sans-I/O).

The supernode's asyncio service is a thin shell over these functions:

* :func:`stamp_envelopes` turns a client's ``offline.store`` into
  :class:`~hopline.offline.store.Envelope` values whose ``sender`` is the
  user the session's certificate proved and whose ``received_at`` is now;
  whatever the client wrote as sender or time is ignored. Malformed
  envelopes get a refusal outcome here and never reach a store.
* :func:`store_reply` answers the client, one outcome per envelope.
* :func:`replica_messages` cuts a :class:`~hopline.offline.store.ReplicaBatch`
  into ``offline.replica`` requests that each fit the wire's 64 KiB limit;
  :func:`batch_from_replica` reads one back (a malformed part is counted and
  skipped, the rest is kept).
* :func:`fetch_reply` and :func:`handle_ack` serve a device, taking the user
  and device from the session, never from the message.

Times on the wire are Unix milliseconds; the store keeps seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hopline.offline.store import (
    MESSAGE_ID_SIZE,
    AckResult,
    AckSet,
    BadEnvelope,
    Envelope,
    FetchPage,
    OfflineError,
    OfflineStore,
    PutOutcome,
    ReplicaBatch,
    StoreLimits,
    Tombstone,
    check_envelope,
    wire_cost,
)
from hopline.wire.offline import (
    MAX_FETCH,
    AckRecord,
    OfflineAck,
    OfflineAckReply,
    OfflineFetch,
    OfflineFetchReply,
    OfflineReplica,
    OfflineReplicaReply,
    OfflineStoreReply,
    OfflineStoreRequest,
    SealedEnvelope,
    StoreOutcome,
    TombstoneRecord,
)

MAX_REPLICA_BYTES = 56 * 1024  # of one offline.replica, below the 64 KiB wire limit
_RECORD_COST = 96  # an ack or tombstone record beside its names and ids


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _seconds(ms: int) -> float:
    return ms / 1000


def envelope_to_wire(
    envelope: Envelope, *, acked: Iterable[bytes] = (), with_devices: bool = True
) -> SealedEnvelope:
    """The wire record of a held envelope (for a replica or a fetch reply)."""
    return SealedEnvelope(
        message_id=envelope.message_id,
        recipient=envelope.recipient,
        devices=tuple(sorted(envelope.devices)) if with_devices else (),
        ciphertext=envelope.ciphertext,
        sender=envelope.sender,
        received_at=_ms(envelope.received_at),
        acked=tuple(sorted(acked)),
    )


def envelope_from_replica(record: SealedEnvelope, limits: StoreLimits) -> Envelope:
    """An envelope another owner sent (it carries sender and time); raise OfflineError."""
    if record.sender is None or record.received_at is None:
        raise BadEnvelope("a replica envelope names its sender and arrival time")
    envelope = Envelope(
        record.message_id,
        record.recipient,
        frozenset(record.devices),
        record.sender,
        record.ciphertext,
        _seconds(record.received_at),
    )
    return check_envelope(envelope, limits)


def stamp_envelopes(
    request: OfflineStoreRequest, sender: str, now: float, limits: StoreLimits
) -> tuple[list[Envelope], list[StoreOutcome]]:
    """Envelopes of a client's request stamped with the session's user and ``now``.

    Returns the acceptable envelopes and a refusal outcome for each malformed one.
    """
    good: list[Envelope] = []
    refused: list[StoreOutcome] = []
    for record in request.envelopes:
        envelope = Envelope(
            record.message_id,
            record.recipient,
            frozenset(record.devices),
            sender,
            record.ciphertext,
            now,
        )
        try:
            good.append(check_envelope(envelope, limits))
        except OfflineError as exc:
            refused.append(_outcome(record.message_id, record.recipient, exc.reason, exc.detail))
    return good, refused


def _outcome(message_id: bytes, recipient: str, outcome: str, detail: str = "") -> StoreOutcome:
    return StoreOutcome(
        message_id=message_id, recipient=recipient, outcome=outcome, detail=detail[:200]
    )


def put_envelopes(
    store: OfflineStore, envelopes: Sequence[Envelope], now: float
) -> tuple[list[StoreOutcome], ReplicaBatch]:
    """Put each envelope into a store that owns the slot.

    Returns one outcome per envelope and the batch of newly stored ones to
    send to the slot's other owners.
    """
    outcomes: list[StoreOutcome] = []
    stored: list[Envelope] = []
    for envelope in envelopes:
        try:
            result = store.put(envelope, now)
        except OfflineError as exc:
            outcomes.append(
                _outcome(envelope.message_id, envelope.recipient, exc.reason, exc.detail)
            )
            continue
        outcomes.append(_outcome(envelope.message_id, envelope.recipient, result.value))
        if result is PutOutcome.STORED:
            stored.append(envelope)
    return outcomes, ReplicaBatch(envelopes=tuple(stored))


def store_reply(outcomes: Iterable[StoreOutcome], request_id: int = 0) -> OfflineStoreReply:
    """The reply to ``offline.store``."""
    return OfflineStoreReply(request_id=request_id, results=tuple(outcomes))


# ---------------------------------------------------------------- replicas


def _ack_cost(ack: AckSet) -> int:
    return _RECORD_COST + len(ack.recipient) + sum(len(d) + 4 for d in ack.devices)


def replica_messages(
    batch: ReplicaBatch, max_bytes: int = MAX_REPLICA_BYTES
) -> list[OfflineReplica]:
    """``batch`` as ``offline.replica`` requests, each at most about ``max_bytes``."""
    parts: list[tuple[int, object]] = [(wire_cost(e), e) for e in batch.envelopes]
    parts += [(_ack_cost(a), a) for a in batch.acks]
    parts += [(_RECORD_COST + len(t.recipient), t) for t in batch.tombstones]
    messages: list[OfflineReplica] = []
    chunk: list[object] = []
    size = 0
    for cost, part in parts:
        if chunk and size + cost > max_bytes:
            messages.append(_replica(chunk))
            chunk, size = [], 0
        chunk.append(part)
        size += cost
    if chunk:
        messages.append(_replica(chunk))
    return messages


def _replica(parts: list[object]) -> OfflineReplica:
    return OfflineReplica(
        envelopes=tuple(envelope_to_wire(p) for p in parts if isinstance(p, Envelope)),
        acks=tuple(
            AckRecord(
                recipient=p.recipient,
                message_id=p.message_id,
                devices=tuple(sorted(p.devices)),
                at=_ms(p.at),
            )
            for p in parts
            if isinstance(p, AckSet)
        ),
        tombstones=tuple(
            TombstoneRecord(recipient=p.recipient, message_id=p.message_id, until=_ms(p.until))
            for p in parts
            if isinstance(p, Tombstone)
        ),
    )


def batch_from_replica(message: OfflineReplica, limits: StoreLimits) -> tuple[ReplicaBatch, int]:
    """The batch an ``offline.replica`` carries and how many malformed parts were skipped."""
    envelopes: list[Envelope] = []
    acks: list[AckSet] = []
    bad = 0
    for record in message.envelopes:
        try:
            envelope = envelope_from_replica(record, limits)
        except OfflineError:
            bad += 1
            continue
        envelopes.append(envelope)
        if record.acked:
            acks.append(
                AckSet(
                    envelope.recipient,
                    envelope.message_id,
                    frozenset(record.acked),
                    envelope.received_at,
                )
            )
    for ack in message.acks:
        if len(ack.message_id) != MESSAGE_ID_SIZE or not ack.devices:
            bad += 1
            continue
        acks.append(AckSet(ack.recipient, ack.message_id, frozenset(ack.devices), _seconds(ack.at)))
    tombstones = [
        Tombstone(t.recipient, t.message_id, _seconds(t.until)) for t in message.tombstones
    ]
    return ReplicaBatch(tuple(envelopes), tuple(acks), tuple(tombstones)), bad


def handle_replica(store: OfflineStore, message: OfflineReplica, now: float) -> OfflineReplicaReply:
    """Merge an ``offline.replica`` into ``store`` and count what changed."""
    batch, bad = batch_from_replica(message, store.limits)
    result = store.import_replica(batch, now)
    return OfflineReplicaReply(
        request_id=message.request_id,
        stored=result.stored,
        unchanged=result.unchanged,
        refused=bad + sum(result.refused.values()),
        removed=result.removed,
    )


# ---------------------------------------------------------------- devices


def fetch_reply(
    store: OfflineStore, user: str, device: bytes, request: OfflineFetch
) -> OfflineFetchReply:
    """Serve ``offline.fetch`` for the session's ``user`` and ``device``."""
    page: FetchPage = store.fetch(user, device, request.cursor, min(request.limit, MAX_FETCH))
    return OfflineFetchReply(
        request_id=request.request_id,
        envelopes=tuple(envelope_to_wire(m.envelope, with_devices=False) for m in page.messages),
        next_cursor=page.next_cursor,
        more=int(page.more),
    )


def handle_ack(
    store: OfflineStore, user: str, device: bytes, request: OfflineAck, now: float
) -> tuple[OfflineAckReply, ReplicaBatch]:
    """Apply ``offline.ack`` for the session's device; also return the acks for the other owners."""
    result: AckResult = store.ack(user, device, request.message_ids, now)
    ids = {mid for mid in request.message_ids if len(mid) == MESSAGE_ID_SIZE}
    acks = tuple(AckSet(user, mid, frozenset((device,)), now) for mid in sorted(ids))
    reply = OfflineAckReply(
        request_id=request.request_id, acked=result.acked, removed=result.removed
    )
    return reply, ReplicaBatch(acks=acks)


__all__ = [
    "MAX_REPLICA_BYTES",
    "batch_from_replica",
    "envelope_from_replica",
    "envelope_to_wire",
    "fetch_reply",
    "handle_ack",
    "put_envelopes",
    "replica_messages",
    "handle_replica",
    "stamp_envelopes",
    "store_reply",
]
