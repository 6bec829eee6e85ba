"""Value types that objects carry, and the :class:`Address` value.

An object on the wire is a *tag* — ``(param_id << 3) | type_code`` as one
varint — followed by a value whose layout the type code fixes:

==========  ====  ==========================================================
type        code  value layout
==========  ====  ==========================================================
UINT        0     varint, at most 64 bits, minimal encoding
BYTES       1     varint length, then that many bytes
STRING      2     varint length, then that many bytes of UTF-8
ADDRESS     3     family byte (4 or 6), 4 or 16 address bytes, port (2, BE)
UINTS       4     varint count, then that many varints
PUBKEY      5     exactly 32 bytes
OBJECTS     6     varint length, then a nested object list of that length
==========  ====  ==========================================================

Code 7 is reserved. Because every layout is self-delimiting, a receiver can
skip an object whose parameter id it does not know.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from hopline.wire.errors import BadValue, EncodeError

PUBKEY_SIZE = 32
MAX_UINT = (1 << 64) - 1


class ParamType(IntEnum):
    """Type code of an object (the low three bits of its tag)."""

    UINT = 0
    BYTES = 1
    STRING = 2
    ADDRESS = 3
    UINTS = 4
    PUBKEY = 5
    OBJECTS = 6


class Kind(IntEnum):
    """What a message is: the low two bits of the header byte."""

    REQUEST = 0
    REPLY = 1
    ERROR = 2
    NOTICE = 3


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Address:
    """An IPv4 or IPv6 address with a UDP/TCP port."""

    host: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise EncodeError(f"port out of range: {self.port}")

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``1.2.3.4:5`` or ``[2001:db8::1]:5``.

        Raises :class:`BadValue` (a :class:`DecodeError`) on malformed text.
        """
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise BadValue(f"address needs HOST:PORT, got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError as exc:
            raise BadValue(f"not an IP address: {host!r}") from exc
        number = int(port)
        if number > 0xFFFF:
            raise BadValue(f"port out of range: {number}")
        return cls(ip, number)

    @classmethod
    def of(cls, host: str, port: int) -> Address:
        """Build from a host string and a port (as asyncio gives them).

        Remembered for the last 1,024 pairs (addresses are immutable): a
        relay and its clients name the same few peers in every datagram.
        """
        if cls is not Address:  # a subclass: built afresh
            return cls(ipaddress.ip_address(host), port)
        return _address_of(host, port)

    @property
    def family(self) -> int:
        """4 or 6."""
        return self.host.version

    def as_tuple(self) -> tuple[str, int]:
        """The ``(host, port)`` pair sockets take (remembered, as for :meth:`of`)."""
        return _socket_pair(self.host, self.port)

    def __str__(self) -> str:
        if self.host.version == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@lru_cache(maxsize=1024)
def _address_of(host: str, port: int) -> Address:
    return Address(ipaddress.ip_address(host), port)


@lru_cache(maxsize=1024)
def _socket_pair(host: IPAddress, port: int) -> tuple[str, int]:
    return (str(host), port)
