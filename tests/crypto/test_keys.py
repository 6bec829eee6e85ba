"""Identity keys: 0600 key files, refusal of lax permissions, fingerprints, signatures."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.crypto import (
    DHKeyPair,
    IdentityKeys,
    KeyFileError,
    SignatureError,
    SigningKeyPair,
    fingerprint,
    verify_signature,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """Make sure the 0600 mode does not come from a friendly umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_save_creates_0600_file_and_round_trips(tmp_path: Path, lax_umask: None) -> None:
    keys = IdentityKeys.generate()
    path = tmp_path / "node.key"
    keys.save(path)
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["node.key"]  # no temporary file left behind
    loaded = IdentityKeys.load(path)
    assert loaded.public == keys.public
    assert loaded.static.private_bytes() == keys.static.private_bytes()
    assert loaded.static.dh(keys.static.public) == keys.static.dh(keys.static.public)
    text = path.read_bytes()
    assert text.count(b"-----BEGIN PRIVATE KEY-----") == 2


@posix_only
@pytest.mark.parametrize("lax", [0o640, 0o604, 0o660, 0o644, 0o610, 0o602, 0o620])
def test_load_refuses_group_or_world_access(tmp_path: Path, lax: int) -> None:
    path = tmp_path / "node.key"
    IdentityKeys.generate().save(path)
    os.chmod(path, lax)
    with pytest.raises(KeyFileError) as info:
        IdentityKeys.load(path)
    assert info.value.reason == "insecure_permissions"
    assert "chmod 600" in str(info.value) and str(path) in str(info.value)
    os.chmod(path, 0o400)  # owner read-only is fine
    IdentityKeys.load(path)


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, second = IdentityKeys.generate(), IdentityKeys.generate()
    first.save(path)
    with pytest.raises(KeyFileError) as info:
        second.save(path)
    assert info.value.reason == "exists"
    assert IdentityKeys.load(path).public == first.public
    second.save(path, overwrite=True)
    assert IdentityKeys.load(path).public == second.public
    if os.name == "posix":
        assert mode(path) == 0o600


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        IdentityKeys.generate().save(tmp_path / "missing" / "node.key")
    assert info.value.reason == "unwritable"


def test_password_protected_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    keys = IdentityKeys.generate()
    keys.save(path, password=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert IdentityKeys.load(path, password=b"correct horse").public == keys.public
    with pytest.raises(KeyFileError):
        IdentityKeys.load(path, password=b"wrong")
    with pytest.raises(KeyFileError) as info:
        IdentityKeys.load(path)
    assert info.value.reason == "bad_password"


def write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def test_malformed_files(tmp_path: Path) -> None:
    keys = IdentityKeys.generate()
    pem = keys.to_pem()
    cases = {
        "empty": b"",
        "garbage": b"hello",
        "one key only": pem[: pem.index(b"-----END PRIVATE KEY-----") + 25],
        "duplicate": pem + pem[pem.index(b"-----BEGIN") :],
        "corrupt base64": pem.replace(b"MC4CAQAw", b"MC4CAQA!", 1),
    }
    for name, data in cases.items():
        path = tmp_path / name.replace(" ", "_")
        write_private(path, data)
        with pytest.raises(KeyFileError) as info:
            IdentityKeys.load(path)
        assert info.value.reason == "bad_format", name


def test_missing_and_non_regular(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        IdentityKeys.load(tmp_path / "absent.key")
    assert info.value.reason == "not_found"
    if os.name == "posix":
        directory = tmp_path / "dir"
        directory.mkdir(mode=0o700)
        with pytest.raises(KeyFileError) as info:
            IdentityKeys.load(directory)
        assert info.value.reason == "not_regular_file"


def test_fingerprints() -> None:
    keys = IdentityKeys.generate()
    other = IdentityKeys.generate()
    shape = re.compile(r"^([a-z2-7]{4}-){7}[a-z2-7]{4}$")
    fp = keys.public.fingerprint
    assert shape.match(fp), fp
    assert shape.match(keys.public.signing_fingerprint)
    assert fp == fingerprint(keys.static.public) == fingerprint(keys.static.public, "x25519")
    assert fp != other.public.fingerprint
    assert fingerprint(keys.static.public, "ed25519") != fp  # kinds are domain-separated
    assert fingerprint(bytes(32)) == fingerprint(bytes(32))


def test_secrets_never_in_repr() -> None:
    keys = IdentityKeys.generate()
    secrets = [
        keys.static.private_bytes().hex(),
        keys.signing.private_key.private_bytes_raw().hex(),
    ]
    for text in (repr(keys), repr(keys.static), repr(keys.signing), str(keys)):
        for secret in secrets:
            assert secret not in text
            assert secret[:16] not in text


def test_sign_and_verify() -> None:
    signer = SigningKeyPair.generate()
    signature = signer.sign(b"certificate body")
    verify_signature(signer.public, signature, b"certificate body")
    with pytest.raises(SignatureError):
        verify_signature(signer.public, signature, b"certificate bodY")
    with pytest.raises(SignatureError):
        verify_signature(SigningKeyPair.generate().public, signature, b"certificate body")
    with pytest.raises(SignatureError):
        verify_signature(b"short", signature, b"certificate body")


def test_raw_key_constructors() -> None:
    seed = bytes(range(32))
    assert (
        SigningKeyPair.from_private_bytes(seed).public
        == SigningKeyPair.from_private_bytes(seed).public
    )
    assert DHKeyPair.from_private_bytes(seed).private_bytes() == seed
    with pytest.raises(Exception, match="32 bytes"):
        DHKeyPair.from_private_bytes(b"short")
