"""File transfer between two devices: sans-I/O state machines and the partial file.

:mod:`hopline.files.transfer` holds the sender and receiver state machines and
:class:`~hopline.files.transfer.TransferTable` (every transfer with one peer);
:mod:`hopline.files.storage` keeps the receiver's partial file on disk with what
it needs to resume, and completes it atomically. The messages are in
:mod:`hopline.wire.files`. The transfer runs over the reliable channel of a peer
path, which already encrypts end to end; this package adds the integrity checks
(SHA-256 per chunk and of the whole file), flow control and resume.
"""

from __future__ import annotations

from hopline.files.storage import PartialFile, StorageError, hash_file, unique_path
from hopline.files.transfer import (
    EndReason,
    FileReceiver,
    FileSender,
    LocalTransferError,
    ReceiverState,
    Refusal,
    RemoteTransferError,
    SenderState,
    TransferError,
    TransferTable,
    check_name,
    sanitise_name,
)

__all__ = [
    "EndReason",
    "FileReceiver",
    "FileSender",
    "LocalTransferError",
    "PartialFile",
    "ReceiverState",
    "Refusal",
    "RemoteTransferError",
    "SenderState",
    "StorageError",
    "TransferError",
    "TransferTable",
    "check_name",
    "hash_file",
    "sanitise_name",
    "unique_path",
]
