"""File transfer between two devices (command ids 0x00A0-0x00A6).

==========  ============  ====================================================
id          name          purpose
==========  ============  ====================================================
0x00A0      file.offer    sender to receiver: a file (name, size, SHA-256)
0x00A1      file.accept   receiver to sender: send it, from ``resume_from`` on
0x00A2      file.decline  receiver to sender: no (and why)
0x00A3      file.chunk    sender to receiver: ``data`` at ``offset``
0x00A4      file.ack      receiver to sender: every byte below ``offset`` is in
0x00A5      file.done     receiver to sender: whole file verified and saved
0x00A6      file.cancel   either side: the transfer is over (and why)
==========  ============  ====================================================

All are notices on the reliable channel of the secure *peer* connection
between the two devices (:class:`~hopline.path.peer.PeerPath`), direct or
relayed: that channel already encrypts end to end, orders and retransmits, so
these messages carry no cryptography of their own. They carry integrity
checks instead: the offer names the SHA-256 of the whole file and every chunk
the SHA-256 of its own data, so a receiver refuses a bad chunk at once and a
bad file before it is saved.

``transfer_id`` is 16 random bytes chosen by the sender. A chunk is at most
:data:`MAX_CHUNK_SIZE` bytes, chosen so that a whole ``file.chunk`` message
stays under the wire's 64 KiB message limit. Chunks travel in order from the
offset the receiver asked for; ``file.ack`` opens the sender's window (flow
control). A transfer broken with its path is resumed by a *new* offer of the
same (SHA-256, size): the receiver answers with ``resume_from`` = the length of
the partial file it verified and kept, and only the rest is sent. The state
machines are in :mod:`hopline.files.transfer`.
"""

from __future__ import annotations

from hopline.wire.schema import Message, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING = ParamType.UINT, ParamType.BYTES, ParamType.STRING

TRANSFER_ID_SIZE = 16
SHA256_SIZE = 32
MAX_NAME_BYTES = 255  # UTF-8 bytes of a file name (a POSIX NAME_MAX)
MAX_CHUNK_SIZE = 63 * 1024  # data per chunk: the message with its header fits in 64 KiB
DEFAULT_CHUNK_SIZE = 32 * 1024
MAX_REASON = 200  # characters of a reason kept; longer ones are cut


class FileOffer(Message, command=0x00A0, kind=Kind.NOTICE, name="file.offer"):
    """The sender offers one file."""

    transfer_id: bytes = param(1, BYTES, doc="16 random bytes chosen by the sender")
    name: str = param(2, STRING, doc="base name only: no path separators, <= 255 bytes UTF-8")
    size: int = param(3, UINT, doc="bytes")
    sha256: bytes = param(4, BYTES, doc="SHA-256 of the whole file")
    chunk_size: int = param(5, UINT, default=DEFAULT_CHUNK_SIZE, doc="bytes per chunk, <= 64512")


class FileAccept(Message, command=0x00A1, kind=Kind.NOTICE, name="file.accept"):
    """The receiver takes the file, from ``resume_from`` on (0: from the start)."""

    transfer_id: bytes = param(1, BYTES)
    resume_from: int = param(2, UINT, default=0, doc="bytes the receiver already verified")


class FileDecline(Message, command=0x00A2, kind=Kind.NOTICE, name="file.decline"):
    """The receiver does not take the file."""

    transfer_id: bytes = param(1, BYTES)
    reason: str = param(2, STRING, default="", doc="declined, or why the offer was refused")


class FileChunk(Message, command=0x00A3, kind=Kind.NOTICE, name="file.chunk"):
    """One run of the file's bytes."""

    transfer_id: bytes = param(1, BYTES)
    offset: int = param(2, UINT, doc="where ``data`` starts in the file")
    data: bytes = param(3, BYTES, doc="1..chunk_size bytes")
    sha256: bytes = param(4, BYTES, doc="SHA-256 of ``data``")


class FileAck(Message, command=0x00A4, kind=Kind.NOTICE, name="file.ack"):
    """Every byte below ``offset`` arrived and checked out (flow control)."""

    transfer_id: bytes = param(1, BYTES)
    offset: int = param(2, UINT, doc="highest contiguous offset received")


class FileDone(Message, command=0x00A5, kind=Kind.NOTICE, name="file.done"):
    """The whole file matched its SHA-256 and is saved."""

    transfer_id: bytes = param(1, BYTES)


class FileCancel(Message, command=0x00A6, kind=Kind.NOTICE, name="file.cancel"):
    """The sender of this message ends the transfer."""

    transfer_id: bytes = param(1, BYTES)
    reason: str = param(2, STRING, default="", doc="cancelled, timeout, or the refusal")


FILE_MESSAGES = (FileOffer, FileAccept, FileDecline, FileChunk, FileAck, FileDone, FileCancel)
FileMessage = FileOffer | FileAccept | FileDecline | FileChunk | FileAck | FileDone | FileCancel

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FILE_MESSAGES",
    "MAX_CHUNK_SIZE",
    "MAX_NAME_BYTES",
    "MAX_REASON",
    "SHA256_SIZE",
    "TRANSFER_ID_SIZE",
    "FileAccept",
    "FileAck",
    "FileCancel",
    "FileChunk",
    "FileDecline",
    "FileDone",
    "FileMessage",
    "FileOffer",
]
