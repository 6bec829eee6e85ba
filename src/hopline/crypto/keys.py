"""Identity key material for devices, supernodes and login servers.

An identity is two key pairs:

* an X25519 *static* key pair (:class:`~hopline.crypto.noise.DHKeyPair`) --
  the ``s`` of every Noise handshake the node takes part in;
* an Ed25519 *signing* key pair (:class:`SigningKeyPair`) -- for certificates
  and other signed statements.

Key files
---------
:meth:`IdentityKeys.save` writes both private keys as standard PKCS#8 PEM
blocks (optionally passphrase-encrypted; readable by ``openssl pkey``) to a
file created with mode ``0600``. Writing goes through a temporary file in the
same directory and an atomic rename, so a crash never leaves half a key.
:meth:`IdentityKeys.load` refuses, with :class:`KeyFileError` reason
``"insecure_permissions"``, a file that its group or others may read or
write (checked with ``fstat`` on the opened descriptor, so there is no race
between the check and the read), like OpenSSH does for ``id_*`` files.

Fingerprints
------------
:func:`fingerprint` turns a public key into a short string for humans:
the first 160 bits of ``BLAKE2b-512("hopline fingerprint v1" || 0 || kind
|| 0 || key)``, base32 (RFC 4648, lowercase) in groups of four characters,
e.g. ``mfrg-gzdf-...`` (8 groups). ``kind`` (``"x25519"``/``"ed25519"``)
keeps the two key types' fingerprints apart.

``repr()`` of any key object never includes private material.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hopline.crypto.errors import KeyFileError, LocalCryptoError, SignatureError
from hopline.crypto.noise import DHKeyPair

__all__ = [
    "IdentityKeys",
    "KeyKind",
    "check_private_permissions",
    "PublicIdentity",
    "SigningKeyPair",
    "fingerprint",
    "verify_signature",
]

KeyKind = Literal["x25519", "ed25519"]
KEY_FILE_MODE: Final = 0o600
MAX_KEY_FILE_SIZE: Final = 64 * 1024
FINGERPRINT_BYTES: Final = 20
_FINGERPRINT_DOMAIN: Final = b"hopline fingerprint v1"
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)
_FILE_COMMENT: Final = b"# Hopline identity keys (X25519 static, Ed25519 signing). Keep private.\n"


class SigningKeyPair:
    """An Ed25519 key pair. ``repr()`` shows only a prefix of the public key."""

    __slots__ = ("_private", "public")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> SigningKeyPair:
        """A fresh random key pair."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> SigningKeyPair:
        """Load a raw 32-byte Ed25519 seed."""
        if len(data) != 32:
            raise LocalCryptoError("Ed25519 private key must be 32 bytes", reason="bad_key")
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The underlying ``cryptography`` private key object."""
        return self._private

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"SigningKeyPair(public={self.public.hex()[:16]}...)"


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> None:
    """Verify an Ed25519 signature; raise :class:`SignatureError` if it is not valid."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("Ed25519 signature does not verify") from exc


def fingerprint(public_key: bytes, kind: KeyKind = "x25519") -> str:
    """Human-readable fingerprint of a 32-byte public key (see module docs)."""
    if len(public_key) != 32:
        raise LocalCryptoError("public keys are 32 bytes", reason="bad_key")
    digest = hashes.Hash(hashes.BLAKE2b(64))
    digest.update(_FINGERPRINT_DOMAIN + b"\x00" + kind.encode("ascii") + b"\x00" + public_key)
    text = base64.b32encode(digest.finalize()[:FINGERPRINT_BYTES]).decode("ascii").lower()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """The public half of an identity: what peers and certificates carry."""

    static: bytes
    signing: bytes

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the static (Noise) key -- what a peer sees in handshakes."""
        return fingerprint(self.static, "x25519")

    @property
    def signing_fingerprint(self) -> str:
        """Fingerprint of the Ed25519 signing key."""
        return fingerprint(self.signing, "ed25519")


@dataclass(frozen=True, slots=True)
class IdentityKeys:
    """A node's private identity: X25519 static + Ed25519 signing key pairs."""

    static: DHKeyPair
    signing: SigningKeyPair

    @classmethod
    def generate(cls) -> IdentityKeys:
        """A fresh identity."""
        return cls(DHKeyPair.generate(), SigningKeyPair.generate())

    @property
    def public(self) -> PublicIdentity:
        """The public keys."""
        return PublicIdentity(self.static.public, self.signing.public)

    def to_pem(self, password: bytes | None = None) -> bytes:
        """Both private keys as PKCS#8 PEM (encrypted if ``password`` is given)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        blocks = [
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
            for key in (self.static.private_key, self.signing.private_key)
        ]
        return _FILE_COMMENT + b"".join(blocks)

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> IdentityKeys:
        """Parse :meth:`to_pem` output; raises :class:`KeyFileError` on any problem."""
        static: DHKeyPair | None = None
        signing: SigningKeyPair | None = None
        for block in _PEM_BLOCK.finditer(data):
            key = _load_pem_key(block.group(0), password)
            if isinstance(key, X25519PrivateKey) and static is None:
                static = DHKeyPair(key)
            elif isinstance(key, Ed25519PrivateKey) and signing is None:
                signing = SigningKeyPair(key)
            else:
                raise KeyFileError("unexpected or duplicate key in key file", reason="bad_format")
        if static is None or signing is None:
            raise KeyFileError("key file needs one X25519 and one Ed25519 key", reason="bad_format")
        return cls(static, signing)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        password: bytes | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write the key file with mode 0600 (atomically; refuses to overwrite by default)."""
        _write_private_file(Path(path), self.to_pem(password), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, password: bytes | None = None) -> IdentityKeys:
        """Read a key file, refusing one that group or others can access."""
        return cls.from_pem(_read_private_file(Path(path)), password)

    def __repr__(self) -> str:
        return f"IdentityKeys(fingerprint={self.public.fingerprint})"


# -- PEM -------------------------------------------------------------------------------


def _load_pem_key(block: bytes, password: bytes | None) -> object:
    try:
        return serialization.load_pem_private_key(block, password)
    except TypeError as exc:  # password missing for an encrypted key, or given for a plain one
        raise KeyFileError(f"key file password problem: {exc}", reason="bad_password") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            "key file is corrupt or the password is wrong", reason="bad_format"
        ) from exc


# -- files -----------------------------------------------------------------------------


def check_private_permissions(path: Path, st: os.stat_result) -> None:
    """Raise :class:`KeyFileError` unless ``st`` is a regular file private to its owner."""
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path} is not a regular file", reason="not_regular_file")
    if os.name == "posix" and st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise KeyFileError(
            f"refusing to load {path}: mode {mode:#o} lets group/others access the private key; "
            f"run 'chmod 600 {path}'",
            reason="insecure_permissions",
        )


def _read_private_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} does not exist", reason="not_found") from exc
    except OSError as exc:
        raise KeyFileError(
            f"cannot open key file {path}: {exc.strerror}", reason="unreadable"
        ) from exc
    try:
        check_private_permissions(path, os.fstat(fd))  # the file we read, not a path lookup
        data = _read_at_most(fd, MAX_KEY_FILE_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError(f"key file {path} is too large", reason="bad_format")
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    if not overwrite and path.exists():
        raise KeyFileError(f"{path} already exists", reason="exists")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except OSError as exc:
        message = f"cannot create key file in {path.parent}: {exc.strerror}"
        raise KeyFileError(message, reason="unwritable") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            if os.name == "posix":
                os.fchmod(handle.fileno(), KEY_FILE_MODE)  # independent of the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temporary, path, overwrite=overwrite)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _publish(temporary: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished file into place; without ``overwrite`` never clobber a file."""
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)  # fails if ``path`` appeared meanwhile
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists", reason="exists") from exc
    temporary.unlink()
