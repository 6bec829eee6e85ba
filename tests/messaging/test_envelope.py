"""Envelopes: sealing, opening, every refusal reason, and a fuzz test of open_envelope."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.messaging.envelope import (
    ENVELOPE_VERSION,
    INFO_DOMAIN,
    MAX_BODY,
    MAX_CLOCK,
    MAX_SEALED,
    SIGN_DOMAIN,
    MessageError,
    MessageKind,
    MessageRecord,
    Recipient,
    SignedMessage,
    envelope_id,
    open_envelope,
    seal_envelope,
    validate_record,
)
from hopline.wire import encode_record

Device = Any  # the conftest Device: user, device, keys, recipient, record()

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def hand_seal(plaintext: bytes, to: Device, info_device: bytes | None = None) -> bytes:
    """HPKE-encrypt arbitrary plaintext to a device, as any holder of its public key can."""
    info = INFO_DOMAIN + to.user.encode() + b"\x00" + (info_device or to.device)
    public = X25519PublicKey.from_public_bytes(to.keys.static.public)
    return bytes([ENVELOPE_VERSION]) + SUITE.encrypt(plaintext, public, info=info)


def signed_plaintext(record: MessageRecord, signer: Device) -> bytes:
    record_bytes = encode_record(record)
    signature = signer.keys.signing.sign(SIGN_DOMAIN + record_bytes)
    return encode_record(SignedMessage(record=record_bytes, signature=signature))


def reason_of(call: Any) -> str:
    with pytest.raises(MessageError) as caught:
        call()
    return str(caught.value.reason)


def test_round_trip_returns_the_signed_record(alice: Device, bob: Device) -> None:
    record = alice.record(bob, "grüezi 👋".encode())
    sealed = seal_envelope(record, alice.keys.signing, bob.keys.static.public)
    assert open_envelope(sealed, bob.recipient, alice.keys.signing.public) == record


def test_sealed_bytes_hide_the_body_and_differ_each_time(alice: Device, bob: Device) -> None:
    record = alice.record(bob, b"attack at dawn " * 10)
    one = seal_envelope(record, alice.keys.signing, bob.keys.static.public)
    two = seal_envelope(record, alice.keys.signing, bob.keys.static.public)
    assert b"attack at dawn" not in one
    assert b"alice" not in one
    assert one != two
    assert envelope_id(one) != envelope_id(two)
    assert len(envelope_id(one)) == 16


def test_sender_key_lookup(alice: Device, bob: Device) -> None:
    record = alice.record(bob)
    sealed = seal_envelope(record, alice.keys.signing, bob.keys.static.public)
    keys = {(alice.user, alice.device): alice.keys.signing.public}
    assert open_envelope(sealed, bob.recipient, lambda u, d: keys.get((u, d))) == record
    assert reason_of(lambda: open_envelope(sealed, bob.recipient, lambda u, d: None)) == (
        "unknown-sender"
    )


def test_wrong_sender_key_is_bad_signature(alice: Device, bob: Device, mallory: Device) -> None:
    sealed = seal_envelope(alice.record(bob), alice.keys.signing, bob.keys.static.public)
    assert reason_of(lambda: open_envelope(sealed, bob.recipient, mallory.keys.signing.public)) == (
        "bad-signature"
    )


def test_forged_sender_is_bad_signature(alice: Device, bob: Device, mallory: Device) -> None:
    """Anyone can encrypt to bob; only alice's key makes a record that claims alice."""
    forged = hand_seal(signed_plaintext(alice.record(bob, b"send money"), mallory), bob)
    assert reason_of(lambda: open_envelope(forged, bob.recipient, alice.keys.signing.public)) == (
        "bad-signature"
    )


def test_other_device_cannot_open(alice: Device, bob: Device, bob_phone: Device) -> None:
    sealed = seal_envelope(alice.record(bob), alice.keys.signing, bob.keys.static.public)
    assert reason_of(
        lambda: open_envelope(sealed, bob_phone.recipient, alice.keys.signing.public)
    ) == ("undecryptable")
    # Same key, other device id: the HPKE info binds the device.
    same_key_other_id = Recipient(bob.user, b"bob-tablet", bob.keys.static)
    assert reason_of(
        lambda: open_envelope(sealed, same_key_other_id, alice.keys.signing.public)
    ) == ("undecryptable")


def test_record_naming_another_device_is_refused(
    alice: Device, bob: Device, bob_phone: Device
) -> None:
    """A record for bob's phone re-encrypted to bob's desktop does not open there."""
    plaintext = signed_plaintext(alice.record(bob_phone), alice)
    moved = hand_seal(plaintext, bob)
    assert reason_of(lambda: open_envelope(moved, bob.recipient, alice.keys.signing.public)) == (
        "wrong-recipient"
    )


def test_tampering_size_and_version(alice: Device, bob: Device) -> None:
    sealed = seal_envelope(alice.record(bob), alice.keys.signing, bob.keys.static.public)
    key = alice.keys.signing.public
    flipped = sealed[:40] + bytes([sealed[40] ^ 1]) + sealed[41:]
    assert reason_of(lambda: open_envelope(flipped, bob.recipient, key)) == "undecryptable"
    assert reason_of(lambda: open_envelope(b"\x02" + sealed[1:], bob.recipient, key)) == (
        "bad-version"
    )
    assert reason_of(lambda: open_envelope(b"\x01", bob.recipient, key)) == "bad-version"
    huge = sealed + bytes(MAX_SEALED)
    assert reason_of(lambda: open_envelope(huge, bob.recipient, key)) == "too-large"


def test_garbage_inside_valid_encryption_is_malformed(alice: Device, bob: Device) -> None:
    garbage = hand_seal(b"\xff\xff\xff\xff", bob)
    assert reason_of(lambda: open_envelope(garbage, bob.recipient, alice.keys.signing.public)) == (
        "malformed"
    )


def test_largest_body_fits_and_one_more_byte_is_refused(
    alice: Device, bob: Device, device_class: Any
) -> None:
    big = device_class("u" * 64, b"d" * 32, bob.keys)
    record = alice.record(big, b"x" * MAX_BODY, conversation=b"c" * 32, clock=MAX_CLOCK - 1)
    sealed = seal_envelope(record, alice.keys.signing, bob.keys.static.public)
    assert len(sealed) <= MAX_SEALED
    assert open_envelope(sealed, big.recipient, alice.keys.signing.public) == record
    too_big = alice.record(bob, b"x" * (MAX_BODY + 1))
    assert reason_of(
        lambda: seal_envelope(too_big, alice.keys.signing, bob.keys.static.public)
    ) == ("body-too-large")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"body": b"\xff\xfe"}, "bad-text"),
        ({"kind": MessageKind.SYNC, "body": b"\xc3"}, "bad-text"),
        ({"kind": MessageKind.RECEIPT_READ, "body": b"short"}, "bad-receipt"),
        ({"kind": 99}, "bad-kind"),
        ({"clock": MAX_CLOCK}, "bad-clock"),
        ({"message_id": b"x" * 15}, "bad-field"),
        ({"sender_user": ""}, "bad-field"),
        ({"recipient_device": b"d" * 33}, "bad-field"),
        ({"conversation_id": b""}, "bad-field"),
        ({"sent_at_ms": 1 << 60}, "bad-field"),
    ],
)
def test_field_limits(alice: Device, bob: Device, changes: dict[str, Any], reason: str) -> None:
    fields = {name: getattr(alice.record(bob), name) for name in MessageRecord.__dataclass_fields__}
    record = MessageRecord(**{**fields, **changes})
    assert reason_of(lambda: validate_record(record)) == reason
    # The same record arriving from a peer (signed by its sender) is refused the same way.
    arriving = hand_seal(signed_plaintext(record, alice), bob)
    assert reason_of(lambda: open_envelope(arriving, bob.recipient, alice.keys.signing.public)) == (
        reason
    )


def test_bad_recipient_key_is_a_message_error(alice: Device, bob: Device) -> None:
    assert reason_of(lambda: seal_envelope(alice.record(bob), alice.keys.signing, b"short")) == (
        "bad-field"
    )


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_message_errors(sealed: bytes, bob: Device, alice: Device) -> None:
    try:
        open_envelope(sealed, bob.recipient, alice.keys.signing.public)
    except MessageError as exc:
        assert exc.reason


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(alice: Device, bob: Device, data: bytes) -> None:
    _only_message_errors(data, bob, alice)
    _only_message_errors(bytes([ENVELOPE_VERSION]) + data, bob, alice)


@FUZZ
@given(plaintext=st.binary(max_size=400))
def test_fuzz_plaintext_behind_valid_encryption(
    alice: Device, bob: Device, plaintext: bytes
) -> None:
    _only_message_errors(hand_seal(plaintext, bob), bob, alice)


@FUZZ
@given(record_bytes=st.binary(max_size=300), signature=st.binary(max_size=80))
def test_fuzz_signed_wrapper(
    alice: Device, bob: Device, record_bytes: bytes, signature: bytes
) -> None:
    wrapper = encode_record(SignedMessage(record=record_bytes, signature=signature))
    _only_message_errors(hand_seal(wrapper, bob), bob, alice)


@FUZZ
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_fuzz_mutated_envelope(alice: Device, bob: Device, position: int, value: int) -> None:
    sealed = bytearray(seal_envelope(alice.record(bob), alice.keys.signing, bob.keys.static.public))
    sealed[position % len(sealed)] = value
    _only_message_errors(bytes(sealed), bob, alice)
