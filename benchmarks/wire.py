"""Wire benchmark: object-list codec vs msgpack (msgspec) and CBOR (cbor2).

    python benchmarks/wire.py [--quick]

Encodes and decodes a typical presence record and a typical call-signalling
message with Hopline's object lists, and the same fields with msgspec
(msgpack, typed Structs) and cbor2 (dicts), in one run; prints rates, sizes
and ratios, then measures reliable-channel goodput over loopback UDP at 0% and
10% loss. Writes benchmarks/results/wire.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cbor2
import msgspec

from _common import print_table, rate, write_json
from goodput import goodput_rows
from hopline.wire import Address, decode, encode
from hopline.wire.commands import (
    CallInvite,
    DeviceRecord,
    Endpoint,
    PresencePublish,
    PresenceRecord,
)


def presence_message() -> PresencePublish:
    """A user with two devices, three endpoints each, IPv4 and IPv6."""
    devices = tuple(
        DeviceRecord(
            device_id=bytes([d]) * 16,
            identity_key=bytes([d + 1]) * 32,
            certificate=bytes([d + 2]) * 160,
            endpoints=(
                Endpoint(address=Address.parse(f"192.168.1.{10 + d}:40000")),
                Endpoint(address=Address.parse(f"203.0.113.{20 + d}:51234"), kind=1),
                Endpoint(address=Address.parse(f"[2001:db8::{d + 1}]:40000")),
            ),
            nat_class=2,
            capabilities=(1, 2, 3),
        )
        for d in range(2)
    )
    record = PresenceRecord(
        user="alice.example",
        status=1,
        devices=devices,
        mood="on the train",
        last_seen=1_763_800_000,
        expires=1_763_800_600,
        sequence=42,
    )
    return PresencePublish(record=record, request_id=1234)


def call_message() -> CallInvite:
    """An invite with codecs, a media key and three candidates."""
    return CallInvite(
        request_id=77,
        call_id=bytes(range(16)),
        caller="alice.example",
        callee="bob.example",
        caller_device=bytes(16),
        codecs=(111, 9, 0),
        media_key=bytes(range(32)),
        candidates=(
            Endpoint(address=Address.parse("192.168.1.10:40000")),
            Endpoint(address=Address.parse("203.0.113.20:51234"), kind=1),
            Endpoint(address=Address.parse("[2001:db8::1]:40000")),
        ),
        max_bitrate=48000,
    )


# --- the same fields for msgspec (typed Structs) and cbor2 (dicts) ---------


class MEndpoint(msgspec.Struct, array_like=True):
    host: bytes
    port: int
    kind: int = 0


class MDevice(msgspec.Struct, array_like=True):
    device_id: bytes
    identity_key: bytes
    certificate: bytes
    endpoints: list[MEndpoint]
    nat_class: int
    capabilities: list[int]


class MPresence(msgspec.Struct, array_like=True):
    command: int
    request_id: int
    user: str
    status: int
    devices: list[MDevice]
    mood: str
    last_seen: int
    expires: int
    sequence: int


class MCall(msgspec.Struct, array_like=True):
    command: int
    request_id: int
    call_id: bytes
    caller: str
    callee: str
    caller_device: bytes
    codecs: list[int]
    media_key: bytes
    candidates: list[MEndpoint]
    max_bitrate: int


def _endpoint(e: Endpoint) -> MEndpoint:
    return MEndpoint(e.address.host.packed, e.address.port, e.kind)


def to_msgspec(message: Any) -> Any:
    """The message's fields as a msgspec Struct."""
    if isinstance(message, PresencePublish):
        r = message.record
        devices = [
            MDevice(
                d.device_id,
                d.identity_key,
                d.certificate,
                [_endpoint(e) for e in d.endpoints],
                d.nat_class,
                list(d.capabilities),
            )
            for d in r.devices
        ]
        return MPresence(
            0x30,
            message.request_id,
            r.user,
            r.status,
            devices,
            r.mood or "",
            r.last_seen,
            r.expires,
            r.sequence,
        )
    m = message
    return MCall(
        0x60,
        m.request_id,
        m.call_id,
        m.caller,
        m.callee,
        m.caller_device,
        list(m.codecs),
        m.media_key,
        [_endpoint(e) for e in m.candidates],
        m.max_bitrate,
    )


def measure_message(message: Any, seconds: float) -> dict[str, tuple[float, float, int]]:
    """(encode/s, decode/s, bytes) of one message for every codec."""
    struct = to_msgspec(message)
    as_dict = msgspec.to_builtins(struct)
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(type(struct))
    ours, packed, cbor = encode(message), encoder.encode(struct), cbor2.dumps(as_dict)
    assert decode(ours) == message
    return {
        "hopline": (
            rate(lambda: encode(message), seconds),
            rate(lambda: decode(ours), seconds),
            len(ours),
        ),
        "msgspec": (
            rate(lambda: encoder.encode(struct), seconds),
            rate(lambda: decoder.decode(packed), seconds),
            len(packed),
        ),
        "cbor2": (
            rate(lambda: cbor2.dumps(as_dict), seconds),
            rate(lambda: cbor2.loads(cbor), seconds),
            len(cbor),
        ),
    }


def codec_rows(quick: bool) -> tuple[list[list[Any]], dict[str, Any]]:
    """Measure every codec on both messages."""
    seconds = 0.1 if quick else 0.4
    rows, results = [], {}
    for name, message in (("presence record", presence_message()), ("call invite", call_message())):
        rates = measure_message(message, seconds)
        results[name] = {
            codec: {"encode_per_s": round(e), "decode_per_s": round(d), "bytes": size}
            for codec, (e, d, size) in rates.items()
        }
        h_enc, h_dec, _ = rates["hopline"]
        for codec, (e, d, size) in rates.items():
            ratio_e, ratio_d = f"{h_enc / e:.2f}", f"{h_dec / d:.2f}"
            rows.append([name, codec, size, f"{e:,.0f}", f"{d:,.0f}", ratio_e, ratio_d])
    return rows, results


def main() -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description="Hopline wire benchmark")
    parser.add_argument("--quick", action="store_true", help="short runs (for smoke tests)")
    args = parser.parse_args()
    rows, codec = codec_rows(args.quick)
    print_table(
        "codec: messages/s (ratio = hopline / other; >1 means hopline is faster)",
        ["message", "codec", "bytes", "encode/s", "decode/s", "enc ratio", "dec ratio"],
        rows,
    )
    results: dict[str, Any] = {"codec": codec}
    g_rows, g_results = goodput_rows(args.quick)
    print_table(
        "reliable channel goodput over loopback UDP (1,000-byte messages)",
        ["loss", "messages", "MB/s", "retransmitted", "seconds"],
        g_rows,
    )
    results["goodput"] = g_results
    write_json("wire", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
