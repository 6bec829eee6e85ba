"""Whole transfers through both state machines, the wire codec and real files on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hopline.files.storage import PartialFile
from hopline.files.transfer import EndReason, SenderState
from hopline.wire.files import MAX_CHUNK_SIZE

MB = 1024 * 1024


def sha256_of(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def test_20_mb_random_file_arrives_intact(random_file, loopback) -> None:
    source = random_file(20 * MB)
    link = loopback(source)
    sender = link.start(b"T" * 16)
    link.pump()
    assert link.completed == [b"T" * 16]
    assert sender.state is SenderState.COMPLETE
    assert sender.bytes_sent == 20 * MB
    assert [p.name for p in link.saved] == [source.name]
    assert sha256_of(link.saved[0]) == sha256_of(source)
    assert sorted(p.name for p in link.inbox.iterdir()) == [source.name]  # no .part left
    assert not link.alice.refused and not link.bob.refused
    assert len(link.alice) == 0 and len(link.bob) == 0


def test_largest_chunks_fit_the_wire(random_file, loopback) -> None:
    source = random_file(3 * MB + 17)
    link = loopback(source, chunk_size=MAX_CHUNK_SIZE)
    link.start(b"L" * 16)
    link.pump()
    assert sha256_of(link.saved[0]) == sha256_of(source)


def test_broken_transfer_resumes_without_resending(random_file, loopback) -> None:
    source = random_file(20 * MB)
    link = loopback(source)
    first = link.start(b"1" * 16)
    link.pump(cut_after_chunks=300)  # 300 chunks of 32 KiB: about half the file
    assert first.state is SenderState.ENDED and first.end_reason is EndReason.PATH_LOST
    assert {e.reason for e in link.ended} == {EndReason.PATH_LOST}
    parts = sorted(p.name for p in link.inbox.iterdir())
    assert parts == [source.name + ".part", source.name + ".part.json"]
    kept = (link.inbox / (source.name + ".part")).stat().st_size
    assert first.acked <= kept <= 300 * 32 * 1024

    second = link.start(b"2" * 16, now=5.0)
    link.pump(now=5.0)
    assert second.state is SenderState.COMPLETE
    assert second.resume_from == kept > 0
    assert second.bytes_sent == 20 * MB - kept  # only the rest went
    assert sha256_of(link.saved[0]) == sha256_of(source)
    assert sorted(p.name for p in link.inbox.iterdir()) == [source.name]


def test_resume_of_a_complete_partial_sends_nothing(random_file, loopback) -> None:
    source = random_file(MB)
    link = loopback(source)
    kept = PartialFile.create(link.inbox, source.name, link.size, link.sha256)
    kept.write(0, source.read_bytes())  # every byte came, the path broke before the save
    kept.close()
    second = link.start(b"2" * 16)
    link.pump()
    assert second.resume_from == MB and second.bytes_sent == 0
    assert sha256_of(link.saved[0]) == sha256_of(source)


def test_existing_file_is_never_overwritten(random_file, loopback) -> None:
    source = random_file(100_000, name="notes.txt")
    link = loopback(source)
    (link.inbox / "notes.txt").write_bytes(b"mine")
    (link.inbox / "notes (1).txt").write_bytes(b"mine too")
    link.start(b"N" * 16)
    link.pump()
    assert link.saved == [link.inbox / "notes (2).txt"]
    assert (link.inbox / "notes.txt").read_bytes() == b"mine"
    assert (link.inbox / "notes (1).txt").read_bytes() == b"mine too"
    assert sha256_of(link.saved[0]) == sha256_of(source)


def test_empty_file(random_file, loopback) -> None:
    source = random_file(0, name="empty")
    link = loopback(source)
    sender = link.start(b"E" * 16)
    link.pump()
    assert sender.state is SenderState.COMPLETE
    assert link.saved[0].read_bytes() == b""


def test_declined_offer_ends_the_sender(random_file, loopback) -> None:
    link = loopback(random_file(1000))
    link.decline_offers = True
    sender = link.start(b"D" * 16)
    link.pump()
    assert sender.end_reason is EndReason.DECLINED and sender.detail == "not now"
    assert not link.saved and not list(link.inbox.iterdir())


def test_wrong_whole_file_hash_is_refused_and_discarded(random_file, loopback) -> None:
    link = loopback(random_file(MB))
    link.lie()
    sender = link.start(b"H" * 16)
    link.pump()
    assert not link.saved
    bob_end = next(e for e in link.ended if e.reason is EndReason.FILE_HASH_MISMATCH)
    assert bob_end.transfer_id == b"H" * 16
    assert sender.end_reason is EndReason.PEER_CANCELLED
    assert sender.detail == "file-sha256-mismatch"
    assert not list(link.inbox.iterdir())  # the bad partial is gone
