"""The wire layer's error family.

Every failure of :func:`hopline.wire.decode` is a :class:`WireError`; nothing
else escapes it, whatever bytes it is given (a fuzz harness in ``fuzz/`` and a
hypothesis test prove this). As in h11, the family is split by whose fault it
is:

* :class:`DecodeError` — the *remote* side sent bytes we refuse. A node drops
  the message and counts it under :attr:`WireError.reason`.
* :class:`EncodeError` — *we* tried to put something on the wire that the
  format cannot carry (a negative integer, a 33-byte key...). That is a bug in
  the caller, reported before any byte leaves.

Each class has a short, stable ``reason`` string so drop counters and metrics
can be keyed by it.
"""

from __future__ import annotations


class WireError(Exception):
    """Base class of every error raised by the wire layer."""

    reason = "wire"


class EncodeError(WireError):
    """A local value cannot be encoded (the caller's mistake)."""

    reason = "encode"


class DecodeError(WireError):
    """Bytes from a peer do not form a valid message."""

    reason = "decode"


class Truncated(DecodeError):
    """The input ends in the middle of a field."""

    reason = "truncated"


class MalformedVarint(DecodeError):
    """A varint is too long, overflows 64 bits, or is not minimally encoded."""

    reason = "varint"


class LimitExceeded(DecodeError):
    """A size, count or depth limit would be exceeded."""

    reason = "limit"


class BadHeader(DecodeError):
    """The message header has an unknown version or reserved bits set."""

    reason = "header"


class UnknownType(DecodeError):
    """An object carries a type code this version does not define."""

    reason = "type"


class BadValue(DecodeError):
    """A value is of the right type but invalid (bad UTF-8, bad address...)."""

    reason = "value"


class UnknownCommand(DecodeError):
    """The (command, kind) pair is not in the command table."""

    reason = "command"


class MissingParameter(DecodeError):
    """A required parameter is absent."""

    reason = "missing"


class WrongType(DecodeError):
    """A known parameter arrived with a different type than the table says."""

    reason = "wrong-type"


class DuplicateParameter(DecodeError):
    """A non-repeated parameter appears more than once."""

    reason = "duplicate"


__all__ = [
    "BadHeader",
    "BadValue",
    "DecodeError",
    "DuplicateParameter",
    "EncodeError",
    "LimitExceeded",
    "MalformedVarint",
    "MissingParameter",
    "Truncated",
    "UnknownCommand",
    "UnknownType",
    "WireError",
    "WrongType",
]
