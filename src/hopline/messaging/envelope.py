"""End-to-end message envelopes: one message sealed for one recipient device.

Every instant message, receipt, group or contact operation, presence update
and copy of a user's own message to that user's other devices travels as an
*envelope* built in two layers:

Inner: a signed record
    :class:`MessageRecord` names the sender (user and device), the recipient
    (user and device), the conversation, a 16-byte random message id, the
    sender's wall clock in milliseconds, a Lamport clock that orders the
    conversation (:mod:`hopline.messaging.conversation`), a
    :class:`MessageKind` and a body of at most :data:`MAX_BODY` bytes. Its
    object-list bytes are signed with the sender device's Ed25519 key over
    ``SIGN_DOMAIN + record``; :class:`SignedMessage` carries both.

Outer: HPKE
    The signed bytes are encrypted with HPKE base mode (RFC 9180; X25519 KEM,
    HKDF-SHA256, ChaCha20-Poly1305, from ``cryptography``) to the recipient
    device's static X25519 key. The HPKE ``info`` is
    ``INFO_DOMAIN || user || 0 || device id``, so a ciphertext made for one
    device does not open on another even when both share a key, and the
    inner record's recipient must match the device that opens it.

Supernodes and relays only ever see the sealed bytes, which start with one
version byte (:data:`ENVELOPE_VERSION`) followed by the HPKE output
(encapsulated key, then ciphertext). :func:`envelope_id` names a sealed
envelope (SHA-256, first 16 bytes) for hop-by-hop acknowledgements without
revealing the message id.

Opening (:func:`open_envelope`) decrypts, parses, checks the recipient
binding and every size, and verifies the signature with the sender's
Ed25519 key. That key comes from the sender's certificate, which the caller
verifies; the caller passes either the key or a lookup from (user, device)
to key. Every refusal is a :class:`MessageError` whose ``reason`` is a short
stable counter key; nothing else escapes, whatever the input bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hopline.crypto.keys import SigningKeyPair
from hopline.crypto.noise import DHKeyPair
from hopline.wire import ParamType, Record, WireError, decode_record, encode_record, param

__all__ = [
    "CONVERSATION_ID_MAX",
    "DEVICE_ID_MAX",
    "ENVELOPE_OVERHEAD",
    "ENVELOPE_VERSION",
    "INFO_DOMAIN",
    "MAX_BODY",
    "MAX_CLOCK",
    "MAX_RECORD",
    "MAX_SEALED",
    "MAX_TIME_MS",
    "MESSAGE_ID_SIZE",
    "RECEIPT_KINDS",
    "SIGN_DOMAIN",
    "USERNAME_MAX",
    "MessageError",
    "MessageKind",
    "MessageRecord",
    "Recipient",
    "SenderKeys",
    "SignedMessage",
    "envelope_id",
    "new_message_id",
    "open_envelope",
    "seal_envelope",
    "validate_record",
]

ENVELOPE_VERSION: Final = 1
SIGN_DOMAIN: Final = b"hopline message v1\x00"
INFO_DOMAIN: Final = b"hopline envelope v1\x00"
MESSAGE_ID_SIZE: Final = 16
MAX_BODY: Final = 16 * 1024
"""Largest body in bytes (text is UTF-8)."""
USERNAME_MAX: Final = 64
DEVICE_ID_MAX: Final = 32
CONVERSATION_ID_MAX: Final = 32
MAX_CLOCK: Final = 1 << 48
"""Lamport clocks at or above this are refused (no peer can exhaust the space)."""
MAX_TIME_MS: Final = 1 << 53
"""Sender timestamps at or above this are refused."""
MAX_RECORD: Final = MAX_BODY + 512
"""Largest encoded :class:`MessageRecord` (body plus every field at its maximum)."""
SIGNATURE_SIZE: Final = 64
ENVELOPE_OVERHEAD: Final = 1 + 32 + 16
"""Version byte, HPKE encapsulated key, AEAD tag."""
MAX_SEALED: Final = MAX_RECORD + SIGNATURE_SIZE + 16 + ENVELOPE_OVERHEAD
"""Largest sealed envelope; anything longer is refused before decryption."""
ENVELOPE_ID_SIZE: Final = 16

_SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class MessageKind(IntEnum):
    """What an envelope's body is."""

    TEXT = 1
    """A chat message: UTF-8 text."""
    RECEIPT_DELIVERED = 2
    """The body is the 16-byte id of a message that reached the sending device."""
    RECEIPT_READ = 3
    """The body is the 16-byte id of a message the sending device showed."""
    GROUP_OP = 4
    """Create, invite, leave, rename (body defined by the group module)."""
    CONTACT_OP = 5
    """An authorisation request, answer or removal (:mod:`~hopline.messaging.contacts`)."""
    PRESENCE = 6
    """Status and mood for an authorised contact."""
    SYNC = 7
    """A copy of the user's own TEXT message for the user's other devices."""


RECEIPT_KINDS: Final = frozenset({MessageKind.RECEIPT_DELIVERED, MessageKind.RECEIPT_READ})


class MessageError(Exception):
    """An envelope was refused; ``reason`` is a short stable key for counters.

    Reasons: ``too-large``, ``bad-version``, ``undecryptable``, ``malformed``,
    ``bad-field``, ``body-too-large``, ``bad-kind``, ``bad-text``,
    ``bad-receipt``, ``bad-clock``, ``wrong-recipient``, ``unknown-sender``,
    ``bad-signature``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MessageRecord(Record):
    """The signed content of one envelope (also what conversations store)."""

    sender_user: str = param(1, ParamType.STRING)
    sender_device: bytes = param(2, ParamType.BYTES)
    recipient_user: str = param(3, ParamType.STRING)
    recipient_device: bytes = param(4, ParamType.BYTES)
    conversation_id: bytes = param(5, ParamType.BYTES)
    message_id: bytes = param(6, ParamType.BYTES, doc="16 random bytes")
    sent_at_ms: int = param(7, ParamType.UINT, doc="sender's Unix time, milliseconds")
    clock: int = param(8, ParamType.UINT, doc="Lamport clock of the conversation")
    kind: int = param(9, ParamType.UINT, doc="a MessageKind")
    body: bytes = param(10, ParamType.BYTES, default=b"")


class SignedMessage(Record):
    """The plaintext inside the HPKE layer: record bytes and their signature."""

    record: bytes = param(1, ParamType.BYTES)
    signature: bytes = param(2, ParamType.BYTES)


@dataclass(frozen=True, slots=True)
class Recipient:
    """The device that opens envelopes: its user, device id and X25519 key pair."""

    user: str
    device: bytes
    static: DHKeyPair


SenderKeys = bytes | Callable[[str, bytes], bytes | None]
"""The sender's verified Ed25519 key, or a lookup ``(user, device) -> key or None``."""


def new_message_id() -> bytes:
    """16 fresh random bytes."""
    return secrets.token_bytes(MESSAGE_ID_SIZE)


def envelope_id(sealed: bytes) -> bytes:
    """The hop-by-hop name of a sealed envelope (SHA-256, first 16 bytes)."""
    return hashlib.sha256(sealed).digest()[:ENVELOPE_ID_SIZE]


def _info(user: str, device: bytes) -> bytes:
    return INFO_DOMAIN + user.encode("utf-8") + b"\x00" + device


def _check_id(name: str, value: bytes | str, low: int, high: int) -> None:
    size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
    if not low <= size <= high:
        raise MessageError("bad-field", f"{name} is {size} bytes, allowed {low}-{high}")


def _check_body(record: MessageRecord) -> None:
    if len(record.body) > MAX_BODY:
        raise MessageError("body-too-large", f"{len(record.body)} > {MAX_BODY}")
    if record.kind in (MessageKind.TEXT, MessageKind.SYNC):
        try:
            record.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError("bad-text", "text body is not UTF-8") from exc
    elif record.kind in RECEIPT_KINDS and len(record.body) != MESSAGE_ID_SIZE:
        raise MessageError("bad-receipt", "a receipt body is one 16-byte message id")


def validate_record(record: MessageRecord) -> None:
    """Check every field against the limits; raise :class:`MessageError` if one is off."""
    _check_id("sender_user", record.sender_user, 1, USERNAME_MAX)
    _check_id("recipient_user", record.recipient_user, 1, USERNAME_MAX)
    _check_id("sender_device", record.sender_device, 1, DEVICE_ID_MAX)
    _check_id("recipient_device", record.recipient_device, 1, DEVICE_ID_MAX)
    _check_id("conversation_id", record.conversation_id, 1, CONVERSATION_ID_MAX)
    _check_id("message_id", record.message_id, MESSAGE_ID_SIZE, MESSAGE_ID_SIZE)
    if record.clock >= MAX_CLOCK:
        raise MessageError("bad-clock", f"clock {record.clock} >= {MAX_CLOCK}")
    if record.sent_at_ms >= MAX_TIME_MS:
        raise MessageError("bad-field", f"sent_at_ms {record.sent_at_ms} out of range")
    if record.kind not in MessageKind._value2member_map_:
        raise MessageError("bad-kind", f"unknown kind {record.kind}")
    _check_body(record)


def seal_envelope(record: MessageRecord, signing: SigningKeyPair, recipient_static: bytes) -> bytes:
    """Sign ``record`` and encrypt it to the recipient device's X25519 public key.

    Raises :class:`MessageError` when the record breaks a limit (a local bug:
    nothing is sent).
    """
    validate_record(record)
    record_bytes = encode_record(record)
    signature = signing.sign(SIGN_DOMAIN + record_bytes)
    plaintext = encode_record(SignedMessage(record=record_bytes, signature=signature))
    try:
        public = X25519PublicKey.from_public_bytes(recipient_static)
    except ValueError as exc:
        raise MessageError("bad-field", "recipient key is not 32 bytes") from exc
    info = _info(record.recipient_user, record.recipient_device)
    return bytes([ENVELOPE_VERSION]) + _SUITE.encrypt(plaintext, public, info=info)


def _decrypt(sealed: bytes, private: X25519PrivateKey, info: bytes) -> bytes:
    if len(sealed) > MAX_SEALED:
        raise MessageError("too-large", f"{len(sealed)} > {MAX_SEALED}")
    if len(sealed) < ENVELOPE_OVERHEAD or sealed[0] != ENVELOPE_VERSION:
        raise MessageError("bad-version", "not a version-1 envelope")
    try:
        return _SUITE.decrypt(sealed[1:], private, info=info)
    except (InvalidTag, ValueError) as exc:
        raise MessageError("undecryptable", "HPKE open failed") from exc


def _parse(plaintext: bytes) -> tuple[MessageRecord, bytes, bytes]:
    try:
        signed = decode_record(SignedMessage, plaintext)
        if len(signed.record) > MAX_RECORD:
            raise MessageError("too-large", f"record of {len(signed.record)} bytes")
        record = decode_record(MessageRecord, signed.record)
    except WireError as exc:
        raise MessageError("malformed", exc.reason) from exc
    return record, signed.record, signed.signature


def _sender_key(sender: SenderKeys, record: MessageRecord) -> bytes:
    key = sender if isinstance(sender, bytes) else sender(record.sender_user, record.sender_device)
    if key is None:
        raise MessageError("unknown-sender", f"no key for {record.sender_user}")
    return key


def _verify(key: bytes, signature: bytes, signed_bytes: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, SIGN_DOMAIN + signed_bytes)
    except (InvalidSignature, ValueError) as exc:
        raise MessageError("bad-signature", "Ed25519 signature does not verify") from exc


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def open_envelope(sealed: bytes, recipient: Recipient, sender: SenderKeys) -> MessageRecord:
    """Decrypt, parse, check and verify one sealed envelope; return its record.

    ``sender`` is the sender device's verified Ed25519 key or a lookup for it
    (see :data:`SenderKeys`). Raises only :class:`MessageError`.
    """
    plaintext = _decrypt(
        sealed, recipient.static.private_key, _info(recipient.user, recipient.device)
    )
    record, record_bytes, signature = _parse(plaintext)
    validate_record(record)
    user_ok = _same(record.recipient_user.encode("utf-8"), recipient.user.encode("utf-8"))
    if not (user_ok and _same(record.recipient_device, recipient.device)):
        raise MessageError("wrong-recipient", "the record names another device")
    _verify(_sender_key(sender, record), signature, record_bytes)
    return record
