"""Hypothesis strategies generated from the wire command table.

Because every message class declares its parameters once, a strategy for any
message can be derived from that declaration: tests and the fuzz harness get
valid messages of every command without listing fields by hand. Needs the
``hypothesis`` package (a test dependency).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from hypothesis import strategies as st

from hopline.wire import COMMANDS, Address, FieldSpec, Message, ParamType, Record
from hopline.wire.commands import ErrorReply
from hopline.wire.types import MAX_UINT, PUBKEY_SIZE

uints = st.integers(min_value=0, max_value=MAX_UINT)
addresses = st.builds(
    Address,
    st.one_of(
        st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
        st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)),
    ),
    st.integers(0, 0xFFFF),
)

_SCALARS: dict[ParamType, st.SearchStrategy[Any]] = {
    ParamType.UINT: uints,
    ParamType.BYTES: st.binary(max_size=64),
    ParamType.STRING: st.text(max_size=32),
    ParamType.ADDRESS: addresses,
    ParamType.UINTS: st.lists(uints, max_size=8).map(tuple),
    ParamType.PUBKEY: st.binary(min_size=PUBKEY_SIZE, max_size=PUBKEY_SIZE),
}


def _value(spec: FieldSpec, depth: int) -> st.SearchStrategy[Any]:
    if spec.record is not None:
        return records(spec.record, depth + 1)
    return _SCALARS[spec.ptype]


def _field(spec: FieldSpec, depth: int) -> st.SearchStrategy[Any]:
    value = _value(spec, depth)
    if spec.repeated:
        return st.lists(value, max_size=3 if depth < 2 else 1).map(tuple)
    if spec.nullable:
        return st.none() | value
    return value


def records(cls: type[Record], depth: int = 0) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with every field drawn from its wire type."""
    fields = {spec.name: _field(spec, depth) for spec in cls.__wire__.fields}
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


def messages() -> st.SearchStrategy[Message]:
    """Any registered message (including error replies) with any request id."""
    classes = [*sorted(COMMANDS.values(), key=lambda c: (c.COMMAND, c.KIND)), ErrorReply]
    request_ids = st.integers(0, 0xFFFFFFFF)

    def build(cls: type[Message]) -> st.SearchStrategy[Message]:
        extra: dict[str, st.SearchStrategy[Any]] = {"request_id": request_ids}
        if cls is ErrorReply:
            extra["failed_command"] = st.integers(0, 0xFFFF)
        fields = {spec.name: _field(spec, 0) for spec in cls.__wire__.fields}
        return st.fixed_dictionaries({**fields, **extra}).map(lambda kw: cls(**kw))

    return st.sampled_from(classes).flatmap(build)


# ---------------------------------------------------------------- seeded, no hypothesis


def _random_scalar(rng: random.Random, ptype: ParamType) -> Any:
    if ptype is ParamType.UINT:
        return rng.choice((0, 1, rng.getrandbits(rng.choice((7, 16, 32, 64)))))
    if ptype is ParamType.BYTES:
        return rng.randbytes(rng.randint(0, 64))
    if ptype is ParamType.STRING:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._- ÄΩ\u202e\x00"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    if ptype is ParamType.ADDRESS:
        return Address(ipaddress.IPv4Address(rng.getrandbits(32)), rng.getrandbits(16))
    if ptype is ParamType.UINTS:
        return tuple(rng.getrandbits(16) for _ in range(rng.randint(0, 5)))
    return rng.randbytes(PUBKEY_SIZE)


def random_record(rng: random.Random, cls: type[Record], depth: int = 0) -> Any:
    """A ``cls`` with every field drawn at random from its wire type (seeded)."""
    kwargs: dict[str, Any] = {}
    for spec in cls.__wire__.fields:
        if spec.nullable and rng.random() < 0.3:
            continue

        def one(spec: FieldSpec = spec) -> Any:
            if spec.record is not None:
                return random_record(rng, spec.record, depth + 1)
            return _random_scalar(rng, spec.ptype)

        if spec.repeated:
            kwargs[spec.name] = tuple(one() for _ in range(rng.randint(0, 2 if depth < 2 else 0)))
        else:
            kwargs[spec.name] = one()
    return cls(**kwargs)


def random_requests(rng: random.Random, count: int) -> list[Message]:
    """``count`` random requests of every command in the table (seeded)."""
    classes = sorted(
        (c for c in COMMANDS.values() if c.KIND.name == "REQUEST"), key=lambda c: c.COMMAND
    )
    return [random_record(rng, rng.choice(classes)) for _ in range(count)]
