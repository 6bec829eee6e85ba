"""The SQLite history: idempotent inserts, the log's order, search, receipts, reopening."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from hopline.messaging.conversation import ConversationLog, LogEntry, OrderKey, ReceiptKind
from hopline.messaging.envelope import MessageError
from hopline.messaging.history import History, HistoryError, ReceiptRow, fts5_available

CONV = b"conv-1"


def entry(clock: int, device: bytes, message_id: bytes, text: str = "hi") -> LogEntry:
    return LogEntry(CONV, message_id, "alice", device, clock, 1000 + clock, text)


def random_entries(seed: int, count: int) -> list[LogEntry]:
    rng = random.Random(seed)
    return [
        entry(
            rng.randrange(10), rng.choice([b"a", b"ab", b"b", b"\x00", b"\xff"]), rng.randbytes(16)
        )
        for _ in range(count)
    ]


@pytest.fixture(params=[True, False], ids=["fts5", "like"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> History:
    opened = History.open(tmp_path / "history.db", full_text=request.param)
    request.addfinalizer(opened.close)
    return opened


def test_this_sqlite_has_fts5() -> None:
    assert fts5_available(sqlite3.connect(":memory:"))
    assert History.open(":memory:").full_text


def test_insert_is_idempotent_and_conflicts_are_refused(history: History) -> None:
    first = entry(1, b"a", b"1" * 16, "hello")
    assert history.add(first, received_at_ms=5)
    assert not history.add(first, received_at_ms=6)
    assert history.get(first.message_id) == first
    with pytest.raises(MessageError) as caught:
        history.add_many([entry(2, b"a", b"2" * 16), entry(1, b"a", b"1" * 16, "edited")], 7)
    assert caught.value.reason == "conflict"
    assert history.get(b"2" * 16) is None  # the whole batch was rolled back
    assert history.messages(CONV) == [first]


@pytest.mark.parametrize("seed", range(5))
def test_database_order_is_the_log_order(history: History, seed: int) -> None:
    entries = random_entries(seed, 60)
    log = ConversationLog(CONV)
    for e in entries:
        log.add(e)
    assert history.add_many(reversed(entries), received_at_ms=1) == 60
    assert history.messages(CONV, limit=1000) == log.entries()
    assert history.latest(CONV, limit=10) == log.entries()[-10:]
    pages: list[LogEntry] = []
    after: OrderKey | None = None
    while page := history.messages(CONV, after=after, limit=7):
        pages += page
        after = page[-1].key
    assert pages == log.entries()


def test_search_words(history: History) -> None:
    history.add_many(
        [
            entry(1, b"a", b"1" * 16, "Meet at the café on Friday"),
            entry(2, b"a", b"2" * 16, "friday is fine, bring the 100% report"),
            entry(3, b"a", b"3" * 16, "nothing to see"),
            LogEntry(b"other", b"4" * 16, "bob", b"b", 1, 1, "friday elsewhere"),
        ],
        received_at_ms=1,
    )
    assert {e.message_id[:1] for e in history.search("FRIDAY")} == {b"1", b"2", b"4"}
    assert [e.message_id[:1] for e in history.search("friday report")] == [b"2"]
    assert {e.message_id[:1] for e in history.search("friday", conversation_id=CONV)} == {
        b"1",
        b"2",
    }
    assert [e.message_id[:1] for e in history.search("100%")] == [b"2"]
    assert history.search("   ") == []
    for hostile in ('"', "AND OR NOT", "NEAR(", "*", "a' OR 1=1 --", "_%\\"):
        assert history.search(hostile) == []


def test_fts_search_ignores_accents(tmp_path: Path) -> None:
    history = History.open(tmp_path / "h.db")
    history.add(entry(1, b"a", b"1" * 16, "Meet at the café"), received_at_ms=1)
    assert len(history.search("cafe")) == 1
    history.close()


def test_receipts(history: History) -> None:
    message_id = b"1" * 16
    history.add_receipt(message_id, "bob", b"phone", ReceiptKind.DELIVERED, 10)
    history.add_receipt(message_id, "bob", b"phone", ReceiptKind.DELIVERED, 11)
    history.add_receipt(message_id, "bob", b"phone", ReceiptKind.READ, 20)
    history.add_receipt(message_id, "bob", b"desk", ReceiptKind.READ, 30)
    assert history.receipts(message_id) == [
        ReceiptRow("bob", b"desk", 30, 30),
        ReceiptRow("bob", b"phone", 10, 20),
    ]


def test_reopen_keeps_everything_and_builds_a_missing_index(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    plain = History.open(path, full_text=False)
    plain.add(entry(1, b"a", b"1" * 16, "written before the index"), received_at_ms=1)
    plain.close()
    indexed = History.open(path)
    assert indexed.full_text
    assert [e.text for e in indexed.search("index")] == ["written before the index"]
    indexed.add(entry(2, b"a", b"2" * 16, "after"), received_at_ms=2)
    indexed.close()
    again = History.open(path)
    assert [e.clock for e in again.messages(CONV)] == [1, 2]
    assert [(c.conversation_id, c.messages, c.last_clock) for c in again.conversations()] == [
        (CONV, 2, 2)
    ]
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    History.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (99)")
    db.close()
    with pytest.raises(HistoryError) as caught:
        History.open(path)
    assert caught.value.reason == "schema-too-new"
