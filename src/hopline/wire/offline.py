"""Offline message store commands (command ids 0x0090-0x0093; 0x0094-0x009F reserved).

==========  ===============  ==================================================
id          name             purpose
==========  ===============  ==================================================
0x0090      offline.store    client to its supernode: keep these sealed envelopes
0x0091      offline.replica  supernode to a slot owner: envelopes, acks, tombstones
0x0092      offline.fetch    client to a slot owner: a page of my envelopes
0x0093      offline.ack      client to a slot owner: these reached this device
==========  ===============  ==================================================

All are requests inside an authenticated session, so the receiver knows who
sent them. A client sends ``offline.store`` for a recipient that is offline;
its supernode stamps the sender from the session's certificate (a
``sender`` inside a client's envelope is ignored), stamps ``received_at``,
and forwards the envelopes as ``offline.replica`` to the owners of the
recipient's directory slot. ``offline.fetch`` and ``offline.ack`` name no
user or device: the owner takes both from the session. Each ack is passed
on to the slot's other owners as an ``offline.replica`` carrying ``acks``.

The ciphertext is sealed end to end to the recipient's devices
(``devices``); supernodes never see the plaintext. ``message_id`` is 16
random bytes chosen by the sender; storing is idempotent by it.
"""

from __future__ import annotations

from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING, OBJECTS = ParamType.UINT, ParamType.BYTES, ParamType.STRING, ParamType.OBJECTS

MAX_FETCH = 200  # envelopes in one fetch reply


class SealedEnvelope(Record):
    """One message sealed to some devices of one recipient user."""

    message_id: bytes = param(1, BYTES, doc="16 random bytes chosen by the sender")
    recipient: str = param(2, STRING, doc="the recipient's username")
    devices: tuple[bytes, ...] = param(3, BYTES, repeated=True, doc="recipient device ids")
    ciphertext: bytes = param(4, BYTES, doc="sealed end to end; opaque to supernodes")
    sender: str | None = param(
        5,
        STRING,
        default=None,
        doc="stamped by the supernode from the session; ignored from clients",
    )
    received_at: int | None = param(
        6, UINT, default=None, doc="Unix milliseconds, stamped by the first supernode"
    )
    acked: tuple[bytes, ...] = param(
        7, BYTES, repeated=True, doc="replicas only: devices that acknowledged it"
    )


class StoreOutcome(Record):
    """What became of one envelope of an ``offline.store``."""

    message_id: bytes = param(1, BYTES)
    recipient: str = param(2, STRING)
    outcome: str = param(
        3,
        STRING,
        doc="stored, duplicate, delivered, expired, or a refusal: "
        "bad-envelope, too-large, sender-share, quota",
    )
    detail: str = param(4, STRING, default="", doc="why it was refused")


class AckRecord(Record):
    """Devices of a recipient that acknowledged one message."""

    recipient: str = param(1, STRING)
    message_id: bytes = param(2, BYTES)
    devices: tuple[bytes, ...] = param(3, BYTES, repeated=True)
    at: int = param(4, UINT, default=0, doc="Unix milliseconds of the first ack")


class TombstoneRecord(Record):
    """A message every device has: owners delete it and refuse it until ``until``."""

    recipient: str = param(1, STRING)
    message_id: bytes = param(2, BYTES)
    until: int = param(3, UINT, doc="Unix milliseconds")


class OfflineStoreRequest(Message, command=0x0090, kind=Kind.REQUEST, name="offline.store"):
    """Client to its supernode: keep these envelopes for offline recipients."""

    envelopes: tuple[SealedEnvelope, ...] = param(1, OBJECTS, record=SealedEnvelope, repeated=True)


class OfflineStoreReply(Message, command=0x0090, kind=Kind.REPLY, name="offline.store"):
    """One outcome per envelope, in the request's order."""

    results: tuple[StoreOutcome, ...] = param(1, OBJECTS, record=StoreOutcome, repeated=True)


class OfflineReplica(Message, command=0x0091, kind=Kind.REQUEST, name="offline.replica"):
    """Supernode to a slot owner: merge envelopes, acks and tombstones (idempotent)."""

    envelopes: tuple[SealedEnvelope, ...] = param(1, OBJECTS, record=SealedEnvelope, repeated=True)
    acks: tuple[AckRecord, ...] = param(2, OBJECTS, record=AckRecord, repeated=True)
    tombstones: tuple[TombstoneRecord, ...] = param(
        3, OBJECTS, record=TombstoneRecord, repeated=True
    )


class OfflineReplicaReply(Message, command=0x0091, kind=Kind.REPLY, name="offline.replica"):
    """Counts of what an ``offline.replica`` changed."""

    stored: int = param(1, UINT, default=0)
    unchanged: int = param(2, UINT, default=0)
    refused: int = param(3, UINT, default=0)
    removed: int = param(4, UINT, default=0, doc="envelopes now delivered everywhere")


class OfflineFetch(Message, command=0x0092, kind=Kind.REQUEST, name="offline.fetch"):
    """Client to a slot owner: envelopes for the session's device after ``cursor``."""

    cursor: int = param(1, UINT, default=0, doc="0, or next_cursor of the previous page")
    limit: int = param(2, UINT, default=50, doc="at most 200")


class OfflineFetchReply(Message, command=0x0092, kind=Kind.REPLY, name="offline.fetch"):
    """A page in arrival order; ``more`` is 1 if another page follows."""

    envelopes: tuple[SealedEnvelope, ...] = param(1, OBJECTS, record=SealedEnvelope, repeated=True)
    next_cursor: int = param(2, UINT, default=0)
    more: int = param(3, UINT, default=0)


class OfflineAck(Message, command=0x0093, kind=Kind.REQUEST, name="offline.ack"):
    """Client to a slot owner: the session's device holds these messages now."""

    message_ids: tuple[bytes, ...] = param(1, BYTES, repeated=True)


class OfflineAckReply(Message, command=0x0093, kind=Kind.REPLY, name="offline.ack"):
    """How many acks were new and how many envelopes were deleted."""

    acked: int = param(1, UINT, default=0)
    removed: int = param(2, UINT, default=0)


OFFLINE_MESSAGES = (
    OfflineStoreRequest,
    OfflineStoreReply,
    OfflineReplica,
    OfflineReplicaReply,
    OfflineFetch,
    OfflineFetchReply,
    OfflineAck,
    OfflineAckReply,
)

__all__ = [
    "MAX_FETCH",
    "OFFLINE_MESSAGES",
    "AckRecord",
    "OfflineAck",
    "OfflineAckReply",
    "OfflineFetch",
    "OfflineFetchReply",
    "OfflineReplica",
    "OfflineReplicaReply",
    "OfflineStoreReply",
    "OfflineStoreRequest",
    "SealedEnvelope",
    "StoreOutcome",
    "TombstoneRecord",
]
