"""Hopline's cryptographic core: identities and secure sessions, sans-I/O.

Every Hopline link -- client <-> login server, client <-> supernode,
supernode <-> supernode, peer <-> peer -- is a :class:`SecureSession`: a Noise
handshake (``XX``, or ``IK`` when the responder's static key is known) over
X25519, ChaCha20-Poly1305 or AES-GCM and BLAKE2s/BLAKE2b/SHA-256, followed by
datagram transport with explicit nonces, header protection, a sliding replay
window and periodic rekeying.

Layers, bottom up (nothing here does I/O or reads a clock):

* :mod:`hopline.crypto.noise` -- the Noise framework's CipherState,
  SymmetricState and HandshakeState (spec rev 34) over ``cryptography``.
* :mod:`hopline.crypto.replay` -- the anti-replay window.
* :mod:`hopline.crypto.session` -- :class:`SecureSession` and its packet format.
* :mod:`hopline.crypto.keys` -- identity key pairs, 0600 key files, fingerprints.
* :mod:`hopline.crypto.errors` -- the error family, split local/remote like h11.

Only primitives from :mod:`cryptography` are used; nothing is home-made below
the level of the Noise state machines.
"""

from hopline.crypto.errors import (
    CryptoError,
    DecryptError,
    HandshakeError,
    KeyFileError,
    LocalCryptoError,
    NonceExhaustedError,
    RemoteCryptoError,
    ReplayError,
    SessionStateError,
    SignatureError,
    UnsupportedProtocolError,
)
from hopline.crypto.keys import (
    IdentityKeys,
    PublicIdentity,
    SigningKeyPair,
    fingerprint,
    verify_signature,
)
from hopline.crypto.noise import (
    CipherState,
    DHKeyPair,
    HandshakeState,
    NoiseProtocol,
    SymmetricState,
)
from hopline.crypto.replay import ReplayWindow
from hopline.crypto.session import (
    OVERHEAD,
    HandshakeResult,
    SecureSession,
    SessionConfig,
)

__all__ = [
    "OVERHEAD",
    "CipherState",
    "CryptoError",
    "DHKeyPair",
    "DecryptError",
    "HandshakeError",
    "HandshakeResult",
    "HandshakeState",
    "IdentityKeys",
    "KeyFileError",
    "LocalCryptoError",
    "NoiseProtocol",
    "NonceExhaustedError",
    "PublicIdentity",
    "RemoteCryptoError",
    "ReplayError",
    "ReplayWindow",
    "SecureSession",
    "SessionConfig",
    "SessionStateError",
    "SignatureError",
    "SigningKeyPair",
    "SymmetricState",
    "UnsupportedProtocolError",
    "fingerprint",
    "verify_signature",
]
