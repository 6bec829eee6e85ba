"""A loopback between two transfer tables: real files, real wire encoding, no sockets.

Every message goes through :func:`hopline.wire.encode` and :func:`decode`, so
the wire's 64 KiB limit and every field's type are exercised. Alice sends,
Bob receives into a directory through :class:`PartialFile`, checkpointing
whenever he acks.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

import hopline.wire.files  # registers the file commands
from hopline.files.storage import PartialFile, hash_file
from hopline.files.transfer import (
    Completed,
    Ended,
    EndReason,
    FileReceiver,
    FileSender,
    Offered,
    Send,
    TransferEvent,
    TransferTable,
    Verified,
    WriteChunk,
)
from hopline.wire import decode, encode
from hopline.wire.files import DEFAULT_CHUNK_SIZE, FileAck, FileChunk, FileMessage

assert hopline.wire.files.FileOffer.COMMAND == 0x00A0


@dataclass
class Loopback:
    """Alice's table sends ``source``; Bob's table saves into ``inbox``."""

    source: Path
    inbox: Path
    chunk_size: int = DEFAULT_CHUNK_SIZE
    window: int = 2 * 1024 * 1024
    alice: TransferTable = field(default_factory=TransferTable)
    bob: TransferTable = field(default_factory=TransferTable)
    to_bob: deque[bytes] = field(default_factory=deque)
    to_alice: deque[bytes] = field(default_factory=deque)
    partials: dict[bytes, PartialFile] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    completed: list[bytes] = field(default_factory=list)
    chunks_to_bob: int = 0
    decline_offers: bool = False

    def __post_init__(self) -> None:
        self._file: BinaryIO = self.source.open("rb")
        self.size, self.sha256 = hash_file(self.source)
        self.offered_sha256 = self.sha256

    def lie(self) -> None:
        """Offer a SHA-256 the file does not have (a broken or lying sender)."""
        self.offered_sha256 = bytes(32)

    def start(self, transfer_id: bytes, now: float = 0.0) -> FileSender:
        """Offer the source file under a new transfer id."""
        sender = FileSender(
            transfer_id,
            self.source.name,
            self.size,
            self.offered_sha256,
            chunk_size=self.chunk_size,
            window=self.window,
        )
        self._on_alice(self.alice.add_sender(sender, now), now)
        return sender

    def pump(self, now: float = 0.0, cut_after_chunks: int | None = None) -> None:
        """Deliver until both queues are empty, or cut the path after that many chunks."""
        while self.to_bob or self.to_alice:
            if self.to_bob:
                message = decode(self.to_bob.popleft())
                if isinstance(message, FileChunk):
                    if cut_after_chunks is not None and self.chunks_to_bob >= cut_after_chunks:
                        self.cut(now)
                        return
                    self.chunks_to_bob += 1
                self._on_bob(self.bob.receive(_file_message(message), now), now)
            if self.to_alice:
                message = decode(self.to_alice.popleft())
                self._on_alice(self.alice.receive(_file_message(message), now), now)

    def cut(self, now: float) -> None:
        """The path breaks: queued messages are lost, both tables end everything."""
        self.to_bob.clear()
        self.to_alice.clear()
        self.ended += [e for e in self.alice.path_lost(now) if isinstance(e, Ended)]
        for event in self.bob.path_lost(now):
            if isinstance(event, Ended):
                self.ended.append(event)
                self.partials.pop(event.transfer_id).close()

    def _on_alice(self, events: list[TransferEvent], now: float) -> None:
        for event in events:
            if isinstance(event, Send):
                self.to_bob.append(encode(event.message))
            elif isinstance(event, Completed):
                self.completed.append(event.transfer_id)
            elif isinstance(event, Ended):
                self.ended.append(event)
        self._fill_windows(now)

    def _fill_windows(self, now: float) -> None:
        for sender in list(self.alice.senders.values()):
            while (wanted := sender.next_range()) is not None:
                offset, length = wanted
                self._file.seek(offset)
                chunk = sender.chunk(offset, self._file.read(length), now)
                self.to_bob.append(encode(chunk))

    def _on_bob(self, events: list[TransferEvent], now: float) -> None:
        for event in events:
            if isinstance(event, Offered):
                self._on_bob(self._answer(event.receiver, now), now)
            elif isinstance(event, WriteChunk):
                self.partials[event.transfer_id].write(event.offset, event.data)
            elif isinstance(event, Send):
                if isinstance(event.message, FileAck):
                    self.partials[event.message.transfer_id].checkpoint()
                self.to_alice.append(encode(event.message))
            elif isinstance(event, Verified):
                self.saved.append(self.partials.pop(event.transfer_id).finish())
                receiver = self.bob.receivers[event.transfer_id]
                self._on_bob(receiver.saved(now), now)
                self.bob.forget_finished()
            elif isinstance(event, Ended):
                self.ended.append(event)
                partial = self.partials.pop(event.transfer_id, None)
                if partial is not None and event.reason is EndReason.FILE_HASH_MISMATCH:
                    partial.discard()
                elif partial is not None:
                    partial.close()

    def _answer(self, receiver: FileReceiver, now: float) -> list[TransferEvent]:
        offer = receiver.offer
        if self.decline_offers:
            return receiver.decline(now, "not now")
        partial = PartialFile.open_for(self.inbox, offer.name, offer.size, offer.sha256)
        self.partials[offer.transfer_id] = partial
        if partial.verified:
            return receiver.accept(now, partial.verified, partial.prefix_hash())
        return receiver.accept(now)

    def close(self) -> None:
        """Close the source and any partial still open."""
        self._file.close()
        for partial in self.partials.values():
            partial.close()


def _file_message(message: object) -> FileMessage:
    assert isinstance(message, FileMessage)
    return message


@pytest.fixture
def random_file(tmp_path: Path):
    """A factory: ``random_file(size)`` writes that many random bytes to a file."""

    def make(size: int, name: str = "holiday video.mp4") -> Path:
        outbox = tmp_path / "outbox"
        outbox.mkdir(exist_ok=True)
        path = outbox / name
        path.write_bytes(os.urandom(size))
        return path

    return make


@pytest.fixture
def loopback(tmp_path: Path):
    """A factory: ``loopback(source, **options)`` returns a :class:`Loopback` into an inbox."""
    made: list[Loopback] = []

    def make(source: Path, **options: int) -> Loopback:
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        link = Loopback(source, inbox, **options)  # type: ignore[arg-type]
        made.append(link)
        return link

    yield make
    for link in made:
        link.close()
