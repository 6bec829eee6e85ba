"""Whole messages: the header plus the object list.

Byte layout of a message::

    +--------+-----------------+-------------------+--------------------+
    | header | command: varint | request id: varint| objects until end  |
    +--------+-----------------+-------------------+--------------------+

    header = (version << 4) | (reserved: 2 bits, zero) << 2 | kind (2 bits)

Version is 1. Kind is request (0), reply (1), error (2) or notice (3). The
body runs to the end of the message: its length is the datagram's or the
reassembled message's. :func:`decode` raises only :class:`WireError`
subclasses, whatever it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from hopline.wire.errors import (
    BadHeader,
    BadValue,
    EncodeError,
    LimitExceeded,
    Truncated,
    UnknownCommand,
)
from hopline.wire.objects import (
    DEFAULT_LIMITS,
    Budget,
    Limits,
    RawObject,
    Span,
    read_raw_list,
)
from hopline.wire.schema import COMMANDS, Message, Record, read_record, write_record
from hopline.wire.types import Kind
from hopline.wire.varint import read_varint, write_varint

VERSION = 1
RecordT = TypeVar("RecordT", bound=Record)
MAX_COMMAND = 0xFFFF
MAX_REQUEST_ID = 0xFFFFFFFF

# The one body every error reply shares; set by hopline.wire.commands on import.
ERROR_CLASS: list[type[Message]] = []


@dataclass(frozen=True, slots=True)
class Header:
    """The fixed part of a message."""

    kind: Kind
    command: int
    request_id: int
    body_start: int


def encode(message: Message, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode ``message``; raise :class:`EncodeError` if it cannot travel."""
    if not isinstance(message, Message) or not hasattr(type(message), "COMMAND"):
        raise EncodeError(f"not a registered message: {message!r:.60}")
    command, request_id = message.command_id, message.request_id
    if not 0 <= command <= MAX_COMMAND:
        raise EncodeError(f"command id out of range: {command}")
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise EncodeError(f"request id out of range: {request_id!r}")
    out = bytearray()
    out.append((VERSION << 4) | message.KIND)
    write_varint(out, command)
    write_varint(out, request_id)
    write_record(out, message)
    if len(out) > limits.max_message_size:
        raise EncodeError(f"message of {len(out)} bytes exceeds {limits.max_message_size}")
    return bytes(out)


def read_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Check size and header; return the header fields."""
    if len(data) > limits.max_message_size:
        raise LimitExceeded(f"message of {len(data)} bytes exceeds {limits.max_message_size}")
    if not data:
        raise Truncated("empty message")
    first = data[0]
    if first >> 4 != VERSION:
        raise BadHeader(f"unsupported version {first >> 4}")
    if first & 0x0C:
        raise BadHeader("reserved header bits are set")
    command, pos = read_varint(data, 1, len(data))
    request_id, pos = read_varint(data, pos, len(data))
    if command > MAX_COMMAND:
        raise BadHeader(f"command id {command} out of range")
    if request_id > MAX_REQUEST_ID:
        raise BadHeader(f"request id {request_id} out of range")
    return Header(Kind(first & 0x03), command, request_id, pos)


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise BadValue(f"decode needs bytes, got {type(data).__name__}")


def message_class(command: int, kind: Kind) -> type[Message]:
    """The registered class for ``(command, kind)``; error replies share one."""
    if kind is Kind.ERROR:
        return ERROR_CLASS[0]
    try:
        return COMMANDS[(command, kind)]
    except KeyError:
        raise UnknownCommand(f"unknown command {command:#x} ({kind.name.lower()})") from None


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one message; raise only :class:`WireError` subclasses."""
    data = _as_bytes(data)
    header = read_header(data, limits)
    cls = message_class(header.command, header.kind)
    span = Span(header.body_start, len(data))
    schema = cls.__wire__
    values = read_record(schema, data, span, limits, Budget(limits), 1)
    values["request_id"] = header.request_id
    if header.kind is Kind.ERROR:
        values["failed_command"] = header.command
    message: Message = schema.build(cls, values)
    return message


def encode_record(record: Record, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode a bare record (no message header), e.g. a body that gets signed."""
    out = bytearray()
    write_record(out, record)
    if len(out) > limits.max_message_size:
        raise EncodeError(f"record of {len(out)} bytes exceeds {limits.max_message_size}")
    return bytes(out)


def decode_record(cls: type[RecordT], data: bytes, limits: Limits = DEFAULT_LIMITS) -> RecordT:
    """Decode a bare record of type ``cls``; raise only :class:`WireError`."""
    data = _as_bytes(data)
    if len(data) > limits.max_message_size:
        raise LimitExceeded(f"record of {len(data)} bytes exceeds {limits.max_message_size}")
    schema = cls.__wire__
    values = read_record(schema, data, Span(0, len(data)), limits, Budget(limits), 1)
    record: RecordT = schema.build(cls, values)
    return record


def decode_raw(
    data: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[Header, tuple[RawObject, ...]]:
    """Decode the header and the objects without a schema (for dissectors)."""
    data = _as_bytes(data)
    header = read_header(data, limits)
    objects = read_raw_list(data, header.body_start, len(data), limits, Budget(limits), 1)
    return header, objects
