"""The STUN codec: RFC 5769 test vectors, round trips, strictness, and a fuzz proof."""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.connection import handshake as hs
from hopline.nat.stun import (
    BINDING,
    COOKIE_BYTES,
    MAX_ATTRIBUTES,
    AttributeType,
    ChangeRequest,
    MessageClass,
    StunError,
    StunMessage,
    decode,
    encode,
    integrity_ok,
    is_stun,
)
from hopline.transport.packet import MAGIC

TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769 section 2.1: sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED,
# USERNAME, MESSAGE-INTEGRITY, FINGERPRINT)
SAMPLE_REQUEST = _hex("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
""")
# RFC 5769 section 2.2: sample IPv4 response
SAMPLE_IPV4_RESPONSE = _hex("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
""")
# RFC 5769 section 2.3: sample IPv6 response
SAMPLE_IPV6_RESPONSE = _hex("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
""")


# ---------------------------------------------------------------- RFC 5769


def test_rfc5769_sample_request() -> None:
    message = decode(SAMPLE_REQUEST)
    assert message.is_binding_request
    assert message.transaction_id == TXID
    assert message.software == "STUN test client"
    assert message.username == "evtj:h6vY"
    assert message.fingerprint
    assert message.unknown_required == (0x0024,)  # PRIORITY (ICE) is comprehension-required
    assert integrity_ok(message, PASSWORD)
    assert not integrity_ok(message, b"wrong password")


def test_rfc5769_ipv4_response() -> None:
    message = decode(SAMPLE_IPV4_RESPONSE)
    assert (message.method, message.message_class) == (BINDING, MessageClass.SUCCESS)
    assert message.xor_mapped_address == ("192.0.2.1", 32853)
    assert message.software == "test vector"
    assert message.fingerprint and integrity_ok(message, PASSWORD)


def test_rfc5769_ipv6_response() -> None:
    message = decode(SAMPLE_IPV6_RESPONSE)
    assert message.xor_mapped_address == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert message.fingerprint and integrity_ok(message, PASSWORD)


@pytest.mark.parametrize(
    ("vector", "address", "start", "end"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853), 36, 48),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853), 36, 60),
    ],
)
def test_xor_mapped_address_is_written_as_in_rfc5769(
    vector: bytes, address: tuple[str, int], start: int, end: int
) -> None:
    ours = encode(StunMessage(BINDING, MessageClass.SUCCESS, TXID, xor_mapped_address=address))
    assert ours[20:] == vector[start:end]


def test_integrity_and_fingerprint_written_like_rfc5769() -> None:
    # the RFC pads SOFTWARE with a space; with that byte zero, everything else must match
    vector = bytearray(SAMPLE_IPV4_RESPONSE)
    vector[35] = 0
    message = StunMessage(
        BINDING,
        MessageClass.SUCCESS,
        TXID,
        software="test vector",
        xor_mapped_address=("192.0.2.1", 32853),
        fingerprint=True,
    )
    ours = encode(message, integrity_key=PASSWORD)
    assert ours[:-32] == bytes(vector[:-32])  # the attributes before MESSAGE-INTEGRITY
    again = decode(ours)
    assert integrity_ok(again, PASSWORD) and again.fingerprint
    assert again.xor_mapped_address == ("192.0.2.1", 32853)


# ---------------------------------------------------------------- round trips


def test_every_table_attribute_round_trips() -> None:
    message = StunMessage(
        BINDING,
        MessageClass.ERROR,
        bytes(range(12)),
        mapped_address=("198.51.100.7", 1),
        xor_mapped_address=("2001:db8::5", 65535),
        change_request=ChangeRequest.IP | ChangeRequest.PORT,
        response_port=40000,
        username="alice",
        error_code=(420, "Unknown Attribute"),
        unknown_attributes=(0x0024, 0x7FFF, 0x0001),
        response_origin=("203.0.113.10", 3478),
        other_address=("::1", 3479),
        software="hopline/0.1.0",
        fingerprint=True,
    )
    data = encode(message)
    assert len(data) % 4 == 0 and is_stun(data)
    assert decode(data) == message


def test_message_type_bits_for_every_class() -> None:
    expected = {
        MessageClass.REQUEST: 0x0001,
        MessageClass.INDICATION: 0x0011,
        MessageClass.SUCCESS: 0x0101,
        MessageClass.ERROR: 0x0111,
    }
    for klass, value in expected.items():
        data = encode(StunMessage(BINDING, klass, TXID))
        assert int.from_bytes(data[:2], "big") == value
        assert decode(data).message_class is klass
    allocate = encode(StunMessage(0x003, MessageClass.REQUEST, TXID))
    assert decode(allocate).method == 0x003 and not decode(allocate).is_binding_request


def test_first_of_repeated_attributes_counts_and_optional_unknowns_are_skipped() -> None:
    head = encode(StunMessage(BINDING, MessageClass.REQUEST, TXID, software="first"))
    extra = struct.pack("!HH", 0x8022, 6) + b"second\0\0" + struct.pack("!HH", 0xC001, 0)
    data = _with_attributes(head, extra)
    message = decode(data)
    assert message.software == "first" and message.unknown_required == ()


def test_attributes_after_message_integrity_are_ignored() -> None:
    data = encode(StunMessage(BINDING, MessageClass.REQUEST, TXID), integrity_key=b"k")
    data = _with_attributes(data, struct.pack("!HH", 0x8022, 4) + b"late")
    message = decode(data)
    assert message.software is None and message.message_integrity is not None


# ---------------------------------------------------------------- strictness


def _with_attributes(message: bytes, extra: bytes) -> bytes:
    data = bytearray(message + extra)
    struct.pack_into("!H", data, 2, len(data) - 20)
    return bytes(data)


def _bare(kind: int, length: int, value: bytes) -> bytes:
    """A request holding one attribute: header ``kind``/``length``, then ``value``."""
    return _with_attributes(_request()[:20], struct.pack("!HH", kind, length) + value)


def _request() -> bytes:
    return encode(StunMessage(BINDING, MessageClass.REQUEST, TXID, fingerprint=True))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too-short"),
        (_request()[:19], "too-short"),
        (_request() + bytes(1280), "too-long"),
        (b"\x40" + _request()[1:], "not-stun"),
        (_request()[:4] + b"\x21\x12\xa4\x43" + _request()[8:], "bad-cookie"),
        (_request()[:3] + b"\x09" + _request()[4:] + bytes(1), "bad-length"),
        (_request() + bytes(4), "bad-length"),
        (_bare(0x8022, 9, b"x" * 8), "truncated-attribute"),
        (_bare(0x0020, 4, bytes(4)), "bad-address"),
        (_bare(0x0001, 8, b"\0\3" + bytes(6)), "bad-address"),
        (_bare(0x8022, 4, b"\xff\xfe\xfd\xfc"), "bad-text"),
        (_bare(0x0009, 4, b"\0\0\x07\x00"), "bad-error-code"),
        (_bare(0x0003, 2, bytes(4)), "bad-change-request"),
        (_bare(0x000A, 3, bytes(4)), "bad-unknown-attributes"),
        (_bare(0x0027, 3, bytes(4)), "bad-response-port"),
        (_bare(0x0008, 8, bytes(8)), "bad-message-integrity"),
        (_with_attributes(_request()[:20], bytes(4) * (MAX_ATTRIBUTES + 1)), "too-many-attributes"),
        (_with_attributes(_request(), struct.pack("!HH", 0x8022, 0)), "fingerprint-not-last"),
        (_request()[:-1] + bytes([_request()[-1] ^ 1]), "bad-fingerprint"),
    ],
)  # fmt: skip
def test_bad_input_raises_stun_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(StunError) as caught:
        decode(data)
    assert caught.value.reason == reason


def test_fingerprint_covers_the_header_length() -> None:
    data = _request()
    crc = zlib.crc32(data[:-8]) ^ 0x5354554E
    assert int.from_bytes(data[-4:], "big") == crc
    assert data[-8:-4] == struct.pack("!HH", AttributeType.FINGERPRINT, 4)


def test_encode_refuses_what_it_cannot_write() -> None:
    with pytest.raises(StunError):
        encode(StunMessage(BINDING, MessageClass.REQUEST, b"short"))
    with pytest.raises(StunError):
        encode(StunMessage(BINDING, MessageClass.SUCCESS, TXID, xor_mapped_address=("x", 1)))
    with pytest.raises(StunError):
        encode(StunMessage(BINDING, MessageClass.ERROR, TXID, error_code=(200, "ok")))


# ---------------------------------------------------------------- the classifier


def test_is_stun_accepts_messages_and_refuses_hopline_first_bytes() -> None:
    assert is_stun(_request()) and is_stun(SAMPLE_REQUEST) and is_stun(SAMPLE_IPV6_RESPONSE)
    for first in (hs.INIT, MAGIC):  # a handshake init, a link packet's magic
        forged = bytes([first]) + _request()[1:]
        assert forged[0] & 0xC0  # both have a top bit set ...
        assert not is_stun(forged)  # ... so not even a STUN-shaped tail passes


@given(st.binary(min_size=1200, max_size=1400))
@settings(max_examples=300)
def test_no_handshake_init_is_stun(tail: bytes) -> None:
    init = bytes([hs.INIT]) + tail[1:]
    assert hs.looks_like_init(init)
    assert not is_stun(init)


# ---------------------------------------------------------------- fuzz


def _decode_only_stun_errors(data: bytes) -> None:
    with contextlib.suppress(StunError):
        message = decode(data)
        assert is_stun(data)
        encode(dataclass_for_reencode(message))


def dataclass_for_reencode(message: StunMessage) -> StunMessage:
    """What was read can be written again (integrity is only read)."""
    return StunMessage(
        message.method,
        message.message_class,
        message.transaction_id,
        software=message.software,
        xor_mapped_address=message.xor_mapped_address,
    )


@given(st.binary(max_size=600))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_raise_only_stun_errors(data: bytes) -> None:
    _decode_only_stun_errors(data)


@st.composite
def attribute_bodies(draw: st.DrawFn) -> bytes:
    """A valid header in front of random attributes (known types mostly)."""
    types = st.sampled_from([int(t) for t in AttributeType] + [0x0024, 0x8029, 0xFFFF])
    body = b""
    for _ in range(draw(st.integers(0, 6))):
        value = draw(st.binary(max_size=40))
        length = draw(st.one_of(st.just(len(value)), st.integers(0, 0xFFFF)))
        body += struct.pack("!HH", draw(types), length) + value + bytes(-len(value) % 4)
    body += bytes(-len(body) % 4)
    kind = draw(st.integers(0, 0x3FFF))
    return (
        struct.pack("!HH", kind, len(body))
        + COOKIE_BYTES
        + draw(st.binary(min_size=12, max_size=12))
        + body
    )


@given(attribute_bodies())
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
def test_random_attributes_behind_a_valid_header_raise_only_stun_errors(data: bytes) -> None:
    _decode_only_stun_errors(data)


@given(st.data())
@settings(max_examples=1000)
def test_mutated_vectors_raise_only_stun_errors(data: st.DataObject) -> None:
    vector = bytearray(
        data.draw(st.sampled_from([SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE]))
    )
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(vector) - 1))
        vector[at] = data.draw(st.integers(0, 255))
    _decode_only_stun_errors(bytes(vector))
