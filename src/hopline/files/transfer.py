"""File transfer state machines, as plain data, and sans-I/O sender and receiver.

Shape (after h11, like :mod:`hopline.calls.state`): states are enums, and every
allowed move is one row of a table keyed by ``(state, event type)``. Remote
events are the wire messages themselves (:mod:`hopline.wire.files`); local
events are the small dataclasses below. A missing row is a protocol error:
:class:`LocalTransferError` when this program asked for it (a bug in the
shell), :class:`RemoteTransferError` when the peer sent it. Both carry a
:class:`Refusal`, one short machine-readable reason, and a detail for people.

Nothing here touches a file, a socket or a clock. The sender never sees file
bytes until the shell reads them: :meth:`FileSender.next_range` says which
bytes may go now (the flow-control window allows ``window`` bytes beyond the
last ``file.ack``), the shell reads them and :meth:`FileSender.chunk` frames
them. The receiver hands each checked chunk back as a :class:`WriteChunk` for
the shell to store (:mod:`hopline.files.storage`), hashes the stream as it
goes and compares the whole-file SHA-256 (in constant time) when the last byte
arrives. Then :class:`Verified` asks the shell to save the file, and
:meth:`FileReceiver.saved` produces the ``file.done``. The receiver acks every
256 KiB and at the end; a shell that checkpoints its partial file before it
sends an ack keeps every acked byte across a broken path.

Resume: a transfer broken with its path ends (``path_lost``); the receiver
keeps its partial file. A later offer of the same (SHA-256, size), under a new
transfer id, is accepted with ``resume_from`` = the verified length and the
SHA-256 state of those bytes, and the sender continues from there.

:class:`TransferTable` holds every transfer with one peer: it routes incoming
messages by transfer id, validates offers, refuses and counts bad input
(``refused[reason]``), answers a refusal inside a running transfer with a
``file.cancel`` naming the reason, and forgets transfers that ended. Its size
is bounded, so a peer cannot make us hold unbounded state.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from hopline.wire.files import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_NAME_BYTES,
    MAX_REASON,
    SHA256_SIZE,
    TRANSFER_ID_SIZE,
    FileAccept,
    FileAck,
    FileCancel,
    FileChunk,
    FileDecline,
    FileDone,
    FileMessage,
    FileOffer,
)
from hopline.wire.schema import Message

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_FILE_SIZE",
    "MAX_TRANSFERS",
    "RECEIVER_TRANSITIONS",
    "SENDER_TRANSITIONS",
    "Accept",
    "Accepted",
    "Cancel",
    "Completed",
    "Decline",
    "Ended",
    "EndReason",
    "FileReceiver",
    "FileSender",
    "HashState",
    "LocalTransferError",
    "Offer",
    "Offered",
    "PathLost",
    "ReceiverState",
    "Refusal",
    "RemoteTransferError",
    "Save",
    "SendChunk",
    "SenderState",
    "Send",
    "Timeout",
    "TransferError",
    "TransferEvent",
    "TransferTable",
    "TransferTimeouts",
    "Verified",
    "WriteChunk",
    "check_name",
    "fit_name",
    "sanitise_name",
    "split_extension",
]

DEFAULT_WINDOW = 2 * 1024 * 1024
"""Bytes the sender may have in flight beyond the receiver's last ``file.ack``."""
MAX_FILE_SIZE = 1 << 40
"""Largest file a receiver accepts an offer for (1 TiB)."""
MAX_TRANSFERS = 64
"""Most transfers one :class:`TransferTable` (one peer) holds at once."""
_ACK_EVERY = 256 * 1024
"""The receiver acks at least this often (a fraction of any sane window)."""


class Refusal(enum.Enum):
    """Why a message or a request was refused (the ``reason`` sent and counted)."""

    UNKNOWN_TRANSFER = "unknown-transfer"
    DUPLICATE_TRANSFER = "duplicate-transfer"
    TOO_MANY_TRANSFERS = "too-many-transfers"
    BAD_TRANSFER_ID = "bad-transfer-id"
    BAD_NAME = "bad-name"
    FILE_TOO_LARGE = "file-too-large"
    BAD_CHUNK_SIZE = "bad-chunk-size"
    BAD_SHA256 = "bad-sha256"
    UNEXPECTED = "unexpected-message"
    BAD_RESUME = "bad-resume-offset"
    BAD_OFFSET = "bad-offset"
    EMPTY_CHUNK = "empty-chunk"
    CHUNK_TOO_LARGE = "chunk-too-large"
    BEYOND_SIZE = "chunk-beyond-size"
    CHUNK_HASH_MISMATCH = "chunk-sha256-mismatch"
    FILE_HASH_MISMATCH = "file-sha256-mismatch"
    BAD_ACK = "bad-ack"
    EARLY_DONE = "done-before-all-data"


class TransferError(Exception):
    """A message or request the transfer's state or limits do not allow."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(f"{refusal.value}: {detail}")
        self.refusal = refusal
        self.detail = detail


class LocalTransferError(TransferError):
    """This program asked for something the transfer does not allow (a local bug)."""


class RemoteTransferError(TransferError):
    """The peer sent something the transfer does not allow (refuse it and count it)."""


class EndReason(enum.Enum):
    """Why a transfer reached its ``ENDED`` state."""

    DECLINED = "declined"
    CANCELLED = "cancelled"
    """This side cancelled."""
    PEER_CANCELLED = "peer-cancelled"
    TIMEOUT = "timeout"
    PATH_LOST = "path-lost"
    REFUSED = "refused"
    """The peer broke the protocol; :attr:`FileSender.detail` says how."""
    FILE_HASH_MISMATCH = "file-sha256-mismatch"


class SenderState(enum.Enum):
    """Where one outgoing transfer is."""

    IDLE = "idle"
    OFFERED = "offered"
    SENDING = "sending"
    COMPLETE = "complete"
    ENDED = "ended"


class ReceiverState(enum.Enum):
    """Where one incoming transfer is."""

    OFFERED = "offered"
    """The offer arrived; the user has not answered."""
    RECEIVING = "receiving"
    VERIFIED = "verified"
    """Every byte arrived and the whole-file SHA-256 matched; not saved yet."""
    COMPLETE = "complete"
    ENDED = "ended"


# --- local events -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """The sender sends its offer."""


@dataclass(frozen=True, slots=True)
class SendChunk:
    """The sender frames the next chunk."""


@dataclass(frozen=True, slots=True)
class Accept:
    """The receiving user takes the file."""


@dataclass(frozen=True, slots=True)
class Decline:
    """The receiving user refuses the file."""


@dataclass(frozen=True, slots=True)
class Save:
    """The receiver's shell stored the verified file under its final name."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """This side gives up on the transfer."""


@dataclass(frozen=True, slots=True)
class PathLost:
    """The path to the peer broke (the receiver keeps its partial file)."""


TimerKind = Literal["answer", "stall"]
S = TypeVar("S", SenderState, ReceiverState)


class HashState(Protocol):
    """A running hash (``hashlib.sha256()``): what a resumed receiver continues."""

    def update(self, data: bytes, /) -> None:
        """Add bytes."""

    def digest(self) -> bytes:
        """The hash of everything added."""

    def copy(self) -> HashState:
        """An independent copy of the state."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """A transfer timer fired."""

    kind: TimerKind


# --- the tables -------------------------------------------------------------

_SS, _RS = SenderState, ReceiverState
_SENDER_LIVE = (_SS.OFFERED, _SS.SENDING)
_RECEIVER_LIVE = (_RS.OFFERED, _RS.RECEIVING, _RS.VERIFIED)
_END_ROWS: dict[type[object], EndReason] = {
    Cancel: EndReason.CANCELLED,
    FileCancel: EndReason.PEER_CANCELLED,
    PathLost: EndReason.PATH_LOST,
    Timeout: EndReason.TIMEOUT,
}

SENDER_TRANSITIONS: dict[tuple[SenderState, type[object]], SenderState | EndReason] = {
    (_SS.IDLE, Offer): _SS.OFFERED,
    (_SS.OFFERED, FileAccept): _SS.SENDING,
    (_SS.OFFERED, FileDecline): EndReason.DECLINED,
    (_SS.SENDING, SendChunk): _SS.SENDING,
    (_SS.SENDING, FileAck): _SS.SENDING,
    (_SS.SENDING, FileDone): _SS.COMPLETE,
    **{(s, e): r for s in _SENDER_LIVE for e, r in _END_ROWS.items()},
}
"""``SENDER_TRANSITIONS[(state, event type)]``: the next state, or the
:class:`EndReason` of a move to ``ENDED``; a missing key is refused."""

RECEIVER_TRANSITIONS: dict[tuple[ReceiverState, type[object]], ReceiverState | EndReason] = {
    (_RS.OFFERED, Accept): _RS.RECEIVING,
    (_RS.OFFERED, Decline): EndReason.DECLINED,
    (_RS.RECEIVING, FileChunk): _RS.RECEIVING,
    (_RS.VERIFIED, Save): _RS.COMPLETE,
    **{(s, e): r for s in _RECEIVER_LIVE for e, r in _END_ROWS.items()},
}
"""The same for the receiver; the last chunk moves ``RECEIVING`` to
``VERIFIED`` (or ends with ``FILE_HASH_MISMATCH``) after its checks."""


@dataclass(frozen=True, slots=True)
class TransferTimeouts:
    """How long a transfer may wait, in seconds."""

    answer: float = 600.0
    """An offer unanswered by the receiving user."""
    stall: float = 60.0
    """While transferring, no progress (no chunk, or no ack moving forward)."""


TRANSFER_TIMEOUTS = TransferTimeouts()

# --- what a step asks of the shell -------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the peer."""

    message: Message


@dataclass(frozen=True, slots=True)
class WriteChunk:
    """Receiver: store ``data`` at ``offset`` (checked against its SHA-256 already)."""

    transfer_id: bytes
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    """Sender: the receiver took the file; start reading at ``resume_from``."""

    transfer_id: bytes
    resume_from: int


@dataclass(frozen=True, slots=True)
class Verified:
    """Receiver: all bytes arrived and match; save the file, then call ``saved``."""

    transfer_id: bytes


@dataclass(frozen=True, slots=True)
class Completed:
    """The transfer finished: saved on the receiver, confirmed on the sender."""

    transfer_id: bytes


@dataclass(frozen=True, slots=True)
class Ended:
    """The transfer is over without the file (the receiver may keep its partial)."""

    transfer_id: bytes
    reason: EndReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Offered:
    """A valid offer arrived: ask the user, then ``accept`` or ``decline``."""

    receiver: FileReceiver


TransferEvent = Send | WriteChunk | Accepted | Verified | Completed | Ended | Offered


# --- names ------------------------------------------------------------------

_FORBIDDEN = frozenset("/\\\x00")


def check_name(name: str) -> str | None:
    """Return why ``name`` is not a safe base name, or ``None`` when it is."""
    if not name or name in {".", ".."}:
        return "empty, '.' or '..'"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes of UTF-8"
    if any(c in _FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "contains a path separator or a control character"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "contains a lone surrogate"
    return None


def sanitise_name(name: str) -> str:
    """Turn a local file's base name into one :func:`check_name` accepts.

    Separators, control characters and lone surrogates become ``_``; an over-long
    name is cut to 255 bytes of UTF-8, keeping its extension when it is short.
    """
    cleaned = "".join(
        "_"
        if c in _FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF
        else c
        for c in name
    )
    if cleaned in {"", ".", ".."}:
        cleaned = "file"
    if len(cleaned.encode()) <= MAX_NAME_BYTES:
        return cleaned
    return fit_name(*split_extension(cleaned))


def split_extension(name: str) -> tuple[str, str]:
    """Split off a short extension: ``("report", ".pdf")``; ``.profile`` has none."""
    dot = name.rfind(".")
    if dot <= 0 or len(name[dot:].encode()) > 16:
        return name, ""
    return name[:dot], name[dot:]


def fit_name(stem: str, tail: str, limit: int = MAX_NAME_BYTES) -> str:
    """``stem + tail`` within ``limit`` UTF-8 bytes, shortening only the stem."""
    room = limit - len(tail.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + tail


def _clip(reason: str) -> str:
    return reason[:MAX_REASON]


def _validate_offer(offer: FileOffer) -> None:
    """Raise :class:`RemoteTransferError` when an offer cannot be taken."""
    if len(offer.transfer_id) != TRANSFER_ID_SIZE:
        raise RemoteTransferError(Refusal.BAD_TRANSFER_ID, f"{len(offer.transfer_id)} bytes")
    why = check_name(offer.name)
    if why is not None:
        raise RemoteTransferError(Refusal.BAD_NAME, why)
    if offer.size > MAX_FILE_SIZE:
        raise RemoteTransferError(Refusal.FILE_TOO_LARGE, f"{offer.size} > {MAX_FILE_SIZE}")
    if not 1 <= offer.chunk_size <= MAX_CHUNK_SIZE:
        detail = f"{offer.chunk_size} not in 1..{MAX_CHUNK_SIZE}"
        raise RemoteTransferError(Refusal.BAD_CHUNK_SIZE, detail)
    if len(offer.sha256) != SHA256_SIZE:
        raise RemoteTransferError(Refusal.BAD_SHA256, f"{len(offer.sha256)} bytes, not 32")


# --- the machines -----------------------------------------------------------


class _Machine(Generic[S]):
    """What sender and receiver share: the table walk, end reasons and timers."""

    _table: dict[tuple[S, type[object]], S | EndReason]
    _ended: S

    def __init__(self, transfer_id: bytes, state: S, timeouts: TransferTimeouts) -> None:
        self.transfer_id = transfer_id
        self.state: S = state
        self.end_reason: EndReason | None = None
        self.detail = ""
        self.timeouts = timeouts
        self._deadline: tuple[float, TimerKind] | None = None

    @property
    def finished(self) -> bool:
        """True once the transfer completed or ended."""
        return self.end_reason is not None or self.state.name == "COMPLETE"

    def _move(self, event: object) -> None:
        """Apply the table row for ``event``, or raise the right refusal."""
        target = self._table.get((self.state, type(event)))
        if target is None or (isinstance(event, Timeout) and not self._timer_is(event.kind)):
            error = RemoteTransferError if isinstance(event, Message) else LocalTransferError
            detail = f"{type(event).__name__} not allowed in state {self.state.name}"
            raise error(Refusal.UNEXPECTED, detail)
        if isinstance(target, EndReason):
            self._end(target, "")
        else:
            self.state = target

    def _end(self, reason: EndReason, detail: str) -> Ended:
        self.state = self._ended
        self.end_reason, self.detail = reason, detail
        self._deadline = None
        return Ended(self.transfer_id, reason, detail)

    def _arm(self, kind: TimerKind, now: float) -> None:
        seconds = self.timeouts.answer if kind == "answer" else self.timeouts.stall
        self._deadline = (now + seconds, kind)

    def _timer_is(self, kind: TimerKind) -> bool:
        return self._deadline is not None and self._deadline[1] == kind

    def get_timer(self) -> tuple[float, TimerKind] | None:
        """Return the next deadline and its kind, or ``None`` when none runs."""
        return self._deadline

    def handle_timer(self, now: float) -> list[TransferEvent]:
        """Fire the running timer if due: the transfer ends and the peer is told."""
        if self._deadline is None or now < self._deadline[0]:
            return []
        kind = self._deadline[1]
        self._move(Timeout(kind))
        self.detail = f"no {kind}"
        cancel = FileCancel(transfer_id=self.transfer_id, reason=f"timeout: no {kind}")
        return [Send(cancel), Ended(self.transfer_id, EndReason.TIMEOUT, kind)]

    def cancel(self, now: float, reason: str = "cancelled") -> list[TransferEvent]:
        """This side gives up: returns the ``file.cancel`` to send."""
        self._move(Cancel())
        self.detail = reason
        message = FileCancel(transfer_id=self.transfer_id, reason=_clip(reason))
        return [Send(message), Ended(self.transfer_id, EndReason.CANCELLED, reason)]

    def path_lost(self, now: float) -> list[TransferEvent]:
        """The path broke: the transfer ends here (nothing can be sent)."""
        self._move(PathLost())
        return [Ended(self.transfer_id, EndReason.PATH_LOST)]

    def refuse(self, error: RemoteTransferError) -> list[TransferEvent]:
        """End a live transfer the peer broke the protocol of, telling it why."""
        if self.finished:
            return []
        reason = f"{error.refusal.value}: {error.detail}"
        ended = self._end(EndReason.REFUSED, reason)
        return [Send(FileCancel(transfer_id=self.transfer_id, reason=_clip(reason))), ended]

    def _peer_cancelled(self, message: FileCancel, now: float) -> list[TransferEvent]:
        self._move(message)
        self.end_reason, self.detail = EndReason.PEER_CANCELLED, _clip(message.reason)
        return [Ended(self.transfer_id, EndReason.PEER_CANCELLED, self.detail)]


class FileSender(_Machine[SenderState]):
    """One outgoing file: offer, then chunks within the window, until ``file.done``."""

    _table = SENDER_TRANSITIONS
    _ended = SenderState.ENDED

    def __init__(
        self,
        transfer_id: bytes,
        name: str,
        size: int,
        sha256: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        window: int = DEFAULT_WINDOW,
        timeouts: TransferTimeouts = TRANSFER_TIMEOUTS,
    ) -> None:
        """Describe the file; raises :class:`LocalTransferError` on values a peer would refuse."""
        super().__init__(transfer_id, SenderState.IDLE, timeouts)
        self.offer_message = FileOffer(
            transfer_id=transfer_id, name=name, size=size, sha256=sha256, chunk_size=chunk_size
        )
        try:
            _validate_offer(self.offer_message)
        except RemoteTransferError as exc:
            raise LocalTransferError(exc.refusal, exc.detail) from exc
        if window < chunk_size:
            raise LocalTransferError(Refusal.BAD_CHUNK_SIZE, "window smaller than one chunk")
        self.size, self.chunk_size, self.window = size, chunk_size, window
        self.resume_from = 0
        self.next_offset = 0
        """The first byte not yet framed."""
        self.acked = 0
        """Every byte below this reached the receiver."""
        self.bytes_sent = 0
        """Data bytes framed in this transfer (less than ``size`` after a resume)."""

    def offer(self, now: float) -> list[TransferEvent]:
        """Return the ``file.offer`` to send; the answer timer starts."""
        self._move(Offer())
        self._arm("answer", now)
        return [Send(self.offer_message)]

    def next_range(self) -> tuple[int, int] | None:
        """The ``(offset, length)`` to read and pass to :meth:`chunk`, or ``None``.

        ``None`` while not sending, when the window is full, or when all is sent.
        """
        if self.state is not SenderState.SENDING or self.next_offset >= self.size:
            return None
        room = self.acked + self.window - self.next_offset
        length = min(self.chunk_size, self.size - self.next_offset)
        return (self.next_offset, length) if room >= length else None

    def chunk(self, offset: int, data: bytes, now: float) -> FileChunk:
        """Frame the bytes the shell read for :meth:`next_range`."""
        wanted = self.next_range()
        if wanted is None or wanted != (offset, len(data)):
            detail = f"chunk ({offset}, {len(data)} bytes) is not the next range {wanted}"
            raise LocalTransferError(Refusal.BAD_OFFSET, detail)
        self._move(SendChunk())
        self.next_offset += len(data)
        self.bytes_sent += len(data)
        digest = hashlib.sha256(data).digest()
        return FileChunk(transfer_id=self.transfer_id, offset=offset, data=data, sha256=digest)

    def handle(self, message: FileMessage, now: float) -> list[TransferEvent]:
        """Apply a message from the receiver; raises :class:`RemoteTransferError`."""
        if isinstance(message, FileCancel):
            return self._peer_cancelled(message, now)
        if isinstance(message, FileAccept):
            return self._accepted(message, now)
        if isinstance(message, FileAck):
            return self._acked(message, now)
        if isinstance(message, FileDone):
            return self._done(message, now)
        if isinstance(message, FileDecline):
            self._move(message)
            self.end_reason, self.detail = EndReason.DECLINED, _clip(message.reason)
            return [Ended(self.transfer_id, EndReason.DECLINED, self.detail)]
        self._move(message)  # raises: a receiver never sends the others
        return []

    def _accepted(self, message: FileAccept, now: float) -> list[TransferEvent]:
        if self.state is SenderState.OFFERED and message.resume_from > self.size:
            detail = f"resume_from {message.resume_from} > size {self.size}"
            raise RemoteTransferError(Refusal.BAD_RESUME, detail)
        self._move(message)
        self.resume_from = self.next_offset = self.acked = message.resume_from
        self._arm("stall", now)
        return [Accepted(self.transfer_id, message.resume_from)]

    def _acked(self, message: FileAck, now: float) -> list[TransferEvent]:
        if self.state is SenderState.SENDING and not self.acked <= message.offset:
            detail = f"ack {message.offset} went back from {self.acked}"
            raise RemoteTransferError(Refusal.BAD_ACK, detail)
        if self.state is SenderState.SENDING and message.offset > self.next_offset:
            detail = f"ack {message.offset} beyond the {self.next_offset} bytes sent"
            raise RemoteTransferError(Refusal.BAD_ACK, detail)
        self._move(message)
        if message.offset > self.acked:
            self.acked = message.offset
            self._arm("stall", now)
        return []

    def _done(self, message: FileDone, now: float) -> list[TransferEvent]:
        if self.state is SenderState.SENDING and self.next_offset < self.size:
            detail = f"done after {self.next_offset} of {self.size} bytes"
            raise RemoteTransferError(Refusal.EARLY_DONE, detail)
        self._move(message)
        self.acked = self.size
        self._deadline = None
        return [Completed(self.transfer_id)]


class FileReceiver(_Machine[ReceiverState]):
    """One incoming file: accepted (maybe resumed), checked chunk by chunk, verified."""

    _table = RECEIVER_TRANSITIONS
    _ended = ReceiverState.ENDED

    def __init__(
        self, offer: FileOffer, now: float, timeouts: TransferTimeouts = TRANSFER_TIMEOUTS
    ) -> None:
        """Take a peer's offer; raises :class:`RemoteTransferError` when it is invalid."""
        _validate_offer(offer)
        super().__init__(offer.transfer_id, ReceiverState.OFFERED, timeouts)
        self.offer = offer
        self.received = 0
        """Every byte below this arrived and passed its chunk check."""
        self.bytes_received = 0
        """Data bytes taken in this transfer (less than the size after a resume)."""
        self._acked = 0
        self._hash: HashState = hashlib.sha256()
        self._arm("answer", now)

    def accept(
        self, now: float, resume_from: int = 0, prefix: HashState | None = None
    ) -> list[TransferEvent]:
        """Take the file, from ``resume_from`` on; ``prefix`` hashed those bytes.

        ``prefix`` is the SHA-256 state over the first ``resume_from`` bytes kept
        from an earlier transfer (:meth:`hopline.files.storage.PartialFile.prefix_hash`).
        """
        if not 0 <= resume_from <= self.offer.size or (resume_from > 0) != (prefix is not None):
            detail = f"resume_from {resume_from} needs 0..{self.offer.size} and a prefix hash"
            raise LocalTransferError(Refusal.BAD_RESUME, detail)
        self._move(Accept())
        self.received = self._acked = resume_from
        if prefix is not None:
            self._hash = prefix.copy()
        self._arm("stall", now)
        events: list[TransferEvent] = [
            Send(FileAccept(transfer_id=self.transfer_id, resume_from=resume_from))
        ]
        return events + self._maybe_verify(now)

    def decline(self, now: float, reason: str = "declined") -> list[TransferEvent]:
        """Refuse the offer: returns the ``file.decline`` to send."""
        self._move(Decline())
        self.end_reason, self.detail = EndReason.DECLINED, reason
        self._deadline = None
        message = FileDecline(transfer_id=self.transfer_id, reason=_clip(reason))
        return [Send(message), Ended(self.transfer_id, EndReason.DECLINED, reason)]

    def saved(self, now: float) -> list[TransferEvent]:
        """The shell saved the verified file: returns the ``file.done`` to send."""
        self._move(Save())
        return [Send(FileDone(transfer_id=self.transfer_id)), Completed(self.transfer_id)]

    def handle(self, message: FileMessage, now: float) -> list[TransferEvent]:
        """Apply a message from the sender; raises :class:`RemoteTransferError`."""
        if isinstance(message, FileCancel):
            return self._peer_cancelled(message, now)
        if isinstance(message, FileChunk):
            return self._chunk(message, now)
        self._move(message)  # raises: a sender never sends the others
        return []

    def _chunk(self, chunk: FileChunk, now: float) -> list[TransferEvent]:
        self._move(chunk)
        self._check_chunk(chunk)
        self._hash.update(chunk.data)
        self.received += len(chunk.data)
        self.bytes_received += len(chunk.data)
        self._arm("stall", now)
        events: list[TransferEvent] = [WriteChunk(self.transfer_id, chunk.offset, chunk.data)]
        if self.received - self._acked >= _ACK_EVERY or self.received == self.offer.size:
            self._acked = self.received
            events.append(Send(FileAck(transfer_id=self.transfer_id, offset=self.received)))
        return events + self._maybe_verify(now)

    def _check_chunk(self, chunk: FileChunk) -> None:
        """Raise :class:`RemoteTransferError` for a chunk that cannot be the next one."""
        size, length = len(chunk.data), self.offer.size
        if size == 0:
            raise RemoteTransferError(Refusal.EMPTY_CHUNK, f"at offset {chunk.offset}")
        if size > self.offer.chunk_size:
            detail = f"{size} bytes > chunk size {self.offer.chunk_size}"
            raise RemoteTransferError(Refusal.CHUNK_TOO_LARGE, detail)
        if chunk.offset + size > length:
            detail = f"{size} bytes at {chunk.offset} pass the size {length}"
            raise RemoteTransferError(Refusal.BEYOND_SIZE, detail)
        if chunk.offset != self.received:
            detail = f"chunk at {chunk.offset}, expected {self.received}"
            raise RemoteTransferError(Refusal.BAD_OFFSET, detail)
        if not hmac.compare_digest(hashlib.sha256(chunk.data).digest(), chunk.sha256):
            raise RemoteTransferError(Refusal.CHUNK_HASH_MISMATCH, f"at offset {chunk.offset}")

    def _maybe_verify(self, now: float) -> list[TransferEvent]:
        """After the last byte: compare the whole-file SHA-256 and move on."""
        if self.received != self.offer.size:
            return []
        if not hmac.compare_digest(self._hash.digest(), self.offer.sha256):
            reason = Refusal.FILE_HASH_MISMATCH.value
            ended = self._end(EndReason.FILE_HASH_MISMATCH, "the file does not match its SHA-256")
            return [Send(FileCancel(transfer_id=self.transfer_id, reason=reason)), ended]
        self.state = ReceiverState.VERIFIED
        self._deadline = None
        return [Verified(self.transfer_id)]


# --- every transfer with one peer --------------------------------------------


class TransferTable:
    """Every file transfer with one peer: routes, refuses and counts, bounded.

    ``refused`` counts every refused message or offer by :class:`Refusal`; a
    refusal inside a live transfer ends it with a ``file.cancel`` naming the
    reason, a refused offer is answered with a ``file.decline``, and anything
    for a transfer id we do not hold is dropped without an answer (so two
    confused peers cannot ping-pong).
    """

    def __init__(
        self, max_transfers: int = MAX_TRANSFERS, timeouts: TransferTimeouts = TRANSFER_TIMEOUTS
    ) -> None:
        """An empty table holding at most ``max_transfers`` live transfers."""
        self.max_transfers = max_transfers
        self.timeouts = timeouts
        self.senders: dict[bytes, FileSender] = {}
        self.receivers: dict[bytes, FileReceiver] = {}
        self.refused: Counter[Refusal] = Counter()

    def __len__(self) -> int:
        return len(self.senders) + len(self.receivers)

    def transfers(self) -> list[FileSender | FileReceiver]:
        """Every transfer held, senders first."""
        return [*self.senders.values(), *self.receivers.values()]

    def add_sender(self, sender: FileSender, now: float) -> list[TransferEvent]:
        """Start an outgoing transfer: returns its offer to send."""
        if sender.transfer_id in self.senders or sender.transfer_id in self.receivers:
            raise LocalTransferError(Refusal.DUPLICATE_TRANSFER, sender.transfer_id.hex())
        if len(self) >= self.max_transfers:
            raise LocalTransferError(Refusal.TOO_MANY_TRANSFERS, f"{self.max_transfers} running")
        self.senders[sender.transfer_id] = sender
        return sender.offer(now)

    def receive(self, message: FileMessage, now: float) -> list[TransferEvent]:
        """Handle one message from the peer; never raises for anything the peer sent."""
        if isinstance(message, FileOffer):
            return self._offer(message, now)
        transfer: FileSender | FileReceiver | None = self.senders.get(message.transfer_id)
        if transfer is None:
            transfer = self.receivers.get(message.transfer_id)
        if transfer is None:
            self.refused[Refusal.UNKNOWN_TRANSFER] += 1
            return []
        try:
            events = transfer.handle(message, now)
        except RemoteTransferError as exc:
            self.refused[exc.refusal] += 1
            events = transfer.refuse(exc)
        self._forget_finished()
        return events

    def handle_timers(self, now: float) -> list[TransferEvent]:
        """Fire every due timer; ended transfers are forgotten."""
        events: list[TransferEvent] = []
        for transfer in self.transfers():
            events += transfer.handle_timer(now)
        self._forget_finished()
        return events

    def next_deadline(self) -> float | None:
        """The earliest timer of any transfer, or ``None``."""
        timers = [t.get_timer() for t in self.transfers()]
        deadlines = [timer[0] for timer in timers if timer is not None]
        return min(deadlines, default=None)

    def path_lost(self, now: float) -> list[TransferEvent]:
        """The path to the peer broke: every transfer ends (partials are kept)."""
        events: list[TransferEvent] = []
        for transfer in self.transfers():
            if not transfer.finished:
                events += transfer.path_lost(now)
        self.senders.clear()
        self.receivers.clear()
        return events

    def forget_finished(self) -> None:
        """Drop transfers that completed or ended (after a local step on one)."""
        self._forget_finished()

    def _offer(self, offer: FileOffer, now: float) -> list[TransferEvent]:
        transfer_id = offer.transfer_id
        try:
            if transfer_id in self.senders or transfer_id in self.receivers:
                raise RemoteTransferError(Refusal.DUPLICATE_TRANSFER, transfer_id.hex())
            if len(self) >= self.max_transfers:
                detail = f"{self.max_transfers} running"
                raise RemoteTransferError(Refusal.TOO_MANY_TRANSFERS, detail)
            receiver = FileReceiver(offer, now, self.timeouts)
        except RemoteTransferError as exc:
            self.refused[exc.refusal] += 1
            reason = _clip(f"{exc.refusal.value}: {exc.detail}")
            return [Send(FileDecline(transfer_id=transfer_id[:TRANSFER_ID_SIZE], reason=reason))]
        self.receivers[transfer_id] = receiver
        return [Offered(receiver)]

    def _forget_finished(self) -> None:
        for table in (self.senders, self.receivers):
            for transfer_id in [k for k, t in table.items() if t.finished]:
                del table[transfer_id]
