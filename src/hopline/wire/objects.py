"""Reading and writing single objects and raw object lists.

An object list is a run of objects, each a tag varint
``(param_id << 3) | type_code`` and a value (see :mod:`hopline.wire.types`).
This module knows the *layout* of each type and nothing about what parameters
mean; :mod:`hopline.wire.schema` binds parameters to names and Python types.

Every reader is handed ``end``, the first byte it may not read, and checks a
length against the bytes left *before* slicing or allocating, so a forged
length can never make the decoder allocate more than the input it was given.
Limits on object count, nesting depth and list length live in :class:`Limits`
and are enforced here as objects are read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hopline.wire.errors import (
    BadValue,
    EncodeError,
    LimitExceeded,
    Truncated,
    UnknownType,
)
from hopline.wire.types import MAX_UINT, PUBKEY_SIZE, Address, ParamType
from hopline.wire.varint import read_varint, write_varint


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a decoder enforces on untrusted input."""

    max_message_size: int = 65536
    max_objects: int = 4096
    max_depth: int = 8
    max_list_items: int = 4096
    max_param_id: int = 0xFFFF


DEFAULT_LIMITS = Limits()


class Budget:
    """Counts objects left to read across all nesting levels of one message."""

    __slots__ = ("objects_left",)

    def __init__(self, limits: Limits) -> None:
        self.objects_left = limits.max_objects

    def take(self) -> None:
        """Account for one more object, or raise :class:`LimitExceeded`."""
        self.objects_left -= 1
        if self.objects_left < 0:
            raise LimitExceeded("too many objects in one message")


@dataclass(frozen=True, slots=True)
class Span:
    """The byte range of a nested object list, not yet parsed."""

    start: int
    end: int


Value = int | bytes | str | Address | tuple[int, ...] | Span
Reader = Callable[[bytes, int, int, Limits], tuple[Any, int]]


def _need(pos: int, size: int, end: int, what: str) -> int:
    stop = pos + size
    if stop > end:
        raise Truncated(f"{what} needs {size} bytes, {end - pos} left")
    return stop


def _read_uint(data: bytes, pos: int, end: int, limits: Limits) -> tuple[int, int]:
    return read_varint(data, pos, end)


def _read_bytes(data: bytes, pos: int, end: int, limits: Limits) -> tuple[bytes, int]:
    size, pos = read_varint(data, pos, end)
    stop = _need(pos, size, end, "byte string")
    return data[pos:stop], stop


def _read_string(data: bytes, pos: int, end: int, limits: Limits) -> tuple[str, int]:
    raw, pos = _read_bytes(data, pos, end, limits)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise BadValue(f"string is not valid UTF-8: {exc.reason}") from exc


def _read_address(data: bytes, pos: int, end: int, limits: Limits) -> tuple[Address, int]:
    family = data[_need(pos, 1, end, "address") - 1]
    pos += 1
    if family == 4:
        stop = _need(pos, 6, end, "IPv4 address")
        host: ipaddress.IPv4Address | ipaddress.IPv6Address
        host = ipaddress.IPv4Address(data[pos : pos + 4])
    elif family == 6:
        stop = _need(pos, 18, end, "IPv6 address")
        host = ipaddress.IPv6Address(data[pos : pos + 16])
    else:
        raise BadValue(f"address family must be 4 or 6, got {family}")
    port = int.from_bytes(data[stop - 2 : stop], "big")
    return Address(host, port), stop


def _read_uints(data: bytes, pos: int, end: int, limits: Limits) -> tuple[tuple[int, ...], int]:
    count, pos = read_varint(data, pos, end)
    if count > limits.max_list_items:
        raise LimitExceeded(f"integer list of {count} items exceeds {limits.max_list_items}")
    if count > end - pos:  # every varint takes at least one byte
        raise Truncated(f"integer list of {count} items, {end - pos} bytes left")
    items = []
    for _ in range(count):
        value, pos = read_varint(data, pos, end)
        items.append(value)
    return tuple(items), pos


def _read_pubkey(data: bytes, pos: int, end: int, limits: Limits) -> tuple[bytes, int]:
    stop = _need(pos, PUBKEY_SIZE, end, "public key")
    return data[pos:stop], stop


def _read_span(data: bytes, pos: int, end: int, limits: Limits) -> tuple[Span, int]:
    size, pos = read_varint(data, pos, end)
    stop = _need(pos, size, end, "nested object list")
    return Span(pos, stop), stop


READERS: tuple[Reader, ...] = (
    _read_uint,
    _read_bytes,
    _read_string,
    _read_address,
    _read_uints,
    _read_pubkey,
    _read_span,
)
TYPES = tuple(ParamType)


def read_object(data: bytes, pos: int, end: int, limits: Limits) -> tuple[int, ParamType, Any, int]:
    """Read one object; return ``(param_id, type, value, new_pos)``.

    A nested object list comes back as a :class:`Span` for the caller to parse
    (or skip) with its own schema and depth accounting.
    """
    tag, pos = read_varint(data, pos, end)
    param, code = tag >> 3, tag & 7
    if code >= len(READERS):
        raise UnknownType(f"unknown object type code {code}")
    if param > limits.max_param_id:
        raise LimitExceeded(f"parameter id {param} exceeds {limits.max_param_id}")
    value, pos = READERS[code](data, pos, end, limits)
    return param, TYPES[code], value, pos


# ---------------------------------------------------------------- writing


def _check_uint(value: object) -> int:
    # int subclasses such as IntEnum members are integers; bool is not
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_UINT:
        raise EncodeError(f"expected an unsigned 64-bit int, got {value!r}")
    return int(value)


def _write_uint(out: bytearray, value: object) -> None:
    write_varint(out, _check_uint(value))


def _write_bytes(out: bytearray, value: object) -> None:
    if not isinstance(value, bytes | bytearray):
        raise EncodeError(f"expected bytes, got {type(value).__name__}")
    write_varint(out, len(value))
    out += value


def _write_string(out: bytearray, value: object) -> None:
    if not isinstance(value, str):
        raise EncodeError(f"expected str, got {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string cannot be UTF-8 encoded: {exc.reason}") from exc
    write_varint(out, len(raw))
    out += raw


def _write_address(out: bytearray, value: object) -> None:
    if not isinstance(value, Address):
        raise EncodeError(f"expected Address, got {type(value).__name__}")
    out.append(value.host.version)
    out += value.host.packed
    out += value.port.to_bytes(2, "big")


def _write_uints(out: bytearray, value: object) -> None:
    if not isinstance(value, tuple | list):
        raise EncodeError(f"expected a tuple of ints, got {type(value).__name__}")
    write_varint(out, len(value))
    for item in value:
        write_varint(out, _check_uint(item))


def _write_pubkey(out: bytearray, value: object) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != PUBKEY_SIZE:
        raise EncodeError(f"expected {PUBKEY_SIZE} bytes of public key, got {value!r:.40}")
    out += value


WRITERS: dict[ParamType, Callable[[bytearray, object], None]] = {
    ParamType.UINT: _write_uint,
    ParamType.BYTES: _write_bytes,
    ParamType.STRING: _write_string,
    ParamType.ADDRESS: _write_address,
    ParamType.UINTS: _write_uints,
    ParamType.PUBKEY: _write_pubkey,
}


def write_tag(out: bytearray, param: int, ptype: ParamType) -> None:
    """Append an object's tag."""
    write_varint(out, (param << 3) | ptype)


def write_nested(out: bytearray, body: bytes | bytearray) -> None:
    """Append an already-encoded nested object list with its length."""
    write_varint(out, len(body))
    out += body


# ---------------------------------------------------------------- raw lists


@dataclass(frozen=True, slots=True)
class RawObject:
    """One object as found on the wire, with its byte offset (for dissectors)."""

    param: int
    type: ParamType
    value: int | bytes | str | Address | tuple[int, ...] | tuple[RawObject, ...]
    offset: int
    size: int


def read_raw_list(
    data: bytes, pos: int, end: int, limits: Limits, budget: Budget, depth: int
) -> tuple[RawObject, ...]:
    """Parse ``data[pos:end]`` as an object list without a schema."""
    if depth > limits.max_depth:
        raise LimitExceeded(f"object lists nested deeper than {limits.max_depth}")
    objects = []
    while pos < end:
        budget.take()
        start = pos
        param, ptype, value, pos = read_object(data, pos, end, limits)
        if isinstance(value, Span):
            value = read_raw_list(data, value.start, value.end, limits, budget, depth + 1)
        objects.append(RawObject(param, ptype, value, start, pos - start))
    return tuple(objects)


def write_raw_list(out: bytearray, objects: tuple[RawObject, ...] | list[RawObject]) -> None:
    """Append raw objects (the inverse of :func:`read_raw_list`)."""
    for obj in objects:
        write_tag(out, obj.param, obj.type)
        if obj.type is ParamType.OBJECTS:
            if not isinstance(obj.value, tuple):
                raise EncodeError("a nested object list needs a tuple of RawObject")
            body = bytearray()
            write_raw_list(out=body, objects=[o for o in obj.value if isinstance(o, RawObject)])
            write_nested(out, body)
        else:
            WRITERS[obj.type](out, obj.value)
