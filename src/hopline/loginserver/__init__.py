"""The login server's core: accounts, certificates, throttling, enrollment.

No networking lives here: the runtime decodes a request from a secure
session and calls :func:`handle`, which returns the reply message. The parts:

* :mod:`~hopline.loginserver.db` — :class:`Database`, SQLAlchemy 2 asyncio
  Core over SQLite (``sqlite:///path``, the default) or PostgreSQL
  (``postgresql://...``) with the same code; the schema is created on first
  start and migrated by an ordered list of versioned steps.
* :mod:`~hopline.loginserver.passwords` — Argon2id hashing at a documented
  cost, and the password policy.
* :mod:`~hopline.loginserver.throttle` — sans-I/O throttling of failed logins
  per account and per source address, decaying, with bounded memory.
* :mod:`~hopline.loginserver.service` — :class:`LoginService`: register, log
  in (certificate issue), renew, change password, delete, log out, the signed
  revocation list, supernode enrollment tokens and bootstrap addresses; its
  refusals are :class:`LoginError` subclasses carrying an ``ErrorCode``.
* :mod:`~hopline.loginserver.handler` — :func:`handle`: wire requests to
  service calls and reply (or ``ErrorReply``) messages.

Typical use::

    db = await Database.open("sqlite:///data/accounts.sqlite3")
    service = LoginService(db, signing_key)          # the LS's Ed25519PrivateKey
    reply = await handle(service, request, PeerInfo("203.0.113.7:4000", session_key))
"""

from hopline.loginserver.db import (
    MIGRATIONS,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    Migration,
    SchemaTooNew,
    UnsupportedDatabaseURL,
    async_database_url,
)
from hopline.loginserver.handler import PeerInfo, handle
from hopline.loginserver.passwords import (
    PRODUCTION_COST,
    TEST_COST,
    Argon2Cost,
    PasswordHasher,
    PasswordPolicyError,
    check_password_policy,
)
from hopline.loginserver.service import (
    BadRequest,
    BadUsername,
    Conflict,
    EnrolledSupernode,
    Forbidden,
    IssuedCertificate,
    LoginError,
    LoginService,
    LoginServiceConfig,
    NotFound,
    Profile,
    SignedRevocations,
    Throttled,
    Unauthorized,
    UsernameTaken,
    WeakPassword,
    WrongCredentials,
    supernode_identity,
)
from hopline.loginserver.throttle import BackoffPolicy, BackoffThrottle, LoginThrottle

__all__ = [
    "MIGRATIONS",
    "PRODUCTION_COST",
    "TEST_COST",
    "Argon2Cost",
    "BackoffPolicy",
    "BackoffThrottle",
    "BadRequest",
    "BadUsername",
    "Conflict",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "EnrolledSupernode",
    "Forbidden",
    "IssuedCertificate",
    "LoginError",
    "LoginService",
    "LoginServiceConfig",
    "LoginThrottle",
    "Migration",
    "NotFound",
    "PasswordHasher",
    "PasswordPolicyError",
    "PeerInfo",
    "Profile",
    "SchemaTooNew",
    "SignedRevocations",
    "Throttled",
    "Unauthorized",
    "UnsupportedDatabaseURL",
    "UsernameTaken",
    "WeakPassword",
    "WrongCredentials",
    "async_database_url",
    "check_password_policy",
    "handle",
    "supernode_identity",
]
