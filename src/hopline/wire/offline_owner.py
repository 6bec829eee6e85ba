"""Offline store hops between supernodes (command ids 0x0094-0x0096).

==========  ==================  ==============================================
id          name                purpose
==========  ==================  ==============================================
0x0094      offline.put         home supernode to a slot owner: store these
                                stamped envelopes, one outcome each
0x0095      offline.pull        home supernode to a slot owner: a fetch page
                                for a named device of a named user
                                (envelopes with their device lists)
0x0096      offline.owner-ack   home supernode to a slot owner: a named device
                                of a named user holds these messages
0x0097      offline.check       owner to owner: which of these messages of a
                                user did devices ack, or are delivered
==========  ==================  ==============================================

A client talks only to its home supernode (:mod:`hopline.wire.offline`);
the home takes the user and device from the client's certified session and
names them in these requests, which owners accept from certified
supernodes only. ``offline.put`` answers one
:class:`~hopline.wire.offline.StoreOutcome` per envelope, so refusals
(quota, sender share) reach the client with their reason even when the home
does not own the recipient's slot; ``offline.replica`` (which only counts)
stays the way owners copy state to each other. ``offline.check`` lets an
owner that was down learn the acks and deliveries it missed before it
serves a device, so it does not hand out messages again.
"""

from __future__ import annotations

from hopline.wire.offline import AckRecord, SealedEnvelope, StoreOutcome, TombstoneRecord
from hopline.wire.schema import Message, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING, OBJECTS = ParamType.UINT, ParamType.BYTES, ParamType.STRING, ParamType.OBJECTS


class OfflinePut(Message, command=0x0094, kind=Kind.REQUEST, name="offline.put"):
    """Home to owner: envelopes already stamped with sender and arrival time."""

    envelopes: tuple[SealedEnvelope, ...] = param(1, OBJECTS, record=SealedEnvelope, repeated=True)


class OfflinePutReply(Message, command=0x0094, kind=Kind.REPLY, name="offline.put"):
    """One outcome per envelope, in the request's order."""

    results: tuple[StoreOutcome, ...] = param(1, OBJECTS, record=StoreOutcome, repeated=True)


class OfflinePull(Message, command=0x0095, kind=Kind.REQUEST, name="offline.pull"):
    """Home to owner: envelopes for ``device`` of ``user`` after ``cursor``."""

    user: str = param(1, STRING)
    device: bytes = param(2, BYTES)
    cursor: int = param(3, UINT, default=0)
    limit: int = param(4, UINT, default=50)
    merge: int = param(
        5, UINT, default=0, doc="1: first merge what the slot's other owners hold for this device"
    )


class OfflinePullReply(Message, command=0x0095, kind=Kind.REPLY, name="offline.pull"):
    """A page in the owner's arrival order; ``more`` is 1 if another page follows."""

    envelopes: tuple[SealedEnvelope, ...] = param(1, OBJECTS, record=SealedEnvelope, repeated=True)
    next_cursor: int = param(2, UINT, default=0)
    more: int = param(3, UINT, default=0)


class OfflineOwnerAck(Message, command=0x0096, kind=Kind.REQUEST, name="offline.owner-ack"):
    """Home to owner: ``device`` of ``user`` holds these messages now."""

    user: str = param(1, STRING)
    device: bytes = param(2, BYTES)
    message_ids: tuple[bytes, ...] = param(3, BYTES, repeated=True)


class OfflineOwnerAckReply(Message, command=0x0096, kind=Kind.REPLY, name="offline.owner-ack"):
    """How many acks were new and how many envelopes were deleted at that owner."""

    acked: int = param(1, UINT, default=0)
    removed: int = param(2, UINT, default=0)


MAX_CHECK_IDS = 40  # message ids in one offline.check (its reply stays under 64 KiB)


class OfflineCheck(Message, command=0x0097, kind=Kind.REQUEST, name="offline.check"):
    """Owner to owner: what do you know of these messages of ``user``?"""

    user: str = param(1, STRING)
    message_ids: tuple[bytes, ...] = param(2, BYTES, repeated=True, doc="at most 40")


class OfflineCheckReply(Message, command=0x0097, kind=Kind.REPLY, name="offline.check"):
    """The asked messages that are delivered everywhere, and devices' acks of the others."""

    tombstones: tuple[TombstoneRecord, ...] = param(
        1, OBJECTS, record=TombstoneRecord, repeated=True
    )
    acks: tuple[AckRecord, ...] = param(2, OBJECTS, record=AckRecord, repeated=True)


OFFLINE_OWNER_MESSAGES = (
    OfflinePut,
    OfflinePutReply,
    OfflinePull,
    OfflinePullReply,
    OfflineOwnerAck,
    OfflineOwnerAckReply,
)

__all__ = [
    "MAX_CHECK_IDS",
    "OFFLINE_OWNER_MESSAGES",
    "OfflineCheck",
    "OfflineCheckReply",
    "OfflineOwnerAck",
    "OfflineOwnerAckReply",
    "OfflinePull",
    "OfflinePullReply",
    "OfflinePut",
    "OfflinePutReply",
]
