"""Typed errors for the secure-session core.

The family is split the way h11 splits its protocol errors:

* :class:`LocalCryptoError` -- *our* code misused the API (sealing before the
  handshake finished, a handshake message written out of turn, a missing key,
  an exhausted nonce space, an unsupported protocol name, an unsafe key file).
  These are bugs or configuration problems; they are never caused by bytes
  that arrived from the network.
* :class:`RemoteCryptoError` -- the *peer* (or someone on the path) sent bytes
  we refuse: a malformed or unauthenticated handshake message
  (:class:`HandshakeError`), a transport packet that is truncated or fails
  authentication (:class:`DecryptError`), or one that was already received or
  is older than the replay window (:class:`ReplayError`), or a signature
  that does not verify (:class:`SignatureError`). Callers normally
  drop the datagram and bump a counter keyed on :attr:`CryptoError.reason`.

Every error carries a short, stable, machine-friendly ``reason`` string
(``"auth_failed"``, ``"replayed"``, ``"too_old"``...) suitable as a metrics
label. Messages never contain key material.
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecryptError",
    "HandshakeError",
    "KeyFileError",
    "LocalCryptoError",
    "NonceExhaustedError",
    "RemoteCryptoError",
    "ReplayError",
    "SessionStateError",
    "SignatureError",
    "UnsupportedProtocolError",
]


class CryptoError(Exception):
    """Base class of every error raised by :mod:`hopline.crypto`.

    ``reason`` is a short identifier for counting; ``str(err)`` is for humans.
    """

    default_reason = "crypto_error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        self.reason: str = reason if reason is not None else self.default_reason
        super().__init__(message or self.reason)


class LocalCryptoError(CryptoError):
    """The local application misused the API or is misconfigured."""

    default_reason = "local_error"


class RemoteCryptoError(CryptoError):
    """Bytes received from the network were rejected; drop them and count."""

    default_reason = "remote_error"


# -- local -------------------------------------------------------------------


class SessionStateError(LocalCryptoError):
    """An operation was attempted in the wrong state (e.g. seal before handshake)."""

    default_reason = "wrong_state"


class UnsupportedProtocolError(LocalCryptoError):
    """A Noise protocol name could not be parsed or names an unsupported primitive."""

    default_reason = "unsupported_protocol"


class NonceExhaustedError(LocalCryptoError):
    """A cipher state ran out of nonces; the session must be re-established."""

    default_reason = "nonce_exhausted"


class KeyFileError(LocalCryptoError):
    """A key file is missing, malformed, or has unsafe permissions."""

    default_reason = "bad_key_file"


# -- remote ------------------------------------------------------------------


class HandshakeError(RemoteCryptoError):
    """A handshake message was malformed or failed authentication."""

    default_reason = "handshake_failed"


class DecryptError(RemoteCryptoError):
    """A transport packet was truncated, malformed, or failed authentication."""

    default_reason = "auth_failed"


class SignatureError(RemoteCryptoError):
    """A signature did not verify under the claimed public key."""

    default_reason = "bad_signature"


class ReplayError(RemoteCryptoError):
    """A transport packet was already received or is older than the replay window."""

    default_reason = "replayed"
