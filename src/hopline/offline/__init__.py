"""Offline messages on the supernodes: sealed envelopes kept until every device has them.

A supernode that owns a user's directory slot keeps the end-to-end sealed
envelopes sent to that user while the user's devices are offline, and hands
each device its messages when it logs in. The parts:

* :mod:`hopline.offline.store` — the sans-I/O core: :class:`OfflineStore`
  (quotas per recipient and per sender, fetch pages, acks from every device,
  replicas that converge, expiry);
* :mod:`hopline.offline.sqlite` — :class:`OfflineDatabase`, the same store
  written through to a SQLite file so it survives a restart;
* :mod:`hopline.offline.wireform` — the glue to the ``offline.*`` wire
  messages of :mod:`hopline.wire.offline`.

Supernodes see only ciphertext, the message id, the recipient's user and
device ids, and the sender (from the session's certificate).
"""

from hopline.offline.sqlite import OfflineDatabase, OfflineDatabaseError
from hopline.offline.store import (
    AckResult,
    AckSet,
    BadEnvelope,
    Envelope,
    FetchPage,
    ImportResult,
    OfflineError,
    OfflineStore,
    PutOutcome,
    QuotaExceeded,
    ReplicaBatch,
    SenderShareExceeded,
    StoredMessage,
    StoreLimits,
    Tombstone,
    TooLarge,
)

__all__ = [
    "AckResult",
    "AckSet",
    "BadEnvelope",
    "Envelope",
    "FetchPage",
    "ImportResult",
    "OfflineDatabase",
    "OfflineDatabaseError",
    "OfflineError",
    "OfflineStore",
    "PutOutcome",
    "QuotaExceeded",
    "ReplicaBatch",
    "SenderShareExceeded",
    "StoreLimits",
    "StoredMessage",
    "Tombstone",
    "TooLarge",
]
