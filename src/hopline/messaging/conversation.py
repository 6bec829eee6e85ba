"""A conversation log that every device of every participant orders the same way.

Order
    Each message carries a Lamport clock: a sender stamps ``clock = max seen
    + 1`` (:meth:`ConversationLog.next_clock`) and every receiver raises its
    own clock to the largest it saw. The log is sorted by the key
    ``(clock, sender device id, message id)`` (:class:`OrderKey`). The key is
    fixed by the sender and travels signed inside the envelope, and it is a
    total order (message ids are unique), so any replica that holds the same
    set of messages shows them in the same order, whatever order they
    arrived in; a late message is inserted in place, and a message never
    moves once it is shown unless an older-keyed one arrives late. Causality
    is kept: a reply is always stamped after what its sender had seen.

Exactly once
    Messages are deduplicated by message id. A second copy with the same id
    and the same content is a duplicate (counted, ignored); one with the same
    id and a different key or body is a ``conflict`` (counted, refused).
    :class:`~hopline.messaging.history.History` applies the same rule on disk.

Receipts
    Delivered/read receipts are kept per message, per recipient device
    (:class:`Receipt`); read implies delivered. A receipt can arrive before
    its message (offline store and direct path race): it then waits in a
    bounded pending table (``max_pending``, the oldest dropped and counted)
    and is attached when the message arrives.

Bounds
    The log is the in-memory window of a conversation; its durable copy is
    the history database, which uses the same order key. At most
    ``max_entries`` messages are kept (the oldest by key leave the window
    and are returned to the caller as evicted); message ids of evicted
    entries are remembered in a bounded set so late duplicates are still
    recognised in memory.

Sans-I/O: no clock is read; times are passed in (milliseconds).
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, NamedTuple

from hopline.messaging.envelope import (
    MAX_CLOCK,
    MessageError,
    MessageKind,
    MessageRecord,
    validate_record,
)

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_PENDING",
    "ConversationLog",
    "Insert",
    "InsertResult",
    "LogEntry",
    "OrderKey",
    "Receipt",
    "ReceiptKind",
]

DEFAULT_MAX_ENTRIES: Final = 5000
DEFAULT_MAX_PENDING: Final = 1000
_ENTRY_KINDS: Final = frozenset({MessageKind.TEXT, MessageKind.SYNC})


class OrderKey(NamedTuple):
    """The total order of a conversation: Lamport clock, sender device, message id."""

    clock: int
    sender_device: bytes
    message_id: bytes


class ReceiptKind(Enum):
    """Which receipt a recipient device sent."""

    DELIVERED = "delivered"
    READ = "read"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One message of a conversation as every device shows it."""

    conversation_id: bytes
    message_id: bytes
    sender_user: str
    sender_device: bytes
    clock: int
    sent_at_ms: int
    text: str

    @property
    def key(self) -> OrderKey:
        """Where the entry sits in the conversation's order."""
        return OrderKey(self.clock, self.sender_device, self.message_id)

    @classmethod
    def from_record(cls, record: MessageRecord) -> LogEntry:
        """The entry a TEXT or SYNC record stands for (others raise ``bad-kind``)."""
        validate_record(record)
        if record.kind not in _ENTRY_KINDS:
            raise MessageError("bad-kind", f"kind {record.kind} is not a conversation message")
        return cls(
            conversation_id=record.conversation_id,
            message_id=record.message_id,
            sender_user=record.sender_user,
            sender_device=record.sender_device,
            clock=record.clock,
            sent_at_ms=record.sent_at_ms,
            text=record.body.decode("utf-8"),
        )


@dataclass(slots=True)
class Receipt:
    """What one recipient device reported about one message (milliseconds)."""

    delivered_at_ms: int | None = None
    read_at_ms: int | None = None

    def apply(self, kind: ReceiptKind, at_ms: int) -> bool:
        """Record a receipt; return whether anything changed (read implies delivered)."""
        changed = False
        if self.delivered_at_ms is None:
            self.delivered_at_ms = at_ms
            changed = True
        if kind is ReceiptKind.READ and self.read_at_ms is None:
            self.read_at_ms = at_ms
            changed = True
        return changed


class InsertResult(Enum):
    """What :meth:`ConversationLog.add` did with a message."""

    ADDED = "added"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Insert:
    """The outcome of one :meth:`ConversationLog.add`."""

    result: InsertResult
    position: int
    """Index of the entry in :meth:`ConversationLog.entries` (``-1`` when evicted)."""
    evicted: tuple[LogEntry, ...] = ()
    """Entries that left the in-memory window to make room (already in history)."""


_RECEIPT_KINDS: Final[dict[int, ReceiptKind]] = {
    MessageKind.RECEIPT_DELIVERED: ReceiptKind.DELIVERED,
    MessageKind.RECEIPT_READ: ReceiptKind.READ,
}

DeviceRef = tuple[str, bytes]
"""A recipient device: (username, device id)."""


@dataclass(slots=True)
class _Pending:
    kind: ReceiptKind
    at_ms: int


@dataclass
class ConversationLog:
    """The ordered, deduplicated messages and receipts of one conversation."""

    conversation_id: bytes
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_pending: int = DEFAULT_MAX_PENDING
    clock: int = 0
    """The largest Lamport clock seen or sent here."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Refusals and drops by reason (``duplicate``, ``conflict``, ...)."""
    _keys: list[OrderKey] = field(default_factory=list, init=False, repr=False)
    _entries: dict[bytes, LogEntry] = field(default_factory=dict, init=False, repr=False)
    _receipts: dict[bytes, dict[DeviceRef, Receipt]] = field(
        default_factory=dict, init=False, repr=False
    )
    _pending: OrderedDict[bytes, dict[DeviceRef, _Pending]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _pending_count: int = field(default=0, init=False, repr=False)
    _evicted: OrderedDict[bytes, OrderKey] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    def next_clock(self) -> int:
        """Advance the clock for a message this device sends, and return it."""
        if self.clock + 1 >= MAX_CLOCK:
            raise MessageError("bad-clock", "conversation clock exhausted")
        self.clock += 1
        return self.clock

    def __len__(self) -> int:
        """How many messages the window holds."""
        return len(self._keys)

    def entries(self) -> list[LogEntry]:
        """The messages in conversation order."""
        return [self._entries[key.message_id] for key in self._keys]

    def get(self, message_id: bytes) -> LogEntry | None:
        """The entry with this id, if it is in the window."""
        return self._entries.get(message_id)

    def receipts(self, message_id: bytes) -> dict[DeviceRef, Receipt]:
        """Receipts attached to one message, by recipient device (a copy)."""
        return dict(self._receipts.get(message_id, {}))

    def add(self, entry: LogEntry) -> Insert:
        """Insert one message in order; duplicates are ignored, conflicts refused.

        Raises :class:`MessageError` (reason ``conflict`` or ``wrong-conversation``).
        """
        self._check_new(entry)
        known = self._entries.get(entry.message_id)
        if known is not None or entry.message_id in self._evicted:
            self.dropped["duplicate"] += 1
            position = bisect.bisect_left(self._keys, entry.key) if known is not None else -1
            return Insert(InsertResult.DUPLICATE, position)
        self.clock = max(self.clock, entry.clock)
        position = bisect.bisect_left(self._keys, entry.key)
        self._keys.insert(position, entry.key)
        self._entries[entry.message_id] = entry
        self._attach_pending(entry.message_id)
        evicted = self._evict()
        if evicted and entry.message_id not in self._entries:
            position = -1
        elif evicted:
            position -= len(evicted)
        return Insert(InsertResult.ADDED, position, evicted)

    def _check_new(self, entry: LogEntry) -> None:
        if entry.conversation_id != self.conversation_id:
            self.dropped["wrong-conversation"] += 1
            raise MessageError("wrong-conversation", "entry belongs to another conversation")
        known = self._entries.get(entry.message_id)
        old_key = known.key if known is not None else self._evicted.get(entry.message_id)
        if old_key is not None and old_key != entry.key:
            self.dropped["conflict"] += 1
            raise MessageError("conflict", "same message id, different order key")
        if known is not None and known != entry:
            self.dropped["conflict"] += 1
            raise MessageError("conflict", "same message id, different content")

    def _evict(self) -> tuple[LogEntry, ...]:
        out: list[LogEntry] = []
        while len(self._keys) > self.max_entries:
            key = self._keys.pop(0)
            out.append(self._entries.pop(key.message_id))
            self._receipts.pop(key.message_id, None)
            self._evicted[key.message_id] = key
            if len(self._evicted) > self.max_entries:
                self._evicted.popitem(last=False)
        return tuple(out)

    def apply(self, record: MessageRecord) -> Insert | bool:
        """Apply an opened TEXT, SYNC or receipt record of this conversation.

        Messages go through :meth:`add`; a receipt is attached for the device
        that sent it (its time is the receipt's ``sent_at_ms``). Other kinds
        raise :class:`MessageError` ``bad-kind``.
        """
        if record.kind in _ENTRY_KINDS:
            return self.add(LogEntry.from_record(record))
        receipt_kind = _RECEIPT_KINDS.get(record.kind)
        if receipt_kind is None:
            raise MessageError("bad-kind", f"kind {record.kind} does not belong in a log")
        validate_record(record)
        self.clock = max(self.clock, record.clock)
        device = (record.sender_user, record.sender_device)
        return self.add_receipt(record.body, device, receipt_kind, record.sent_at_ms)

    def add_receipt(
        self, message_id: bytes, device: DeviceRef, kind: ReceiptKind, at_ms: int
    ) -> bool:
        """Attach a receipt; keep it pending if the message has not arrived yet.

        Returns whether the message's receipts changed now.
        """
        if message_id in self._entries:
            receipt = self._receipts.setdefault(message_id, {}).setdefault(device, Receipt())
            return receipt.apply(kind, at_ms)
        if message_id in self._evicted:
            self.dropped["receipt-for-evicted"] += 1
            return False
        self._hold(message_id, device, kind, at_ms)
        return False

    def _hold(self, message_id: bytes, device: DeviceRef, kind: ReceiptKind, at_ms: int) -> None:
        waiting = self._pending.setdefault(message_id, {})
        held = waiting.get(device)
        if held is None:
            waiting[device] = _Pending(kind, at_ms)
            self._pending_count += 1
        elif kind is ReceiptKind.READ:
            held.kind = kind
        while self._pending_count > self.max_pending:
            _, oldest = self._pending.popitem(last=False)
            self._pending_count -= len(oldest)
            self.dropped["pending-overflow"] += len(oldest)

    @property
    def pending_receipts(self) -> int:
        """Receipts waiting for their message."""
        return self._pending_count

    def _attach_pending(self, message_id: bytes) -> None:
        waiting = self._pending.pop(message_id, {})
        self._pending_count -= len(waiting)
        for device, held in waiting.items():
            receipts = self._receipts.setdefault(message_id, {})
            receipts.setdefault(device, Receipt()).apply(held.kind, held.at_ms)
