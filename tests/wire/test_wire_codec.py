"""Object-list codec: round trips, compatibility rules, typed errors."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.testing.wire_strategies import messages
from hopline.wire import (
    Address,
    BadHeader,
    BadValue,
    DecodeError,
    DuplicateParameter,
    EncodeError,
    Kind,
    Message,
    MissingParameter,
    ParamType,
    Record,
    Truncated,
    UnknownCommand,
    UnknownType,
    WrongType,
    decode,
    decode_raw,
    encode,
    param,
)
from hopline.wire.commands import (
    DeviceRecord,
    Echo,
    Endpoint,
    ErrorReply,
    Forward,
    Ping,
    PresencePublish,
    PresenceRecord,
)
from hopline.wire.objects import RawObject, write_raw_list


@given(messages())
@settings(max_examples=600)
def test_round_trip_every_generated_message(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data  # one encoding per message


def test_ping_bytes_are_as_documented() -> None:
    assert encode(Ping(nonce=5, request_id=7)) == bytes.fromhex("1001070805")


def _message_with(objects: list[RawObject], command: int = 1, kind: Kind = Kind.REQUEST) -> bytes:
    out = bytearray([0x10 | kind, command, 9])
    write_raw_list(out, objects)
    return bytes(out)


def test_unknown_parameters_are_skipped_for_forward_compatibility() -> None:
    nested = (RawObject(1, ParamType.UINT, 1, 0, 0),)
    data = _message_with(
        [
            RawObject(77, ParamType.OBJECTS, nested, 0, 0),
            RawObject(1, ParamType.UINT, 42, 0, 0),
            RawObject(99, ParamType.STRING, "from the future", 0, 0),
            RawObject(100, ParamType.ADDRESS, Address.parse("[::1]:9"), 0, 0),
        ]
    )
    assert decode(data) == Ping(nonce=42, request_id=9)


def test_missing_required_parameter_is_an_error() -> None:
    data = _message_with([RawObject(2, ParamType.UINT, 1, 0, 0)])
    with pytest.raises(MissingParameter, match="nonce"):
        decode(data)


def test_known_parameter_with_the_wrong_type_is_refused() -> None:
    data = _message_with([RawObject(1, ParamType.STRING, "5", 0, 0)])
    with pytest.raises(WrongType):
        decode(data)


def test_duplicate_non_repeated_parameter_is_refused() -> None:
    one = RawObject(1, ParamType.UINT, 1, 0, 0)
    with pytest.raises(DuplicateParameter):
        decode(_message_with([one, one]))


def test_repeated_parameter_keeps_order() -> None:
    endpoints = tuple(Endpoint(address=Address.parse(f"192.0.2.{i}:{i}")) for i in range(1, 6))
    device = DeviceRecord(
        device_id=b"d", identity_key=bytes(32), certificate=b"c", endpoints=endpoints
    )
    record = PresenceRecord(user="ann", status=1, devices=(device,), last_seen=1, expires=2)
    decoded = decode(encode(PresencePublish(record=record)))
    assert isinstance(decoded, PresencePublish)
    assert decoded.record.devices[0].endpoints == endpoints


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", Truncated),
        (b"\x20\x01\x00", BadHeader),  # version 2
        (b"\x14\x01\x00", BadHeader),  # reserved bit
        (b"\x10\x7f\x00", UnknownCommand),
        (b"\x10\x01\x00\x0f", UnknownType),  # type code 7
        (b"\x10\x01\x00\x08", Truncated),  # tag with no value
        (b"\x10\x01\x00\x08\x80\x00", DecodeError),  # non-minimal varint
        (b"\x10\x01\x00\x09\x05ab", Truncated),  # bytes longer than input
        (b"\x10\x01\x00\x0a\x02\xff\xfe", BadValue),  # bad UTF-8 in an unknown string
        (b"\x10\x01\x00\x0b\x05" + b"\x00" * 6, BadValue),  # address family 5
    ],
)
def test_malformed_input_raises_the_typed_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(data)


def test_non_bytes_input_is_a_wire_error() -> None:
    with pytest.raises(DecodeError):
        decode("1001070805")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        Ping(nonce=-1),
        Ping(nonce=2**64),
        Ping(nonce=True),  # a bool is not an integer on the wire
        Echo(data="text"),  # type: ignore[arg-type]
        Ping(nonce=1, request_id=2**32),
        Forward(payload=b"", to_address="1.2.3.4:5"),  # type: ignore[arg-type]
    ],
)
def test_unencodable_values_raise_encode_error(message: Message) -> None:
    with pytest.raises(EncodeError):
        encode(message)


def test_pubkey_must_be_32_bytes() -> None:
    device = DeviceRecord(device_id=b"d", identity_key=bytes(31), certificate=b"")
    record = PresenceRecord(user="a", status=0, devices=(device,), last_seen=0, expires=0)
    with pytest.raises(EncodeError, match=r"identity_key|public key"):
        encode(PresencePublish(record=record))


def test_error_reply_carries_the_failed_command_in_the_header() -> None:
    reply = ErrorReply(code=404, reason="no such user", failed_command=0x30, request_id=3)
    data = encode(reply)
    header, _ = decode_raw(data)
    assert (header.kind, header.command, header.request_id) == (Kind.ERROR, 0x30, 3)
    assert decode(data) == reply


def test_table_refuses_duplicate_registration() -> None:
    with pytest.raises(TypeError, match="already"):

        class Again(Message, command=0x0001, kind=Kind.REQUEST, name="again"):
            nonce: int = param(1, ParamType.UINT)


def test_table_refuses_two_fields_on_one_parameter() -> None:
    with pytest.raises(TypeError, match="share"):

        class Clash(Record):
            a: int = param(1, ParamType.UINT)
            b: int = param(1, ParamType.UINT)


@given(st.sampled_from(["1.2.3.4:5", "[2001:db8::1]:65535", "[fe80::1]:0"]))
def test_address_text_round_trip(text: str) -> None:
    assert str(Address.parse(text)) == text


@pytest.mark.parametrize("text", ["1.2.3.4", "host:5", "1.2.3.4:70000", "[::1]:x"])
def test_bad_address_text_is_refused(text: str) -> None:
    with pytest.raises(BadValue):
        Address.parse(text)


def test_ipv4_and_ipv6_addresses_survive() -> None:
    for host in ("198.51.100.7", "2001:db8::42"):
        address = Address(ipaddress.ip_address(host), 3478)
        message = Forward(payload=b"x", to_address=address)
        decoded = decode(encode(message))
        assert isinstance(decoded, Forward)
        assert decoded.to_address == address
