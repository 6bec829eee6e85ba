"""Argon2id hashing at the documented cost, and the password policy."""

from __future__ import annotations

import argon2
import pytest

from hopline.loginserver.passwords import (
    ARGON2_HASH_LENGTH,
    ARGON2_SALT_LENGTH,
    COMMON_PASSWORDS,
    MAX_PASSWORD_LENGTH,
    PRODUCTION_COST,
    TEST_COST,
    Argon2Cost,
    PasswordHasher,
    PasswordHashError,
    PasswordIsUsername,
    PasswordPolicyError,
    PasswordTooCommon,
    PasswordTooLong,
    PasswordTooShort,
    PasswordTooSimple,
    check_password_policy,
)

GOOD = "blue-Otter-42"


def test_production_cost_is_argon2id_rfc9106_low_memory() -> None:
    assert Argon2Cost(time_cost=3, memory_cost_kib=65536, parallelism=4) == PRODUCTION_COST
    stored = PasswordHasher().hash(GOOD)  # the default hasher uses the production cost
    params = argon2.extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert (params.hash_len, params.salt_len) == (ARGON2_HASH_LENGTH, ARGON2_SALT_LENGTH)
    assert (ARGON2_HASH_LENGTH, ARGON2_SALT_LENGTH) == (32, 16)


def test_hash_and_verify() -> None:
    hasher = PasswordHasher(TEST_COST)
    stored = hasher.hash(GOOD)
    assert GOOD not in stored
    assert hasher.verify(stored, GOOD)
    assert not hasher.verify(stored, GOOD.upper())
    assert not hasher.verify(stored, "")
    assert hasher.hash(GOOD) != stored  # a fresh salt each time


def test_passwords_are_compared_after_unicode_normalisation() -> None:
    hasher = PasswordHasher(TEST_COST)
    composed, decomposed = "caf\u00e9-Terrasse-1", "cafe\u0301-Terrasse-1"
    assert composed != decomposed
    assert hasher.verify(hasher.hash(composed), decomposed)


def test_a_damaged_stored_hash_is_an_error_not_a_wrong_password() -> None:
    hasher = PasswordHasher(TEST_COST)
    with pytest.raises(PasswordHashError):
        hasher.verify("not a hash", GOOD)
    with pytest.raises(PasswordHashError):
        hasher.needs_rehash("$argon2id$garbage")


def test_needs_rehash_when_the_cost_changed() -> None:
    cheap, other = PasswordHasher(TEST_COST), PasswordHasher(Argon2Cost(2, 16, 1))
    stored = cheap.hash(GOOD)
    assert not cheap.needs_rehash(stored)
    assert other.needs_rehash(stored)
    assert other.verify(stored, GOOD)  # still verifies with its own parameters


def test_verify_nothing_is_always_false() -> None:
    hasher = PasswordHasher(TEST_COST)
    assert hasher.verify_nothing(GOOD) is False
    assert hasher.verify_nothing("") is False


# ---------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("password", "error", "words"),
    [
        ("", PasswordTooShort, "at least 10"),
        ("Sh0rt-pw", PasswordTooShort, "has 8"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), PasswordTooLong, "at most 256"),
        ("Alice.Example", PasswordIsUsername, "username"),
        ("abcdefghijk", PasswordTooSimple, "two kinds"),
        ("93847561029", PasswordTooSimple, "two kinds"),
        ("ZZZZZZZZZZZZZZZZZZZZ", PasswordTooSimple, "repeated"),
        ("Password123", PasswordTooCommon, "most common"),
        ("QWERTYUIOP", PasswordTooCommon, "most common"),
    ],
)
def test_policy_refusals(password: str, error: type[PasswordPolicyError], words: str) -> None:
    with pytest.raises(error, match=words):
        check_password_policy(password, "alice.example")


@pytest.mark.parametrize(
    "password",
    [
        GOOD,
        "correcthorsebatterystaple",  # one class, but long
        "x" * (MAX_PASSWORD_LENGTH - 1) + "y",
        "Zebra 7 Mond",
        "пароль-Длинный-9",
    ],
)
def test_policy_accepts(password: str) -> None:
    check_password_policy(password, "alice.example")


def test_policy_errors_are_value_errors_and_common_list_is_lower_case() -> None:
    assert issubclass(PasswordPolicyError, ValueError)
    assert all(p == p.lower() and len(p) >= 10 for p in COMMON_PASSWORDS)
