"""Carrying sealed message envelopes between devices (0x0080-0x0081).

==========  ============  ====================================================
id          name          purpose
==========  ============  ====================================================
0x0080      msg.deliver   sealed envelopes for the receiving device
0x0081      msg.ack       which delivered envelopes the receiver took or refused
==========  ============  ====================================================

Envelopes for devices that are offline go to the recipient's slot
supernodes with the ``offline.*`` commands (:mod:`hopline.wire.offline`).

Every envelope is opaque here: the bytes :func:`hopline.messaging.envelope.
seal_envelope` made (one version byte, then HPKE output), readable only by
the device it names. A :class:`SealedItem` adds what a supernode needs to
route and store it -- recipient user and device -- and nothing about the
content. Acknowledgements name envelopes by
:func:`~hopline.messaging.envelope.envelope_id` (SHA-256 of the sealed bytes,
first 16 bytes), never by message id, so a supernode cannot link receipts to
messages.

``msg.deliver`` goes peer to peer (direct or relayed, end to end encrypted
by the peer session) when the recipient device is online. Each delivered
item is answered in a ``msg.ack``: ``accepted`` ids are stored in the
device's history (so the sender may forget them), ``refused`` ones carry a
reason (the :class:`~hopline.messaging.envelope.MessageError` reason) and
are not retried.

Limits: one message of the wire format is at most 64 KiB, so a batch holds
at most :data:`MAX_ITEMS` items and :data:`MAX_BATCH_BYTES` bytes of
envelopes; :func:`batch_items` splits longer runs.
"""

from __future__ import annotations

from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING, OBJECTS = ParamType.UINT, ParamType.BYTES, ParamType.STRING, ParamType.OBJECTS

MAX_ITEMS = 64
"""Most envelopes in one deliver."""
MAX_BATCH_BYTES = 56 * 1024
"""Most envelope bytes in one message (the wire limit is 64 KiB)."""
MAX_REFUSAL_REASON = 64


class SealedItem(Record):
    """One sealed envelope and the routing the supernode may see."""

    to_user: str = param(1, STRING, doc="recipient username")
    to_device: bytes = param(2, BYTES, doc="recipient device id")
    envelope: bytes = param(3, BYTES, doc="version byte + HPKE output")
    stored_at_ms: int | None = param(4, UINT, default=None, doc="when a supernode kept it")


class Refusal(Record):
    """An envelope the receiver will not take, and why."""

    envelope_id: bytes = param(1, BYTES, doc="SHA-256 of the envelope, first 16 bytes")
    reason: str = param(2, STRING, doc="a stable counter key, e.g. bad-signature, quota")


class MsgDeliver(Message, command=0x0080, kind=Kind.NOTICE, name="msg.deliver"):
    """Sealed envelopes for the receiving device."""

    items: tuple[SealedItem, ...] = param(1, OBJECTS, record=SealedItem, repeated=True)
    more: int = param(2, UINT, default=0, doc="1: the sender has more queued")


class MsgAck(Message, command=0x0081, kind=Kind.NOTICE, name="msg.ack"):
    """The answer to a deliver: envelopes taken, and envelopes refused."""

    accepted: tuple[bytes, ...] = param(1, BYTES, repeated=True, doc="envelope ids")
    refused: tuple[Refusal, ...] = param(2, OBJECTS, record=Refusal, repeated=True)


def batch_items(
    items: list[SealedItem], max_items: int = MAX_ITEMS, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[SealedItem]]:
    """Split items, in order, into runs that each fit one message."""
    batches: list[list[SealedItem]] = []
    size = 0
    for item in items:
        cost = len(item.envelope) + len(item.to_device) + len(item.to_user.encode("utf-8")) + 16
        if not batches or len(batches[-1]) >= max_items or size + cost > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += cost
    return batches


MESSAGING_MESSAGES = (MsgDeliver, MsgAck)

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_ITEMS",
    "MAX_REFUSAL_REASON",
    "MESSAGING_MESSAGES",
    "MsgAck",
    "batch_items",
    "MsgDeliver",
    "Refusal",
    "SealedItem",
]
