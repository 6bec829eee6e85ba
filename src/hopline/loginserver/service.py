"""The login service: accounts, certificates, revocations and supernode enrollment.

:class:`LoginService` is what the login server *does*, with no networking:
the request handler (:mod:`hopline.loginserver.handler`) calls it with
values taken from wire messages, and gets back results or a
:class:`LoginError` that carries an :class:`~hopline.wire.commands.ErrorCode`,
a message for people and, when throttled, ``retry_after_ms``.

Every method takes ``now`` (Unix seconds); if it is None, the injected
``clock`` (default :func:`time.time`) is asked.

* **Passwords** are Argon2id hashes (:mod:`~hopline.loginserver.passwords`).
  Hashing runs in a worker thread (:func:`asyncio.to_thread`), at most
  ``max_concurrent_hashes`` at once, so the event loop keeps serving and a
  burst of logins cannot exhaust memory. A login for an account that does
  not exist still verifies against a dummy hash and fails with the same
  "wrong username or password" (401), so neither the answer nor its timing
  tells whether the account exists. A hash made with older parameters is
  replaced after a successful login.
* **Throttling** (:mod:`~hopline.loginserver.throttle`): failed password
  checks are counted per account and per source address; while blocked,
  attempts are refused with 429 and ``retry_after_ms`` without checking the
  password. Registrations are counted per source address too.
* **Certificates** are signed with the login server's Ed25519 key (passed
  in) via :func:`~hopline.identity.certificate.issue_certificate`; the
  serial comes from the database row. Users get 24 h, supernodes 7 days
  (:class:`LoginServiceConfig`). Renewal needs a certificate that is ours,
  unexpired, not revoked, and whose static key the caller's secure session
  proved; it also works for supernodes, and refreshes their last-seen time.
* **Revocations**: logout revokes one serial, account deletion all of the
  account's. The signed revocation list holds the revoked serials that have
  not expired; it is cached and signed again only when that set changes,
  with a strictly increasing ``issued_at``.
* **Enrollment**: an operator makes a one-time token
  (:meth:`LoginService.create_enrollment_token`; only its SHA-256 hash is
  stored, so the database never holds a usable token); a supernode presents
  it with its keys and public address and gets its node id
  (``sn-`` + 16 hex digits of a hash of its static key) and certificate.
  Usernames starting with ``sn-`` are reserved for this.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import math
import os
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hopline.identity.certificate import (
    CERT_VERSION,
    CertificateBody,
    CertificateError,
    CertificateVerifier,
    Role,
    issue_certificate,
    issue_revocation_list,
    public_bytes,
)
from hopline.identity.names import InvalidUsername, canonical_username
from hopline.loginserver.db import (
    AccountRecord,
    Database,
    DuplicateAccount,
    NewCertificate,
    SupernodeRecord,
)
from hopline.loginserver.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordHasher,
    PasswordPolicyError,
    check_password_policy,
)
from hopline.loginserver.throttle import (
    REGISTRATION_POLICY,
    BackoffThrottle,
    LoginThrottle,
    address_key,
    to_milliseconds,
)
from hopline.wire.commands import ErrorCode
from hopline.wire.errors import BadValue
from hopline.wire.types import PUBKEY_SIZE, Address

log = logging.getLogger(__name__)

T = TypeVar("T")

SUPERNODE_PREFIX = "sn-"
MAX_DEVICE_ID = 64
MAX_TOKEN_LENGTH = 256
MAX_PROFILE_TEXT = 100
_SUPERNODE_ID_DOMAIN = b"hopline supernode id\x00"


# ---------------------------------------------------------------- errors


class LoginError(Exception):
    """A request the login server refuses: an error code, a message, maybe a wait."""

    def __init__(self, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.retry_after_ms = retry_after_ms


class _CodedError(LoginError):
    CODE: ClassVar[ErrorCode] = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(self.CODE, message, retry_after_ms)


class BadRequest(_CodedError):
    """400: the request itself is wrong (a field's value, a size)."""

    CODE = ErrorCode.BAD_REQUEST


class BadUsername(BadRequest):
    """400: not a valid username (or a reserved one)."""


class WeakPassword(BadRequest):
    """400: the new password breaks the password policy."""


class Unauthorized(_CodedError):
    """401: a credential (password, certificate, token) was not accepted."""

    CODE = ErrorCode.UNAUTHORIZED


class WrongCredentials(Unauthorized):
    """401: wrong username or password; never says which."""


class Forbidden(_CodedError):
    """403: authenticated, but not allowed (e.g. a key the session did not prove)."""

    CODE = ErrorCode.FORBIDDEN


class NotFound(_CodedError):
    """404: no such account."""

    CODE = ErrorCode.NOT_FOUND


class Conflict(_CodedError):
    """409: the request conflicts with the current state."""

    CODE = ErrorCode.CONFLICT


class UsernameTaken(Conflict):
    """409: an account with this username exists."""


class Throttled(_CodedError):
    """429: too many attempts; ``retry_after_ms`` says how long to wait."""

    CODE = ErrorCode.TOO_MANY_REQUESTS


# ---------------------------------------------------------------- values


def _default_hash_concurrency() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LoginServiceConfig:
    """Lifetimes and limits of the login service."""

    user_certificate_lifetime_s: int = 24 * 3600
    supernode_certificate_lifetime_s: int = 7 * 24 * 3600
    enrollment_token_ttl_s: float = 24 * 3600
    bootstrap_window_s: float = 24 * 3600  # supernodes seen this recently are offered
    bootstrap_limit: int = 32
    max_concurrent_hashes: int = _default_hash_concurrency()


class IssuedCertificate(NamedTuple):
    """A signed certificate and its expiry (Unix seconds)."""

    certificate: bytes
    expires_at: int


class EnrolledSupernode(NamedTuple):
    """A supernode's id, certificate and the certificate's expiry."""

    node_id: str
    certificate: bytes
    expires_at: int


class SignedRevocations(NamedTuple):
    """The signed revocation list and its ``issued_at``."""

    data: bytes
    issued_at: int


@dataclass(frozen=True)
class Profile:
    """An account's public profile."""

    username: str
    full_name: str | None
    city: str | None
    country: str | None
    language: str | None
    created_at: float

    @classmethod
    def of(cls, account: AccountRecord) -> Profile:
        """The public part of an account record."""
        return cls(
            username=account.username,
            full_name=account.full_name,
            city=account.city,
            country=account.country,
            language=account.language,
            created_at=account.created_at,
        )


def supernode_identity(static_key: bytes) -> tuple[str, bytes]:
    """The node id (``sn-`` + 16 hex digits) and device id a supernode key gets."""
    digest = hashlib.sha256(_SUPERNODE_ID_DOMAIN + static_key).digest()
    return SUPERNODE_PREFIX + digest[:8].hex(), digest[:16]


# ---------------------------------------------------------------- validation


def _canonical(username: str) -> str:
    try:
        return canonical_username(username)
    except InvalidUsername as exc:
        raise BadUsername(str(exc)) from None


def _check_key(name: str, key: bytes | None, *, required: bool) -> None:
    if key is None:
        if required:
            raise BadRequest(f"the {name} is missing")
        return
    if not isinstance(key, bytes) or len(key) != PUBKEY_SIZE:
        raise BadRequest(f"the {name} must be {PUBKEY_SIZE} bytes")


def _check_device(device_id: bytes, static_key: bytes, signing_key: bytes | None) -> None:
    if not isinstance(device_id, bytes) or not 1 <= len(device_id) <= MAX_DEVICE_ID:
        raise BadRequest(f"a device id has 1 to {MAX_DEVICE_ID} bytes")
    _check_key("static key", static_key, required=True)
    _check_key("signing key", signing_key, required=False)


def _profile_text(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be text")
    value = unicodedata.normalize("NFC", value.strip())
    if len(value) > MAX_PROFILE_TEXT:
        raise BadRequest(f"{field} has at most {MAX_PROFILE_TEXT} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise BadRequest(f"{field} must not contain control characters")
    return value or None


def _profile_code(field: str, value: str | None, standard: str, *, upper: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be text")
    code = value.strip()
    if not code:
        return None
    if len(code) != 2 or not (code.isascii() and code.isalpha()):
        raise BadRequest(f"{field} must be a two-letter {standard} code, not {value!r:.20}")
    return code.upper() if upper else code.lower()


def _check_new_password(password: str, username: str) -> None:
    try:
        check_password_policy(password, username)
    except PasswordPolicyError as exc:
        raise WeakPassword(str(exc)) from None


_CERTIFICATE_REFUSALS = {
    "expired": "the certificate has expired; log in again",
    "wrong-issuer": "the certificate was issued by another login server",
    "forged": "the certificate's signature does not verify",
    "not-yet-valid": "the certificate is not valid yet (check the clock)",
    "bad-version": "the certificate's version is not supported",
}


def _certificate_refused(exc: CertificateError) -> LoginError:
    if exc.reason == "malformed":
        return BadRequest(f"malformed certificate: {exc}")
    return Unauthorized(_CERTIFICATE_REFUSALS.get(exc.reason, f"certificate refused: {exc}"))


# ---------------------------------------------------------------- the service


class LoginService:
    """Accounts, certificates, revocations and enrollment (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        signing_key: Ed25519PrivateKey,
        *,
        config: LoginServiceConfig | None = None,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
        registration_throttle: BackoffThrottle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = database
        self.config = config or LoginServiceConfig()
        self.hasher = hasher or PasswordHasher()
        self.throttle = throttle or LoginThrottle()
        self.registration_throttle = registration_throttle or BackoffThrottle(REGISTRATION_POLICY)
        self.clock = clock
        self._signing_key = signing_key
        self.public_key = public_bytes(signing_key.public_key())
        self.verifier = CertificateVerifier(self.public_key)
        self._hash_slots = asyncio.Semaphore(self.config.max_concurrent_hashes)
        self._revocations: tuple[tuple[int, ...], SignedRevocations] | None = None

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    async def _cpu(self, work: Callable[[], T]) -> T:
        """Run CPU-heavy ``work`` (Argon2) in a thread, a bounded number at once."""
        async with self._hash_slots:
            return await asyncio.to_thread(work)

    def _sign(self, new: NewCertificate, serial: int) -> bytes:
        body = CertificateBody(
            version=CERT_VERSION,
            role=new.role,
            subject=new.subject,
            device_id=new.device_id,
            static_key=new.static_key,
            signing_key=new.signing_key,
            issued_at=new.issued_at,
            expires_at=new.expires_at,
            serial=serial,
            issuer=self.public_key,
        )
        return issue_certificate(self._signing_key, body)

    # ------------------------------------------------------------ accounts

    async def register(
        self,
        username: str,
        password: str,
        *,
        full_name: str | None = None,
        city: str | None = None,
        country: str | None = None,
        language: str | None = None,
        source: str | None = None,
        now: float | None = None,
    ) -> Profile:
        """Create an account; ``source`` (the peer's address) is throttled if given."""
        now = self._now(now)
        name = _canonical(username)
        if name.startswith(SUPERNODE_PREFIX):
            raise BadUsername(f"usernames starting with {SUPERNODE_PREFIX!r} are reserved")
        account = AccountRecord(
            username=name,
            password_hash="",
            full_name=_profile_text("full name", full_name),
            city=_profile_text("city", city),
            country=_profile_code("country", country, "ISO 3166 alpha-2", upper=True),
            language=_profile_code("language", language, "ISO 639-1", upper=False),
            created_at=now,
            updated_at=now,
        )
        _check_new_password(password, name)
        if source is not None:
            self._count_registration(source, now)
        if await self.db.account_exists(name):
            raise UsernameTaken(f"the username {name!r} is taken")
        password_hash = await self._cpu(functools.partial(self.hasher.hash, password))
        try:
            await self.db.create_account(_with_hash(account, password_hash))
        except DuplicateAccount:
            raise UsernameTaken(f"the username {name!r} is taken") from None
        log.info("account %s registered", name)
        return Profile.of(account)

    def _count_registration(self, source: str, now: float) -> None:
        key = address_key(source)
        wait = self.registration_throttle.retry_after(key, now)
        if wait > 0:
            raise Throttled(
                f"too many registrations from this address; try again in {math.ceil(wait)} s",
                to_milliseconds(wait),
            )
        self.registration_throttle.record_failure(key, now)

    async def _authenticate(
        self, name: str, password: str, source: str, now: float, *, rehash: bool = True
    ) -> AccountRecord:
        """Check the password under the throttle; return the account or raise."""
        wait = self.throttle.check(name, source, now)
        if wait > 0:
            raise Throttled(
                f"too many failed attempts; try again in {math.ceil(wait)} s",
                to_milliseconds(wait),
            )
        account = None
        if isinstance(password, str) and len(password) <= MAX_PASSWORD_LENGTH:
            account = await self.db.get_account(name)
            if account is None:
                await self._cpu(functools.partial(self.hasher.verify_nothing, password))
            elif not await self._cpu(
                functools.partial(self.hasher.verify, account.password_hash, password)
            ):
                account = None
        if account is None:
            wait = self.throttle.record_failure(name, source, now)
            log.debug("failed password check for %s from %s", name, source)
            raise WrongCredentials(
                "wrong username or password", to_milliseconds(wait) if wait > 0 else None
            )
        self.throttle.record_success(name, source, now)
        if rehash and self.hasher.needs_rehash(account.password_hash):
            await self._rehash(account, password, now)
        return account

    async def _rehash(self, account: AccountRecord, password: str, now: float) -> None:
        new_hash = await self._cpu(functools.partial(self.hasher.hash, password))
        await self.db.replace_password_hash(
            account.username, new_hash, now, expected=account.password_hash
        )
        log.info("password hash of %s upgraded to the current cost", account.username)

    async def login(
        self,
        username: str,
        password: str,
        device_id: bytes,
        static_key: bytes,
        signing_key: bytes | None,
        source: str,
        now: float | None = None,
    ) -> IssuedCertificate:
        """Check the password and certify this device's keys.

        ``static_key`` must be the key the caller's secure session proved
        (the handler checks that). Raises :class:`WrongCredentials`,
        :class:`Throttled`, :class:`BadRequest`.
        """
        now = self._now(now)
        name = _canonical(username)
        _check_device(device_id, static_key, signing_key)
        await self._authenticate(name, password, source, now)
        issued_at = int(now)
        new = NewCertificate(
            subject=name,
            role=Role.USER,
            device_id=device_id,
            static_key=static_key,
            signing_key=signing_key,
            issued_at=issued_at,
            expires_at=issued_at + self.config.user_certificate_lifetime_s,
        )
        serial = await self.db.add_certificate(new, require_account=True)
        if serial is None:  # deleted between the password check and now
            raise WrongCredentials("wrong username or password")
        log.debug("certificate %d issued to %s", serial, name)
        return IssuedCertificate(self._sign(new, serial), new.expires_at)

    async def change_password(
        self,
        username: str,
        old_password: str,
        new_password: str,
        source: str,
        now: float | None = None,
    ) -> None:
        """Replace the password after checking the old one (throttled like a login)."""
        now = self._now(now)
        name = _canonical(username)
        _check_new_password(new_password, name)
        account = await self._authenticate(name, old_password, source, now, rehash=False)
        new_hash = await self._cpu(functools.partial(self.hasher.hash, new_password))
        if not await self.db.replace_password_hash(
            name, new_hash, now, expected=account.password_hash
        ):
            raise Conflict("the password was changed at the same time; try again")
        log.info("password of %s changed", name)

    async def delete_account(
        self, username: str, password: str, source: str, now: float | None = None
    ) -> list[int]:
        """Delete the account and revoke all its certificates; return their serials."""
        now = self._now(now)
        name = _canonical(username)
        await self._authenticate(name, password, source, now, rehash=False)
        revoked = await self.db.delete_account(name, now)
        if revoked is None:
            raise WrongCredentials("wrong username or password")
        log.info("account %s deleted, %d certificates revoked", name, len(revoked))
        return revoked

    async def profile(self, username: str) -> Profile:
        """The public profile of ``username``; :class:`NotFound` if there is none."""
        name = _canonical(username)
        account = await self.db.get_account(name)
        if account is None:
            raise NotFound(f"no account named {name!r}")
        return Profile.of(account)

    # ------------------------------------------------------------ certificates

    def _verify_own(self, certificate: bytes, now: float) -> CertificateBody:
        try:
            return self.verifier.verify(certificate, now).body
        except CertificateError as exc:
            raise _certificate_refused(exc) from None

    @staticmethod
    def _check_session(body: CertificateBody, session_static_key: bytes | None) -> None:
        if session_static_key is None:
            raise Forbidden("this needs a secure session that proved the certificate's key")
        if not hmac.compare_digest(body.static_key, session_static_key):
            raise Forbidden("the certificate's static key is not this session's key")

    async def renew(
        self,
        certificate: bytes,
        session_static_key: bytes | None,
        now: float | None = None,
        *,
        public_address: Address | None = None,
    ) -> IssuedCertificate:
        """A fresh certificate for the same subject, device and keys.

        Only for our own, unexpired, unrevoked certificates whose static key
        the session proved. For a supernode, ``public_address`` (if given)
        replaces its recorded address, and its last-seen time is refreshed.
        """
        now = self._now(now)
        body = self._verify_own(certificate, now)
        self._check_session(body, session_static_key)
        record = await self.db.get_certificate(body.serial)
        if record is None or record.revoked_at is not None:
            raise Unauthorized("the certificate has been revoked; log in again")
        if record.subject != body.subject or not hmac.compare_digest(
            record.static_key, body.static_key
        ):
            raise Unauthorized("the certificate does not match the one issued")
        if body.role == Role.USER:
            lifetime = self.config.user_certificate_lifetime_s
        elif body.role == Role.SUPERNODE:
            lifetime = self.config.supernode_certificate_lifetime_s
            address = None if public_address is None else str(public_address)
            if not await self.db.touch_supernode(body.subject, now, address):
                raise Unauthorized("this supernode is no longer enrolled")
        else:
            raise Forbidden("only user and supernode certificates are renewed")
        issued_at = int(now)
        new = NewCertificate(
            subject=body.subject,
            role=body.role,
            device_id=body.device_id,
            static_key=body.static_key,
            signing_key=body.signing_key,
            issued_at=issued_at,
            expires_at=issued_at + lifetime,
        )
        serial = await self.db.add_certificate(new, require_account=body.role == Role.USER)
        if serial is None:
            raise Unauthorized("the account no longer exists")
        return IssuedCertificate(self._sign(new, serial), new.expires_at)

    async def logout(
        self, certificate: bytes, session_static_key: bytes | None, now: float | None = None
    ) -> None:
        """Revoke the certificate (the session must have proved its key).

        An expired certificate needs no revocation: logging it out succeeds
        without a change.
        """
        now = self._now(now)
        try:
            body = self.verifier.verify(certificate, now).body
        except CertificateError as exc:
            if exc.reason == "expired":
                return
            raise _certificate_refused(exc) from None
        self._check_session(body, session_static_key)
        if await self.db.revoke_certificate(body.serial, now):
            log.debug("certificate %d of %s revoked at logout", body.serial, body.subject)

    async def signed_revocations(self, now: float | None = None) -> SignedRevocations:
        """The signed list of revoked, unexpired serials (re-signed only on change)."""
        now = self._now(now)
        serials = tuple(await self.db.revoked_serials(now))
        cached = self._revocations
        if cached is not None and cached[0] == serials:
            return cached[1]
        issued_at = int(now) if cached is None else max(int(now), cached[1].issued_at + 1)
        data = issue_revocation_list(self._signing_key, list(serials), issued_at)
        signed = SignedRevocations(data, issued_at)
        self._revocations = (serials, signed)
        return signed

    async def revocation_list(self, now: float | None = None) -> bytes:
        """The bytes of :meth:`signed_revocations`."""
        return (await self.signed_revocations(now)).data

    # ------------------------------------------------------------ supernodes

    async def create_enrollment_token(
        self, now: float | None = None, ttl: float | None = None
    ) -> str:
        """A new one-time supernode enrollment token, valid for ``ttl`` seconds."""
        now = self._now(now)
        ttl = self.config.enrollment_token_ttl_s if ttl is None else ttl
        if ttl <= 0:
            raise ValueError("an enrollment token needs a positive lifetime")
        token = secrets.token_urlsafe(32)
        await self.db.add_enrollment_token(_token_hash(token), now, now + ttl)
        log.info("enrollment token created, valid for %d s", ttl)
        return token

    async def enroll_supernode(
        self,
        token: str,
        static_key: bytes,
        signing_key: bytes | None,
        public_address: Address | None,
        now: float | None = None,
    ) -> EnrolledSupernode:
        """Use a one-time token: record the supernode and certify its keys."""
        now = self._now(now)
        if not isinstance(token, str) or not 1 <= len(token) <= MAX_TOKEN_LENGTH:
            raise BadRequest("an enrollment token is 1 to 256 characters of text")
        _check_key("static key", static_key, required=True)
        _check_key("signing key", signing_key, required=False)
        node_id, device_id = supernode_identity(static_key)
        issued_at = int(now)
        new = NewCertificate(
            subject=node_id,
            role=Role.SUPERNODE,
            device_id=device_id,
            static_key=static_key,
            signing_key=signing_key,
            issued_at=issued_at,
            expires_at=issued_at + self.config.supernode_certificate_lifetime_s,
        )
        node = SupernodeRecord(
            node_id=node_id,
            static_key=static_key,
            signing_key=signing_key,
            address=None if public_address is None else str(public_address),
            enrolled_at=now,
            last_seen=now,
        )
        serial = await self.db.enroll_supernode(_token_hash(token), node, new, now)
        if serial is None:
            raise Unauthorized("the enrollment token is unknown, used already or expired")
        log.info("supernode %s enrolled at %s", node_id, node.address)
        return EnrolledSupernode(node_id, self._sign(new, serial), new.expires_at)

    async def bootstrap_supernodes(self, now: float | None = None) -> list[Address]:
        """Addresses of supernodes seen recently, most recent first."""
        now = self._now(now)
        since = now - self.config.bootstrap_window_s
        addresses = []
        for node in await self.db.recent_supernodes(since, self.config.bootstrap_limit):
            try:
                addresses.append(Address.parse(node.address or ""))
            except BadValue:
                log.warning("supernode %s has a bad address %r", node.node_id, node.address)
        return addresses

    # ------------------------------------------------------------ housekeeping

    async def prune(self, now: float | None = None) -> int:
        """Forget long-expired certificates, dead tokens and stale throttle entries."""
        now = self._now(now)
        self.throttle.prune(now)
        self.registration_throttle.prune(now)
        return await self.db.prune(now)


def _token_hash(token: str) -> bytes:
    # Looked up by its SHA-256: the token is 256 random bits, so comparing
    # hashes in the database's index reveals nothing useful about it.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _with_hash(account: AccountRecord, password_hash: str) -> AccountRecord:
    return AccountRecord(**{**account.__dict__, "password_hash": password_hash})
