"""Certificates and the revocation list, signed by the login server.

A certificate is an object list (:class:`CertificateBody`) and an Ed25519
signature by the login server over ``DOMAIN + body``; the pair travels as a
:class:`SignedBlob` object list. The body binds:

* the **role** (user device, supernode, login server),
* the **subject** (canonical username, or supernode id),
* the **device id** and the device's **static key** (its X25519 Noise key,
  proven in every handshake) and optional Ed25519 **signing key**,
* **issued/expiry** times, a **serial** (for revocation), and the **issuer**
  (the login server's public key, so a certificate from another login server
  is recognised as such rather than as a forgery).

:class:`CertificateVerifier` checks a certificate against the *pinned*
login-server key and what the caller expects (role, name, the static key the
handshake proved) and raises :class:`CertificateError` with one reason:

``malformed``, ``wrong-issuer``, ``forged``, ``bad-version``,
``not-yet-valid``, ``expired``, ``revoked``, ``wrong-role``, ``wrong-name``,
``wrong-key``.

Every refusal is counted under its reason in :attr:`CertificateVerifier.refused`.
"""

from __future__ import annotations

import hmac
from collections import Counter
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hopline.wire import ParamType, Record, WireError, decode_record, encode_record, param

CERT_DOMAIN = b"hopline certificate v1\x00"
CRL_DOMAIN = b"hopline revocation list v1\x00"
CERT_VERSION = 1
CLOCK_SKEW_S = 300
MAX_CERT_SIZE = 4096


class Role(IntEnum):
    """What a certificate lets its holder be."""

    USER = 1
    SUPERNODE = 2
    LOGIN_SERVER = 3


class CertificateBody(Record):
    """The signed content of a certificate."""

    version: int = param(1, ParamType.UINT)
    role: int = param(2, ParamType.UINT, doc="a Role")
    subject: str = param(3, ParamType.STRING, doc="canonical username or supernode id")
    device_id: bytes = param(4, ParamType.BYTES)
    static_key: bytes = param(5, ParamType.PUBKEY, doc="X25519 key proven in handshakes")
    signing_key: bytes | None = param(6, ParamType.PUBKEY, default=None, doc="Ed25519")
    issued_at: int = param(7, ParamType.UINT, doc="Unix seconds")
    expires_at: int = param(8, ParamType.UINT, doc="Unix seconds")
    serial: int = param(9, ParamType.UINT)
    issuer: bytes = param(10, ParamType.PUBKEY, doc="the login server's Ed25519 key")


class SignedBlob(Record):
    """A signed object list: the body's bytes and the signature over them."""

    body: bytes = param(1, ParamType.BYTES)
    signature: bytes = param(2, ParamType.BYTES)


class RevocationBody(Record):
    """The signed content of a revocation list."""

    issued_at: int = param(1, ParamType.UINT)
    serials: tuple[int, ...] = param(2, ParamType.UINTS, default=())
    issuer: bytes = param(3, ParamType.PUBKEY)


class CertificateError(Exception):
    """A certificate was refused; ``reason`` is a short stable key for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def public_bytes(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Certificate:
    """A parsed certificate: its body, and the exact bytes that were signed."""

    body: CertificateBody
    raw: bytes

    @property
    def role(self) -> Role:
        """The certificate's role."""
        return Role(self.body.role)

    @property
    def subject(self) -> str:
        """Canonical username or supernode id."""
        return self.body.subject


def _sign(domain: bytes, key: Ed25519PrivateKey, body: bytes) -> bytes:
    return encode_record(SignedBlob(body=body, signature=key.sign(domain + body)))


def issue_certificate(key: Ed25519PrivateKey, body: CertificateBody) -> bytes:
    """Sign ``body`` with the login server's key; return the certificate's bytes."""
    if body.issuer != public_bytes(key.public_key()):
        raise ValueError("the body's issuer must be the signing key")
    return _sign(CERT_DOMAIN, key, encode_record(body))


def _open(data: bytes, limit: int) -> tuple[bytes, bytes]:
    if not isinstance(data, bytes) or len(data) > limit:
        raise CertificateError("malformed", "too large or not bytes")
    try:
        blob = decode_record(SignedBlob, data)
    except WireError as exc:
        raise CertificateError("malformed", str(exc)) from None
    return blob.body, blob.signature


def parse_certificate(data: bytes) -> tuple[CertificateBody, bytes, bytes]:
    """Split a certificate into (body, body bytes, signature) without verifying it."""
    body_bytes, signature = _open(data, MAX_CERT_SIZE)
    try:
        body = decode_record(CertificateBody, body_bytes)
    except WireError as exc:
        raise CertificateError("malformed", str(exc)) from None
    return body, body_bytes, signature


def _check_signature(
    pinned: Ed25519PublicKey, issuer: bytes, domain: bytes, body: bytes, signature: bytes
) -> None:
    if not hmac.compare_digest(issuer, public_bytes(pinned)):
        raise CertificateError("wrong-issuer", "signed by another login server")
    try:
        pinned.verify(signature, domain + body)
    except InvalidSignature:
        raise CertificateError("forged", "signature does not verify") from None


class CertificateVerifier:
    """Checks certificates against the pinned login-server key.

    ``revoked`` is the set of revoked serials; replace it with
    :meth:`update_revocations` when a newer signed list arrives.
    """

    def __init__(self, pinned_key: Ed25519PublicKey | bytes, skew_s: int = CLOCK_SKEW_S) -> None:
        if isinstance(pinned_key, bytes):
            pinned_key = Ed25519PublicKey.from_public_bytes(pinned_key)
        self.pinned = pinned_key
        self.skew_s = skew_s
        self.revoked: frozenset[int] = frozenset()
        self.revocations_issued_at = 0
        self.refused: Counter[str] = Counter()
        self.accepted = 0

    def update_revocations(self, data: bytes) -> bool:
        """Adopt a signed revocation list if it verifies and is newer."""
        revocations = verify_revocation_list(data, self.pinned)
        if revocations.issued_at < self.revocations_issued_at:
            return False
        self.revoked = frozenset(revocations.serials)
        self.revocations_issued_at = revocations.issued_at
        return True

    def verify(
        self,
        data: bytes,
        now: float,
        *,
        role: Role | None = None,
        subject: str | None = None,
        static_key: bytes | None = None,
    ) -> Certificate:
        """Return the certificate if every check passes, else raise CertificateError."""
        try:
            certificate = self._verify(data, now, role, subject, static_key)
        except CertificateError as exc:
            self.refused[exc.reason] += 1
            raise
        self.accepted += 1
        return certificate

    def _verify(
        self,
        data: bytes,
        now: float,
        role: Role | None,
        subject: str | None,
        static_key: bytes | None,
    ) -> Certificate:
        body, body_bytes, signature = parse_certificate(data)
        _check_signature(self.pinned, body.issuer, CERT_DOMAIN, body_bytes, signature)
        if body.version != CERT_VERSION:
            raise CertificateError("bad-version", f"version {body.version}")
        if now + self.skew_s < body.issued_at:
            raise CertificateError("not-yet-valid", f"issued at {body.issued_at}")
        if now >= body.expires_at:
            raise CertificateError("expired", f"expired at {body.expires_at}")
        if body.serial in self.revoked:
            raise CertificateError("revoked", f"serial {body.serial}")
        if role is not None and body.role != role:
            raise CertificateError("wrong-role", f"role {body.role}, expected {int(role)}")
        if subject is not None and body.subject != subject.lower():
            raise CertificateError("wrong-name", f"{body.subject!r}, expected {subject!r}")
        if static_key is not None and not hmac.compare_digest(body.static_key, static_key):
            raise CertificateError("wrong-key", "static key differs from the handshake's")
        return Certificate(body, data)


@dataclass(frozen=True)
class RevocationList:
    """A verified revocation list."""

    issued_at: int
    serials: frozenset[int]


def issue_revocation_list(key: Ed25519PrivateKey, serials: list[int], issued_at: int) -> bytes:
    """Sign the list of revoked serials."""
    body = RevocationBody(
        issued_at=issued_at,
        serials=tuple(sorted(set(serials))),
        issuer=public_bytes(key.public_key()),
    )
    return _sign(CRL_DOMAIN, key, encode_record(body))


def verify_revocation_list(data: bytes, pinned: Ed25519PublicKey) -> RevocationList:
    """Verify a signed revocation list against the pinned key."""
    body_bytes, signature = _open(data, 65536)
    try:
        body = decode_record(RevocationBody, body_bytes)
    except WireError as exc:
        raise CertificateError("malformed", str(exc)) from None
    _check_signature(pinned, body.issuer, CRL_DOMAIN, body_bytes, signature)
    return RevocationList(body.issued_at, frozenset(body.serials))
