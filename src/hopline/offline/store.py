"""The offline message store of one supernode: sealed envelopes awaiting delivery.

Sans-I/O: every call takes ``now`` (Unix seconds); nothing here reads a clock,
a socket or a file. :mod:`hopline.offline.sqlite` makes it durable.

**What is kept.** An :class:`Envelope` is opaque ciphertext sealed end to end
to the recipient's devices, plus what the supernode needs to route and bound
it: a 16-byte ``message_id`` chosen by the sender, the canonical
``recipient`` user, the set of recipient ``devices`` that must get it, the
``sender`` user (taken from the certified session by the caller, never from
the envelope), and ``received_at`` (stamped by the first supernode). The size
that counts against quotas is the ciphertext's length. The store never
looks inside the ciphertext.

**Life of a message.** :meth:`OfflineStore.put` stores it (idempotent by
``(recipient, message_id)``). Each device pages through its messages with
:meth:`OfflineStore.fetch` (arrival order, a cursor per page) and confirms
them with :meth:`OfflineStore.ack`. When *every* listed device has acked,
the envelope is deleted and a small *tombstone* remembers that it was
delivered, so a late replica of it is not stored again. Envelopes,
tombstones and acks for not-yet-seen envelopes all expire ``retention``
seconds after they began (:meth:`OfflineStore.expire`, a heap, so it costs
only what it removes).

**Replicas.** The slot's other owners keep the same content:
:meth:`OfflineStore.export_for_replica` and
:meth:`OfflineStore.import_replica` carry envelopes, acks and tombstones.
Every part merges monotonically: envelopes are first-write-wins by id (the
same id with other content is refused), acks are a grow-only set per
message (an ack that arrives before its envelope is kept and applied
later), and a tombstone wins over everything. So replicas that have seen
the same puts, acks and imports hold the same messages and acks whatever
order they arrived in, as long as no bound below was hit. Cursors are
local sequence numbers of one owner; a device that moves to another owner
starts again from cursor 0 and is sent only what it has not acked.

**Bounds.** Per recipient at most ``max_messages`` envelopes and
``max_bytes`` of ciphertext; per sender and recipient at most
``max_sender_messages`` and ``max_sender_bytes``, so one peer cannot fill
a user's quota; per envelope ``max_envelope_size`` bytes and
``max_devices`` devices; over the whole store ``max_users`` recipients,
``max_total_messages`` and ``max_total_bytes``. Pending acks and tombstones
are capped per recipient (oldest forgotten first) and over the whole store
(beyond that none are kept: a forgotten tombstone can at worst let a late
replica hand a device a message again, which it drops by message id). Memory is therefore
bounded by construction.

Refusals raise an :class:`OfflineError` subclass whose ``reason`` is one of
``bad-envelope``, ``too-large``, ``sender-share`` or ``quota``, each counted
in :attr:`OfflineStore.refused`.

**Persistence.** A store made with ``journal=True`` records every change it
makes as a :data:`Change` (stored, acked, removed, tombstoned, forgotten);
the owner drains them with :meth:`OfflineStore.drain_changes` and writes
them out. :meth:`OfflineStore.restore` rebuilds a store from such rows.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from hopline.identity.names import InvalidUsername, canonical_username

MESSAGE_ID_SIZE = 16
MAX_DEVICE_ID_SIZE = 64
RETENTION_S = 30 * 24 * 3600
MAX_PAGE = 200
DEFAULT_PAGE_BYTES = 56 * 1024  # a fetch reply stays below the 64 KiB wire limit
ENVELOPE_OVERHEAD = 96  # wire bytes of an envelope beside its names, ids and ciphertext


class OfflineError(Exception):
    """An envelope was refused; ``reason`` is a short stable key for counters."""

    reason = "refused"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class BadEnvelope(OfflineError):
    """Malformed: bad id, user names or devices, or an id reused with other content."""

    reason = "bad-envelope"


class TooLarge(OfflineError):
    """The ciphertext exceeds ``max_envelope_size``."""

    reason = "too-large"


class SenderShareExceeded(OfflineError):
    """This sender holds its whole share of the recipient's store already."""

    reason = "sender-share"


class QuotaExceeded(OfflineError):
    """The recipient's quota (or the whole store) is full."""

    reason = "quota"


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Bounds of one :class:`OfflineStore`."""

    max_envelope_size: int = 32 * 1024
    max_devices: int = 16
    max_messages: int = 10_000
    max_bytes: int = 50 * 1024 * 1024
    max_sender_messages: int = 2_500
    max_sender_bytes: int = 12 * 1024 * 1024
    max_users: int = 100_000
    max_total_messages: int = 2_000_000
    max_total_bytes: int = 2 * 1024 * 1024 * 1024
    max_pending_acks: int = 10_000
    max_tombstones: int = 20_000
    max_total_pending_acks: int = 1_000_000
    max_total_tombstones: int = 4_000_000
    retention: float = RETENTION_S


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed message for one recipient user; see the module docstring."""

    message_id: bytes
    recipient: str
    devices: frozenset[bytes]
    sender: str
    ciphertext: bytes
    received_at: float

    @property
    def size(self) -> int:
        """Bytes of ciphertext, the size quotas count."""
        return len(self.ciphertext)

    def same_content(self, other: Envelope) -> bool:
        """True if ``other`` is this message (``received_at`` may differ)."""
        return (self.recipient, self.devices, self.sender, self.ciphertext) == (
            other.recipient,
            other.devices,
            other.sender,
            other.ciphertext,
        )


class PutOutcome(Enum):
    """What :meth:`OfflineStore.put` did with an acceptable envelope."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # already held: nothing changed
    DELIVERED = "delivered"  # every device has it already (tombstone)
    EXPIRED = "expired"  # older than the retention: not kept


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One held envelope with its local arrival number and the devices that acked."""

    envelope: Envelope
    seq: int
    acked: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class FetchPage:
    """Envelopes for one device; pass ``next_cursor`` to get the next page."""

    messages: tuple[StoredMessage, ...]
    next_cursor: int
    more: bool


@dataclass(frozen=True, slots=True)
class AckResult:
    """Outcome of :meth:`OfflineStore.ack`."""

    acked: int  # new (message, device) acknowledgements
    removed: int  # envelopes now delivered to every device and deleted
    pending: int  # acks kept for envelopes not held here (yet)


@dataclass(frozen=True, slots=True)
class AckSet:
    """Devices that acknowledged one message of one recipient."""

    recipient: str
    message_id: bytes
    devices: frozenset[bytes]
    at: float


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A message delivered to every device; remembered until ``until``."""

    recipient: str
    message_id: bytes
    until: float


@dataclass(frozen=True, slots=True)
class ReplicaBatch:
    """State for a slot's other owners: envelopes, acks and tombstones."""

    envelopes: tuple[Envelope, ...] = ()
    acks: tuple[AckSet, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Outcome of :meth:`OfflineStore.import_replica`."""

    stored: int
    unchanged: int
    acked: int
    removed: int
    refused: Counter[str]


# ---------------------------------------------------------------- changes


@dataclass(frozen=True, slots=True)
class Stored:
    """An envelope was stored with local arrival number ``seq``."""

    envelope: Envelope
    seq: int


@dataclass(frozen=True, slots=True)
class Acked:
    """``device`` acknowledged ``message_id`` (held or not) at ``at``."""

    recipient: str
    message_id: bytes
    device: bytes
    at: float


@dataclass(frozen=True, slots=True)
class Removed:
    """The envelope and its acks are gone (delivered, expired or evicted)."""

    recipient: str
    message_id: bytes


@dataclass(frozen=True, slots=True)
class Tombstoned:
    """A tombstone was set for a delivered message."""

    recipient: str
    message_id: bytes
    until: float


@dataclass(frozen=True, slots=True)
class Forgotten:
    """A tombstone or pending acks for ``message_id`` were dropped."""

    recipient: str
    message_id: bytes


Change = Stored | Acked | Removed | Tombstoned | Forgotten


# ---------------------------------------------------------------- internals


@dataclass(slots=True)
class _Entry:
    envelope: Envelope
    seq: int
    acked: set[bytes] = field(default_factory=set)


@dataclass(slots=True)
class _Pending:
    devices: set[bytes]
    at: float


@dataclass(slots=True)
class _Mailbox:
    entries: dict[bytes, _Entry] = field(default_factory=dict)  # arrival order
    size: int = 0
    sender_count: Counter[str] = field(default_factory=Counter)
    sender_bytes: Counter[str] = field(default_factory=Counter)
    pending: OrderedDict[bytes, _Pending] = field(default_factory=OrderedDict)
    done: OrderedDict[bytes, float] = field(default_factory=OrderedDict)

    def empty(self) -> bool:
        return not (self.entries or self.pending or self.done)


def _canonical(name: str, what: str) -> str:
    try:
        return canonical_username(name)
    except InvalidUsername as exc:
        raise BadEnvelope(f"{what}: {exc}") from None


def check_envelope(envelope: Envelope, limits: StoreLimits) -> Envelope:
    """Return ``envelope`` with canonical user names, or raise an OfflineError."""
    if not isinstance(envelope.message_id, bytes) or len(envelope.message_id) != MESSAGE_ID_SIZE:
        raise BadEnvelope(f"a message id has {MESSAGE_ID_SIZE} bytes")
    if not envelope.devices:
        raise BadEnvelope("no recipient device")
    if len(envelope.devices) > limits.max_devices:
        raise BadEnvelope(f"{len(envelope.devices)} devices, at most {limits.max_devices}")
    if not _valid_devices(envelope.devices):
        raise BadEnvelope(f"a device id has 1 to {MAX_DEVICE_ID_SIZE} bytes")
    if not envelope.ciphertext:
        raise BadEnvelope("empty ciphertext")
    if envelope.size > limits.max_envelope_size:
        raise TooLarge(f"{envelope.size} bytes, at most {limits.max_envelope_size}")
    recipient = _canonical(envelope.recipient, "recipient")
    sender = _canonical(envelope.sender, "sender")
    if (recipient, sender) == (envelope.recipient, envelope.sender):
        return envelope
    return Envelope(
        envelope.message_id,
        recipient,
        envelope.devices,
        sender,
        envelope.ciphertext,
        envelope.received_at,
    )


class OfflineStore:
    """Sealed envelopes of the recipients whose slots this node owns."""

    def __init__(self, limits: StoreLimits | None = None, *, journal: bool = False) -> None:
        self.limits = limits or StoreLimits()
        self._boxes: dict[str, _Mailbox] = {}
        self._heap: list[tuple[float, str, bytes]] = []
        self._heap_limit = 4096
        self._seq = 0
        self._journal: list[Change] | None = [] if journal else None
        self.total_messages = 0
        self.total_bytes = 0
        self.total_pending = 0
        self.total_tombstones = 0
        self.refused: Counter[str] = Counter()
        self.stored = 0
        self.delivered = 0
        self.expired = 0

    def __len__(self) -> int:
        return self.total_messages

    # ------------------------------------------------------------ journal

    def drain_changes(self) -> list[Change]:
        """The changes made since the last drain (empty unless ``journal=True``)."""
        if self._journal is None:
            return []
        changes, self._journal = self._journal, []
        return changes

    def _log(self, change: Change) -> None:
        if self._journal is not None:
            self._journal.append(change)

    # ------------------------------------------------------------ writing

    def put(self, envelope: Envelope, now: float) -> PutOutcome:
        """Keep ``envelope`` until every device acked it; raise OfflineError if refused.

        ``envelope.sender`` must be the user of the certified session that
        handed it over; ``received_at`` is clamped to ``now``.
        """
        try:
            envelope = check_envelope(envelope, self.limits)
            return self._put(envelope, now, None)
        except OfflineError as exc:
            self.refused[exc.reason] += 1
            raise

    def _put(self, envelope: Envelope, now: float, seq: int | None) -> PutOutcome:
        if envelope.received_at > now:
            envelope = _with_time(envelope, now)
        box = self._boxes.get(envelope.recipient)
        known = self._known(box, envelope)
        if known is not None:
            return known
        if envelope.received_at + self.limits.retention <= now:
            return PutOutcome.EXPIRED
        self._check_quota(box, envelope)
        box = self._box(envelope.recipient)
        self._insert(box, envelope, seq)
        self._apply_pending(box, envelope.message_id, now)
        if envelope.message_id in box.entries:
            return PutOutcome.STORED
        return PutOutcome.DELIVERED  # acks from every device were here first

    def _known(self, box: _Mailbox | None, envelope: Envelope) -> PutOutcome | None:
        if box is None:
            return None
        if envelope.message_id in box.done:
            return PutOutcome.DELIVERED
        entry = box.entries.get(envelope.message_id)
        if entry is None:
            return None
        if not entry.envelope.same_content(envelope):
            raise BadEnvelope("message id already used for other content")
        return PutOutcome.DUPLICATE

    def _check_quota(self, box: _Mailbox | None, envelope: Envelope) -> None:
        limits, size, sender, user = self.limits, envelope.size, envelope.sender, envelope.recipient
        box = box or _Mailbox()
        if box.sender_count[sender] + 1 > limits.max_sender_messages:
            raise SenderShareExceeded(f"{sender} holds {box.sender_count[sender]} messages")
        if box.sender_bytes[sender] + size > limits.max_sender_bytes:
            raise SenderShareExceeded(f"{sender} holds {box.sender_bytes[sender]} bytes")
        if len(box.entries) + 1 > limits.max_messages:
            raise QuotaExceeded(f"{user} holds {len(box.entries)} messages")
        if box.size + size > limits.max_bytes:
            raise QuotaExceeded(f"{user} holds {box.size} bytes")
        if user not in self._boxes and len(self._boxes) >= limits.max_users:
            raise QuotaExceeded(f"store holds {len(self._boxes)} users")
        if self.total_messages + 1 > limits.max_total_messages:
            raise QuotaExceeded(f"store holds {self.total_messages} messages")
        if self.total_bytes + size > limits.max_total_bytes:
            raise QuotaExceeded(f"store holds {self.total_bytes} bytes")

    def _box(self, user: str) -> _Mailbox:
        box = self._boxes.get(user)
        if box is None:
            box = self._boxes[user] = _Mailbox()
        return box

    def _insert(self, box: _Mailbox, envelope: Envelope, seq: int | None) -> None:
        if seq is None or seq <= self._seq:
            seq = self._seq + 1
        self._seq = seq
        box.entries[envelope.message_id] = _Entry(envelope, seq)
        box.size += envelope.size
        box.sender_count[envelope.sender] += 1
        box.sender_bytes[envelope.sender] += envelope.size
        self.total_messages += 1
        self.total_bytes += envelope.size
        self.stored += 1
        until = envelope.received_at + self.limits.retention
        self._push(until, envelope.recipient, envelope.message_id)
        self._log(Stored(envelope, seq))

    def _apply_pending(self, box: _Mailbox, message_id: bytes, now: float) -> None:
        entry = box.entries[message_id]
        recipient = entry.envelope.recipient
        pending = self._drop_pending(box, recipient, message_id)
        if pending is None:
            return
        entry.acked |= pending.devices & entry.envelope.devices
        if not entry.acked:
            return
        if entry.acked >= entry.envelope.devices:
            self._deliver(box, entry, now)
        else:
            self._log_acks(recipient, message_id, entry.acked, pending.at)

    # ------------------------------------------------------------ reading

    def fetch(
        self,
        user: str,
        device: bytes,
        after: int = 0,
        limit: int = 50,
        *,
        max_bytes: int = DEFAULT_PAGE_BYTES,
    ) -> FetchPage:
        """Envelopes for ``device`` not yet acked by it, with ``seq > after``, oldest first.

        At most ``limit`` (clamped to 1..200) envelopes whose :func:`wire_cost`
        (without device lists) adds up to ``max_bytes`` (at least one envelope
        if any is due).
        """
        box = self._boxes.get(_lookup_name(user))
        limit = max(1, min(limit, MAX_PAGE))
        if box is None:
            return FetchPage((), after, False)
        page: list[StoredMessage] = []
        size = 0
        for entry in box.entries.values():
            if entry.seq <= after or device not in entry.envelope.devices or device in entry.acked:
                continue
            cost = wire_cost(entry.envelope, with_devices=False)
            if len(page) >= limit or (page and size + cost > max_bytes):
                return FetchPage(tuple(page), page[-1].seq, True)
            page.append(_stored(entry))
            size += cost
        return FetchPage(tuple(page), page[-1].seq if page else after, False)

    def messages(self, user: str) -> list[StoredMessage]:
        """Every envelope held for ``user``, in arrival order."""
        box = self._boxes.get(_lookup_name(user))
        return [] if box is None else [_stored(entry) for entry in box.entries.values()]

    def tombstones(self, user: str) -> dict[bytes, float]:
        """Message ids of ``user`` delivered everywhere, with when they are forgotten."""
        box = self._boxes.get(_lookup_name(user))
        return {} if box is None else dict(box.done)

    def pending_acks(self, user: str) -> dict[bytes, frozenset[bytes]]:
        """Acks of ``user``'s devices for envelopes not held here."""
        box = self._boxes.get(_lookup_name(user))
        if box is None:
            return {}
        return {mid: frozenset(p.devices) for mid, p in box.pending.items()}

    def users(self) -> list[str]:
        """Recipients with anything held (envelopes, acks or tombstones)."""
        return list(self._boxes)

    def usage(self, user: str, sender: str | None = None) -> tuple[int, int]:
        """``(messages, bytes)`` held for ``user`` (from ``sender`` only, if given)."""
        box = self._boxes.get(_lookup_name(user))
        if box is None:
            return 0, 0
        if sender is None:
            return len(box.entries), box.size
        name = _lookup_name(sender)
        return box.sender_count[name], box.sender_bytes[name]

    # ------------------------------------------------------------ acks

    def ack(self, user: str, device: bytes, message_ids: Iterable[bytes], now: float) -> AckResult:
        """``device`` of ``user`` has these messages; delete those every device has."""
        user = _lookup_name(user)
        acked = removed = pending = 0
        for message_id in message_ids:
            a, r, p = self._ack_one(user, message_id, frozenset((device,)), now)
            acked, removed, pending = acked + a, removed + r, pending + p
        return AckResult(acked, removed, pending)

    def _ack_one(
        self, user: str, message_id: bytes, devices: frozenset[bytes], now: float
    ) -> tuple[int, int, int]:
        box = self._boxes.get(user)
        if box is not None and message_id in box.done:
            return 0, 0, 0
        entry = None if box is None else box.entries.get(message_id)
        if entry is None:
            return self._ack_pending(user, message_id, devices, now)
        new = (devices & entry.envelope.devices) - entry.acked
        if not new:
            return 0, 0, 0
        entry.acked |= new
        assert box is not None
        if entry.acked >= entry.envelope.devices:
            self._deliver(box, entry, now)
            return len(new), 1, 0
        self._log_acks(user, message_id, new, now)
        return len(new), 0, 0

    def _ack_pending(
        self, user: str, message_id: bytes, devices: frozenset[bytes], now: float
    ) -> tuple[int, int, int]:
        if len(message_id) != MESSAGE_ID_SIZE or not devices:
            return 0, 0, 0
        box = self._boxes.get(user)
        pending = None if box is None else box.pending.get(message_id)
        if pending is None:
            if not self._room_for_pending(user):
                return 0, 0, 0
            box = self._box(user)
            if len(box.pending) >= self.limits.max_pending_acks:
                self._drop_pending(box, user, next(iter(box.pending)))
            pending = box.pending[message_id] = _Pending(set(), now)
            self.total_pending += 1
            self._push(now + self.limits.retention, user, message_id)
        new = devices - pending.devices
        pending.devices |= new
        self._log_acks(user, message_id, new, pending.at)
        return 0, 0, len(new)

    def _room_for_pending(self, user: str) -> bool:
        if user not in self._boxes and len(self._boxes) >= self.limits.max_users:
            return False
        return self.total_pending < self.limits.max_total_pending_acks

    def _drop_pending(self, box: _Mailbox, user: str, message_id: bytes) -> _Pending | None:
        pending = box.pending.pop(message_id, None)
        if pending is not None:
            self.total_pending -= 1
            self._log(Forgotten(user, message_id))
        return pending

    def _drop_tombstone(self, box: _Mailbox, user: str, message_id: bytes) -> None:
        if box.done.pop(message_id, None) is not None:
            self.total_tombstones -= 1
            self._log(Forgotten(user, message_id))

    def _log_acks(self, user: str, message_id: bytes, devices: Iterable[bytes], at: float) -> None:
        for device in sorted(devices):
            self._log(Acked(user, message_id, device, at))

    def _deliver(self, box: _Mailbox, entry: _Entry, now: float) -> None:
        envelope = entry.envelope
        self._remove(box, envelope.message_id)
        self.delivered += 1
        self._tombstone(box, envelope.recipient, envelope.message_id, self._until(envelope))

    def _until(self, envelope: Envelope) -> float:
        return envelope.received_at + self.limits.retention

    def _tombstone(self, box: _Mailbox, user: str, message_id: bytes, until: float) -> None:
        if message_id in box.done:
            return
        if len(box.done) >= self.limits.max_tombstones:
            self._drop_tombstone(box, user, next(iter(box.done)))
        if self.total_tombstones >= self.limits.max_total_tombstones:
            return  # a late copy may come back; devices drop it by message id
        box.done[message_id] = until
        self.total_tombstones += 1
        self._push(until, user, message_id)
        self._log(Tombstoned(user, message_id, until))

    def _remove(self, box: _Mailbox, message_id: bytes) -> None:
        entry = box.entries.pop(message_id)
        envelope = entry.envelope
        box.size -= envelope.size
        _decrement(box.sender_count, envelope.sender, 1)
        _decrement(box.sender_bytes, envelope.sender, envelope.size)
        self.total_messages -= 1
        self.total_bytes -= envelope.size
        self._log(Removed(envelope.recipient, message_id))

    # ------------------------------------------------------------ expiry

    def _push(self, until: float, user: str, message_id: bytes) -> None:
        heapq.heappush(self._heap, (until, user, message_id))
        if len(self._heap) > self._heap_limit:
            self._compact_heap()

    def _compact_heap(self) -> None:
        """Rebuild the expiry heap from what is held (drops entries of removed items)."""
        heap: list[tuple[float, str, bytes]] = []
        retention = self.limits.retention
        for user, box in self._boxes.items():
            heap += [(self._until(e.envelope), user, mid) for mid, e in box.entries.items()]
            heap += [(p.at + retention, user, mid) for mid, p in box.pending.items()]
            heap += [(until, user, mid) for mid, until in box.done.items()]
        heapq.heapify(heap)
        self._heap = heap
        self._heap_limit = 2 * len(heap) + 4096

    def expire(self, now: float) -> int:
        """Drop envelopes, tombstones and pending acks past the retention; return how many."""
        dropped = 0
        while self._heap and self._heap[0][0] <= now:
            _, user, message_id = heapq.heappop(self._heap)
            dropped += self._expire_one(user, message_id, now)
        return dropped

    def _expire_one(self, user: str, message_id: bytes, now: float) -> int:
        box = self._boxes.get(user)
        if box is None:
            return 0
        dropped = 0
        entry = box.entries.get(message_id)
        if entry is not None and self._until(entry.envelope) <= now:
            self._remove(box, message_id)
            self.expired += 1
            dropped += 1
        if box.done.get(message_id, now + 1) <= now:
            self._drop_tombstone(box, user, message_id)
            dropped += 1
        pending = box.pending.get(message_id)
        if pending is not None and pending.at + self.limits.retention <= now:
            self._drop_pending(box, user, message_id)
            dropped += 1
        if box.empty():
            del self._boxes[user]
        return dropped

    # ------------------------------------------------------------ replicas

    def export_for_replica(self, users: Iterable[str] | None = None) -> ReplicaBatch:
        """Everything held for ``users`` (default: every user), for another owner."""
        names = self.users() if users is None else [_lookup_name(u) for u in users]
        envelopes: list[Envelope] = []
        acks: list[AckSet] = []
        tombstones: list[Tombstone] = []
        for name in names:
            box = self._boxes.get(name)
            if box is None:
                continue
            for mid, entry in box.entries.items():
                envelopes.append(entry.envelope)
                if entry.acked:
                    acks.append(
                        AckSet(name, mid, frozenset(entry.acked), entry.envelope.received_at)
                    )
            acks += [
                AckSet(name, mid, frozenset(p.devices), p.at) for mid, p in box.pending.items()
            ]
            tombstones += [Tombstone(name, mid, until) for mid, until in box.done.items()]
        return ReplicaBatch(tuple(envelopes), tuple(acks), tuple(tombstones))

    def import_replica(self, batch: ReplicaBatch, now: float) -> ImportResult:
        """Merge another owner's state (idempotent; see the module docstring)."""
        refused: Counter[str] = Counter()
        stored = unchanged = 0
        for envelope in batch.envelopes:
            try:
                outcome = self.put(envelope, now)
            except OfflineError as exc:
                refused[exc.reason] += 1
                continue
            stored += outcome is PutOutcome.STORED
            unchanged += outcome is not PutOutcome.STORED
        acked, removed = self._import_acks(batch.acks, now)
        removed += self._import_tombstones(batch.tombstones, now)
        return ImportResult(stored, unchanged, acked, removed, refused)

    def _import_acks(self, acks: Iterable[AckSet], now: float) -> tuple[int, int]:
        acked = removed = 0
        for ack in acks:
            if ack.at + self.limits.retention <= now or not _valid_devices(ack.devices):
                continue
            try:
                user = canonical_username(ack.recipient)
            except InvalidUsername:
                continue
            a, r, _ = self._ack_one(user, ack.message_id, ack.devices, min(ack.at, now))
            acked, removed = acked + a, removed + r
        return acked, removed

    def _import_tombstones(self, tombstones: Iterable[Tombstone], now: float) -> int:
        removed = 0
        for stone in tombstones:
            until = min(stone.until, now + self.limits.retention)
            if until <= now or len(stone.message_id) != MESSAGE_ID_SIZE:
                continue
            try:
                user = canonical_username(stone.recipient)
            except InvalidUsername:
                continue
            removed += self._bury(user, stone.message_id, until)
        return removed

    def _bury(self, user: str, message_id: bytes, until: float) -> int:
        box = self._boxes.get(user)
        if box is None:
            if len(self._boxes) >= self.limits.max_users:
                return 0
            box = self._box(user)
        removed = 0
        if message_id in box.entries:
            self._remove(box, message_id)
            self.delivered += 1
            removed = 1
        self._drop_pending(box, user, message_id)
        self._tombstone(box, user, message_id, until)
        if box.empty():
            del self._boxes[user]
        return removed

    # ------------------------------------------------------------ restore

    def restore(
        self,
        stored: Iterable[tuple[Envelope, int]],
        acks: Iterable[AckSet],
        tombstones: Iterable[Tombstone],
        now: float,
    ) -> Counter[str]:
        """Rebuild from persisted rows (``stored`` in arrival order); return refusals.

        The same bounds apply as to :meth:`put`; rows that no longer fit or
        have expired are left out (and journaled as removed).
        """
        refused: Counter[str] = Counter()
        for envelope, seq in stored:
            try:
                outcome = self._put(check_envelope(envelope, self.limits), now, seq)
            except OfflineError as exc:
                outcome = None
                refused[exc.reason] += 1
            if outcome is not PutOutcome.STORED:
                self._log(Removed(envelope.recipient, envelope.message_id))
        self._import_acks(acks, now)
        self._import_tombstones(tombstones, now)
        return refused


def wire_cost(envelope: Envelope, *, with_devices: bool = True) -> int:
    """An upper bound of the bytes ``envelope`` takes in a wire message."""
    cost = envelope.size + len(envelope.recipient) + len(envelope.sender) + ENVELOPE_OVERHEAD
    if with_devices:
        cost += sum(len(device) + 4 for device in envelope.devices)
    return cost


def _with_time(envelope: Envelope, received_at: float) -> Envelope:
    return Envelope(
        envelope.message_id,
        envelope.recipient,
        envelope.devices,
        envelope.sender,
        envelope.ciphertext,
        received_at,
    )


def _stored(entry: _Entry) -> StoredMessage:
    return StoredMessage(entry.envelope, entry.seq, frozenset(entry.acked))


def _lookup_name(user: str) -> str:
    return user.strip().lower()


def _valid_devices(devices: frozenset[bytes]) -> bool:
    return all(isinstance(d, bytes) and 1 <= len(d) <= MAX_DEVICE_ID_SIZE for d in devices)


def _decrement(counter: Counter[str], key: str, amount: int) -> None:
    counter[key] -= amount
    if counter[key] <= 0:
        del counter[key]


__all__ = [
    "DEFAULT_PAGE_BYTES",
    "ENVELOPE_OVERHEAD",
    "MAX_PAGE",
    "MESSAGE_ID_SIZE",
    "RETENTION_S",
    "AckResult",
    "AckSet",
    "Acked",
    "BadEnvelope",
    "Change",
    "Envelope",
    "FetchPage",
    "Forgotten",
    "ImportResult",
    "OfflineError",
    "OfflineStore",
    "PutOutcome",
    "QuotaExceeded",
    "ReplicaBatch",
    "Removed",
    "SenderShareExceeded",
    "StoreLimits",
    "Stored",
    "StoredMessage",
    "Tombstone",
    "Tombstoned",
    "TooLarge",
    "check_envelope",
    "wire_cost",
]
