"""The sans-I/O sender, receiver and table: the state tables, every refusal, window, timers."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.files.transfer import (
    DEFAULT_WINDOW,
    MAX_FILE_SIZE,
    RECEIVER_TRANSITIONS,
    SENDER_TRANSITIONS,
    Accepted,
    Completed,
    Ended,
    EndReason,
    FileReceiver,
    FileSender,
    LocalTransferError,
    Offered,
    ReceiverState,
    Refusal,
    RemoteTransferError,
    Send,
    SenderState,
    TransferTable,
    TransferTimeouts,
    Verified,
    WriteChunk,
    check_name,
    sanitise_name,
)
from hopline.wire.files import (
    MAX_CHUNK_SIZE,
    MAX_REASON,
    FileAccept,
    FileAck,
    FileCancel,
    FileChunk,
    FileDecline,
    FileDone,
    FileMessage,
    FileOffer,
)

TID = b"t" * 16
DATA = bytes(range(256)) * 400  # 102400 bytes
SHA = hashlib.sha256(DATA).digest()
CHUNK = 16 * 1024


def offer(**changes: object) -> FileOffer:
    fields: dict[str, object] = {
        "transfer_id": TID,
        "name": "a.bin",
        "size": len(DATA),
        "sha256": SHA,
        "chunk_size": CHUNK,
    }
    fields.update(changes)
    return FileOffer(**fields)  # type: ignore[arg-type]


def chunk(offset: int, data: bytes, digest: bytes | None = None) -> FileChunk:
    digest = hashlib.sha256(data).digest() if digest is None else digest
    return FileChunk(transfer_id=TID, offset=offset, data=data, sha256=digest)


def sends(events: list) -> list:
    return [e.message for e in events if isinstance(e, Send)]


def accepted_receiver() -> tuple[TransferTable, FileReceiver]:
    table = TransferTable()
    [event] = table.receive(offer(), 0.0)
    assert isinstance(event, Offered)
    event.receiver.accept(0.0)
    return table, event.receiver


def sending_sender(window: int = DEFAULT_WINDOW) -> tuple[TransferTable, FileSender]:
    table = TransferTable()
    sender = FileSender(TID, "a.bin", len(DATA), SHA, chunk_size=CHUNK, window=window)
    table.add_sender(sender, 0.0)
    table.receive(FileAccept(transfer_id=TID), 0.0)
    return table, sender


# --- names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "tab\there", "del\x7f", "é" * 128, "\ud800"]
)
def test_unsafe_names_are_named(name: str) -> None:
    assert check_name(name) is not None


@pytest.mark.parametrize("name", ["a", ".profile", "résumé (final).pdf", "é" * 127, "x" * 255])
def test_safe_names_pass(name: str) -> None:
    assert check_name(name) is None


def test_sanitise_makes_names_safe() -> None:
    assert sanitise_name("../etc/passwd") == ".._etc_passwd"
    assert sanitise_name("..") == "file"
    assert sanitise_name("a\x00b\\c") == "a_b_c"
    long = sanitise_name("é" * 300 + ".tar.gz")
    assert len(long.encode()) <= 255 and long.endswith(".gz") and check_name(long) is None
    assert check_name(sanitise_name("\ud800x")) is None


# --- the tables ------------------------------------------------------------------

SENDER_REMOTE = (FileAccept, FileDecline, FileAck, FileDone, FileChunk, FileOffer)
RECEIVER_REMOTE = (FileChunk, FileAccept, FileDecline, FileAck, FileDone, FileOffer)


def any_message(kind: type) -> FileMessage:
    samples: dict[type, FileMessage] = {
        FileAccept: FileAccept(transfer_id=TID),
        FileDecline: FileDecline(transfer_id=TID),
        FileAck: FileAck(transfer_id=TID, offset=0),
        FileDone: FileDone(transfer_id=TID),
        FileChunk: chunk(0, DATA[:CHUNK]),
        FileOffer: offer(),
    }
    return samples[kind]


SENDER_MISSING = [
    (s, k) for s in SenderState for k in SENDER_REMOTE if (s, k) not in SENDER_TRANSITIONS
]
RECEIVER_MISSING = [
    (s, k) for s in ReceiverState for k in RECEIVER_REMOTE if (s, k) not in RECEIVER_TRANSITIONS
]


def test_tables_leave_room_for_refusals() -> None:
    assert len(SENDER_MISSING) == 5 * 6 - 4 and len(RECEIVER_MISSING) == 5 * 6 - 1


@pytest.mark.parametrize(("state", "kind"), SENDER_MISSING)
def test_sender_refuses_every_message_its_table_lacks(state: SenderState, kind: type) -> None:
    sender = FileSender(TID, "a.bin", len(DATA), SHA, chunk_size=CHUNK)
    sender.state = state
    with pytest.raises(RemoteTransferError) as info:
        sender.handle(any_message(kind), 1.0)
    assert info.value.refusal is Refusal.UNEXPECTED
    assert sender.state is state


@pytest.mark.parametrize(("state", "kind"), RECEIVER_MISSING)
def test_receiver_refuses_every_message_its_table_lacks(state: ReceiverState, kind: type) -> None:
    receiver = FileReceiver(offer(), 0.0)
    receiver.state = state
    with pytest.raises(RemoteTransferError) as info:
        receiver.handle(any_message(kind), 1.0)
    assert info.value.refusal is Refusal.UNEXPECTED
    assert receiver.state is state


def test_local_steps_in_the_wrong_state_are_local_errors() -> None:
    _, receiver = accepted_receiver()
    with pytest.raises(LocalTransferError):
        receiver.accept(1.0)
    with pytest.raises(LocalTransferError):
        receiver.saved(1.0)
    sender = FileSender(TID, "a.bin", len(DATA), SHA)
    with pytest.raises(LocalTransferError):
        sender.chunk(0, DATA[:CHUNK], 0.0)  # not accepted yet
    sender.offer(0.0)
    with pytest.raises(LocalTransferError):
        sender.offer(0.0)


def test_sender_refuses_to_offer_what_a_peer_would_refuse() -> None:
    with pytest.raises(LocalTransferError, match="bad-name"):
        FileSender(TID, "../x", 1, SHA)
    with pytest.raises(LocalTransferError, match="bad-chunk-size"):
        FileSender(TID, "x", 1, SHA, chunk_size=MAX_CHUNK_SIZE + 1)
    with pytest.raises(LocalTransferError, match="window"):
        FileSender(TID, "x", 1, SHA, chunk_size=CHUNK, window=CHUNK - 1)


# --- offers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"transfer_id": b"short"}, Refusal.BAD_TRANSFER_ID),
        ({"name": "../../.ssh/authorized_keys"}, Refusal.BAD_NAME),
        ({"name": "a\\b"}, Refusal.BAD_NAME),
        ({"name": ".."}, Refusal.BAD_NAME),
        ({"name": "x" * 256}, Refusal.BAD_NAME),
        ({"size": MAX_FILE_SIZE + 1}, Refusal.FILE_TOO_LARGE),
        ({"chunk_size": 0}, Refusal.BAD_CHUNK_SIZE),
        ({"chunk_size": MAX_CHUNK_SIZE + 1}, Refusal.BAD_CHUNK_SIZE),
        ({"sha256": b"x" * 31}, Refusal.BAD_SHA256),
    ],
)
def test_bad_offers_are_declined_and_counted(changes: dict, refusal: Refusal) -> None:
    table = TransferTable()
    [message] = sends(table.receive(offer(**changes), 0.0))
    assert isinstance(message, FileDecline)
    assert message.reason.startswith(refusal.value + ": ")
    assert table.refused == {refusal: 1}
    assert len(table) == 0


def test_duplicate_and_too_many_transfers_are_declined() -> None:
    table = TransferTable(max_transfers=2)
    assert isinstance(table.receive(offer(), 0.0)[0], Offered)
    [again] = sends(table.receive(offer(), 0.0))
    assert again.reason.startswith("duplicate-transfer")
    table.receive(offer(transfer_id=b"u" * 16), 0.0)
    [full] = sends(table.receive(offer(transfer_id=b"v" * 16), 0.0))
    assert full.reason.startswith("too-many-transfers")
    assert table.refused == {Refusal.DUPLICATE_TRANSFER: 1, Refusal.TOO_MANY_TRANSFERS: 1}
    assert len(table) == 2
    with pytest.raises(LocalTransferError, match="too-many"):
        table.add_sender(FileSender(b"w" * 16, "a", 1, SHA), 0.0)
    with pytest.raises(LocalTransferError, match="duplicate"):
        TransferTable().add_sender(FileSender(TID, "a", 1, SHA), 0.0) + table.add_sender(
            FileSender(TID, "a", 1, SHA), 0.0
        )


# --- chunks ------------------------------------------------------------------------


def refused_chunk(message: FileChunk, refusal: Refusal, received: int = 0) -> TransferTable:
    table, receiver = accepted_receiver()
    if received:
        table.receive(chunk(0, DATA[:received]), 0.0)
    events = table.receive(message, 1.0)
    [cancel] = sends(events)
    assert isinstance(cancel, FileCancel)
    assert cancel.reason.startswith(refusal.value + ": ")
    assert not any(isinstance(e, WriteChunk) for e in events)
    assert receiver.end_reason is EndReason.REFUSED
    assert receiver.received == received  # the partial keeps its verified bytes
    assert table.refused == {refusal: 1}
    assert len(table) == 0
    return table


def test_empty_chunk_is_refused() -> None:
    refused_chunk(chunk(0, b""), Refusal.EMPTY_CHUNK)


def test_oversize_chunk_is_refused() -> None:
    refused_chunk(chunk(0, DATA[: CHUNK + 1]), Refusal.CHUNK_TOO_LARGE)


def test_chunk_beyond_the_size_is_refused() -> None:
    refused_chunk(chunk(len(DATA) - 10, DATA[:11]), Refusal.BEYOND_SIZE)


def test_chunk_with_a_gap_is_refused() -> None:
    refused_chunk(chunk(CHUNK, DATA[CHUNK : 2 * CHUNK]), Refusal.BAD_OFFSET)


def test_repeated_chunk_is_refused() -> None:
    refused_chunk(chunk(0, DATA[:CHUNK]), Refusal.BAD_OFFSET, received=CHUNK)


def test_chunk_failing_its_sha256_is_refused() -> None:
    refused_chunk(chunk(0, DATA[:CHUNK], digest=bytes(32)), Refusal.CHUNK_HASH_MISMATCH)


def test_chunk_before_accept_is_refused() -> None:
    table = TransferTable()
    table.receive(offer(), 0.0)
    [cancel] = sends(table.receive(chunk(0, DATA[:CHUNK]), 0.0))
    assert cancel.reason.startswith("unexpected-message: FileChunk not allowed in state OFFERED")
    assert table.refused == {Refusal.UNEXPECTED: 1}


def test_messages_for_unknown_transfers_are_counted_not_answered() -> None:
    table = TransferTable()
    for message in (
        chunk(0, b"x"),
        FileAck(transfer_id=TID, offset=1),
        FileCancel(transfer_id=TID),
    ):
        assert table.receive(message, 0.0) == []
    assert table.refused == {Refusal.UNKNOWN_TRANSFER: 3}


def test_receiver_acks_and_verifies() -> None:
    _, receiver = accepted_receiver()
    acks: list[int] = []
    for offset in range(0, len(DATA), CHUNK):
        events = receiver.handle(chunk(offset, DATA[offset : offset + CHUNK]), 1.0)
        assert events[0] == WriteChunk(TID, offset, DATA[offset : offset + CHUNK])
        acks += [m.offset for m in sends(events) if isinstance(m, FileAck)]
    assert acks == [len(DATA)]  # under 256 KiB: one ack, at the end
    assert receiver.state is ReceiverState.VERIFIED
    events = receiver.saved(2.0)
    assert sends(events) == [FileDone(transfer_id=TID)]
    assert Completed(TID) in events and receiver.state is ReceiverState.COMPLETE


def test_receiver_acks_every_256_kib() -> None:
    size = 1024 * 1024
    data = bytes(size)
    receiver = FileReceiver(offer(size=size, sha256=hashlib.sha256(data).digest()), 0.0)
    receiver.accept(0.0)
    acks = []
    for offset in range(0, size, CHUNK):
        events = receiver.handle(chunk(offset, data[offset : offset + CHUNK]), 0.0)
        acks += [m.offset for m in sends(events) if isinstance(m, FileAck)]
    assert acks == [256 * 1024, 512 * 1024, 768 * 1024, size]


def test_resumed_receiver_continues_the_hash() -> None:
    half = 3 * CHUNK
    receiver = FileReceiver(offer(), 0.0)
    [accept] = sends(receiver.accept(0.0, half, hashlib.sha256(DATA[:half])))
    assert accept == FileAccept(transfer_id=TID, resume_from=half)
    for offset in range(half, len(DATA), CHUNK):
        receiver.handle(chunk(offset, DATA[offset : offset + CHUNK]), 1.0)
    assert receiver.state is ReceiverState.VERIFIED
    assert receiver.bytes_received == len(DATA) - half


def test_resumed_receiver_with_a_wrong_prefix_fails_the_file() -> None:
    half = 3 * CHUNK
    receiver = FileReceiver(offer(), 0.0)
    receiver.accept(0.0, half, hashlib.sha256(bytes(half)))
    events: list = []
    for offset in range(half, len(DATA), CHUNK):
        events = receiver.handle(chunk(offset, DATA[offset : offset + CHUNK]), 1.0)
    assert receiver.end_reason is EndReason.FILE_HASH_MISMATCH
    assert FileCancel(transfer_id=TID, reason="file-sha256-mismatch") in sends(events)


def test_resume_needs_a_prefix_hash_and_a_sane_offset() -> None:
    receiver = FileReceiver(offer(), 0.0)
    with pytest.raises(LocalTransferError, match="bad-resume"):
        receiver.accept(0.0, CHUNK)
    with pytest.raises(LocalTransferError, match="bad-resume"):
        receiver.accept(0.0, len(DATA) + 1, hashlib.sha256())
    assert receiver.state is ReceiverState.OFFERED


# --- the sender ----------------------------------------------------------------------


def test_sender_keeps_to_its_window() -> None:
    window = 4 * CHUNK
    _, sender = sending_sender(window)
    framed = []
    while (wanted := sender.next_range()) is not None:
        framed.append(sender.chunk(wanted[0], DATA[wanted[0] : sum(wanted)], 0.0))
    assert [c.offset for c in framed] == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert all(c.sha256 == hashlib.sha256(c.data).digest() for c in framed)
    sender.handle(FileAck(transfer_id=TID, offset=CHUNK), 1.0)
    assert sender.next_range() == (4 * CHUNK, CHUNK)
    with pytest.raises(LocalTransferError, match="bad-offset"):
        sender.chunk(5 * CHUNK, DATA[5 * CHUNK : 6 * CHUNK], 1.0)


def test_sender_frames_the_short_last_chunk() -> None:
    _, sender = sending_sender()
    ranges = []
    while (wanted := sender.next_range()) is not None:
        sender.chunk(wanted[0], DATA[wanted[0] : sum(wanted)], 0.0)
        ranges.append(wanted)
    assert ranges[-1] == (6 * CHUNK, len(DATA) - 6 * CHUNK)
    assert sender.bytes_sent == len(DATA)


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        (FileAck(transfer_id=TID, offset=CHUNK + 1), Refusal.BAD_ACK),
        (FileDone(transfer_id=TID), Refusal.EARLY_DONE),
        (FileAccept(transfer_id=TID), Refusal.UNEXPECTED),
        (chunk(0, b"x"), Refusal.UNEXPECTED),
    ],
)
def test_sender_refuses_bad_answers(message: FileMessage, refusal: Refusal) -> None:
    table, sender = sending_sender()
    sender.chunk(0, DATA[:CHUNK], 0.0)
    [cancel] = sends(table.receive(message, 1.0))
    assert cancel.reason.startswith(refusal.value)
    assert sender.end_reason is EndReason.REFUSED
    assert table.refused == {refusal: 1}


def test_ack_going_back_is_refused() -> None:
    table, sender = sending_sender()
    sender.chunk(0, DATA[:CHUNK], 0.0)
    sender.chunk(CHUNK, DATA[CHUNK : 2 * CHUNK], 0.0)
    assert table.receive(FileAck(transfer_id=TID, offset=2 * CHUNK), 1.0) == []
    [cancel] = sends(table.receive(FileAck(transfer_id=TID, offset=CHUNK), 1.0))
    assert cancel.reason.startswith("bad-ack: ack 16384 went back from 32768")


def test_accept_beyond_the_size_is_refused() -> None:
    table = TransferTable()
    sender = FileSender(TID, "a.bin", len(DATA), SHA)
    table.add_sender(sender, 0.0)
    [cancel] = sends(table.receive(FileAccept(transfer_id=TID, resume_from=len(DATA) + 1), 0.0))
    assert cancel.reason.startswith("bad-resume-offset")
    assert sender.end_reason is EndReason.REFUSED


def test_accept_with_resume_starts_there() -> None:
    sender = FileSender(TID, "a.bin", len(DATA), SHA, chunk_size=CHUNK)
    sender.offer(0.0)
    events = sender.handle(FileAccept(transfer_id=TID, resume_from=5000), 0.0)
    assert events == [Accepted(TID, 5000)]
    assert sender.next_range() == (5000, CHUNK)


def test_peer_cancel_reason_is_clipped() -> None:
    table, sender = sending_sender()
    events = table.receive(FileCancel(transfer_id=TID, reason="x" * 5000), 1.0)
    [ended] = events
    assert isinstance(ended, Ended) and ended.reason is EndReason.PEER_CANCELLED
    assert len(ended.detail) == MAX_REASON and sender.finished
    assert len(table) == 0


def test_local_cancel_tells_the_peer() -> None:
    _, receiver = accepted_receiver()
    events = receiver.cancel(1.0, "user pressed stop")
    assert sends(events) == [FileCancel(transfer_id=TID, reason="user pressed stop")]
    assert receiver.end_reason is EndReason.CANCELLED


# --- timers ---------------------------------------------------------------------------


def test_unanswered_offer_times_out() -> None:
    timeouts = TransferTimeouts(answer=30.0, stall=5.0)
    sender = FileSender(TID, "a.bin", len(DATA), SHA, timeouts=timeouts)
    sender.offer(100.0)
    assert sender.get_timer() == (130.0, "answer")
    assert sender.handle_timer(129.9) == []
    events = sender.handle_timer(130.0)
    assert isinstance(sends(events)[0], FileCancel)
    assert Ended(TID, EndReason.TIMEOUT, "answer") in events
    assert sender.get_timer() is None


def test_stalled_receiver_times_out_and_progress_pushes_the_timer() -> None:
    table = TransferTable(timeouts=TransferTimeouts(answer=30.0, stall=5.0))
    [offered] = table.receive(offer(), 0.0)
    assert isinstance(offered, Offered)
    offered.receiver.accept(10.0)
    assert table.next_deadline() == 15.0
    table.receive(chunk(0, DATA[:CHUNK]), 14.0)
    assert table.next_deadline() == 19.0
    assert table.handle_timers(18.0) == []
    events = table.handle_timers(19.0)
    assert Ended(TID, EndReason.TIMEOUT, "stall") in events
    assert len(table) == 0 and table.next_deadline() is None


def test_ack_progress_pushes_the_sender_stall_timer() -> None:
    table = TransferTable()
    timeouts = TransferTimeouts(stall=5.0)
    sender = FileSender(TID, "a.bin", len(DATA), SHA, chunk_size=CHUNK, timeouts=timeouts)
    table.add_sender(sender, 0.0)
    table.receive(FileAccept(transfer_id=TID), 1.0)
    assert sender.get_timer() == (6.0, "stall")
    sender.chunk(0, DATA[:CHUNK], 2.0)
    table.receive(FileAck(transfer_id=TID, offset=CHUNK), 4.0)
    assert sender.get_timer() == (9.0, "stall")
    table.receive(FileAck(transfer_id=TID, offset=CHUNK), 8.0)  # no progress
    assert sender.get_timer() == (9.0, "stall")


def test_path_lost_ends_everything() -> None:
    table, receiver = accepted_receiver()
    sender = FileSender(b"s" * 16, "b", 10, SHA)
    table.add_sender(sender, 0.0)
    events = table.path_lost(1.0)
    assert {e.reason for e in events if isinstance(e, Ended)} == {EndReason.PATH_LOST}
    assert receiver.end_reason is sender.end_reason is EndReason.PATH_LOST
    assert len(table) == 0
    assert not any(isinstance(e, Verified) for e in events)


# --- whatever a peer sends -------------------------------------------------------------

IDS = st.sampled_from([TID, b"s" * 16, b"u" * 16, b"short"])
OFFSETS = st.integers(min_value=0, max_value=2 * len(DATA))
PEER_MESSAGES = st.one_of(
    st.builds(
        FileOffer,
        transfer_id=IDS,
        name=st.text(max_size=300),
        size=st.integers(min_value=0, max_value=2**64 - 1),
        sha256=st.sampled_from([SHA, b"x" * 31]),
        chunk_size=st.integers(min_value=0, max_value=2**17),
    ),
    st.builds(FileAccept, transfer_id=IDS, resume_from=OFFSETS),
    st.builds(FileDecline, transfer_id=IDS, reason=st.text(max_size=300)),
    st.builds(
        FileChunk,
        transfer_id=IDS,
        offset=OFFSETS,
        data=st.sampled_from([b"", DATA[:CHUNK], DATA[:100], DATA[: CHUNK + 1]]),
        sha256=st.sampled_from([hashlib.sha256(DATA[:CHUNK]).digest(), bytes(32)]),
    ),
    st.builds(FileAck, transfer_id=IDS, offset=OFFSETS),
    st.builds(FileDone, transfer_id=IDS),
    st.builds(FileCancel, transfer_id=IDS, reason=st.text(max_size=300)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PEER_MESSAGES, max_size=30))
def test_no_peer_message_sequence_raises_or_grows_the_table(messages: list) -> None:
    table = TransferTable(max_transfers=3)
    sender = FileSender(b"s" * 16, "a.bin", len(DATA), SHA, chunk_size=CHUNK)
    table.add_sender(sender, 0.0)
    handled = 0
    for n, message in enumerate(messages):
        for event in table.receive(message, float(n)):
            if isinstance(event, Offered) and n % 2 == 0:
                event.receiver.accept(float(n))
            if isinstance(event, Send):
                assert len(getattr(event.message, "reason", "")) <= MAX_REASON
        handled += 1
        while sender.state is SenderState.SENDING and (wanted := sender.next_range()):
            sender.chunk(wanted[0], DATA[wanted[0] : sum(wanted)], float(n))
        assert len(table) <= 3
    assert handled == len(messages)
