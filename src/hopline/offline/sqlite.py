"""The offline store made durable in a SQLite file.

:class:`OfflineDatabase` owns an :class:`~hopline.offline.store.OfflineStore`
made with ``journal=True``: every call goes to the sans-I/O core first, which
decides (quotas, idempotence, acks, expiry), and the changes it journaled are
then written in **one transaction** per call. The file therefore always holds
exactly what the core holds after a completed call, and it can never hold
more than the core's bounds allow. On :meth:`OfflineDatabase.open` the rows
are read back into a fresh core through
:meth:`~hopline.offline.store.OfflineStore.restore`, which applies the same
bounds and retention again (rows that no longer fit or have expired are
deleted), so a restart keeps message ids, arrival numbers (cursors stay
valid), acks and tombstones.

The file uses the stdlib :mod:`sqlite3` in WAL mode with ``synchronous=FULL``
(a completed call survives a power cut) and a busy timeout. Calls are
synchronous and short; an asyncio shell calls them from one task (or one
worker thread at a time) and never concurrently.

Tables (schema version 1)
-------------------------
``envelopes``
    ``(recipient, message_id)`` key, local ``seq`` (arrival order), sender,
    device ids (each a length byte and the id), ciphertext, ``received_at``.
``acks``
    ``(recipient, message_id, device)`` key and the time of the ack; rows for
    messages not held are acks that arrived before their envelope.
``tombstones``
    ``(recipient, message_id)`` key and ``until``: delivered everywhere.
``schema_version``
    the version of the tables.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from hopline.offline.store import (
    Acked,
    AckResult,
    AckSet,
    Change,
    Envelope,
    FetchPage,
    Forgotten,
    ImportResult,
    OfflineError,
    OfflineStore,
    PutOutcome,
    Removed,
    ReplicaBatch,
    Stored,
    StoreLimits,
    Tombstone,
    Tombstoned,
)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS envelopes (
    recipient TEXT NOT NULL,
    message_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    devices BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (recipient, message_id)
);
CREATE INDEX IF NOT EXISTS envelopes_seq ON envelopes (seq);
CREATE TABLE IF NOT EXISTS acks (
    recipient TEXT NOT NULL,
    message_id BLOB NOT NULL,
    device BLOB NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (recipient, message_id, device)
);
CREATE TABLE IF NOT EXISTS tombstones (
    recipient TEXT NOT NULL,
    message_id BLOB NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (recipient, message_id)
);
"""


class OfflineDatabaseError(Exception):
    """The file is not an offline store this version can read."""


def pack_devices(devices: Iterable[bytes]) -> bytes:
    """Device ids as one blob: each a length byte then the id, sorted."""
    out = bytearray()
    for device in sorted(devices):
        if not 1 <= len(device) <= 255:
            raise ValueError("a device id has 1 to 255 bytes")
        out.append(len(device))
        out += device
    return bytes(out)


def unpack_devices(blob: bytes) -> frozenset[bytes]:
    """The inverse of :func:`pack_devices`; raise OfflineDatabaseError if corrupt."""
    devices = []
    pos = 0
    while pos < len(blob):
        size = blob[pos]
        end = pos + 1 + size
        if size == 0 or end > len(blob):
            raise OfflineDatabaseError("corrupt device list")
        devices.append(bytes(blob[pos + 1 : end]))
        pos = end
    return frozenset(devices)


class OfflineDatabase:
    """An :class:`OfflineStore` whose every change is written to a SQLite file."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        store: OfflineStore,
        refused_on_load: Counter[str] | None = None,
    ) -> None:
        self._db = connection
        self.store = store
        self.refused_on_load: Counter[str] = refused_on_load or Counter()

    @classmethod
    def open(
        cls, path: str | Path, now: float, limits: StoreLimits | None = None
    ) -> OfflineDatabase:
        """Open (or create) the file and load what it holds into a fresh store."""
        db = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            _prepare(db)
            store = OfflineStore(limits, journal=True)
            refused = store.restore(_envelopes(db), _acks(db), _tombstones(db), now)
        except (sqlite3.Error, OfflineDatabaseError):
            db.close()
            raise
        database = cls(db, store, refused)
        database._write(c for c in store.drain_changes() if not isinstance(c, Stored | Acked))
        return database

    def close(self) -> None:
        """Close the file (everything is written already)."""
        self._db.close()

    def __enter__(self) -> OfflineDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ calls

    def put(self, envelope: Envelope, now: float) -> PutOutcome:
        """:meth:`OfflineStore.put`, made durable before it returns."""
        try:
            return self.store.put(envelope, now)
        finally:
            self._flush()

    def put_many(
        self, envelopes: Sequence[Envelope], now: float
    ) -> list[PutOutcome | OfflineError]:
        """Put each envelope; one transaction for all. Refusals are returned, not raised."""
        results: list[PutOutcome | OfflineError] = []
        try:
            for envelope in envelopes:
                try:
                    results.append(self.store.put(envelope, now))
                except OfflineError as exc:
                    results.append(exc)
        finally:
            self._flush()
        return results

    def fetch(self, user: str, device: bytes, after: int = 0, limit: int = 50) -> FetchPage:
        """:meth:`OfflineStore.fetch` (served from memory)."""
        return self.store.fetch(user, device, after, limit)

    def ack(self, user: str, device: bytes, message_ids: Iterable[bytes], now: float) -> AckResult:
        """:meth:`OfflineStore.ack`, made durable before it returns."""
        try:
            return self.store.ack(user, device, message_ids, now)
        finally:
            self._flush()

    def import_replica(self, batch: ReplicaBatch, now: float) -> ImportResult:
        """:meth:`OfflineStore.import_replica`, made durable before it returns."""
        try:
            return self.store.import_replica(batch, now)
        finally:
            self._flush()

    def expire(self, now: float) -> int:
        """:meth:`OfflineStore.expire`, made durable before it returns."""
        try:
            return self.store.expire(now)
        finally:
            self._flush()

    def row_counts(self) -> dict[str, int]:
        """Rows in each table (for checks and metrics)."""
        queries = {
            "envelopes": "SELECT count(*) FROM envelopes",
            "acks": "SELECT count(*) FROM acks",
            "tombstones": "SELECT count(*) FROM tombstones",
        }
        return {name: int(self._db.execute(q).fetchone()[0]) for name, q in queries.items()}

    # ------------------------------------------------------------ writing

    def _flush(self) -> None:
        self._write(self.store.drain_changes())

    def _write(self, changes: Iterable[Change]) -> None:
        changes = list(changes)
        if not changes:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                _apply(db, change)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _apply(db: sqlite3.Connection, change: Change) -> None:
    match change:
        case Stored(envelope, seq):
            db.execute(
                "INSERT OR REPLACE INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    envelope.recipient,
                    envelope.message_id,
                    seq,
                    envelope.sender,
                    pack_devices(envelope.devices),
                    envelope.ciphertext,
                    envelope.received_at,
                ),
            )
        case Acked(recipient, message_id, device, at):
            db.execute(
                "INSERT OR IGNORE INTO acks VALUES (?, ?, ?, ?)",
                (recipient, message_id, device, at),
            )
        case Removed(recipient, message_id):
            key = (recipient, message_id)
            db.execute("DELETE FROM envelopes WHERE recipient = ? AND message_id = ?", key)
            db.execute("DELETE FROM acks WHERE recipient = ? AND message_id = ?", key)
        case Tombstoned(recipient, message_id, until):
            db.execute(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?)", (recipient, message_id, until)
            )
        case Forgotten(recipient, message_id):
            key = (recipient, message_id)
            db.execute("DELETE FROM tombstones WHERE recipient = ? AND message_id = ?", key)
            db.execute("DELETE FROM acks WHERE recipient = ? AND message_id = ?", key)


# ---------------------------------------------------------------- reading


def _prepare(db: sqlite3.Connection) -> None:
    """WAL mode, then create the tables or check the version of existing ones."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        if row[0] is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise OfflineDatabaseError(
                f"schema version {row[0]}, this Hopline reads {SCHEMA_VERSION}"
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _envelopes(db: sqlite3.Connection) -> Iterator[tuple[Envelope, int]]:
    rows = db.execute(
        "SELECT recipient, message_id, seq, sender, devices, ciphertext, received_at"
        " FROM envelopes ORDER BY seq"
    )
    for recipient, message_id, seq, sender, devices, ciphertext, received_at in rows:
        envelope = Envelope(
            bytes(message_id),
            recipient,
            unpack_devices(devices),
            sender,
            bytes(ciphertext),
            float(received_at),
        )
        yield envelope, int(seq)


def _acks(db: sqlite3.Connection) -> list[AckSet]:
    grouped: dict[tuple[str, bytes], tuple[set[bytes], float]] = {}
    rows = db.execute("SELECT recipient, message_id, device, at FROM acks")
    for recipient, message_id, device, at in rows:
        devices, first = grouped.setdefault((recipient, bytes(message_id)), (set(), float(at)))
        devices.add(bytes(device))
        grouped[(recipient, bytes(message_id))] = (devices, min(first, float(at)))
    return [AckSet(r, m, frozenset(d), at) for (r, m), (d, at) in grouped.items()]


def _tombstones(db: sqlite3.Connection) -> list[Tombstone]:
    rows = db.execute("SELECT recipient, message_id, until FROM tombstones")
    return [Tombstone(r, bytes(m), float(u)) for r, m, u in rows]


__all__ = [
    "SCHEMA_VERSION",
    "OfflineDatabase",
    "OfflineDatabaseError",
    "pack_devices",
    "unpack_devices",
]
