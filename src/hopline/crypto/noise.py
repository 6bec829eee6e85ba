"""The Noise Protocol Framework (revision 34) as sans-I/O state machines.

Only the framework's *state machines* are implemented here; every primitive
comes from :mod:`cryptography`:

======================  =====================================================
Noise function          provided by
======================  =====================================================
DH ``25519``            ``X25519PrivateKey`` / ``X25519PublicKey``
cipher ``ChaChaPoly``   ``ChaCha20Poly1305`` (nonce: 4 zero bytes + LE64 n)
cipher ``AESGCM``       ``AESGCM`` (nonce: 4 zero bytes + BE64 n)
hashes                  ``hashes.SHA256/SHA512/BLAKE2s(32)/BLAKE2b(64)``
``HMAC-HASH``/``HKDF``  ``hmac.HMAC`` composed exactly as spec section 4.3
======================  =====================================================

Structure follows the specification one-to-one:

* :class:`CipherState` (section 5.1) -- key ``k`` and implicit nonce ``n``,
  plus :meth:`CipherState.encrypt_with_nonce` / :meth:`CipherState.decrypt_with_nonce`
  for transports that carry the nonce explicitly (lossy, reordering datagrams),
  and ``Rekey()`` (section 11.3).
* :class:`SymmetricState` (section 5.2) -- ``ck``, ``h`` and the handshake cipher.
* :class:`HandshakeState` (section 5.3) -- pattern-driven message processing.

Handshake patterns are plain data (:data:`PATTERNS`): tuples of tokens per
pre-message and message, so adding a fundamental pattern is one line.
Implemented: NN, NK, XK, XX, IK. PSK modifiers and fallback are not.

Sans-I/O: :meth:`HandshakeState.write_message` returns bytes to send and
:meth:`HandshakeState.read_message` consumes received bytes; nothing here
touches sockets or clocks. ``read_message`` is *atomic*: if a message is
rejected, the handshake state is exactly as before, so one spoofed datagram
cannot kill a handshake in progress.

Secrets are never part of ``repr()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from hopline.crypto.errors import (
    DecryptError,
    HandshakeError,
    LocalCryptoError,
    NonceExhaustedError,
    SessionStateError,
    UnsupportedProtocolError,
)

__all__ = [
    "AEAD",
    "CIPHERS",
    "DHLEN",
    "HASHES",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "PATTERNS",
    "TAG_LEN",
    "Checkpoint",
    "CipherFunction",
    "CipherState",
    "DHKeyPair",
    "HandshakePattern",
    "HandshakeState",
    "HashFunction",
    "NoiseProtocol",
    "SymmetricState",
]

MAX_MESSAGE_LEN: Final = 65535
"""Largest Noise message, handshake or transport (spec section 3)."""
MAX_NONCE: Final = 2**64 - 1
"""Reserved nonce value: never used for messages, used by ``REKEY``."""
TAG_LEN: Final = 16
DHLEN: Final = 32
KEYLEN: Final = 32

# -- DH 25519 -----------------------------------------------------------------


class DHKeyPair:
    """An X25519 key pair. ``repr()`` shows only a prefix of the public key."""

    __slots__ = ("_private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> DHKeyPair:
        """GENERATE_KEYPAIR(): a fresh random key pair."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> DHKeyPair:
        """Load a raw 32-byte X25519 private key."""
        if len(data) != DHLEN:
            raise LocalCryptoError("X25519 private key must be 32 bytes", reason="bad_key")
        return cls(X25519PrivateKey.from_private_bytes(data))

    @property
    def private_key(self) -> X25519PrivateKey:
        """The underlying ``cryptography`` private key object."""
        return self._private

    def private_bytes(self) -> bytes:
        """The raw private scalar. Handle with care: this is the secret."""
        return self._private.private_bytes_raw()

    def dh(self, public: bytes) -> bytes:
        """DH(key_pair, public_key); rejects malformed or low-order public keys."""
        try:
            peer = X25519PublicKey.from_public_bytes(public)
            return self._private.exchange(peer)
        except ValueError as exc:
            raise HandshakeError("invalid X25519 public key", reason="bad_public_key") from exc

    def __repr__(self) -> str:
        return f"DHKeyPair(public={self.public.hex()[:16]}...)"


# -- cipher functions -----------------------------------------------------------


class AEAD(Protocol):
    """The shape shared by ``ChaCha20Poly1305`` and ``AESGCM``."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None, /) -> bytes:
        """Encrypt and authenticate."""

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None, /) -> bytes:
        """Verify and decrypt; raises ``InvalidTag``."""


_NONCE_PAD: Final = bytes(4)


@dataclass(frozen=True, slots=True)
class CipherFunction:
    """A Noise cipher: its name, nonce byte order, and AEAD constructor."""

    name: str
    byteorder: Literal["little", "big"]
    factory: Callable[[bytes], AEAD]

    def nonce(self, n: int) -> bytes:
        """The 96-bit AEAD nonce for counter ``n``: 4 zero bytes + 64-bit n."""
        return _NONCE_PAD + n.to_bytes(8, self.byteorder)

    def new(self, key: bytes) -> AEAD:
        """A keyed AEAD object (constructed once per key, reused per message)."""
        return self.factory(key)

    def rekey(self, key: bytes) -> bytes:
        """REKEY(k) = first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros) (section 4.2)."""
        return self.new(key).encrypt(self.nonce(MAX_NONCE), bytes(KEYLEN), b"")[:KEYLEN]


CIPHERS: Final[Mapping[str, CipherFunction]] = MappingProxyType(
    {
        "ChaChaPoly": CipherFunction("ChaChaPoly", "little", ChaCha20Poly1305),
        "AESGCM": CipherFunction("AESGCM", "big", AESGCM),
    }
)


# -- hash functions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashFunction:
    """A Noise hash with HMAC and HKDF built from it (spec section 4.3)."""

    name: str
    hashlen: int
    algorithm: hashes.HashAlgorithm

    def hash(self, data: bytes) -> bytes:
        """HASH(data)."""
        h = hashes.Hash(self.algorithm)
        h.update(data)
        return h.finalize()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        """HMAC-HASH(key, data) per RFC 2104."""
        h = hmac.HMAC(key, self.algorithm)
        h.update(data)
        return h.finalize()

    def hkdf2(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        """HKDF(chaining_key, input_key_material, 2)."""
        temp_key = self.hmac(chaining_key, ikm)
        out1 = self.hmac(temp_key, b"\x01")
        return out1, self.hmac(temp_key, out1 + b"\x02")

    def hkdf3(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes, bytes]:
        """HKDF(chaining_key, input_key_material, 3)."""
        temp_key = self.hmac(chaining_key, ikm)
        out1 = self.hmac(temp_key, b"\x01")
        out2 = self.hmac(temp_key, out1 + b"\x02")
        return out1, out2, self.hmac(temp_key, out2 + b"\x03")


HASHES: Final[Mapping[str, HashFunction]] = MappingProxyType(
    {
        "SHA256": HashFunction("SHA256", 32, hashes.SHA256()),
        "SHA512": HashFunction("SHA512", 64, hashes.SHA512()),
        "BLAKE2s": HashFunction("BLAKE2s", 32, hashes.BLAKE2s(32)),
        "BLAKE2b": HashFunction("BLAKE2b", 64, hashes.BLAKE2b(64)),
    }
)


# -- handshake patterns -----------------------------------------------------------

Token = Literal["e", "s", "ee", "es", "se", "ss"]


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A handshake pattern as data: pre-message tokens and per-message tokens.

    Messages alternate initiator -> responder -> initiator ...
    """

    name: str
    initiator_pre: tuple[Token, ...]
    responder_pre: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]

    def writes_static(self, initiator: bool) -> bool:
        """Whether the given role needs a local static key pair ``s``."""
        pre = self.initiator_pre if initiator else self.responder_pre
        mine = self.messages[0 if initiator else 1 :: 2]
        return "s" in pre or any("s" in message for message in mine)

    def knows_remote_static(self, initiator: bool) -> bool:
        """Whether the given role must know the peer's static key in advance."""
        return "s" in (self.responder_pre if initiator else self.initiator_pre)


_PATTERN_LIST: Final = (
    HandshakePattern("NN", (), (), (("e",), ("e", "ee"))),
    HandshakePattern("NK", (), ("s",), (("e", "es"), ("e", "ee"))),
    HandshakePattern("XK", (), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    HandshakePattern("XX", (), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    HandshakePattern("IK", (), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
)
PATTERNS: Final[Mapping[str, HandshakePattern]] = MappingProxyType(
    {pattern.name: pattern for pattern in _PATTERN_LIST}
)


# -- protocol names ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoiseProtocol:
    """A parsed protocol name such as ``Noise_XX_25519_ChaChaPoly_BLAKE2s``."""

    name: str
    pattern: HandshakePattern
    cipher: CipherFunction
    hash: HashFunction

    @classmethod
    def parse(cls, name: str | bytes) -> NoiseProtocol:
        """Parse and validate a protocol name; raises :class:`UnsupportedProtocolError`."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return _parse_protocol(text)


@functools.lru_cache(maxsize=64)
def _parse_protocol(name: str) -> NoiseProtocol:
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise UnsupportedProtocolError(f"not a Noise protocol name: {name!r}")
    _, pattern, dh, cipher, hash_name = parts
    if pattern not in PATTERNS:
        raise UnsupportedProtocolError(f"unsupported handshake pattern {pattern!r}")
    if dh != "25519":
        raise UnsupportedProtocolError(f"unsupported DH function {dh!r}")
    if cipher not in CIPHERS:
        raise UnsupportedProtocolError(f"unsupported cipher {cipher!r}")
    if hash_name not in HASHES:
        raise UnsupportedProtocolError(f"unsupported hash {hash_name!r}")
    return NoiseProtocol(name, PATTERNS[pattern], CIPHERS[cipher], HASHES[hash_name])


# -- CipherState -------------------------------------------------------------------


class CipherState:
    """Noise CipherState: key ``k`` (or none) and nonce counter ``n``."""

    __slots__ = ("_aead", "_key", "cipher", "n")

    def __init__(self, cipher: CipherFunction, key: bytes | None = None) -> None:
        self.cipher = cipher
        self._key: bytes | None = None
        self._aead: AEAD | None = None
        self.n = 0
        self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        """InitializeKey(key): set ``k`` (``None`` = empty) and reset ``n`` to 0."""
        if key is not None and len(key) != KEYLEN:
            raise LocalCryptoError("cipher keys are 32 bytes", reason="bad_key")
        self._key = key
        self._aead = None if key is None else self.cipher.new(key)
        self.n = 0

    def has_key(self) -> bool:
        """HasKey()."""
        return self._key is not None

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(nonce)."""
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """EncryptWithAd: encrypt with nonce ``n`` then increment it (plaintext if no key)."""
        if self._aead is None:
            return plaintext
        ciphertext = self.encrypt_with_nonce(self.n, ad, plaintext)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """DecryptWithAd: on failure raise :class:`DecryptError` and leave ``n`` unchanged."""
        if self._aead is None:
            return ciphertext
        plaintext = self.decrypt_with_nonce(self.n, ad, ciphertext)
        self.n += 1
        return plaintext

    def encrypt_with_nonce(self, nonce: int, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, nonce, ad, plaintext) with an explicit nonce; ``n`` is untouched."""
        # once per datagram: the checks of _keyed() and _nonce() inline
        aead = self._aead
        if aead is None or not 0 <= nonce < MAX_NONCE:
            return self._keyed().encrypt(self._nonce(nonce), plaintext, ad)  # raises
        return aead.encrypt(_NONCE_PAD + nonce.to_bytes(8, self.cipher.byteorder), plaintext, ad)

    def decrypt_with_nonce(self, nonce: int, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, nonce, ad, ciphertext) with an explicit nonce; ``n`` is untouched."""
        aead = self._aead
        if aead is None or not 0 <= nonce < MAX_NONCE:
            aead, full = self._keyed(), self._nonce(nonce)  # raises
        else:
            full = _NONCE_PAD + nonce.to_bytes(8, self.cipher.byteorder)
        try:
            return aead.decrypt(full, ciphertext, ad)
        except InvalidTag as exc:
            raise DecryptError("authentication failed", reason="auth_failed") from exc

    def rekey(self) -> None:
        """Rekey(): ``k = REKEY(k)``; ``n`` is unchanged (spec section 11.3)."""
        if self._key is None:
            raise SessionStateError("cannot rekey an empty cipher state", reason="no_key")
        self._key = self.cipher.rekey(self._key)
        self._aead = self.cipher.new(self._key)

    def copy(self) -> CipherState:
        """An independent cipher state with the same key and nonce."""
        clone = CipherState(self.cipher, self._key)
        clone.n = self.n
        return clone

    def _keyed(self) -> AEAD:
        if self._aead is None:
            raise SessionStateError("cipher state has no key", reason="no_key")
        return self._aead

    def _nonce(self, nonce: int) -> bytes:
        if not 0 <= nonce < MAX_NONCE:
            raise NonceExhaustedError("nonce space exhausted")
        return self.cipher.nonce(nonce)

    def __repr__(self) -> str:
        keyed = "keyed" if self._key is not None else "empty"
        return f"CipherState({self.cipher.name}, {keyed}, n={self.n})"


# -- SymmetricState ----------------------------------------------------------------


class SymmetricState:
    """Noise SymmetricState: chaining key ``ck``, handshake hash ``h``, cipher state."""

    __slots__ = ("cipher_state", "ck", "h", "protocol")

    def __init__(self, protocol: NoiseProtocol) -> None:
        """InitializeSymmetric(protocol_name)."""
        self.protocol = protocol
        name = protocol.name.encode("ascii")
        hashlen = protocol.hash.hashlen
        if len(name) <= hashlen:
            self.h = name.ljust(hashlen, b"\x00")
        else:
            self.h = protocol.hash.hash(name)
        self.ck = self.h
        self.cipher_state = CipherState(protocol.cipher)

    def mix_key(self, input_key_material: bytes) -> None:
        """MixKey: ``ck, temp_k = HKDF(ck, ikm, 2)``; InitializeKey(temp_k[:32])."""
        self.ck, temp_k = self.protocol.hash.hkdf2(self.ck, input_key_material)
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        """MixHash: ``h = HASH(h || data)``."""
        self.h = self.protocol.hash.hash(self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        """MixKeyAndHash (used by PSK modes)."""
        self.ck, temp_h, temp_k = self.protocol.hash.hkdf3(self.ck, input_key_material)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def get_handshake_hash(self) -> bytes:
        """GetHandshakeHash(): ``h`` (for channel binding)."""
        return self.h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash: encrypt with ``ad=h`` then mix the ciphertext into ``h``."""
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash: decrypt with ``ad=h`` then mix the ciphertext into ``h``."""
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): (initiator->responder, responder->initiator) cipher states."""
        temp_k1, temp_k2 = self.protocol.hash.hkdf2(self.ck, b"")
        cipher = self.protocol.cipher
        return CipherState(cipher, temp_k1[:KEYLEN]), CipherState(cipher, temp_k2[:KEYLEN])

    def derive_keys(self, label: bytes) -> tuple[bytes, bytes]:
        """Hopline extension: ``HKDF(ck, label, 2)`` truncated to 32-byte keys.

        Split() uses ``HKDF(ck, zerolen, 2)``; any non-empty ``label`` gives
        outputs that are independent of the transport keys (different HMAC
        input under the same PRF key). Used for header-protection keys.
        """
        if not label:
            raise LocalCryptoError("derive_keys needs a non-empty label", reason="bad_label")
        out1, out2 = self.protocol.hash.hkdf2(self.ck, label)
        return out1[:KEYLEN], out2[:KEYLEN]


# -- HandshakeState ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Checkpoint:
    """Opaque snapshot of a :class:`HandshakeState` (see :meth:`HandshakeState.checkpoint`)."""

    ck: bytes
    h: bytes
    key: bytes | None
    n: int
    e: DHKeyPair | None
    rs: bytes | None
    re: bytes | None
    index: int

    def __repr__(self) -> str:
        return f"Checkpoint(index={self.index})"


class HandshakeState:
    """Noise HandshakeState driving one handshake pattern.

    ``s``/``e`` are local static/ephemeral key pairs, ``rs``/``re`` the remote
    public keys. Pass ``e`` only to reproduce test vectors (it is otherwise
    generated when the ``e`` token is written).
    """

    def __init__(
        self,
        protocol: NoiseProtocol | str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: DHKeyPair | None = None,
        e: DHKeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
    ) -> None:
        self.protocol = (
            protocol if isinstance(protocol, NoiseProtocol) else _parse_protocol(protocol)
        )
        self.initiator = initiator
        self.s, self.e = s, e
        self.rs = None if rs is None else bytes(rs)
        self.re = None if re is None else bytes(re)
        self._check_keys()
        self.symmetric = SymmetricState(self.protocol)
        self.symmetric.mix_hash(prologue)
        self._index = 0
        self._split_done = False
        self._mix_pre_messages()

    # -- public state ------------------------------------------------------------

    @property
    def message_index(self) -> int:
        """Number of handshake messages processed so far."""
        return self._index

    @property
    def is_complete(self) -> bool:
        """True once every message of the pattern was written or read."""
        return self._index >= len(self.protocol.pattern.messages)

    @property
    def is_my_turn(self) -> bool:
        """True if the next handshake message is ours to write."""
        return not self.is_complete and (self._index % 2 == 0) == self.initiator

    @property
    def handshake_hash(self) -> bytes:
        """The current handshake hash ``h`` (final once complete; use for channel binding)."""
        return self.symmetric.get_handshake_hash()

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once known."""
        return self.rs

    # -- messages ------------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage(payload): the next handshake message to send."""
        self._require_turn(mine=True)
        checkpoint = self.checkpoint()
        try:
            message = self._write_tokens() + self.symmetric.encrypt_and_hash(payload)
            if len(message) > MAX_MESSAGE_LEN:
                raise LocalCryptoError("handshake message too long", reason="too_long")
        except BaseException:
            self.rollback(checkpoint)
            raise
        self._index += 1
        return message

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage(message): process a received message and return its payload.

        Atomic: on :class:`HandshakeError` the state is unchanged.
        """
        self._require_turn(mine=False)
        message = bytes(message)  # accept any bytes-like object
        if len(message) > MAX_MESSAGE_LEN:
            raise HandshakeError("handshake message too long", reason="too_long")
        checkpoint = self.checkpoint()
        try:
            rest = self._read_tokens(message)
            payload = self.symmetric.decrypt_and_hash(rest)
        except DecryptError as exc:
            self.rollback(checkpoint)
            raise HandshakeError(
                "handshake message failed authentication", reason="auth_failed"
            ) from exc
        except BaseException:
            self.rollback(checkpoint)
            raise
        self._index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): (initiator->responder, responder->initiator); callable once."""
        if not self.is_complete:
            raise SessionStateError("handshake not complete", reason="handshake_incomplete")
        if self._split_done:
            raise SessionStateError("split() already called", reason="already_split")
        self._split_done = True
        return self.symmetric.split()

    def derive_keys(self, label: bytes) -> tuple[bytes, bytes]:
        """Extra key pair ``HKDF(ck, label, 2)`` from the final chaining key."""
        if not self.is_complete:
            raise SessionStateError("handshake not complete", reason="handshake_incomplete")
        return self.symmetric.derive_keys(label)

    def checkpoint(self) -> Checkpoint:
        """Snapshot the state, so a caller can :meth:`rollback` a message it rejects."""
        cs = self.symmetric.cipher_state
        return Checkpoint(
            self.symmetric.ck,
            self.symmetric.h,
            cs._key,
            cs.n,
            self.e,
            self.rs,
            self.re,
            self._index,
        )

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Restore a :meth:`checkpoint` (e.g. after rejecting the peer's static key)."""
        self.symmetric.ck, self.symmetric.h = checkpoint.ck, checkpoint.h
        self.symmetric.cipher_state.initialize_key(checkpoint.key)
        self.symmetric.cipher_state.n = checkpoint.n
        self.e, self.rs, self.re = checkpoint.e, checkpoint.rs, checkpoint.re
        self._index = checkpoint.index

    # -- internals -----------------------------------------------------------------

    def _check_keys(self) -> None:
        pattern = self.protocol.pattern
        if pattern.writes_static(self.initiator) and self.s is None:
            raise LocalCryptoError(f"{pattern.name} needs a local static key", reason="missing_key")
        if pattern.knows_remote_static(self.initiator) and self.rs is None:
            raise LocalCryptoError(
                f"{pattern.name} needs the remote static key", reason="missing_key"
            )
        for key in (self.rs, self.re):
            if key is not None and len(key) != DHLEN:
                raise LocalCryptoError("remote public keys are 32 bytes", reason="bad_key")

    def _mix_pre_messages(self) -> None:
        pattern = self.protocol.pattern
        for tokens, initiator_side in (
            (pattern.initiator_pre, True),
            (pattern.responder_pre, False),
        ):
            for tok in tokens:
                self.symmetric.mix_hash(self._pre_message_key(tok, initiator_side))

    def _pre_message_key(self, tok: Token, initiator_side: bool) -> bytes:
        local = initiator_side == self.initiator
        if tok == "s":
            key = (self.s.public if self.s else None) if local else self.rs
        elif tok == "e":
            key = (self.e.public if self.e else None) if local else self.re
        else:
            raise UnsupportedProtocolError(f"bad pre-message token {tok!r}")
        if key is None:
            raise LocalCryptoError(f"pre-message needs key {tok!r}", reason="missing_key")
        return key

    def _require_turn(self, *, mine: bool) -> None:
        if self.is_complete:
            raise SessionStateError("handshake already complete", reason="handshake_complete")
        if self.is_my_turn != mine:
            raise SessionStateError("not this side's turn", reason="out_of_turn")

    def _tokens(self) -> tuple[Token, ...]:
        return self.protocol.pattern.messages[self._index]

    def _write_tokens(self) -> bytes:
        out = bytearray()
        for tok in self._tokens():
            if tok == "e":
                if self.e is None:
                    self.e = DHKeyPair.generate()
                out += self.e.public
                self.symmetric.mix_hash(self.e.public)
            elif tok == "s":
                out += self.symmetric.encrypt_and_hash(self._local_static().public)
            else:
                self.symmetric.mix_key(self._dh_token(tok))
        return bytes(out)

    def _read_tokens(self, message: bytes) -> bytes:
        rest = message
        for tok in self._tokens():
            if tok == "e":
                self.re, rest = _take(rest, DHLEN)
                self.symmetric.mix_hash(self.re)
            elif tok == "s":
                if self.rs is not None:
                    raise HandshakeError("static key already known", reason="unexpected_static")
                size = DHLEN + (TAG_LEN if self.symmetric.cipher_state.has_key() else 0)
                encrypted, rest = _take(rest, size)
                self.rs = self.symmetric.decrypt_and_hash(encrypted)
            else:
                self.symmetric.mix_key(self._dh_token(tok))
        return rest

    def _dh_token(self, tok: Token) -> bytes:
        # token letters name (initiator key, responder key); map to (local, remote)
        first, second = tok[0], tok[1]
        local, remote = (first, second) if self.initiator else (second, first)
        return self._local(local).dh(self._remote(remote))

    def _local(self, which: str) -> DHKeyPair:
        key = self.e if which == "e" else self.s
        if key is None:
            raise LocalCryptoError(f"missing local key {which!r}", reason="missing_key")
        return key

    def _remote(self, which: str) -> bytes:
        key = self.re if which == "e" else self.rs
        if key is None:
            raise HandshakeError(f"missing remote key {which!r}", reason="missing_key")
        return key

    def _local_static(self) -> DHKeyPair:
        return self._local("s")

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return f"HandshakeState({self.protocol.name}, {role}, message={self._index})"


def _take(data: bytes, size: int) -> tuple[bytes, bytes]:
    if len(data) < size:
        raise HandshakeError("handshake message truncated", reason="truncated")
    return data[:size], data[size:]
