"""The wire layer: Hopline messages as object lists.

A message is a command id, a request id, a kind (request, reply, error,
notice) and an *object list*: a run of typed objects, each tagged with a
parameter id (the classic peer-to-peer Skype encoding, documented openly in
docs/protocol.md). The command table in :mod:`hopline.wire.commands` declares
every message once; that declaration drives both :func:`encode` and
:func:`decode`.

Public API::

    data = encode(Ping(nonce=5))
    message = decode(data)          # -> Ping(nonce=5, ...)
    except WireError                # the only exception decode raises

Modules: :mod:`~hopline.wire.varint` (integers), :mod:`~hopline.wire.types`
(type codes, :class:`Address`), :mod:`~hopline.wire.objects` (object layout,
limits), :mod:`~hopline.wire.schema` (the table machinery),
:mod:`~hopline.wire.codec` (whole messages), :mod:`~hopline.wire.commands`
(the table: link, login server, presence, calls), :mod:`~hopline.wire.membership`
(supernode membership), :mod:`~hopline.wire.hosts` (supernode samples for
clients), :mod:`~hopline.wire.directory` (lookups, replicas, search),
:mod:`~hopline.wire.relay` (relay allocations),
:mod:`~hopline.wire.jsonform` (JSON and the dissector).
"""

from hopline.wire import (  # importing registers the whole table
    call,
    commands,
    conference,
    directory,
    files,
    hosts,
    membership,
    messaging,
    nat,
    offline,
    offline_owner,
    path,
    relay,
    search_replica,
)
from hopline.wire.codec import (
    VERSION,
    Header,
    decode,
    decode_raw,
    decode_record,
    encode,
    encode_record,
    read_header,
)
from hopline.wire.commands import ErrorCode, ErrorReply
from hopline.wire.errors import (
    BadHeader,
    BadValue,
    DecodeError,
    DuplicateParameter,
    EncodeError,
    LimitExceeded,
    MalformedVarint,
    MissingParameter,
    Truncated,
    UnknownCommand,
    UnknownType,
    WireError,
    WrongType,
)
from hopline.wire.jsonform import dissect, message_from_json, message_to_json
from hopline.wire.objects import DEFAULT_LIMITS, Limits, RawObject
from hopline.wire.schema import COMMANDS, NAMES, FieldSpec, Message, Record, param
from hopline.wire.types import Address, Kind, ParamType

__all__ = [
    "COMMANDS",
    "DEFAULT_LIMITS",
    "NAMES",
    "VERSION",
    "Address",
    "BadHeader",
    "BadValue",
    "DecodeError",
    "DuplicateParameter",
    "EncodeError",
    "ErrorCode",
    "ErrorReply",
    "FieldSpec",
    "Header",
    "Kind",
    "LimitExceeded",
    "Limits",
    "MalformedVarint",
    "Message",
    "MissingParameter",
    "ParamType",
    "RawObject",
    "Record",
    "Truncated",
    "UnknownCommand",
    "UnknownType",
    "WireError",
    "WrongType",
    "call",
    "commands",
    "conference",
    "directory",
    "files",
    "hosts",
    "membership",
    "messaging",
    "nat",
    "offline",
    "offline_owner",
    "path",
    "relay",
    "search_replica",
    "decode",
    "decode_raw",
    "decode_record",
    "dissect",
    "encode",
    "encode_record",
    "message_from_json",
    "message_to_json",
    "param",
    "read_header",
]
