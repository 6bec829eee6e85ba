"""Messages to and from JSON, for people debugging the protocol.

The JSON form of a message is::

    {"command": "ping", "command_id": 1, "kind": "request", "request_id": 7,
     "fields": {"nonce": 5}}

Values: integers as numbers, byte strings and public keys as lowercase hex,
addresses as ``"1.2.3.4:5"`` or ``"[::1]:5"``, integer lists as arrays, nested
records as objects, repeated parameters as arrays. :func:`dissect` adds the
objects as found on the wire, each with its byte offset and size, unknown
parameters included. Bad JSON input raises :class:`EncodeError` or
:class:`BadValue`, both :class:`WireError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hopline.wire.codec import decode, decode_raw, message_class
from hopline.wire.errors import BadValue, EncodeError, UnknownCommand, WireError
from hopline.wire.objects import RawObject
from hopline.wire.schema import NAMES, FieldSpec, Message, Record
from hopline.wire.types import Address, Kind, ParamType

JSON = dict[str, Any]


def _value_to_json(spec: FieldSpec, value: Any) -> Any:
    if spec.record is not None:
        return record_to_json(value)
    if spec.ptype in (ParamType.BYTES, ParamType.PUBKEY):
        return bytes(value).hex()
    if spec.ptype is ParamType.ADDRESS:
        return str(value)
    if spec.ptype is ParamType.UINTS:
        return list(value)
    return value


def record_to_json(record: Record) -> JSON:
    """The ``fields`` object of a record (absent optional fields omitted)."""
    out: JSON = {}
    for spec in record.__wire__.fields:
        value = getattr(record, spec.name)
        if value is None:
            continue
        if spec.repeated:
            out[spec.name] = [_value_to_json(spec, item) for item in value]
        else:
            out[spec.name] = _value_to_json(spec, value)
    return out


def message_to_json(message: Message) -> JSON:
    """The JSON form of a message."""
    return {
        "command": message.NAME,
        "command_id": message.command_id,
        "kind": message.KIND.name.lower(),
        "request_id": message.request_id,
        "fields": record_to_json(message),
    }


def _hex(spec: FieldSpec, value: Any) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"{spec.name}: expected a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise EncodeError(f"{spec.name}: not hex: {value!r:.40}") from exc


def _value_from_json(spec: FieldSpec, value: Any) -> Any:
    if spec.record is not None:
        if not isinstance(value, dict):
            raise EncodeError(f"{spec.name}: expected an object")
        return record_from_json(spec.record, value)
    if spec.ptype in (ParamType.BYTES, ParamType.PUBKEY):
        return _hex(spec, value)
    if spec.ptype is ParamType.ADDRESS:
        if not isinstance(value, str):
            raise EncodeError(f'{spec.name}: expected "HOST:PORT"')
        return Address.parse(value)
    if spec.ptype is ParamType.UINTS:
        if not isinstance(value, list):
            raise EncodeError(f"{spec.name}: expected an array of integers")
        return tuple(value)
    return value  # UINT and STRING are checked by the encoder


def record_from_json(cls: type[Record], fields: JSON) -> Any:
    """Build a ``cls`` from its ``fields`` object."""
    schema = cls.__wire__
    names = {spec.name: spec for spec in schema.fields}
    kwargs: dict[str, Any] = {}
    for key, value in fields.items():
        spec = names.get(key)
        if spec is None:
            raise EncodeError(f"{cls.__name__} has no field {key!r}")
        if spec.repeated:
            if not isinstance(value, list):
                raise EncodeError(f"{key}: a repeated field takes an array")
            kwargs[key] = tuple(_value_from_json(spec, item) for item in value)
        else:
            kwargs[key] = _value_from_json(spec, value)
    missing = [spec.name for spec in schema.required if spec.name not in kwargs]
    if missing:
        raise EncodeError(f"{cls.__name__} needs {', '.join(missing)}")
    return cls(**kwargs)


def _kind(text: Any) -> Kind:
    try:
        return Kind[str(text).upper()]
    except KeyError:
        raise EncodeError(f"kind must be request, reply, error or notice: {text!r}") from None


def _command_class(doc: JSON, kind: Kind) -> type[Message]:
    command = doc.get("command", doc.get("command_id"))
    if isinstance(command, int) and not isinstance(command, bool):
        return message_class(command, kind)
    if kind is Kind.ERROR:
        return message_class(0, kind)
    cls = NAMES.get((str(command), kind))
    if cls is None:
        raise UnknownCommand(f"unknown command {command!r} ({kind.name.lower()})")
    return cls


def message_from_json(doc: Any) -> Message:
    """Build a message from its JSON form (the inverse of message_to_json)."""
    if not isinstance(doc, dict):
        raise EncodeError("a message must be a JSON object")
    kind = _kind(doc.get("kind", "request"))
    cls = _command_class(doc, kind)
    fields = doc.get("fields", {})
    if not isinstance(fields, dict):
        raise EncodeError("fields must be an object")
    request_id = doc.get("request_id", 0)
    if type(request_id) is not int:
        raise EncodeError("request_id must be an integer")
    message: Message = record_from_json(cls, fields)
    changes: dict[str, Any] = {"request_id": request_id}
    if kind is Kind.ERROR:
        command_id = doc.get("command_id", doc.get("command", 0))
        if type(command_id) is not int:
            raise EncodeError("an error needs the failed command's numeric command_id")
        changes["failed_command"] = command_id
    return dataclasses.replace(message, **changes)


# ---------------------------------------------------------------- dissector


def _raw_value(obj: RawObject) -> Any:
    value = obj.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Address):
        return str(value)
    if isinstance(value, tuple):
        return [_raw_to_json(item, None) if isinstance(item, RawObject) else item for item in value]
    return value


def _raw_to_json(obj: RawObject, cls: type[Record] | None) -> JSON:
    spec = cls.__wire__.by_param.get(obj.param) if cls is not None else None
    out: JSON = {"offset": obj.offset, "size": obj.size, "param": obj.param}
    out["name"] = spec.name if spec is not None else None
    out["type"] = obj.type.name.lower()
    if isinstance(obj.value, tuple) and obj.type is ParamType.OBJECTS:
        child = spec.record if spec is not None else None
        out["value"] = [_raw_to_json(o, child) for o in obj.value if isinstance(o, RawObject)]
    else:
        out["value"] = _raw_value(obj)
    return out


def dissect(data: bytes) -> JSON:
    """Describe a message byte by byte.

    Raises :class:`WireError` if the header or the object layout is broken. If
    only the binding to the command table fails (unknown command, missing
    parameter), the objects are still shown and ``"error"`` says why.
    """
    header, objects = decode_raw(data)
    out: JSON = {
        "size": len(data),
        "version": data[0] >> 4,
        "kind": header.kind.name.lower(),
        "command_id": header.command,
        "request_id": header.request_id,
    }
    cls: type[Message] | None = None
    try:
        cls = message_class(header.command, header.kind)
        out["command"] = cls.NAME
        out["fields"] = message_to_json(decode(data))["fields"]
    except WireError as exc:
        out["error"] = f"{exc.reason}: {exc}"
    out["objects"] = [_raw_to_json(obj, cls) for obj in objects]
    return out


__all__ = [
    "BadValue",
    "dissect",
    "message_from_json",
    "message_to_json",
    "record_from_json",
    "record_to_json",
]
