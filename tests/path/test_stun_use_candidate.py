"""The USE-CANDIDATE flag (RFC 8445 section 16.1) added to the STUN attribute table."""

from __future__ import annotations

import struct

import pytest

from hopline.nat.stun import (
    BINDING,
    AttributeType,
    MessageClass,
    StunError,
    StunMessage,
    decode,
    encode,
    integrity_ok,
)

TXID = bytes(range(12))


def test_use_candidate_round_trips_as_an_empty_attribute() -> None:
    message = StunMessage(BINDING, MessageClass.REQUEST, TXID, username="a:b", use_candidate=True)
    data = encode(message, integrity_key=b"k")
    assert struct.pack("!HH", AttributeType.USE_CANDIDATE, 0) in data
    back = decode(data)
    assert back.use_candidate is True
    assert back.unknown_required == ()
    assert integrity_ok(back, b"k")


def test_absent_use_candidate_is_none_and_not_written() -> None:
    data = encode(StunMessage(BINDING, MessageClass.REQUEST, TXID))
    assert struct.pack("!H", AttributeType.USE_CANDIDATE) not in data[20:]
    assert decode(data).use_candidate is None


def test_use_candidate_with_a_value_is_rejected() -> None:
    head = struct.pack("!HH", 0x0001, 8) + bytes.fromhex("2112a442") + TXID
    data = head + struct.pack("!HH", AttributeType.USE_CANDIDATE, 4) + b"\0\0\0\1"
    with pytest.raises(StunError) as caught:
        decode(data)
    assert caught.value.reason == "bad-flag"
