"""The receiver's partial file: resume marks, crash truncation, names, atomic completion."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hopline.files.storage import PartialFile, StorageError, hash_file, unique_path

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).digest()


def test_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(DATA)
    assert hash_file(path) == (len(DATA), SHA)


def test_checkpoint_records_the_verified_length(tmp_path: Path) -> None:
    partial = PartialFile.create(tmp_path, "f.bin", len(DATA), SHA, checkpoint_every=1 << 30)
    assert partial.part_path == tmp_path / "f.bin.part"
    partial.write(0, DATA[:1000])
    assert partial.verified == 0  # written, not yet synced
    assert partial.checkpoint() == 1000
    info = json.loads(partial.info_path.read_text())
    assert info == {"name": "f.bin", "size": len(DATA), "sha256": SHA.hex(), "verified": 1000}
    partial.close()


def test_automatic_checkpoints(tmp_path: Path) -> None:
    partial = PartialFile.create(tmp_path, "f.bin", len(DATA), SHA, checkpoint_every=4096)
    partial.write(0, DATA[:4000])
    assert partial.verified == 0
    partial.write(4000, DATA[4000:5000])
    assert partial.verified == 5000
    partial.close()


def test_find_reopens_and_cuts_unverified_bytes(tmp_path: Path) -> None:
    partial = PartialFile.create(tmp_path, "f.bin", len(DATA), SHA)
    partial.write(0, DATA[:70_000])
    partial.close()
    with (tmp_path / "f.bin.part").open("ab") as f:
        f.write(b"torn write after the last checkpoint")
    again = PartialFile.find(tmp_path, len(DATA), SHA)
    assert again is not None and again.verified == 70_000
    assert (tmp_path / "f.bin.part").stat().st_size == 70_000
    assert again.prefix_hash().digest() == hashlib.sha256(DATA[:70_000]).digest()
    again.write(70_000, DATA[70_000:])
    final = again.finish()
    assert final == tmp_path / "f.bin" and final.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_mark_beyond_a_shortened_file_is_lowered(tmp_path: Path) -> None:
    partial = PartialFile.create(tmp_path, "f.bin", len(DATA), SHA)
    partial.write(0, DATA[:5000])
    partial.close()
    os.truncate(tmp_path / "f.bin.part", 3000)
    again = PartialFile.find(tmp_path, len(DATA), SHA)
    assert again is not None and again.verified == 3000
    again.close()


def test_find_ignores_other_files_and_junk(tmp_path: Path) -> None:
    other = PartialFile.create(tmp_path, "f.bin", len(DATA), hashlib.sha256(b"x").digest())
    other.close()
    (tmp_path / "junk.part.json").write_text("{not json")
    (tmp_path / "list.part.json").write_text("[1, 2]")
    (tmp_path / "orphan.part.json").write_text(
        json.dumps({"name": "orphan", "size": len(DATA), "sha256": SHA.hex(), "verified": 9})
    )
    assert PartialFile.find(tmp_path, len(DATA), SHA) is None
    assert PartialFile.find(tmp_path, len(DATA) + 1, hashlib.sha256(b"x").digest()) is None


def test_two_partials_with_one_name_do_not_collide(tmp_path: Path) -> None:
    first = PartialFile.create(tmp_path, "f.bin", 10, SHA)
    second = PartialFile.create(tmp_path, "f.bin", 10, bytes(32))
    assert first.part_path.name == "f.bin.part"
    assert second.part_path.name == "f (1).bin.part"
    first.close()
    second.close()


def test_writes_must_follow_on(tmp_path: Path) -> None:
    partial = PartialFile.create(tmp_path, "f.bin", 100, SHA)
    partial.write(0, b"a" * 10)
    with pytest.raises(StorageError, match="write at 20, the partial ends at 10"):
        partial.write(20, b"b")
    with pytest.raises(StorageError, match="passes size"):
        partial.write(10, b"c" * 91)
    with pytest.raises(StorageError, match="10 of 100 bytes"):
        partial.finish()
    partial.discard()
    assert not list(tmp_path.iterdir())


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    for name in ("../escape", "a/b", "..", ""):
        with pytest.raises(StorageError, match="unsafe file name"):
            PartialFile.create(tmp_path, name, 1, SHA)
    assert not list(tmp_path.iterdir())
    assert not (tmp_path.parent / "escape.part").exists()


def test_finish_never_overwrites(tmp_path: Path) -> None:
    for name in ("r.pdf", "r (1).pdf"):
        (tmp_path / name).write_bytes(b"keep")
    partial = PartialFile.create(tmp_path, "r.pdf", 3, SHA)
    partial.write(0, b"new")
    assert partial.finish() == tmp_path / "r (2).pdf"
    assert (tmp_path / "r.pdf").read_bytes() == b"keep"
    assert (tmp_path / "r (1).pdf").read_bytes() == b"keep"
    assert (tmp_path / "r (2).pdf").read_bytes() == b"new"
    assert unique_path(tmp_path, "r.pdf") == tmp_path / "r (3).pdf"


def test_longest_names_fit_the_file_system(tmp_path: Path) -> None:
    name = "é" * 125 + ".jpeg"  # 255 bytes of UTF-8
    partial = PartialFile.create(tmp_path, name, 3, SHA)
    assert len(partial.part_path.name.encode()) <= 255 - len(".json.tmp")
    partial.write(0, b"abc")
    partial.checkpoint()
    (tmp_path / name).write_bytes(b"old")
    final = partial.finish()
    assert final.name.endswith(" (1).jpeg") and len(final.name.encode()) <= 255
    assert final.read_bytes() == b"abc"


def test_a_partial_in_use_is_not_found_twice(tmp_path: Path) -> None:
    partial = PartialFile.create(tmp_path, "f.bin", len(DATA), SHA)
    partial.write(0, DATA[:1000])
    partial.checkpoint()
    assert PartialFile.find(tmp_path, len(DATA), SHA) is None  # locked by the running one
    second = PartialFile.open_for(tmp_path, "f.bin", len(DATA), SHA)
    assert second.part_path.name == "f (1).bin.part" and second.verified == 0
    partial.close()
    second.discard()
    again = PartialFile.find(tmp_path, len(DATA), SHA)
    assert again is not None and again.verified == 1000
    again.close()
