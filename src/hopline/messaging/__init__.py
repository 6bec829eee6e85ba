"""Instant messaging, contacts and presence: the sans-I/O cores.

How a message travels (the daemon and supernode wire these cores up):

1. The sender's device stamps a :class:`~hopline.messaging.envelope.MessageRecord`
   (a new 16-byte id, its wall clock, the conversation's next Lamport clock)
   and seals one envelope per recipient device *and* one ``SYNC`` copy per
   other device of its own user (:func:`~hopline.messaging.envelope.seal_envelope`:
   Ed25519 signature inside, HPKE to the device's X25519 key outside).
2. Envelopes go in ``msg.deliver`` (:mod:`hopline.wire.messaging`) straight to
   online devices, or in ``offline.store`` to the recipient's slot supernodes,
   which keep only ciphertext until each device fetches and acknowledges it.
3. The receiving device opens the envelope
   (:func:`~hopline.messaging.envelope.open_envelope`), inserts it into the
   conversation (:class:`~hopline.messaging.conversation.ConversationLog`:
   exactly once, in the order every device agrees on), stores it in the
   profile's history (:class:`~hopline.messaging.history.History`) and
   answers with a ``RECEIPT_DELIVERED`` envelope and a ``msg.ack``.

Contacts and presence (:mod:`hopline.messaging.contacts`) ride the same
envelopes (kinds ``CONTACT_OP`` and ``PRESENCE``); the contact list is a
document the user's devices merge (last writer wins per contact).

Every refusal of remote input is a :class:`~hopline.messaging.envelope.MessageError`
with a ``reason`` counter key.
"""

from hopline.messaging.contacts import (
    ContactList,
    ContactOp,
    ContactState,
    LocalContactError,
    Presence,
    PresenceStatus,
    RemoteContactError,
    may_see_presence,
)
from hopline.messaging.conversation import (
    ConversationLog,
    InsertResult,
    LogEntry,
    OrderKey,
    ReceiptKind,
)
from hopline.messaging.envelope import (
    MAX_BODY,
    MessageError,
    MessageKind,
    MessageRecord,
    Recipient,
    envelope_id,
    new_message_id,
    open_envelope,
    seal_envelope,
)
from hopline.messaging.history import History, HistoryError

__all__ = [
    "MAX_BODY",
    "ContactList",
    "ContactOp",
    "ContactState",
    "ConversationLog",
    "History",
    "HistoryError",
    "InsertResult",
    "LocalContactError",
    "LogEntry",
    "MessageError",
    "MessageKind",
    "MessageRecord",
    "OrderKey",
    "Presence",
    "PresenceStatus",
    "ReceiptKind",
    "Recipient",
    "RemoteContactError",
    "envelope_id",
    "may_see_presence",
    "new_message_id",
    "open_envelope",
    "seal_envelope",
]
