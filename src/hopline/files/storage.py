"""The receiver's partial file on disk: resumable, durable, completed atomically.

An incoming file is written to ``NAME.part`` in the target directory, beside a
small ``NAME.part.json`` that says which file it is (name, size, SHA-256) and
how many bytes of it are *verified*: written, passed their chunk check and
``fsync``-ed. :meth:`PartialFile.checkpoint` moves that mark (data first, then
the JSON through a temporary file and an atomic rename), so after a crash or
a broken path the mark never claims bytes the disk may not hold; bytes past it
are cut off when the partial is opened again. An open partial holds an
exclusive ``flock``, so two transfers of one file never write the same partial.

A new offer of the same (SHA-256, size) finds the partial with
:meth:`PartialFile.find`; its :attr:`~PartialFile.verified` length is the
``resume_from`` of the ``file.accept`` and :meth:`~PartialFile.prefix_hash`
the SHA-256 state the receiver continues from.

:meth:`PartialFile.finish` completes the file: ``fsync``, then a hard link to
the first free name (``NAME``, ``NAME (1)``, ``NAME (2)`` ...) -- a link never
replaces an existing file, so nothing is ever overwritten -- then the
``.part`` and its JSON are removed and the directory is synced. Names stay
within the 255-byte limit of file names: long stems are cut, extensions kept.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from hopline.files.transfer import HashState, check_name, fit_name, split_extension

__all__ = [
    "CHECKPOINT_EVERY",
    "PART_SUFFIX",
    "PartialFile",
    "StorageError",
    "hash_file",
    "unique_path",
]

PART_SUFFIX = ".part"
_INFO_SUFFIX = ".part.json"
_TMP_SUFFIX = ".tmp"
_MAX_COPIES = 10_000
_READ_BLOCK = 1024 * 1024
CHECKPOINT_EVERY = 4 * 1024 * 1024
"""Bytes written between automatic checkpoints (``fsync`` and a new mark)."""


class StorageError(Exception):
    """The partial file cannot do what was asked (bad offset, no free name, ...)."""


def hash_file(path: Path) -> tuple[int, bytes]:
    """Return the size and SHA-256 of a file (what a sender offers)."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").digest()
        return f.tell(), digest


def _candidates(name: str, extra: str = "") -> list[str]:
    """``name``, ``stem (1).ext``, ``stem (2).ext`` ..., each fitting the name limit."""
    stem, ext = split_extension(name)
    names = [fit_name(stem, ext + extra)]
    names += [fit_name(stem, f" ({n}){ext}{extra}") for n in range(1, _MAX_COPIES)]
    return names


def unique_path(directory: Path, name: str) -> Path:
    """The first of ``NAME``, ``NAME (1)`` ... that does not exist yet (a hint only:
    :meth:`PartialFile.finish` claims its name atomically)."""
    for candidate in _candidates(name):
        if not (directory / candidate).exists():
            return directory / candidate
    raise StorageError(f"no free name for {name!r} in {directory}")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_info(path: Path) -> dict[str, Any] | None:
    """The JSON beside a partial, or ``None`` when it is missing or malformed."""
    try:
        info = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    fields = {"name": str, "size": int, "sha256": str, "verified": int}
    if not isinstance(info, dict) or any(not isinstance(info.get(k), t) for k, t in fields.items()):
        return None
    return info


class PartialFile:
    """One incoming file being written: ``NAME.part`` and its resume mark."""

    def __init__(
        self,
        directory: Path,
        part_path: Path,
        name: str,
        size: int,
        sha256: bytes,
        verified: int,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        """Open an existing ``.part`` at its verified length (use :meth:`create`/:meth:`find`)."""
        self.directory, self.part_path = directory, part_path
        self.info_path = part_path.with_name(part_path.name + ".json")
        self.name, self.size, self.sha256 = name, size, sha256
        self.checkpoint_every = checkpoint_every
        self._file: BinaryIO = part_path.open("r+b")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise StorageError(f"{part_path} is being written by another transfer") from None
        self._file.truncate(verified)
        self._file.seek(verified)
        self.verified = verified
        """Bytes written, checked and on disk: the ``resume_from`` of a new accept."""
        self.written = verified
        """Bytes written so far (some maybe not synced yet)."""

    @classmethod
    def create(
        cls,
        directory: Path,
        name: str,
        size: int,
        sha256: bytes,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> PartialFile:
        """Start a new partial for a file offered as ``name`` (a checked base name)."""
        why = check_name(name)
        if why is not None:
            raise StorageError(f"unsafe file name {name!r}: {why}")
        for candidate in _candidates(name, _INFO_SUFFIX + _TMP_SUFFIX):
            part_name = candidate.removesuffix(_INFO_SUFFIX + _TMP_SUFFIX) + PART_SUFFIX
            part = directory / part_name
            if (directory / (part_name + ".json")).exists():
                continue
            try:
                os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                continue
            partial = cls(directory, part, name, size, sha256, 0, checkpoint_every)
            partial.checkpoint()
            return partial
        raise StorageError(f"no free partial name for {name!r} in {directory}")

    @classmethod
    def find(
        cls,
        directory: Path,
        size: int,
        sha256: bytes,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> PartialFile | None:
        """Reopen the partial of the file with this (size, SHA-256), if one was kept."""
        for info_path in sorted(directory.glob("*" + _INFO_SUFFIX)):
            info = _read_info(info_path)
            if info is None or info["size"] != size:
                continue
            if not hmac.compare_digest(info["sha256"].encode(), sha256.hex().encode()):
                continue
            part = info_path.with_name(info_path.name.removesuffix(".json"))
            if not part.is_file() or check_name(info["name"]) is not None:
                continue
            verified = max(0, min(info["verified"], part.stat().st_size, size))
            try:
                return cls(directory, part, info["name"], size, sha256, verified, checkpoint_every)
            except StorageError:
                continue  # in use by a running transfer of the same file
        return None

    @classmethod
    def open_for(
        cls,
        directory: Path,
        name: str,
        size: int,
        sha256: bytes,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> PartialFile:
        """The kept partial of this file if there is one, else a new one."""
        found = cls.find(directory, size, sha256, checkpoint_every)
        return found or cls.create(directory, name, size, sha256, checkpoint_every)

    def prefix_hash(self) -> HashState:
        """The SHA-256 state over the verified bytes (read back from disk)."""
        state = hashlib.sha256()
        with self.part_path.open("rb") as f:
            left = self.verified
            while left > 0:
                block = f.read(min(_READ_BLOCK, left))
                if not block:
                    raise StorageError(f"{self.part_path} is shorter than {self.verified} bytes")
                state.update(block)
                left -= len(block)
        return state

    def write(self, offset: int, data: bytes) -> None:
        """Append ``data``, which must start where the file ends; checkpoints now and then."""
        if offset != self.written:
            raise StorageError(f"write at {offset}, the partial ends at {self.written}")
        if self.written + len(data) > self.size:
            raise StorageError(f"write of {len(data)} bytes at {offset} passes size {self.size}")
        self._file.write(data)
        self.written += len(data)
        if self.written - self.verified >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> int:
        """Sync the data, then move the verified mark to it; returns the mark."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self.verified = self.written
        info = {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256.hex(),
            "verified": self.verified,
        }
        tmp = self.info_path.with_name(self.info_path.name + _TMP_SUFFIX)
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.info_path)
        return self.verified

    def finish(self) -> Path:
        """Complete the file under the first free name; returns where it is."""
        if self.written != self.size:
            raise StorageError(f"{self.written} of {self.size} bytes written")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        target = self._claim()
        self.part_path.unlink(missing_ok=True)
        self.info_path.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        return target

    def _claim(self) -> Path:
        """Link the partial to the first free final name (never replacing a file)."""
        for candidate in _candidates(self.name):
            target = self.directory / candidate
            try:
                os.link(self.part_path, target)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EXDEV}:
                    raise
                if not self._reserve(target):
                    continue
                os.replace(self.part_path, target)  # over our own empty reservation
            return target
        raise StorageError(f"no free name for {self.name!r} in {self.directory}")

    @staticmethod
    def _reserve(target: Path) -> bool:
        """Create ``target`` empty if it does not exist (where hard links are not allowed)."""
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        return True

    def discard(self) -> None:
        """Throw the partial away (its file failed its SHA-256, or the user said so)."""
        self._file.close()
        self.part_path.unlink(missing_ok=True)
        self.info_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Checkpoint and close, keeping the partial for a later resume."""
        if not self._file.closed:
            self.checkpoint()
            self._file.close()
