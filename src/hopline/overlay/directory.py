"""The presence store of one supernode: records of the slots it owns.

Sans-I/O: every call takes ``now`` (Unix seconds) and the certificate
verifier; nothing here reads a clock or a socket.

**Who may write.** A :class:`~hopline.wire.commands.PresenceRecord` is
accepted only if it has at least one device and *every* device carries a
login-server certificate that verifies for role USER, subject equal to the
record's canonical user, the device's ``identity_key`` as static key and the
device's id. A client therefore cannot publish a record for another user.
Certificates are public (lookups return them), so replaying someone's
certificates is possible; :meth:`DirectoryStore.publish` also takes the
identity the secure session proved (``publisher`` and ``publisher_key``) and
refuses a record that the session's user and device do not own.

**Which record wins.** A higher ``sequence`` replaces the stored record; an
identical record at the same sequence is an idempotent no-op; anything else
is ``stale``.

**Several devices.** A user logged in on several devices has one record
listing them all: each device publishes a record with only itself, and the
store *merges* it with the devices of the stored record that are still
live (each device keeps its own expiry; the newest record's status and mood
win unless its device is leaving). A lookup lists only live devices, so a
call rings every device the user is online on and none that left.

**Time.** ``expires`` is clamped to ``now + max_ttl`` and ``last_seen`` to
``now``. A record is *online* while ``expires`` is in the future, then
*offline, last seen X* until ``last_seen + 72 h`` (endpoints are withheld
while offline), then gone. :meth:`DirectoryStore.expire` drops gone records
using a heap, so it costs only the records it removes.

**Bounds.** At most ``max_records`` records, ``max_devices`` devices each,
``max_record_size`` encoded bytes each; so memory is bounded by their
product. When full, the offline record closest to its end is evicted for a
new one; if every record is online the newcomer is refused ``full``.

Refusals raise a :class:`DirectoryError` subclass whose ``reason`` is one of
``bad-record``, ``not-certified``, ``not-owner``, ``stale``, ``too-large``,
``too-many-devices``, ``full``, each counted in :attr:`DirectoryStore.refused`.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from hopline.identity.certificate import Certificate, CertificateError, Role
from hopline.identity.names import InvalidUsername, canonical_username
from hopline.overlay.slots import DEFAULT_SLOTS, slot_of_key
from hopline.wire import WireError, encode_record
from hopline.wire.commands import PresenceRecord
from hopline.wire.directory import LookupState

LAST_SEEN_RETENTION_S = 72 * 3600


class Verifier(Protocol):
    """What the store needs of :class:`~hopline.identity.CertificateVerifier`."""

    def verify(
        self,
        data: bytes,
        now: float,
        *,
        role: Role | None = None,
        subject: str | None = None,
        static_key: bytes | None = None,
    ) -> Certificate:
        """Return the certificate or raise CertificateError."""
        ...


class DirectoryError(Exception):
    """A record was refused; ``reason`` is a short stable key for counters."""

    reason = "refused"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class BadRecord(DirectoryError):
    """The record is malformed (bad username, duplicate devices, bad fields)."""

    reason = "bad-record"


class NotCertified(DirectoryError):
    """A device certificate does not vouch for this user, key or device."""

    reason = "not-certified"


class NotOwner(DirectoryError):
    """This node does not own the record's slot."""

    reason = "not-owner"


class StaleRecord(DirectoryError):
    """The stored record is newer (or equal in sequence but different)."""

    reason = "stale"


class TooLarge(DirectoryError):
    """The encoded record exceeds ``max_record_size``."""

    reason = "too-large"


class TooManyDevices(DirectoryError):
    """The record lists more than ``max_devices`` devices."""

    reason = "too-many-devices"


class StoreFull(DirectoryError):
    """The store holds ``max_records`` online records."""

    reason = "full"


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Bounds of one :class:`DirectoryStore`."""

    max_records: int = 200_000
    max_devices: int = 8
    max_record_size: int = 8192
    max_ttl: int = 3600
    retention: int = LAST_SEEN_RETENTION_S


@dataclass(frozen=True, slots=True)
class PublishResult:
    """An accepted publish: ``changed`` is False for an idempotent repeat."""

    user: str
    sequence: int
    expires: int
    changed: bool


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a lookup found; ``record`` is None when NOT_FOUND."""

    state: LookupState
    record: PresenceRecord | None = None
    last_seen: int | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Outcome of :meth:`DirectoryStore.import_records`."""

    stored: int
    unchanged: int
    refused: Counter[str]


@dataclass(slots=True)
class _Entry:
    record: PresenceRecord
    slot: int
    size: int
    drop_at: int
    device_expires: dict[bytes, int]  # each listed device's own expiry


class DirectoryStore:
    """Presence records of the slots this node owns (see the module docstring).

    ``owned_slots`` None means "every slot" (a single node, or tests); set it
    from :meth:`~hopline.overlay.slots.OwnershipMap.slots_owned_by`.
    """

    def __init__(
        self,
        limits: StoreLimits | None = None,
        *,
        slots: int = DEFAULT_SLOTS,
        owned_slots: Iterable[int] | None = None,
    ) -> None:
        self.limits = limits or StoreLimits()
        self.slots = slots
        self.owned_slots: frozenset[int] | None = None
        self._records: dict[str, _Entry] = {}
        self._by_slot: dict[int, set[str]] = {}
        self._heap: list[tuple[int, str]] = []
        self.bytes_stored = 0
        self.refused: Counter[str] = Counter()
        self.accepted = 0
        if owned_slots is not None:
            self.owned_slots = frozenset(owned_slots)

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------ writing

    def publish(
        self,
        record: PresenceRecord,
        now: float,
        verifier: Verifier,
        *,
        publisher: str | None = None,
        publisher_key: bytes | None = None,
    ) -> PublishResult:
        """Store ``record`` if it is certified, fits and is newer; else raise DirectoryError.

        ``publisher``/``publisher_key`` are the user and static key the
        client's secure session proved; when given, the record must be that
        user's and list that key among its devices.
        """
        try:
            return self._publish(record, int(now), verifier, publisher, publisher_key)
        except DirectoryError as exc:
            self.refused[exc.reason] += 1
            raise

    def _publish(
        self,
        record: PresenceRecord,
        now: int,
        verifier: Verifier,
        publisher: str | None,
        publisher_key: bytes | None,
    ) -> PublishResult:
        user = _canonical(record)
        slot = slot_of_key(user, self.slots)
        if self.owned_slots is not None and slot not in self.owned_slots:
            raise NotOwner(f"slot {slot}")
        self._check_publisher(record, user, publisher, publisher_key)
        record = self._normalize(record, user, now)
        current = self._live_entry(user, now)
        record, expiries = self._merge(current, record, now)
        if current is not None and record.sequence <= current.record.sequence:
            if record == current.record:
                return PublishResult(user, record.sequence, record.expires, changed=False)
            raise StaleRecord(f"sequence {record.sequence} <= {current.record.sequence}")
        size = self._check_shape(record)
        self._verify_devices(record, user, now, verifier)
        if current is None:
            self._make_room(now)
        self._put(user, slot, record, size, expiries)
        self.accepted += 1
        return PublishResult(user, record.sequence, record.expires, changed=True)

    def _merge(
        self, current: _Entry | None, record: PresenceRecord, now: int
    ) -> tuple[PresenceRecord, dict[bytes, int]]:
        """``record`` plus the live devices of ``current`` it does not list."""
        expiries = {device.device_id: record.expires for device in record.devices}
        if current is None:
            return record, expiries
        others = [
            device
            for device in current.record.devices
            if device.device_id not in expiries
            and current.device_expires.get(device.device_id, 0) > now
        ]
        others.sort(key=lambda device: -current.device_expires[device.device_id])
        others = others[: max(0, self.limits.max_devices - len(record.devices))]
        if not others:
            return record, expiries
        for device in others:
            expiries[device.device_id] = current.device_expires[device.device_id]
        newest = record if record.expires > now else current.record  # a leaving device
        merged = dataclasses.replace(
            record,
            devices=record.devices + tuple(others),
            expires=max(expiries.values()),
            status=newest.status,
            mood=newest.mood,
        )
        return merged, expiries

    @staticmethod
    def _check_publisher(
        record: PresenceRecord, user: str, publisher: str | None, publisher_key: bytes | None
    ) -> None:
        if publisher is not None and publisher.lower() != user:
            raise NotCertified(f"session of {publisher!r:.40} publishing for {user!r}")
        keys = {device.identity_key for device in record.devices}
        if publisher_key is not None and publisher_key not in keys:
            raise NotCertified("the session's key is not one of the record's devices")

    def _normalize(self, record: PresenceRecord, user: str, now: int) -> PresenceRecord:
        expires = min(record.expires, now + self.limits.max_ttl)
        last_seen = min(record.last_seen, now)
        if (user, expires, last_seen) == (record.user, record.expires, record.last_seen):
            return record
        return dataclasses.replace(record, user=user, expires=expires, last_seen=last_seen)

    def _check_shape(self, record: PresenceRecord) -> int:
        if len(record.devices) > self.limits.max_devices:
            raise TooManyDevices(f"{len(record.devices)} > {self.limits.max_devices}")
        if not record.devices:
            raise NotCertified("a record needs at least one certified device")
        if len({device.device_id for device in record.devices}) != len(record.devices):
            raise BadRecord("a device is listed twice")
        try:
            size = len(encode_record(record))
        except WireError as exc:
            raise BadRecord(str(exc)) from None
        if size > self.limits.max_record_size:
            raise TooLarge(f"{size} bytes > {self.limits.max_record_size}")
        return size

    @staticmethod
    def _verify_devices(record: PresenceRecord, user: str, now: int, verifier: Verifier) -> None:
        for device in record.devices:
            try:
                certificate = verifier.verify(
                    device.certificate,
                    now,
                    role=Role.USER,
                    subject=user,
                    static_key=device.identity_key,
                )
            except CertificateError as exc:
                raise NotCertified(f"device certificate: {exc.reason}") from None
            if certificate.body.device_id != device.device_id:
                raise NotCertified("certificate is for another device")

    def _make_room(self, now: int) -> None:
        if len(self._records) < self.limits.max_records:
            return
        self.expire(now)
        while len(self._records) >= self.limits.max_records and self._heap:
            drop_at, user = self._heap[0]
            entry = self._records.get(user)
            if entry is None or entry.drop_at != drop_at:
                heapq.heappop(self._heap)  # superseded heap entry
                continue
            if entry.record.expires > now:
                raise StoreFull(f"{len(self._records)} online records")
            heapq.heappop(self._heap)
            self._remove(user)

    def _put(
        self,
        user: str,
        slot: int,
        record: PresenceRecord,
        size: int,
        expiries: dict[bytes, int],
    ) -> None:
        if user in self._records:
            self._remove(user)
        drop_at = max(record.expires, record.last_seen + self.limits.retention)
        self._records[user] = _Entry(record, slot, size, drop_at, expiries)
        self._by_slot.setdefault(slot, set()).add(user)
        self.bytes_stored += size
        heapq.heappush(self._heap, (drop_at, user))
        if len(self._heap) > 2 * len(self._records) + 64:
            self._compact_heap()

    def _remove(self, user: str) -> None:
        entry = self._records.pop(user)
        self.bytes_stored -= entry.size
        members = self._by_slot[entry.slot]
        members.discard(user)
        if not members:
            del self._by_slot[entry.slot]

    def _compact_heap(self) -> None:
        self._heap = [(entry.drop_at, user) for user, entry in self._records.items()]
        heapq.heapify(self._heap)

    # ------------------------------------------------------------ reading

    def _live_entry(self, user: str, now: int) -> _Entry | None:
        entry = self._records.get(user)
        if entry is None or entry.drop_at <= now:
            return None
        return entry

    def lookup(self, username: str, now: float) -> LookupResult:
        """The user's record: ONLINE, OFFLINE (last seen, no endpoints) or NOT_FOUND."""
        try:
            user = canonical_username(username)
        except InvalidUsername:
            return LookupResult(LookupState.NOT_FOUND)
        entry = self._live_entry(user, int(now))
        if entry is None:
            return LookupResult(LookupState.NOT_FOUND)
        record = entry.record
        if record.expires > now:
            return LookupResult(LookupState.ONLINE, _live_devices(entry, now), record.last_seen)
        return LookupResult(LookupState.OFFLINE, _without_endpoints(record), record.last_seen)

    def expire(self, now: float) -> int:
        """Drop records past retention; return how many were dropped."""
        dropped = 0
        while self._heap and self._heap[0][0] <= now:
            drop_at, user = heapq.heappop(self._heap)
            entry = self._records.get(user)
            if entry is not None and entry.drop_at == drop_at:
                self._remove(user)
                dropped += 1
        return dropped

    # ------------------------------------------------------------ handover

    def export_slot(self, slot: int) -> list[PresenceRecord]:
        """The records of ``slot``, ordered by user (for handover and re-replication)."""
        users = sorted(self._by_slot.get(slot, ()))
        return [self._records[user].record for user in users]

    def set_owned_slots(self, owned: Iterable[int]) -> int:
        """Adopt a new set of owned slots; drop records of the others, return how many."""
        self.owned_slots = frozenset(owned)
        gone = [slot for slot in self._by_slot if slot not in self.owned_slots]
        dropped = 0
        for slot in gone:
            for user in list(self._by_slot.get(slot, ())):
                self._remove(user)
                dropped += 1
        return dropped

    def import_records(
        self, records: Iterable[PresenceRecord], now: float, verifier: Verifier
    ) -> ImportResult:
        """Store records from another supernode, each verified like a publish."""
        stored = unchanged = 0
        refused: Counter[str] = Counter()
        for record in records:
            try:
                result = self.publish(record, now, verifier)
            except DirectoryError as exc:
                refused[exc.reason] += 1
                continue
            if result.changed:
                stored += 1
            else:
                unchanged += 1
        return ImportResult(stored, unchanged, refused)


def _canonical(record: PresenceRecord) -> str:
    try:
        return canonical_username(record.user)
    except InvalidUsername as exc:
        raise BadRecord(str(exc)) from None


def _live_devices(entry: _Entry, now: float) -> PresenceRecord:
    """The entry's record listing only the devices that have not expired."""
    record = entry.record
    live = tuple(d for d in record.devices if entry.device_expires.get(d.device_id, 0) > now)
    if len(live) == len(record.devices) or not live:
        return record
    return dataclasses.replace(record, devices=live)


def _without_endpoints(record: PresenceRecord) -> PresenceRecord:
    devices = tuple(dataclasses.replace(device, endpoints=()) for device in record.devices)
    return dataclasses.replace(record, devices=devices)


__all__ = [
    "LAST_SEEN_RETENTION_S",
    "BadRecord",
    "DirectoryError",
    "DirectoryStore",
    "ImportResult",
    "LookupResult",
    "NotCertified",
    "NotOwner",
    "PublishResult",
    "StaleRecord",
    "StoreFull",
    "StoreLimits",
    "TooLarge",
    "TooManyDevices",
    "Verifier",
]
