"""decode() raises only WireError on any input, and stays within its limits."""

from __future__ import annotations

import contextlib
import random
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.testing.wire_strategies import messages
from hopline.wire import (
    Address,
    LimitExceeded,
    Limits,
    Message,
    WireError,
    decode,
    decode_raw,
    encode,
)
from hopline.wire.commands import DeviceRecord, Echo, Endpoint, PresencePublish, PresenceRecord


def _decode_only_wire_errors(data: bytes) -> None:
    # a message or a WireError are the only allowed outcomes; anything else fails
    with contextlib.suppress(WireError):
        decode(data)


@given(st.binary(max_size=512))
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_raise_only_wire_errors(data: bytes) -> None:
    _decode_only_wire_errors(data)


@given(st.binary(max_size=256).map(lambda b: b"\x10" + b))
@settings(max_examples=3000)
def test_bytes_behind_a_valid_version_raise_only_wire_errors(data: bytes) -> None:
    _decode_only_wire_errors(data)


@given(messages(), st.data())
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_valid_messages_raise_only_wire_errors(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _decode_only_wire_errors(bytes(raw[:cut]))


def test_object_count_limit_applies_before_work() -> None:
    # 3,000 one-byte-value objects of an unknown parameter, limit 100
    body = b"\x10\x01\x00" + b"\xf8\x01\x00" * 3000
    with pytest.raises(LimitExceeded):
        decode(body, Limits(max_objects=100))


def test_nesting_depth_limit_on_raw_lists() -> None:
    inner = b""
    for _ in range(20):
        inner = bytes([0x4E]) + bytes([len(inner)]) + inner  # param 9, OBJECTS
    data = b"\x10\x01\x00\x08\x01" + inner  # a ping (nonce 1) with a deep unknown list
    decode(data)  # unknown nested lists are skipped unparsed: no depth to spend
    with pytest.raises(LimitExceeded):
        decode_raw(data, Limits(max_depth=8))


def test_nesting_depth_limit_on_typed_records() -> None:
    endpoint = Endpoint(address=Address.parse("192.0.2.1:1"))
    device = DeviceRecord(
        device_id=b"d", identity_key=bytes(32), certificate=b"", endpoints=(endpoint,)
    )
    record = PresenceRecord(user="a", status=1, devices=(device,), last_seen=0, expires=0)
    data = encode(PresencePublish(record=record))
    assert decode(data, Limits(max_depth=4)) == PresencePublish(record=record)
    with pytest.raises(LimitExceeded):
        decode(data, Limits(max_depth=3))


def test_integer_list_count_is_checked_before_allocating() -> None:
    # claims 2**40 items in a 10-byte message
    data = b"\x10\x01\x00\x0c" + bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x20])
    tracemalloc.start()
    with pytest.raises(WireError):
        decode(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024


def test_oversized_message_refused_up_front() -> None:
    data = encode(Echo(data=b"x" * 2000))
    with pytest.raises(LimitExceeded):
        decode(data, Limits(max_message_size=1000))


def test_worst_case_input_decodes_in_bounded_time() -> None:
    rng = random.Random(7)
    worst = 0.0
    for _ in range(200):
        data = b"\x10\x01\x00" + bytes(rng.getrandbits(8) for _ in range(60000))
        start = time.perf_counter()
        _decode_only_wire_errors(data)
        worst = max(worst, time.perf_counter() - start)
    # max-size random garbage: linear work, bounded by limits; generous on shared CI
    assert worst < 0.5
