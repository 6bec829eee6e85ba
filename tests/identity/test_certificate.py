"""Certificates: each kind of bad certificate is refused with its own counted reason."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.identity import (
    CertificateBody,
    CertificateError,
    CertificateVerifier,
    Role,
    issue_certificate,
    issue_revocation_list,
)
from hopline.identity.certificate import SignedBlob, public_bytes
from hopline.wire import decode_record, encode_record

NOW = 1_800_000_000
LS_KEY = Ed25519PrivateKey.generate()
OTHER_LS_KEY = Ed25519PrivateKey.generate()
STATIC = bytes(range(32))


def body(**changes: object) -> CertificateBody:
    base = CertificateBody(
        version=1,
        role=Role.USER,
        subject="alice",
        device_id=b"\x01" * 16,
        static_key=STATIC,
        issued_at=NOW - 60,
        expires_at=NOW + 3600,
        serial=7,
        issuer=public_bytes(LS_KEY.public_key()),
    )
    return dataclasses.replace(base, **changes)


def verifier() -> CertificateVerifier:
    return CertificateVerifier(LS_KEY.public_key())


def refused_reason(data: bytes, v: CertificateVerifier | None = None, **expect: object) -> str:
    v = v or verifier()
    with pytest.raises(CertificateError) as caught:
        v.verify(data, NOW, **expect)  # type: ignore[arg-type]
    assert v.refused[caught.value.reason] == 1
    assert v.accepted == 0
    return caught.value.reason


def test_a_good_certificate_is_accepted() -> None:
    v = verifier()
    cert = v.verify(
        issue_certificate(LS_KEY, body()), NOW, role=Role.USER, subject="Alice", static_key=STATIC
    )
    assert cert.subject == "alice" and cert.role is Role.USER
    assert v.accepted == 1 and not v.refused


def test_forged_certificate_tampered_body() -> None:
    blob = decode_record(SignedBlob, issue_certificate(LS_KEY, body()))
    tampered = encode_record(body(subject="mallory"))  # same claimed issuer, new body
    forged = encode_record(SignedBlob(body=tampered, signature=blob.signature))
    assert refused_reason(forged) == "forged"


def test_wrongly_signed_certificate_by_another_login_server() -> None:
    other = body(issuer=public_bytes(OTHER_LS_KEY.public_key()))
    assert refused_reason(issue_certificate(OTHER_LS_KEY, other)) == "wrong-issuer"


def test_signed_by_another_key_claiming_the_pinned_issuer_is_forged() -> None:
    claimed = encode_record(body())
    signature = OTHER_LS_KEY.sign(b"hopline certificate v1\x00" + claimed)
    data = encode_record(SignedBlob(body=claimed, signature=signature))
    assert refused_reason(data) == "forged"


def test_expired_certificate() -> None:
    data = issue_certificate(LS_KEY, body(expires_at=NOW - 1))
    assert refused_reason(data) == "expired"


def test_not_yet_valid_certificate() -> None:
    data = issue_certificate(LS_KEY, body(issued_at=NOW + 3600, expires_at=NOW + 7200))
    assert refused_reason(data) == "not-yet-valid"


def test_revoked_certificate() -> None:
    v = verifier()
    assert v.update_revocations(issue_revocation_list(LS_KEY, [3, 7], NOW))
    assert refused_reason(issue_certificate(LS_KEY, body()), v) == "revoked"


def test_older_revocation_list_is_ignored_and_foreign_one_refused() -> None:
    v = verifier()
    v.update_revocations(issue_revocation_list(LS_KEY, [7], NOW))
    assert not v.update_revocations(issue_revocation_list(LS_KEY, [], NOW - 10))
    assert v.revoked == {7}
    with pytest.raises(CertificateError, match="wrong-issuer"):
        v.update_revocations(issue_revocation_list(OTHER_LS_KEY, [], NOW + 10))


def test_wrong_role_certificate() -> None:
    data = issue_certificate(LS_KEY, body())
    assert refused_reason(data, role=Role.SUPERNODE) == "wrong-role"


def test_wrong_name_certificate() -> None:
    data = issue_certificate(LS_KEY, body())
    assert refused_reason(data, subject="bob") == "wrong-name"


def test_certificate_for_another_static_key() -> None:
    data = issue_certificate(LS_KEY, body())
    assert refused_reason(data, static_key=bytes(32)) == "wrong-key"


def test_unknown_version() -> None:
    assert refused_reason(issue_certificate(LS_KEY, body(version=2))) == "bad-version"


def test_issuer_must_match_the_signing_key() -> None:
    with pytest.raises(ValueError, match="issuer"):
        issue_certificate(OTHER_LS_KEY, body())


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_garbage_is_refused_as_malformed_or_forged(data: bytes) -> None:
    v = verifier()
    with pytest.raises(CertificateError) as caught:
        v.verify(data, NOW)
    assert caught.value.reason in {"malformed", "wrong-issuer", "forged"}


@given(st.integers(0, 10_000), st.integers(0, 7))
@settings(max_examples=300)
def test_any_single_bit_flip_is_refused(position: int, bit: int) -> None:
    data = bytearray(issue_certificate(LS_KEY, body()))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(CertificateError):
        verifier().verify(bytes(data), NOW)
