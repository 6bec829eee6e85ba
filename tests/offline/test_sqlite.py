"""The offline store in a real SQLite file: restart persistence, bounds, one transaction a call."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.offline.sqlite import (
    OfflineDatabase,
    OfflineDatabaseError,
    pack_devices,
    unpack_devices,
)
from hopline.offline.store import (
    Envelope,
    OfflineError,
    OfflineStore,
    PutOutcome,
    SenderShareExceeded,
    StoreLimits,
)

NOW = 1_700_000_000.0
PHONE, LAPTOP = b"phone", b"laptop"


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def env(n: int, *, sender: str = "alice", devices: tuple[bytes, ...] = (PHONE, LAPTOP)) -> Envelope:
    return Envelope(mid(n), "bob", frozenset(devices), sender, b"ciphertext %d" % n, NOW + n)


def state(store: OfflineStore) -> object:
    return {
        user: (
            [(m.envelope, m.seq, m.acked) for m in store.messages(user)],
            store.tombstones(user),
            store.pending_acks(user),
        )
        for user in sorted(store.users())
    }


def test_restart_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    db = OfflineDatabase.open(path, NOW)
    for n in range(1, 11):
        assert db.put(env(n), NOW + n) is PutOutcome.STORED
    db.ack("bob", PHONE, [mid(1), mid(2), mid(3)], NOW + 20)
    db.ack("bob", LAPTOP, [mid(1)], NOW + 21)  # mid(1) is delivered everywhere
    db.ack("bob", LAPTOP, [mid(99)], NOW + 22)  # an ack ahead of its envelope
    before = state(db.store)
    cursor = db.fetch("bob", LAPTOP, 0, 4).next_cursor
    db.close()

    again = OfflineDatabase.open(path, NOW + 30)
    assert state(again.store) == before
    assert again.refused_on_load == {}
    assert again.put(env(1), NOW + 31) is PutOutcome.DELIVERED  # the tombstone survived
    assert again.put(env(2), NOW + 31) is PutOutcome.DUPLICATE
    page = again.fetch("bob", LAPTOP, cursor, 100)  # a cursor from before the restart
    assert [m.envelope.message_id for m in page.messages] == [mid(n) for n in range(6, 11)]
    assert again.put(env(11), NOW + 32) is PutOutcome.STORED
    assert again.store.messages("bob")[-1].seq > max(m.seq for m in page.messages)
    again.close()


def test_deletions_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    with OfflineDatabase.open(path, NOW, StoreLimits(retention=1000)) as db:
        db.put(env(1, devices=(PHONE,)), NOW)
        db.put(env(2, devices=(PHONE,)), NOW)
        db.ack("bob", PHONE, [mid(1)], NOW + 5)
        assert db.row_counts() == {"envelopes": 1, "acks": 0, "tombstones": 1}
        assert db.expire(NOW + 2000) == 2
        assert db.row_counts() == {"envelopes": 0, "acks": 0, "tombstones": 0}
    with OfflineDatabase.open(path, NOW + 2000) as db:
        assert len(db.store) == 0 and db.store.users() == []


def test_pending_acks_merge_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    with OfflineDatabase.open(path, NOW) as db:
        db.ack("bob", PHONE, [mid(1)], NOW)
        db.ack("bob", b"tablet", [mid(1)], NOW)  # not a device the envelope lists
        db.put(env(1), NOW + 1)
        assert db.row_counts()["acks"] == 1
        before = state(db.store)
    with OfflineDatabase.open(path, NOW + 2) as db:
        assert state(db.store) == before
        assert db.store.messages("bob")[0].acked == {PHONE}


def test_quota_holds_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    limits = StoreLimits(max_sender_messages=5)
    with OfflineDatabase.open(path, NOW, limits) as db:
        results = db.put_many([env(n, sender="mallory") for n in range(8)], NOW)
        assert results[:5] == [PutOutcome.STORED] * 5
        assert all(isinstance(r, SenderShareExceeded) for r in results[5:])
    with OfflineDatabase.open(path, NOW, limits) as db:
        with pytest.raises(SenderShareExceeded):
            db.put(env(20, sender="mallory"), NOW)
        assert db.row_counts()["envelopes"] == 5


def test_reopen_with_smaller_quota_trims_the_file(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    with OfflineDatabase.open(path, NOW) as db:
        db.put_many([env(n) for n in range(10)], NOW)
    with OfflineDatabase.open(path, NOW, StoreLimits(max_messages=4)) as db:
        assert len(db.store) == 4 and db.refused_on_load == {"quota": 6}
        assert db.row_counts()["envelopes"] == 4
        kept = [m.envelope.message_id for m in db.store.messages("bob")]
        assert kept == [mid(n) for n in range(4)]  # the oldest are kept, in order


def test_a_failed_put_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    with OfflineDatabase.open(path, NOW) as db:
        db.put(env(1), NOW)
        with pytest.raises(OfflineError):
            db.put(Envelope(mid(1), "bob", frozenset({PHONE}), "alice", b"other", NOW), NOW)
        assert db.row_counts()["envelopes"] == 1


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    OfflineDatabase.open(path, NOW).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(OfflineDatabaseError, match="99"):
        OfflineDatabase.open(path, NOW)


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    OfflineDatabase.open(path, NOW).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_device_blob_round_trip_and_corruption() -> None:
    devices = frozenset({b"a", b"bb" * 30, bytes(16)})
    assert unpack_devices(pack_devices(devices)) == devices
    with pytest.raises(OfflineDatabaseError):
        unpack_devices(b"\x05ab")
    with pytest.raises(OfflineDatabaseError):
        unpack_devices(b"\x00")


_WRITER = """
import os, signal, sys
from hopline.offline.sqlite import OfflineDatabase
from hopline.offline.store import Envelope
path, now = sys.argv[1], 1_700_000_000.0
db = OfflineDatabase.open(path, now)
devices = frozenset({b"phone", b"laptop"})
for batch in range(10):
    envelopes = [
        Envelope((n).to_bytes(16, "big"), "bob", devices, "alice", b"sealed %d" % n, now + n)
        for n in range(batch * 100, batch * 100 + 100)
    ]
    db.put_many(envelopes, now + 1000)
print("written", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint
"""


def test_thousand_messages_survive_kill_9_and_reach_both_devices_once(tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL and done.stdout == "written\n", done.stderr
    with OfflineDatabase.open(path, NOW + 2000) as db:
        assert len(db.store) == 1000
        for device in (PHONE, LAPTOP):
            seen: list[bytes] = []
            cursor, more = 0, True
            while more:
                page = db.fetch("bob", device, cursor, 64)
                seen += [m.envelope.message_id for m in page.messages]
                db.ack("bob", device, [m.envelope.message_id for m in page.messages], NOW + 2001)
                cursor, more = page.next_cursor, page.more
            assert seen == [mid(n) for n in range(1000)]  # all, once, in order
        assert len(db.store) == 0
        assert db.row_counts() == {"envelopes": 0, "acks": 0, "tombstones": 1000}


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 15), st.sampled_from(["alice", "mallory"])),
        st.tuples(st.just("ack"), st.integers(0, 20), st.sampled_from([PHONE, LAPTOP])),
        st.tuples(st.just("expire"), st.integers(0, 400), st.just("")),
        st.tuples(st.just("reopen"), st.just(0), st.just("")),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_file_matches_memory_after_any_operations(tmp_path: Path, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    path = tmp_path / f"prop-{uuid.uuid4().hex}.sqlite3"
    limits = StoreLimits(retention=300, max_sender_messages=6, max_messages=10, max_tombstones=4)
    db = OfflineDatabase.open(path, NOW, limits)
    clock = NOW
    try:
        for kind, n, extra in ops:
            clock += 1
            if kind == "put":
                db.put_many([env(n, sender=extra)], clock)
            elif kind == "ack":
                db.ack("bob", extra, [mid(n)], clock)
            elif kind == "expire":
                db.expire(NOW + n)
            else:
                db.close()
                db = OfflineDatabase.open(path, clock, limits)
        before = state(db.store)
        db.close()
        db = OfflineDatabase.open(path, clock, limits)
        assert state(db.store) == before
        assert db.refused_on_load == {}
    finally:
        db.close()
