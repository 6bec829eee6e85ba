"""STUN messages (RFC 8489) with the NAT-discovery attributes of RFC 5780, sans-I/O.

A STUN message is a 20-byte header and a list of attributes::

    0     2  type         00 + method and class bits interleaved (RFC 8489 section 5)
    2     2  length       bytes after the header, a multiple of 4
    4     4  cookie       0x2112A442
    8    12  transaction  chosen by the requester, echoed in the response
    20    n  attributes   type (2) | length (2) | value | zero padding to 4 bytes

One table, :data:`ATTRIBUTES`, maps each attribute we understand to a field
of :class:`StunMessage` and to the functions that write and read its value
(as in aioice's ``stun.py``); :func:`encode` and :func:`decode` both walk it.
Understood: MAPPED-ADDRESS, XOR-MAPPED-ADDRESS (IPv4 and IPv6), USERNAME,
MESSAGE-INTEGRITY (HMAC-SHA1, :func:`integrity_ok` checks it), ERROR-CODE,
UNKNOWN-ATTRIBUTES, SOFTWARE, FINGERPRINT (CRC-32 xor 0x5354554E), and from
RFC 5780 CHANGE-REQUEST, RESPONSE-PORT, RESPONSE-ORIGIN, OTHER-ADDRESS and
PADDING (read and written as its length: zero bytes; the upload train of
:mod:`hopline.nat.upload` pads its requests with it),
and from ICE (RFC 8445) the empty USE-CANDIDATE flag that
:mod:`hopline.path.checks` nominates a pair with.
Other comprehension-required attributes (type below 0x8000) are listed in
:attr:`StunMessage.unknown_required` so a server can answer 420; other
comprehension-optional ones are skipped.

Decoding is strict and all-or-nothing: a message is at most
:data:`MAX_MESSAGE_SIZE` bytes with at most :data:`MAX_ATTRIBUTES`
attributes, every attribute and its padding must lie inside the length the
header gives, FINGERPRINT must be last and correct, and a bad value raises
:class:`StunError` with a short ``reason`` (the key of the drop counters);
nothing else escapes (a hypothesis test feeds it arbitrary bytes).
Attributes after MESSAGE-INTEGRITY, except FINGERPRINT, are ignored and only
the first of repeated attributes counts (RFC 8489 section 14).

:func:`is_stun` is the cheap classifier a socket shared with Hopline uses:
the first two bits are zero, bytes 4..8 are the magic cookie, and the length
field is a multiple of 4 that matches the datagram. No Hopline datagram
passes it by construction: a handshake init starts with 0xE1 (first bits
11), and every other Hopline datagram is first offered to its connection,
which authenticates it (docs/protocol.md, "STUN on the supernode port").
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any, Literal

__all__ = [
    "ATTRIBUTES",
    "BINDING",
    "HEADER_SIZE",
    "MAGIC_COOKIE",
    "MAX_ATTRIBUTES",
    "MAX_MESSAGE_SIZE",
    "Addr",
    "AttributeType",
    "ChangeRequest",
    "MessageClass",
    "StunError",
    "StunMessage",
    "decode",
    "encode",
    "integrity_ok",
    "is_stun",
]

Addr = tuple[str, int]

MAGIC_COOKIE = 0x2112A442
COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
HEADER_SIZE = 20
TRANSACTION_ID_SIZE = 12
MAX_MESSAGE_SIZE = 1280  # the IPv6 minimum MTU; far above anything Binding needs
MAX_ATTRIBUTES = 32
MAX_TEXT = 763  # SOFTWARE and ERROR-CODE reason: < 128 characters, <= 763 bytes
MAX_USERNAME = 512
FINGERPRINT_XOR = 0x5354554E
FINGERPRINT_SIZE = 8  # a FINGERPRINT attribute, header included
INTEGRITY_SIZE = 24  # a MESSAGE-INTEGRITY attribute, header included
BINDING = 0x001
_FAMILY_IPV4, _FAMILY_IPV6 = 1, 2


class StunError(ValueError):
    """Not a STUN message we can read (or write); ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class MessageClass(IntEnum):
    """The two class bits of the message type."""

    REQUEST = 0
    INDICATION = 1
    SUCCESS = 2
    ERROR = 3


class ChangeRequest(IntFlag):
    """CHANGE-REQUEST flags (RFC 5780 section 7.2): answer from another IP and/or port."""

    NONE = 0
    PORT = 0x2
    IP = 0x4


class AttributeType(IntEnum):
    """The attribute types this module reads and writes."""

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    XOR_MAPPED_ADDRESS = 0x0020
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    SOFTWARE = 0x8022
    FINGERPRINT = 0x8028
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


@dataclass(frozen=True)
class StunMessage:
    """One message. ``None`` fields are absent; only set fields are written.

    ``fingerprint``: decoding, the message carried a (correct) FINGERPRINT;
    encoding, append one. ``message_integrity`` is only read (pass a key to
    :func:`encode` to write one). ``unknown_required`` and ``integrity_data``
    are only set by :func:`decode`.
    """

    method: int
    message_class: MessageClass
    transaction_id: bytes
    mapped_address: Addr | None = None
    xor_mapped_address: Addr | None = None
    change_request: ChangeRequest | None = None
    response_port: int | None = None
    username: str | None = None
    error_code: tuple[int, str] | None = None
    unknown_attributes: tuple[int, ...] | None = None
    response_origin: Addr | None = None
    other_address: Addr | None = None
    software: str | None = None
    use_candidate: Literal[True] | None = None
    padding: int | None = None  # PADDING: its length in bytes (the content does not matter)
    message_integrity: bytes | None = None
    fingerprint: bool = False
    unknown_required: tuple[int, ...] = ()
    integrity_data: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def is_binding_request(self) -> bool:
        """A Binding request (method 1, class request)."""
        return self.method == BINDING and self.message_class is MessageClass.REQUEST


# ---------------------------------------------------------------- values


def _xor_mask(txid: bytes) -> bytes:
    return COOKIE_BYTES + txid


def _pack_address(value: Addr, mask: bytes | None) -> bytes:
    try:
        ip = ipaddress.ip_address(value[0])
    except ValueError as exc:
        raise StunError("encode", f"not an IP address: {value[0]!r}") from exc
    if not 0 <= value[1] <= 0xFFFF:
        raise StunError("encode", f"not a port: {value[1]}")
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    body = value[1].to_bytes(2, "big") + ip.packed
    if mask is not None:
        body = bytes(b ^ m for b, m in zip(body, mask[:2] + mask, strict=False))
    return bytes([0, family]) + body


def _unpack_address(data: bytes, mask: bytes | None) -> Addr:
    if len(data) not in (8, 20):
        raise StunError("bad-address", f"{len(data)} bytes")
    family, body = data[1], data[2:]
    if (family, len(data)) not in ((_FAMILY_IPV4, 8), (_FAMILY_IPV6, 20)):
        raise StunError("bad-address", f"family {family} in {len(data)} bytes")
    if mask is not None:
        body = bytes(b ^ m for b, m in zip(body, mask[:2] + mask, strict=False))
    port = int.from_bytes(body[:2], "big")
    ip = (
        ipaddress.IPv4Address(body[2:])
        if family == _FAMILY_IPV4
        else ipaddress.IPv6Address(body[2:])
    )
    return (str(ip), port)


def _pack_plain_address(value: Addr, txid: bytes) -> bytes:
    return _pack_address(value, None)


def _unpack_plain_address(data: bytes, txid: bytes) -> Addr:
    return _unpack_address(data, None)


def _pack_xor_address(value: Addr, txid: bytes) -> bytes:
    return _pack_address(value, _xor_mask(txid))


def _unpack_xor_address(data: bytes, txid: bytes) -> Addr:
    return _unpack_address(data, _xor_mask(txid))


def _text_packer(limit: int) -> Callable[[str, bytes], bytes]:
    def pack(value: str, txid: bytes) -> bytes:
        data = value.encode()
        if len(data) > limit:
            raise StunError("encode", f"text longer than {limit} bytes")
        return data

    return pack


def _text_unpacker(limit: int) -> Callable[[bytes, bytes], str]:
    def unpack(data: bytes, txid: bytes) -> str:
        if len(data) > limit:
            raise StunError("bad-text", f"{len(data)} bytes")
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise StunError("bad-text", "not UTF-8") from exc

    return unpack


def _pack_change(value: ChangeRequest, txid: bytes) -> bytes:
    return int(value).to_bytes(4, "big")


def _unpack_change(data: bytes, txid: bytes) -> ChangeRequest:
    if len(data) != 4:
        raise StunError("bad-change-request", f"{len(data)} bytes")
    return ChangeRequest(int.from_bytes(data, "big") & (ChangeRequest.IP | ChangeRequest.PORT))


def _pack_port(value: int, txid: bytes) -> bytes:
    if not 0 < value <= 0xFFFF:
        raise StunError("encode", f"not a port: {value}")
    return value.to_bytes(2, "big") + b"\0\0"


def _unpack_port(data: bytes, txid: bytes) -> int:
    if len(data) not in (2, 4):  # RFC 5780 puts 2 bytes of padding after the port
        raise StunError("bad-response-port", f"{len(data)} bytes")
    return int.from_bytes(data[:2], "big")


def _pack_error(value: tuple[int, str], txid: bytes) -> bytes:
    code, reason = value
    if not 300 <= code <= 699:
        raise StunError("encode", f"error code {code}")
    return bytes([0, 0, code // 100, code % 100]) + _text_packer(MAX_TEXT)(reason, txid)


def _unpack_error(data: bytes, txid: bytes) -> tuple[int, str]:
    if len(data) < 4:
        raise StunError("bad-error-code", f"{len(data)} bytes")
    klass, number = data[2] & 0x07, data[3]
    if not 3 <= klass <= 6 or number > 99:
        raise StunError("bad-error-code", f"class {klass} number {number}")
    return (klass * 100 + number, _text_unpacker(MAX_TEXT)(data[4:], txid))


def _pack_types(value: tuple[int, ...], txid: bytes) -> bytes:
    return b"".join(t.to_bytes(2, "big") for t in value)


def _unpack_types(data: bytes, txid: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise StunError("bad-unknown-attributes", f"{len(data)} bytes")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _pack_raw(value: bytes, txid: bytes) -> bytes:
    return value


def _unpack_integrity(data: bytes, txid: bytes) -> bytes:
    if len(data) != 20:
        raise StunError("bad-message-integrity", f"{len(data)} bytes")
    return data


def _pack_padding(value: int, txid: bytes) -> bytes:
    if not 0 <= value <= MAX_MESSAGE_SIZE:
        raise StunError("encode", f"padding of {value} bytes")
    return bytes(value)


def _unpack_padding(data: bytes, txid: bytes) -> int:
    return len(data)


def _pack_flag(value: Literal[True], txid: bytes) -> bytes:
    return b""


def _unpack_flag(data: bytes, txid: bytes) -> Literal[True]:
    if data:
        raise StunError("bad-flag", f"{len(data)} bytes in an empty attribute")
    return True


@dataclass(frozen=True)
class AttributeSpec:
    """One row of the attribute table: wire type, message field, writer, reader."""

    type: AttributeType
    field: str
    pack: Callable[[Any, bytes], bytes]
    unpack: Callable[[bytes, bytes], Any]
    written: bool = True  # False: written by encode itself (integrity, fingerprint)


_T = AttributeType
_TEXT = (_text_packer(MAX_TEXT), _text_unpacker(MAX_TEXT))
_NAME = (_text_packer(MAX_USERNAME), _text_unpacker(MAX_USERNAME))
_PLAIN = (_pack_plain_address, _unpack_plain_address)
_XOR = (_pack_xor_address, _unpack_xor_address)

#: Every attribute this module understands, in the order :func:`encode` writes them.
ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec(_T.SOFTWARE, "software", *_TEXT),
    AttributeSpec(_T.USERNAME, "username", *_NAME),
    AttributeSpec(_T.ERROR_CODE, "error_code", _pack_error, _unpack_error),
    AttributeSpec(_T.UNKNOWN_ATTRIBUTES, "unknown_attributes", _pack_types, _unpack_types),
    AttributeSpec(_T.CHANGE_REQUEST, "change_request", _pack_change, _unpack_change),
    AttributeSpec(_T.RESPONSE_PORT, "response_port", _pack_port, _unpack_port),
    AttributeSpec(_T.MAPPED_ADDRESS, "mapped_address", *_PLAIN),
    AttributeSpec(_T.XOR_MAPPED_ADDRESS, "xor_mapped_address", *_XOR),
    AttributeSpec(_T.RESPONSE_ORIGIN, "response_origin", *_PLAIN),
    AttributeSpec(_T.OTHER_ADDRESS, "other_address", *_PLAIN),
    AttributeSpec(_T.USE_CANDIDATE, "use_candidate", _pack_flag, _unpack_flag),
    AttributeSpec(_T.PADDING, "padding", _pack_padding, _unpack_padding),
    AttributeSpec(_T.MESSAGE_INTEGRITY, "message_integrity", _pack_raw, _unpack_integrity, False),
)
_BY_TYPE = {int(spec.type): spec for spec in ATTRIBUTES}


# ---------------------------------------------------------------- header


def _message_type(method: int, klass: MessageClass) -> int:
    if not 0 <= method <= 0xFFF:
        raise StunError("encode", f"method {method}")
    m, c = method, int(klass)
    return (
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    )


def _split_type(value: int) -> tuple[int, MessageClass]:
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    klass = ((value >> 4) & 1) | ((value >> 7) & 2)
    return method, MessageClass(klass)


def _header_problem(data: bytes) -> str | None:
    if len(data) < HEADER_SIZE:
        return "too-short"
    if len(data) > MAX_MESSAGE_SIZE:
        return "too-long"
    if data[0] & 0xC0:
        return "not-stun"
    if data[4:8] != COOKIE_BYTES:
        return "bad-cookie"
    length = int.from_bytes(data[2:4], "big")
    if length % 4 or HEADER_SIZE + length != len(data):
        return "bad-length"
    return None


def is_stun(data: bytes) -> bool:
    """Cheap check: zero top bits, the magic cookie, a consistent length (a multiple of 4)."""
    return _header_problem(data) is None


# ---------------------------------------------------------------- decode


def decode(data: bytes) -> StunMessage:
    """Parse one message, or raise :class:`StunError` (see the module docstring)."""
    problem = _header_problem(data)
    if problem is not None:
        raise StunError(problem)
    method, klass = _split_type(int.from_bytes(data[0:2], "big"))
    txid = data[8:HEADER_SIZE]
    fields: dict[str, Any] = {}
    unknown: list[int] = []
    pos, count, integrity_at = HEADER_SIZE, 0, -1
    while pos < len(data):
        count += 1
        if count > MAX_ATTRIBUTES:
            raise StunError("too-many-attributes")
        kind, length = struct.unpack_from("!HH", data, pos)
        value_at, after = pos + 4, pos + 4 + (length + 3) // 4 * 4
        if after > len(data):
            raise StunError("truncated-attribute", f"type {kind:#06x}")
        if kind == AttributeType.FINGERPRINT:
            _check_fingerprint(data, pos, length, after)
            fields["fingerprint"] = True
            break
        if integrity_at < 0:
            _read_attribute(kind, data[value_at : value_at + length], txid, fields, unknown)
            if kind == AttributeType.MESSAGE_INTEGRITY:
                integrity_at = pos
        pos = after
    if integrity_at >= 0:
        fields["integrity_data"] = data[:integrity_at]
    return StunMessage(method, klass, txid, unknown_required=tuple(unknown), **fields)


def _read_attribute(
    kind: int, value: bytes, txid: bytes, fields: dict[str, Any], unknown: list[int]
) -> None:
    spec = _BY_TYPE.get(kind)
    if spec is None:
        if kind < 0x8000 and kind not in unknown:
            unknown.append(kind)
        return
    if spec.field not in fields:  # only the first of repeated attributes counts
        fields[spec.field] = spec.unpack(value, txid)


def _check_fingerprint(data: bytes, pos: int, length: int, after: int) -> None:
    if length != 4 or after != len(data):
        raise StunError("fingerprint-not-last")
    expected = zlib.crc32(data[:pos]) ^ FINGERPRINT_XOR
    if int.from_bytes(data[pos + 4 : pos + 8], "big") != expected:
        raise StunError("bad-fingerprint")


# ---------------------------------------------------------------- encode


def encode(message: StunMessage, integrity_key: bytes | None = None) -> bytes:
    """The wire form of ``message``; with ``integrity_key``, add MESSAGE-INTEGRITY
    (HMAC-SHA1 with that key) and, if ``message.fingerprint``, FINGERPRINT last."""
    if len(message.transaction_id) != TRANSACTION_ID_SIZE:
        raise StunError("encode", "a transaction id is 12 bytes")
    body = bytearray()
    for spec in ATTRIBUTES:
        value = getattr(message, spec.field)
        if value is not None and spec.written:
            body += _attribute(spec.type, spec.pack(value, message.transaction_id))
    kind = _message_type(message.method, message.message_class)
    head = struct.pack("!HH", kind, 0) + COOKIE_BYTES + message.transaction_id
    data = bytearray(head) + body
    if integrity_key is not None:
        struct.pack_into("!H", data, 2, len(data) - HEADER_SIZE + INTEGRITY_SIZE)
        mac = hmac.new(integrity_key, bytes(data), hashlib.sha1).digest()
        data += _attribute(AttributeType.MESSAGE_INTEGRITY, mac)
    if message.fingerprint:
        struct.pack_into("!H", data, 2, len(data) - HEADER_SIZE + FINGERPRINT_SIZE)
        crc = zlib.crc32(bytes(data)) ^ FINGERPRINT_XOR
        data += _attribute(AttributeType.FINGERPRINT, crc.to_bytes(4, "big"))
    struct.pack_into("!H", data, 2, len(data) - HEADER_SIZE)
    if len(data) > MAX_MESSAGE_SIZE:
        raise StunError("encode", f"{len(data)} bytes is more than {MAX_MESSAGE_SIZE}")
    return bytes(data)


def _attribute(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise StunError("encode", "attribute too long")
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


def integrity_ok(message: StunMessage, key: bytes) -> bool:
    """Whether a decoded message's MESSAGE-INTEGRITY is the HMAC-SHA1 of ``key``."""
    if message.message_integrity is None or message.integrity_data is None:
        return False
    data = bytearray(message.integrity_data)
    struct.pack_into("!H", data, 2, len(data) - HEADER_SIZE + INTEGRITY_SIZE)
    mac = hmac.new(key, bytes(data), hashlib.sha1).digest()
    return hmac.compare_digest(mac, message.message_integrity)
