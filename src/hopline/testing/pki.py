"""A throwaway certificate authority for tests: :class:`TestAuthority`.

It plays the login server's signing role in memory, so tests of connections,
endpoints and services get real Ed25519-signed certificates without running a
login server.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hopline.crypto.noise import DHKeyPair
from hopline.identity import CertificateBody, CertificateVerifier, Role, issue_certificate
from hopline.identity.certificate import public_bytes


@dataclass
class Identity:
    """A node's static key pair and its certificate."""

    static: DHKeyPair
    certificate: bytes


class TestAuthority:
    """Issues certificates signed by a fresh Ed25519 key."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public = public_bytes(self.key.public_key())
        self._serials = itertools.count(1)

    def verifier(self) -> CertificateVerifier:
        """A verifier pinned to this authority."""
        return CertificateVerifier(self.public)

    def identity(
        self,
        role: Role,
        subject: str,
        *,
        now: float | None = None,
        lifetime: float = 86400.0,
        static: DHKeyPair | None = None,
    ) -> Identity:
        """A new static key and a certificate for it."""
        static = static or DHKeyPair.generate()
        issued = int(now if now is not None else time.time())
        body = CertificateBody(
            version=1,
            role=role,
            subject=subject,
            device_id=subject.encode()[:16].ljust(16, b"\0"),
            static_key=static.public,
            issued_at=issued,
            expires_at=issued + int(lifetime),
            serial=next(self._serials),
            issuer=self.public,
        )
        return Identity(static, issue_certificate(self.key, body))
