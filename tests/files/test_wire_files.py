"""The file-transfer messages on the wire: round trips, ids, the 64 KiB bound."""

from __future__ import annotations

import pytest

from hopline.wire import COMMANDS, Kind, decode, encode
from hopline.wire.errors import LimitExceeded, WireError
from hopline.wire.files import (
    FILE_MESSAGES,
    MAX_CHUNK_SIZE,
    FileAccept,
    FileAck,
    FileCancel,
    FileChunk,
    FileDecline,
    FileDone,
    FileOffer,
)

TID = bytes(range(16))
SAMPLES = [
    FileOffer(transfer_id=TID, name="résumé.pdf", size=123_456_789, sha256=b"s" * 32),
    FileAccept(transfer_id=TID, resume_from=65536),
    FileDecline(transfer_id=TID, reason="declined"),
    FileChunk(transfer_id=TID, offset=2**40, data=b"x" * MAX_CHUNK_SIZE, sha256=b"h" * 32),
    FileAck(transfer_id=TID, offset=4 * 1024 * 1024),
    FileDone(transfer_id=TID),
    FileCancel(transfer_id=TID, reason="path-lost"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.NAME)
def test_round_trip(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


def test_command_ids_stay_in_the_file_range() -> None:
    ids = [cls.COMMAND for cls in FILE_MESSAGES]
    assert ids == list(range(0x00A0, 0x00A7))
    assert all(COMMANDS[(i, Kind.NOTICE)] is cls for i, cls in zip(ids, FILE_MESSAGES, strict=True))


def test_a_full_chunk_fits_one_message_with_room_to_spare() -> None:
    biggest = FileChunk(
        transfer_id=TID, offset=2**64 - 1, data=b"x" * MAX_CHUNK_SIZE, sha256=b"h" * 32
    )
    assert len(encode(biggest)) <= 65536 - 512


def test_a_chunk_past_the_wire_limit_is_refused_by_the_codec() -> None:
    with pytest.raises(WireError):
        encode(FileChunk(transfer_id=TID, offset=0, data=b"x" * 65536, sha256=b"h" * 32))
    raw = bytearray(encode(SAMPLES[3]))
    raw += b"\x00" * (65537 - len(raw))
    with pytest.raises(LimitExceeded):
        decode(bytes(raw))
