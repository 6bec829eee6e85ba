"""Password hashing (Argon2id) and the password policy.

Hashing
-------
Passwords are stored only as Argon2id hashes in the PHC string format
(``$argon2id$v=19$m=...,t=...,p=...$salt$hash``), made by ``argon2-cffi``.
The string carries its own parameters, so the cost can be raised later:
:meth:`PasswordHasher.needs_rehash` tells, after a successful login, that a
stored hash was made with other parameters and should be replaced.

The production cost, :data:`PRODUCTION_COST`, is the RFC 9106 section 4
"second recommended option" for memory-constrained machines (it is also
``argon2-cffi``'s default profile): **t=3 passes over m=64 MiB with p=4
lanes**, a 16-byte random salt and a 32-byte tag. On a 2-core machine one hash
takes about 0.1 s of wall time and 64 MiB of memory while it runs; the login
service bounds how many run at once, so a burst of logins queues instead of
exhausting memory. Tests and benchmarks may pass a lower :class:`Argon2Cost`
(:data:`TEST_COST` is the cheapest Argon2 allows).

Passwords are Unicode-normalised to NFC before hashing, so the same password
typed on two systems that compose accents differently still matches.

Policy
------
:func:`check_password_policy` refuses, each with its own
:class:`PasswordPolicyError` subclass and a message meant for the user:

* fewer than 10 or more than 256 characters,
* the username itself (in any letter case),
* a short password (under 16 characters) drawn from one character class only
  (all lower-case letters, all digits, ...), or one character repeated,
* one of a small built-in list of the most common passwords.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
SHORT_PASSWORD_LENGTH = 16  # below this, one character class is not enough

ARGON2_TIME_COST = 3  # passes over memory
ARGON2_MEMORY_COST_KIB = 64 * 1024  # 64 MiB
ARGON2_PARALLELISM = 4  # lanes (threads)
ARGON2_HASH_LENGTH = 32  # bytes of tag
ARGON2_SALT_LENGTH = 16  # bytes of random salt


@dataclass(frozen=True)
class Argon2Cost:
    """Argon2id work factors: passes, memory in KiB, lanes."""

    time_cost: int
    memory_cost_kib: int
    parallelism: int


PRODUCTION_COST = Argon2Cost(ARGON2_TIME_COST, ARGON2_MEMORY_COST_KIB, ARGON2_PARALLELISM)
"""RFC 9106 low-memory profile: t=3, m=64 MiB, p=4 (see the module docstring)."""

TEST_COST = Argon2Cost(time_cost=1, memory_cost_kib=8, parallelism=1)
"""The cheapest parameters Argon2 accepts: for tests only, never for real accounts."""


class PasswordHashError(Exception):
    """A stored password hash could not be read (a damaged account record)."""


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFC", password)


def _password_bytes(password: str) -> bytes:
    return _normalise(password).encode("utf-8", "surrogatepass")


class PasswordHasher:
    """Hashes and verifies passwords with Argon2id at a given cost.

    The methods are CPU-bound and blocking; the login service runs them in a
    worker thread.
    """

    def __init__(self, cost: Argon2Cost = PRODUCTION_COST) -> None:
        self.cost = cost
        self._hasher = argon2.PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_cost_kib,
            parallelism=cost.parallelism,
            hash_len=ARGON2_HASH_LENGTH,
            salt_len=ARGON2_SALT_LENGTH,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        """Return the PHC-format Argon2id hash of ``password`` (with a fresh salt)."""
        return self._hasher.hash(_password_bytes(password))

    def verify(self, stored_hash: str, password: str) -> bool:
        """True if ``password`` matches ``stored_hash``.

        Raises :class:`PasswordHashError` if the stored hash is not a valid
        Argon2 hash (a damaged record, never a wrong password).
        """
        try:
            return self._hasher.verify(stored_hash, _password_bytes(password))
        except InvalidHashError as exc:
            raise PasswordHashError("the stored password hash is not a valid Argon2 hash") from exc
        except VerificationError:
            return False

    def verify_nothing(self, password: str) -> bool:
        """Spend the time of a real verification against a hash nobody has.

        Used when the account does not exist, so that the time of the answer
        does not reveal whether it does. Always returns False.
        """
        if self._dummy_hash is None:
            self._dummy_hash = self.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy_hash, password)
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if ``stored_hash`` was made with parameters other than this cost."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError as exc:
            raise PasswordHashError("the stored password hash is not a valid Argon2 hash") from exc


# ---------------------------------------------------------------- policy


class PasswordPolicyError(ValueError):
    """A new password was refused; the message tells the user why."""


class PasswordTooShort(PasswordPolicyError):
    """Fewer than :data:`MIN_PASSWORD_LENGTH` characters."""


class PasswordTooLong(PasswordPolicyError):
    """More than :data:`MAX_PASSWORD_LENGTH` characters."""


class PasswordIsUsername(PasswordPolicyError):
    """The password is the username."""


class PasswordTooSimple(PasswordPolicyError):
    """Short and made of one kind of character only."""


class PasswordTooCommon(PasswordPolicyError):
    """On the list of the most common passwords."""


# The most common passwords of 10+ characters in public breach corpora (shorter
# ones are refused by length already). Compared in lower case.
COMMON_PASSWORDS = frozenset(
    {
        "0123456789",
        "1111111111",
        "1234567890",
        "0987654321",
        "123456789a",
        "1234567890a",
        "12345678910",
        "123123123123",
        "1q2w3e4r5t",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "a123456789",
        "abcd123456",
        "abcdefghij",
        "abc1234567",
        "administrator",
        "asdfghjkl1",
        "asdfghjkl;",
        "changeme123",
        "football123",
        "iloveyou12",
        "iloveyou123",
        "letmein123",
        "michael123",
        "monkey1234",
        "passw0rd123",
        "password01",
        "password12",
        "password123",
        "password1234",
        "password12345",
        "password!!",
        "p@ssw0rd123",
        "p@ssword123",
        "princess123",
        "qazwsxedcr",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "qwertyuiop",
        "qwertyuiop123",
        "qwertyuiop[]",
        "sunshine123",
        "superman123",
        "trustno1234",
        "welcome123",
        "welcome1234",
        "zaq12wsxcde",
        "zxcvbnm123",
        "zxcvbnmasdf",
    }
)


def _character_classes(password: str) -> int:
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    )
    return sum(classes)


def check_password_policy(password: str, username: str) -> None:
    """Raise a :class:`PasswordPolicyError` subclass if ``password`` is not acceptable."""
    if not isinstance(password, str):
        raise PasswordTooShort("a password is text")
    password = _normalise(password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooShort(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters, this one has "
            f"{len(password)}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordTooLong(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip().lower() == username.strip().lower():
        raise PasswordIsUsername("the password must not be the username")
    if password.lower() in COMMON_PASSWORDS:
        raise PasswordTooCommon("this password is one of the most common ones; choose another")
    if len(set(password)) == 1:
        raise PasswordTooSimple("the password is one character repeated")
    if len(password) < SHORT_PASSWORD_LENGTH and _character_classes(password) < 2:
        raise PasswordTooSimple(
            f"a password shorter than {SHORT_PASSWORD_LENGTH} characters must mix at least "
            "two kinds of character (lower case, upper case, digits, symbols)"
        )
