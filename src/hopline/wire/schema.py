"""The command table: records and messages declared once, as dataclasses.

A parameter is declared with :func:`param` on a frozen dataclass field; that
declaration is the single table row that both the encoder and the decoder
read (the way aioice's attribute table drives STUN parsing and writing)::

    class Ping(Message, command=0x01, kind=Kind.REQUEST, name="ping"):
        nonce: int = param(1, ParamType.UINT)
        note: str | None = param(2, ParamType.STRING, default=None)

* A field with no default is **required**; decoding without it raises
  :class:`MissingParameter`.
* ``repeated=True`` lets the parameter occur several times; the field holds a
  tuple (default ``()``).
* ``ParamType.OBJECTS`` fields name the nested :class:`Record` class.
* Unknown parameter ids are skipped, so newer peers can add parameters.

:class:`Record` subclasses become frozen, keyword-only dataclasses; the
``dataclass_transform`` marker tells type checkers so. :class:`Message`
subclasses also register themselves under ``(command, kind)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, dataclass_transform

from hopline.wire.errors import (
    DuplicateParameter,
    EncodeError,
    LimitExceeded,
    MissingParameter,
    WrongType,
)
from hopline.wire.objects import (
    WRITERS,
    Budget,
    Limits,
    Span,
    read_object,
    write_nested,
    write_tag,
)
from hopline.wire.types import Kind, ParamType


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One row of the table: how a dataclass field travels on the wire."""

    name: str
    param: int
    ptype: ParamType
    required: bool
    repeated: bool
    record: type[Record] | None
    doc: str
    nullable: bool = False  # optional with default None: None means "absent"
    tag: bytes = b""  # the encoded tag varint, computed once


@dataclass(frozen=True, slots=True)
class _ParamMeta:
    param: int
    ptype: ParamType
    repeated: bool
    record: type[Record] | None
    doc: str


def param(
    param_id: int,
    ptype: ParamType,
    *,
    record: type[Record] | None = None,
    repeated: bool = False,
    default: Any = dataclasses.MISSING,
    doc: str = "",
) -> Any:
    """Declare a field's parameter id and type (see the module docstring)."""
    if (ptype is ParamType.OBJECTS) != (record is not None):
        raise TypeError("record= is required for, and only for, OBJECTS parameters")
    meta = {"hopline": _ParamMeta(param_id, ptype, repeated, record, doc)}
    if repeated and default is dataclasses.MISSING:
        default = ()
    return dataclasses.field(default=default, metadata=meta)


class Schema:
    """The compiled table of one record class.

    ``defaults`` holds every dataclass field's default (wire or not), so the
    decoder can build an instance without running the frozen ``__init__``.
    """

    __slots__ = ("by_param", "defaults", "fields", "repeated", "required")

    def __init__(self, fields: tuple[FieldSpec, ...], defaults: dict[str, Any]) -> None:
        self.fields = tuple(sorted(fields, key=lambda f: f.param))
        self.by_param = {f.param: f for f in self.fields}
        self.required = tuple(f for f in self.fields if f.required)
        self.repeated = tuple(f.name for f in self.fields if f.repeated)
        self.defaults = defaults
        if len(self.by_param) != len(self.fields):
            raise TypeError("two fields share a parameter id")

    def build(self, cls: type[Any], values: dict[str, Any]) -> Any:
        """An instance of ``cls`` from decoded ``values`` (already validated)."""
        instance = object.__new__(cls)
        attributes = instance.__dict__
        attributes.update(self.defaults)
        attributes.update(values)
        return instance


def _compile(cls: type[Record]) -> Schema:
    specs, defaults = [], {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        meta = f.metadata.get("hopline")
        if meta is None:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        spec = FieldSpec(
            f.name, meta.param, meta.ptype, required, meta.repeated, meta.record, meta.doc
        )
        tag = bytearray()
        write_tag(tag, meta.param, meta.ptype)
        nullable = not required and f.default is None
        specs.append(dataclasses.replace(spec, nullable=nullable, tag=bytes(tag)))
    return Schema(tuple(specs), defaults)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(param,))
class Record:
    """Base of every object-list record (nested lists and message bodies)."""

    __wire__: ClassVar[Schema]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)
        cls.__wire__ = _compile(cls)


# Message classes by (command id, kind) and by (name, kind).
COMMANDS: dict[tuple[int, Kind], type[Message]] = {}
NAMES: dict[tuple[str, Kind], type[Message]] = {}


class Message(Record):
    """A top-level message: a command id, a kind, a request id and a body.

    ``request_id`` pairs replies with requests; it is 0 for notices.
    """

    COMMAND: ClassVar[int]
    KIND: ClassVar[Kind]
    NAME: ClassVar[str]

    request_id: int = 0

    def __init_subclass__(
        cls,
        *,
        command: int | None = None,
        kind: Kind = Kind.REQUEST,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.KIND = kind
        if command is None:
            return
        if name is None:
            raise TypeError(f"{cls.__name__} needs name=")
        cls.COMMAND, cls.NAME = command, name
        if (command, kind) in COMMANDS or (name, kind) in NAMES:
            raise TypeError(f"{cls.__name__}: {name} ({command:#x}, {kind.name}) is already taken")
        COMMANDS[(command, kind)] = cls
        NAMES[(name, kind)] = cls

    @property
    def command_id(self) -> int:
        """The command id written in the header."""
        return self.COMMAND


# ---------------------------------------------------------------- encoding


def write_record(out: bytearray, record: Record, depth: int = 1) -> None:
    """Append the object list of ``record`` to ``out``."""
    if depth > 64:
        raise EncodeError("records nested too deeply to encode")
    for spec in record.__wire__.fields:
        value = getattr(record, spec.name)
        if value is None:
            if not spec.nullable:
                raise EncodeError(f"{type(record).__name__}.{spec.name} may not be None")
            continue
        if spec.repeated:
            if not isinstance(value, tuple | list):
                raise EncodeError(f"{type(record).__name__}.{spec.name} must be a tuple")
            for item in value:
                _write_one(out, spec, item, depth)
        else:
            _write_one(out, spec, value, depth)


def _write_one(out: bytearray, spec: FieldSpec, value: object, depth: int) -> None:
    out += spec.tag
    if spec.record is None:
        try:
            WRITERS[spec.ptype](out, value)
        except EncodeError as exc:
            raise EncodeError(f"{spec.name}: {exc}") from exc
        return
    if not isinstance(value, spec.record):
        raise EncodeError(f"{spec.name} must be a {spec.record.__name__}")
    body = bytearray()
    write_record(body, value, depth + 1)
    write_nested(out, body)


# ---------------------------------------------------------------- decoding


def read_record(
    schema: Schema,
    data: bytes,
    span: Span,
    limits: Limits,
    budget: Budget,
    depth: int,
) -> dict[str, Any]:
    """Decode ``data[span]`` against ``schema``; return constructor kwargs."""
    if depth > limits.max_depth:
        raise LimitExceeded(f"object lists nested deeper than {limits.max_depth}")
    values: dict[str, Any] = {}
    pos, end = span.start, span.end
    by_param = schema.by_param
    while pos < end:
        budget.take()
        pid, ptype, value, pos = read_object(data, pos, end, limits)
        spec = by_param.get(pid)
        if spec is None:
            continue  # unknown parameter: skipped, its value already consumed
        if ptype is not spec.ptype:
            raise WrongType(f"{spec.name} should be {spec.ptype.name}, got {ptype.name}")
        if spec.record is not None:
            schema_of = spec.record.__wire__
            fields = read_record(schema_of, data, value, limits, budget, depth + 1)
            value = schema_of.build(spec.record, fields)
        if spec.repeated:
            values.setdefault(spec.name, []).append(value)
        elif spec.name in values:
            raise DuplicateParameter(f"{spec.name} (parameter {pid}) appears twice")
        else:
            values[spec.name] = value
    for spec in schema.required:
        if spec.name not in values:
            raise MissingParameter(f"required parameter {spec.name} ({spec.param}) is missing")
    for name in schema.repeated:
        if name in values:
            values[name] = tuple(values[name])
    return values
