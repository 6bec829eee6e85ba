"""Unsigned LEB128 varints, at most 64 bits, minimal encoding only.

Seven bits per byte, least significant group first, the high bit set on every
byte but the last. A decoder accepts exactly one encoding per value: at most
ten bytes, the tenth byte no more than ``0x01``, and no trailing zero group
(``80 00`` is refused). That keeps ``encode(decode(b)) == b`` for every valid
message, which the test vectors rely on.
"""

from __future__ import annotations

from hopline.wire.errors import EncodeError, MalformedVarint, Truncated
from hopline.wire.types import MAX_UINT

MAX_VARINT_BYTES = 10


def write_varint(out: bytearray, value: int) -> None:
    """Append the varint encoding of ``value`` to ``out``."""
    if value < 0 or value > MAX_UINT:
        raise EncodeError(f"unsigned 64-bit integer out of range: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_varint(value: int) -> bytes:
    """Return the varint encoding of ``value``."""
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode one varint from ``data[pos:end]``; return ``(value, new_pos)``."""
    if pos < end:
        byte = data[pos]
        if byte < 0x80:  # the common one-byte case
            return byte, pos + 1
    result = 0
    shift = 0
    for count in range(MAX_VARINT_BYTES):
        if pos >= end:
            raise Truncated("input ends inside a varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and count > 0:
                raise MalformedVarint("varint is not minimally encoded")
            if result > MAX_UINT:
                raise MalformedVarint("varint exceeds 64 bits")
            return result, pos
        shift += 7
    raise MalformedVarint("varint longer than 10 bytes")
