"""The profile's message history: SQLite, ordered like the conversation log, searchable.

One SQLite file per profile (``history.db`` next to the identity keys),
opened with the standard library's :mod:`sqlite3`: the history is local to
one device and small writes are fast, so the daemon calls it directly (or
through ``asyncio.to_thread``; a lock serialises threads). The login
server's SQLAlchemy layer exists for PostgreSQL, which a profile never
uses.

Tables (schema version 1)
-------------------------
``messages``
    one row per message (TEXT, and SYNC copies of the user's own messages):
    ``message_id`` (unique), conversation, Lamport clock, sender user and
    device, sender time, time received here, the text.
``receipts``
    delivered/read times per message and recipient device.
``messages_fts``
    an FTS5 index over the text (external content, kept by triggers), when
    this SQLite has FTS5; otherwise search falls back to ``LIKE`` (slower,
    substring instead of word matching) and :attr:`History.full_text` is
    ``False``.
``schema_version``
    the version written; a newer file is refused with ``schema-too-new``.

Order and idempotence
---------------------
:meth:`History.add` inserts by message id exactly once: a second copy is
ignored (``False``), a copy whose order key or text differs raises
:class:`~hopline.messaging.envelope.MessageError` ``conflict``. Reads are
ordered by ``(clock, sender_device, message_id)`` -- the
:class:`~hopline.messaging.conversation.OrderKey` -- and SQLite compares
blobs byte by byte with the shorter first on a tie, as Python compares
``bytes``, so the database and every in-memory log agree.

Search takes plain words typed by a person: each word is quoted for FTS5, so
no query can be a syntax error, and all words must occur.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hopline.messaging.conversation import LogEntry, OrderKey, ReceiptKind
from hopline.messaging.envelope import MessageError

__all__ = [
    "SCHEMA_VERSION",
    "ConversationSummary",
    "History",
    "HistoryError",
    "ReceiptRow",
    "fts5_available",
]

SCHEMA_VERSION: Final = 1
MAX_READ: Final = 1000
"""Most rows one read or search returns."""

_TABLES: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    message_id BLOB NOT NULL UNIQUE,
    conversation_id BLOB NOT NULL,
    clock INTEGER NOT NULL,
    sender_user TEXT NOT NULL,
    sender_device BLOB NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_order
    ON messages (conversation_id, clock, sender_device, message_id);
CREATE TABLE IF NOT EXISTS receipts (
    message_id BLOB NOT NULL,
    user TEXT NOT NULL,
    device BLOB NOT NULL,
    delivered_at_ms INTEGER,
    read_at_ms INTEGER,
    PRIMARY KEY (message_id, user, device)
) WITHOUT ROWID;
"""

_FTS: Final = """
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
"""

_SELECT_ONE: Final = (
    "SELECT conversation_id, message_id, sender_user, sender_device, clock, sent_at_ms, body "
    "FROM messages WHERE message_id = ?"
)
_SELECT_AFTER: Final = (
    "SELECT conversation_id, message_id, sender_user, sender_device, clock, sent_at_ms, body "
    "FROM messages WHERE conversation_id = ? "
    "AND (clock, sender_device, message_id) > (?, ?, ?) "
    "ORDER BY clock, sender_device, message_id LIMIT ?"
)
_SELECT_LATEST: Final = (
    "SELECT conversation_id, message_id, sender_user, sender_device, clock, sent_at_ms, body "
    "FROM messages WHERE conversation_id = ? "
    "ORDER BY clock DESC, sender_device DESC, message_id DESC LIMIT ?"
)
_INSERT: Final = (
    "INSERT INTO messages (conversation_id, message_id, sender_user, sender_device, "
    "clock, sent_at_ms, body, received_at_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING"
)
_SEARCH_COLUMNS: Final = (
    "m.conversation_id, m.message_id, m.sender_user, m.sender_device, m.clock, m.sent_at_ms, m.body"
)


class HistoryError(Exception):
    """The history file cannot be used; ``reason`` is a short stable key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    """Receipts of one message from one recipient device (milliseconds)."""

    user: str
    device: bytes
    delivered_at_ms: int | None
    read_at_ms: int | None


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One conversation in the history: how many messages, the latest clock."""

    conversation_id: bytes
    messages: int
    last_clock: int


def fts5_available(connection: sqlite3.Connection) -> bool:
    """Whether this SQLite build has the FTS5 extension."""
    try:
        connection.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    connection.execute("DROP TABLE temp.fts5_probe")
    return True


def _entry(row: tuple[bytes, bytes, str, bytes, int, int, str]) -> LogEntry:
    conversation_id, message_id, sender_user, sender_device, clock, sent_at_ms, body = row
    return LogEntry(
        conversation_id=conversation_id,
        message_id=message_id,
        sender_user=sender_user,
        sender_device=sender_device,
        clock=clock,
        sent_at_ms=sent_at_ms,
        text=body,
    )


def _fts_query(words: list[str]) -> str:
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _like(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class History:
    """The message history of one profile (see the module notes)."""

    def __init__(self, connection: sqlite3.Connection, full_text: bool) -> None:
        """Use :meth:`open`; this takes an already prepared connection."""
        self._db = connection
        self._lock = threading.Lock()
        self.full_text = full_text
        """True when search uses FTS5, False when it falls back to LIKE."""

    @classmethod
    def open(cls, path: str | Path, *, full_text: bool | None = None) -> History:
        """Open (creating if needed) the history at ``path`` (``":memory:"`` works).

        ``full_text=None`` uses FTS5 when available; ``False`` forces ``LIKE``.
        """
        connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
        use_fts = fts5_available(connection) if full_text is None else full_text
        try:
            _migrate(connection, use_fts)
        except HistoryError:
            connection.close()
            raise
        return cls(connection, use_fts)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, entry: LogEntry, received_at_ms: int) -> bool:
        """Store one message; ``False`` if it was already there (see module notes)."""
        return self.add_many([entry], received_at_ms) == 1

    def add_many(self, entries: Iterable[LogEntry], received_at_ms: int) -> int:
        """Store messages in one transaction; return how many were new.

        Raises :class:`MessageError` ``conflict`` (and stores none of them)
        when an id is known with a different key or text.
        """
        added = 0
        with self._transaction() as db:
            for entry in entries:
                added += _insert(db, entry, received_at_ms)
        return added

    def get(self, message_id: bytes) -> LogEntry | None:
        """The message with this id, if stored."""
        with self._lock:
            row = self._db.execute(_SELECT_ONE, (message_id,)).fetchone()
        return _entry(row) if row is not None else None

    def messages(
        self, conversation_id: bytes, *, after: OrderKey | None = None, limit: int = 100
    ) -> list[LogEntry]:
        """Messages of one conversation in order, starting after ``after``."""
        start = after if after is not None else OrderKey(-1, b"", b"")
        params = (conversation_id, *start, min(limit, MAX_READ))
        with self._lock:
            rows = self._db.execute(_SELECT_AFTER, params).fetchall()
        return [_entry(row) for row in rows]

    def latest(self, conversation_id: bytes, limit: int = 50) -> list[LogEntry]:
        """The last ``limit`` messages of a conversation, in order."""
        with self._lock:
            rows = self._db.execute(
                _SELECT_LATEST, (conversation_id, min(limit, MAX_READ))
            ).fetchall()
        return [_entry(row) for row in reversed(rows)]

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation with messages, the most recently active first."""
        sql = (
            "SELECT conversation_id, count(*), max(clock) FROM messages "
            "GROUP BY conversation_id ORDER BY max(received_at_ms) DESC, conversation_id"
        )
        with self._lock:
            rows = self._db.execute(sql).fetchall()
        return [ConversationSummary(c, n, clock) for c, n, clock in rows]

    def search(
        self, text: str, *, conversation_id: bytes | None = None, limit: int = 50
    ) -> list[LogEntry]:
        """Messages containing every word of ``text``, best matches (FTS5) or newest first."""
        words = text.split()
        if not words:
            return []
        where, params = self._search_filter(words)
        if conversation_id is not None:
            where += " AND m.conversation_id = ?"
            params.append(conversation_id)
        order = "bm25(messages_fts)" if self.full_text else "m.clock DESC"
        source = (
            "messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            if self.full_text
            else "messages m"
        )
        # Only fixed fragments of this module are joined; every value is a ? parameter.
        sql = f"SELECT {_SEARCH_COLUMNS} FROM {source} WHERE {where} ORDER BY {order} LIMIT ?"  # noqa: S608
        with self._lock:
            rows = self._db.execute(sql, (*params, min(limit, MAX_READ))).fetchall()
        return [_entry(row) for row in rows]

    def _search_filter(self, words: list[str]) -> tuple[str, list[object]]:
        if self.full_text:
            return "messages_fts MATCH ?", [_fts_query(words)]
        clauses = " AND ".join("m.body LIKE ? ESCAPE '\\'" for _ in words)
        return clauses, [_like(word) for word in words]

    def add_receipt(
        self, message_id: bytes, user: str, device: bytes, kind: ReceiptKind, at_ms: int
    ) -> None:
        """Record a delivered or read receipt (read implies delivered; first time wins)."""
        read_at = at_ms if kind is ReceiptKind.READ else None
        sql = (
            "INSERT INTO receipts (message_id, user, device, delivered_at_ms, read_at_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, user, device) DO UPDATE SET "
            "delivered_at_ms = coalesce(delivered_at_ms, excluded.delivered_at_ms), "
            "read_at_ms = coalesce(read_at_ms, excluded.read_at_ms)"
        )
        with self._transaction() as db:
            db.execute(sql, (message_id, user, device, at_ms, read_at))

    def receipts(self, message_id: bytes) -> list[ReceiptRow]:
        """Receipts of one message, by user and device."""
        sql = (
            "SELECT user, device, delivered_at_ms, read_at_ms FROM receipts "
            "WHERE message_id = ? ORDER BY user, device"
        )
        with self._lock:
            rows = self._db.execute(sql, (message_id,)).fetchall()
        return [ReceiptRow(*row) for row in rows]


def _migrate(connection: sqlite3.Connection, use_fts: bool) -> None:
    row = None
    tables = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if tables is not None:
        row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    version = row[0] if row is not None and row[0] is not None else 0
    if version > SCHEMA_VERSION:
        raise HistoryError("schema-too-new", f"history version {version} > {SCHEMA_VERSION}")
    had_index = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'"
    ).fetchone()
    script = _TABLES + (_FTS if use_fts else "")
    if version == 0:
        script += "INSERT INTO schema_version (version) VALUES (1);"
    if use_fts and had_index is None:  # rows written before the index existed
        script += "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');"
    connection.executescript("BEGIN IMMEDIATE;" + script + "COMMIT;")


def _insert(db: sqlite3.Connection, entry: LogEntry, received_at_ms: int) -> int:
    cursor = db.execute(
        _INSERT,
        (
            entry.conversation_id,
            entry.message_id,
            entry.sender_user,
            entry.sender_device,
            entry.clock,
            entry.sent_at_ms,
            entry.text,
            received_at_ms,
        ),
    )
    if cursor.rowcount == 1:
        return 1
    row = db.execute(_SELECT_ONE, (entry.message_id,))
    if _entry(row.fetchone()) != entry:
        raise MessageError("conflict", "same message id, different key or text")
    return 0
