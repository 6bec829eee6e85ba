"""Identity: who is who on a Hopline network.

* :mod:`~hopline.identity.names` — username rules (3-32 of ``a-z 0-9 . _ -``,
  case-insensitive).
* :mod:`~hopline.identity.certificate` — certificates the login server signs
  with its Ed25519 key, binding a user (or supernode) and device to keys, and
  the signed revocation list; :class:`CertificateVerifier` checks them against
  the pinned login-server key and counts every refusal by reason.
"""

from hopline.identity.certificate import (
    Certificate,
    CertificateBody,
    CertificateError,
    CertificateVerifier,
    RevocationList,
    Role,
    issue_certificate,
    issue_revocation_list,
    parse_certificate,
    verify_revocation_list,
)
from hopline.identity.names import InvalidUsername, canonical_username

__all__ = [
    "Certificate",
    "CertificateBody",
    "CertificateError",
    "CertificateVerifier",
    "InvalidUsername",
    "RevocationList",
    "Role",
    "canonical_username",
    "issue_certificate",
    "issue_revocation_list",
    "parse_certificate",
    "verify_revocation_list",
]
