"""The login service on both backends: accounts, certificates, revocation, enrollment."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from hopline.identity import (
    CertificateError,
    CertificateVerifier,
    Role,
    parse_certificate,
    verify_revocation_list,
)
from hopline.loginserver import (
    TEST_COST,
    Argon2Cost,
    BadRequest,
    BadUsername,
    Database,
    Forbidden,
    LoginError,
    LoginService,
    LoginServiceConfig,
    NotFound,
    PasswordHasher,
    Throttled,
    Unauthorized,
    UsernameTaken,
    WeakPassword,
    WrongCredentials,
)
from hopline.loginserver.db import enrollment_tokens
from hopline.loginserver.throttle import REGISTRATION_POLICY
from hopline.wire import Address, ErrorCode

PASSWORD = "blue-Otter-42"
DEVICE = b"laptop-0001"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SOURCE = "198.51.100.7:40000"
DAY = 86_400


async def registered(service: LoginService, name: str = "alice") -> None:
    await service.register(name, PASSWORD, full_name="Alice Example", country="ee")


async def login(service: LoginService, name: str = "alice", key: bytes = KEY) -> bytes:
    issued = await service.login(name, PASSWORD, DEVICE, key, None, SOURCE)
    return issued.certificate


def verifier(service: LoginService) -> CertificateVerifier:
    return CertificateVerifier(service.public_key)


# ---------------------------------------------------------------- accounts


async def test_register_returns_the_canonical_public_profile(service: LoginService) -> None:
    profile = await service.register(
        "  Alice ", PASSWORD, full_name=" Alice Example ", city="Tartu", country="ee", language="ET"
    )
    assert (profile.username, profile.full_name, profile.city) == (
        "alice",
        "Alice Example",
        "Tartu",
    )
    assert (profile.country, profile.language) == ("EE", "et")
    assert profile.created_at == service.clock()
    assert await service.profile("ALICE") == profile


async def test_the_database_stores_an_argon2id_hash_not_the_password(
    service: LoginService,
) -> None:
    await registered(service)
    account = await service.db.get_account("alice")
    assert account is not None
    assert account.password_hash.startswith("$argon2id$")
    assert PASSWORD not in account.password_hash


@pytest.mark.parametrize(
    ("username", "password", "error"),
    [
        ("a", PASSWORD, BadUsername),
        ("al ice", PASSWORD, BadUsername),
        ("sn-0123456789abcdef", PASSWORD, BadUsername),
        ("alice", "short", WeakPassword),
        ("alice", "alice", WeakPassword),
        ("alice", "password123", WeakPassword),
    ],
)
async def test_register_refusals_are_400(
    service: LoginService, username: str, password: str, error: type[LoginError]
) -> None:
    with pytest.raises(error) as info:
        await service.register(username, password)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert info.value.message


@pytest.mark.parametrize(
    "profile",
    [
        {"country": "Estonia"},
        {"language": "e1"},
        {"full_name": "x" * 101},
        {"city": "Tartu\x00"},
    ],
)
async def test_bad_profile_fields_are_400(service: LoginService, profile: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        await service.register("alice", PASSWORD, **profile)


async def test_a_taken_username_is_409_in_any_case(service: LoginService) -> None:
    await registered(service)
    with pytest.raises(UsernameTaken) as info:
        await service.register("ALICE", "another-Pass-1")
    assert info.value.code is ErrorCode.CONFLICT


async def test_registrations_from_one_address_are_throttled(service: LoginService) -> None:
    burst = REGISTRATION_POLICY.free_failures + 1  # the last of these starts the block
    for n in range(burst):
        await service.register(f"user{n}", PASSWORD, source=SOURCE)
    with pytest.raises(Throttled) as info:
        await service.register("late", PASSWORD, source=SOURCE)
    assert info.value.retry_after_ms == REGISTRATION_POLICY.base_delay_s * 1000
    await service.register("late", PASSWORD, source="203.0.113.9:1")


async def test_profile_of_nobody_is_404(service: LoginService) -> None:
    with pytest.raises(NotFound) as info:
        await service.profile("nobody")
    assert info.value.code is ErrorCode.NOT_FOUND


# ---------------------------------------------------------------- login


async def test_login_issues_a_verifiable_24h_user_certificate(service: LoginService) -> None:
    await registered(service)
    signing = bytes(range(100, 132))
    issued = await service.login("Alice", PASSWORD, DEVICE, KEY, signing, SOURCE)
    now = service.clock()
    cert = verifier(service).verify(
        issued.certificate, now, role=Role.USER, subject="alice", static_key=KEY
    )
    body = cert.body
    assert (body.device_id, body.signing_key) == (DEVICE, signing)
    assert body.issued_at == int(now)
    assert body.expires_at == issued.expires_at == int(now) + DAY
    stored = await service.db.get_certificate(body.serial)
    assert stored is not None
    assert (stored.subject, stored.static_key, stored.revoked_at) == ("alice", KEY, None)


async def test_wrong_password_and_unknown_account_look_the_same(service: LoginService) -> None:
    await registered(service)
    answers = []
    for name, password in [("alice", "wrong-Pass-99"), ("nobody", "wrong-Pass-99")]:
        with pytest.raises(WrongCredentials) as info:
            await service.login(name, password, DEVICE, KEY, None, SOURCE)
        answers.append((info.value.code, info.value.message, info.value.retry_after_ms))
    assert answers[0] == answers[1] == (ErrorCode.UNAUTHORIZED, "wrong username or password", None)


async def test_fifty_wrong_passwords_throttle_that_account_only(
    service: LoginService, clock: Any
) -> None:
    await registered(service, "alice")
    await registered(service, "bob")
    codes = []
    for _ in range(50):
        with pytest.raises(LoginError) as info:
            await service.login("alice", "wrong-Pass-99", DEVICE, KEY, None, SOURCE)
        codes.append(info.value.code)
    assert codes[:5] == [ErrorCode.UNAUTHORIZED] * 5
    assert codes[-1] is ErrorCode.TOO_MANY_REQUESTS
    with pytest.raises(Throttled) as info:  # even the right password, while blocked
        await service.login("alice", PASSWORD, DEVICE, KEY, None, "203.0.113.1:1")
    assert info.value.retry_after_ms is not None and info.value.retry_after_ms > 0
    assert re.search(r"try again in \d+ s", info.value.message)
    await service.login("bob", PASSWORD, DEVICE, KEY, None, "203.0.113.1:1")


async def test_after_the_wait_the_right_password_works_and_resets(
    service: LoginService, clock: Any
) -> None:
    await registered(service)
    retry_ms = 0
    for _ in range(6):
        with pytest.raises(WrongCredentials) as info:
            await service.login("alice", "wrong-Pass-99", DEVICE, KEY, None, SOURCE)
        retry_ms = info.value.retry_after_ms or 0
    assert retry_ms == 1000  # the 6th failure tells how long to wait
    clock.advance(retry_ms / 1000)
    await login(service)
    assert service.throttle.accounts.failures("alice", service.clock()) == 0


async def test_an_outdated_hash_is_upgraded_at_login(
    db: Database, ls_key: Ed25519PrivateKey
) -> None:
    old = LoginService(db, ls_key, hasher=PasswordHasher(TEST_COST))
    await old.register("alice", PASSWORD)
    new_cost = Argon2Cost(time_cost=2, memory_cost_kib=16, parallelism=1)
    new = LoginService(db, ls_key, hasher=PasswordHasher(new_cost))
    await new.login("alice", PASSWORD, DEVICE, KEY, None, SOURCE)
    account = await db.get_account("alice")
    assert account is not None
    assert account.password_hash.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    await new.login("alice", PASSWORD, DEVICE, KEY, None, SOURCE)  # and still verifies


async def test_argon2_runs_off_the_event_loop_thread(
    db: Database, ls_key: Ed25519PrivateKey
) -> None:
    threads = set()

    class Recording(PasswordHasher):
        def hash(self, password: str) -> str:
            threads.add(threading.get_ident())
            return super().hash(password)

        def verify(self, stored_hash: str, password: str) -> bool:
            threads.add(threading.get_ident())
            return super().verify(stored_hash, password)

    service = LoginService(db, ls_key, hasher=Recording(TEST_COST))
    await service.register("alice", PASSWORD)
    await service.login("alice", PASSWORD, DEVICE, KEY, None, SOURCE)
    assert threads
    assert threading.get_ident() not in threads


async def test_concurrent_logins_get_distinct_serials(service: LoginService) -> None:
    await registered(service)
    certs = await asyncio.gather(*(login(service) for _ in range(12)))
    serials = {parse_certificate(c)[0].serial for c in certs}
    assert len(serials) == 12


@pytest.mark.parametrize(
    ("device", "key", "signing"),
    [(b"", KEY, None), (b"x" * 65, KEY, None), (DEVICE, b"short", None), (DEVICE, KEY, b"x")],
)
async def test_malformed_device_fields_are_400(
    service: LoginService, device: bytes, key: bytes, signing: bytes | None
) -> None:
    await registered(service)
    with pytest.raises(BadRequest):
        await service.login("alice", PASSWORD, device, key, signing, SOURCE)


# ---------------------------------------------------------------- renew


async def test_renew_gives_a_new_certificate_for_the_same_device(
    service: LoginService, clock: Any
) -> None:
    await registered(service)
    first = await login(service)
    clock.advance(DAY - 60)
    renewed = await service.renew(first, KEY)
    old, new = parse_certificate(first)[0], parse_certificate(renewed.certificate)[0]
    assert new.serial > old.serial
    assert (new.subject, new.device_id, new.static_key) == (old.subject, old.device_id, KEY)
    assert renewed.expires_at == int(service.clock()) + DAY > old.expires_at


async def test_renew_refusals(service: LoginService, clock: Any) -> None:
    await registered(service)
    cert = await login(service)
    with pytest.raises(Forbidden):
        await service.renew(cert, OTHER_KEY)  # not this session's key
    with pytest.raises(Forbidden):
        await service.renew(cert, None)
    with pytest.raises(BadRequest, match="malformed"):
        await service.renew(b"\xff\x00junk", KEY)
    foreign = LoginService(service.db, Ed25519PrivateKey.generate(), hasher=service.hasher)
    with pytest.raises(Unauthorized, match="another login server"):
        await foreign.renew(cert, KEY)
    clock.advance(DAY)
    with pytest.raises(Unauthorized, match="expired") as info:
        await service.renew(cert, KEY)
    assert info.value.code is ErrorCode.UNAUTHORIZED


async def test_a_logged_out_certificate_cannot_be_renewed(service: LoginService) -> None:
    await registered(service)
    cert = await login(service)
    await service.logout(cert, KEY)
    with pytest.raises(Unauthorized, match="revoked"):
        await service.renew(cert, KEY)


# ---------------------------------------------------------------- logout and revocation


async def test_logout_revokes_and_the_signed_list_says_so(service: LoginService) -> None:
    await registered(service)
    cert = await login(service)
    serial = parse_certificate(cert)[0].serial
    empty = verify_revocation_list(await service.revocation_list(), _public(service))
    assert empty.serials == frozenset()
    with pytest.raises(Forbidden):
        await service.logout(cert, OTHER_KEY)
    await service.logout(cert, KEY)
    await service.logout(cert, KEY)  # twice is fine
    revoked = verify_revocation_list(await service.revocation_list(), _public(service))
    assert revoked.serials == {serial}
    check = verifier(service)
    assert check.update_revocations(await service.revocation_list())
    with pytest.raises(CertificateError, match="revoked"):
        check.verify(cert, service.clock())


async def test_revocation_list_is_cached_until_the_set_changes(
    service: LoginService, clock: Any
) -> None:
    await registered(service)
    first = await service.signed_revocations()
    clock.advance(5)
    assert (await service.signed_revocations()) is first  # not signed again
    cert = await login(service)
    await service.logout(cert, KEY)
    second = await service.signed_revocations()
    assert second.data != first.data
    assert second.issued_at > first.issued_at
    third_cert = await login(service)
    await service.logout(third_cert, KEY)
    third = await service.signed_revocations()  # same second: still strictly newer
    assert third.issued_at > second.issued_at
    clock.advance(DAY + 1)
    expired = await service.signed_revocations()  # revoked certificates expired: dropped
    assert verify_revocation_list(expired.data, _public(service)).serials == frozenset()


async def test_logging_out_an_expired_certificate_is_a_no_op(
    service: LoginService, clock: Any
) -> None:
    await registered(service)
    cert = await login(service)
    clock.advance(DAY + 1)
    await service.logout(cert, OTHER_KEY)
    assert await service.db.revoked_serials(0) == []


def _public(service: LoginService) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(service.public_key)


# ---------------------------------------------------------------- password and deletion


async def test_change_password(service: LoginService) -> None:
    await registered(service)
    with pytest.raises(WeakPassword):
        await service.change_password("alice", PASSWORD, "short", SOURCE)
    with pytest.raises(WrongCredentials):
        await service.change_password("alice", "wrong-Pass-99", "green-Heron-77", SOURCE)
    await service.change_password("alice", PASSWORD, "green-Heron-77", SOURCE)
    with pytest.raises(WrongCredentials):
        await login(service)
    await service.login("alice", "green-Heron-77", DEVICE, KEY, None, SOURCE)


async def test_delete_account_revokes_every_certificate(service: LoginService) -> None:
    await registered(service)
    await registered(service, "bob")
    certs = [await login(service, key=KEY), await login(service, key=OTHER_KEY)]
    bobs = await login(service, "bob")
    with pytest.raises(WrongCredentials):
        await service.delete_account("alice", "wrong-Pass-99", SOURCE)
    revoked = await service.delete_account("Alice", PASSWORD, SOURCE)
    assert sorted(revoked) == sorted(parse_certificate(c)[0].serial for c in certs)
    listed = verify_revocation_list(await service.revocation_list(), _public(service))
    assert listed.serials == set(revoked)
    assert parse_certificate(bobs)[0].serial not in listed.serials
    with pytest.raises(WrongCredentials):
        await login(service)
    with pytest.raises(Unauthorized):
        await service.renew(certs[0], KEY)
    with pytest.raises(NotFound):
        await service.profile("alice")
    await registered(service)  # the name is free again


# ---------------------------------------------------------------- supernodes


SN_KEY = bytes(range(64, 96))
SN_ADDRESS = Address.parse("192.0.2.10:33033")


async def test_enrollment_token_is_one_time_and_only_its_hash_is_stored(
    service: LoginService,
) -> None:
    token = await service.create_enrollment_token()
    assert len(token) >= 40
    async with service.db.transaction(write=False) as conn:
        stored = (await conn.execute(select(enrollment_tokens.c.token_hash))).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).digest()]
    enrolled = await service.enroll_supernode(token, SN_KEY, None, SN_ADDRESS)
    assert re.fullmatch(r"sn-[0-9a-f]{16}", enrolled.node_id)
    cert = verifier(service).verify(
        enrolled.certificate,
        service.clock(),
        role=Role.SUPERNODE,
        subject=enrolled.node_id,
        static_key=SN_KEY,
    )
    assert cert.body.expires_at == enrolled.expires_at == int(service.clock()) + 7 * DAY
    with pytest.raises(Unauthorized, match="used already"):
        await service.enroll_supernode(token, SN_KEY, None, SN_ADDRESS)


async def test_expired_and_unknown_tokens_are_refused(service: LoginService, clock: Any) -> None:
    token = await service.create_enrollment_token(ttl=60)
    clock.advance(61)
    with pytest.raises(Unauthorized, match="expired"):
        await service.enroll_supernode(token, SN_KEY, None, SN_ADDRESS)
    with pytest.raises(Unauthorized):
        await service.enroll_supernode("made-up-token", SN_KEY, None, SN_ADDRESS)
    with pytest.raises(BadRequest):
        await service.enroll_supernode("", SN_KEY, None, SN_ADDRESS)
    assert await service.bootstrap_supernodes() == []


async def test_supernode_renewal_refreshes_bootstrap_order(
    service: LoginService, clock: Any
) -> None:
    certs = []
    for n in range(3):
        token = await service.create_enrollment_token()
        key = bytes([n + 1]) * 32
        address = Address.parse(f"192.0.2.{n + 1}:4000")
        certs.append((await service.enroll_supernode(token, key, None, address), key))
        clock.advance(10)
    addresses = [str(a) for a in await service.bootstrap_supernodes()]
    assert addresses == ["192.0.2.3:4000", "192.0.2.2:4000", "192.0.2.1:4000"]
    (first, key) = certs[0]
    renewed = await service.renew(
        first.certificate, key, public_address=Address.parse("[2001:db8::1]:4000")
    )
    assert renewed.expires_at == int(service.clock()) + 7 * DAY
    addresses = [str(a) for a in await service.bootstrap_supernodes()]
    assert addresses == ["[2001:db8::1]:4000", "192.0.2.3:4000", "192.0.2.2:4000"]
    clock.advance(DAY - 5)
    assert [str(a) for a in await service.bootstrap_supernodes()] == ["[2001:db8::1]:4000"]


async def test_lifetimes_are_configurable(db: Database, ls_key: Ed25519PrivateKey) -> None:
    config = LoginServiceConfig(
        user_certificate_lifetime_s=600, supernode_certificate_lifetime_s=900
    )
    service = LoginService(db, ls_key, config=config, hasher=PasswordHasher(TEST_COST))
    await registered(service)
    issued = await service.login("alice", PASSWORD, DEVICE, KEY, None, SOURCE, now=1000.0)
    assert issued.expires_at == 1600
    token = await service.create_enrollment_token(now=1000.0)
    enrolled = await service.enroll_supernode(token, SN_KEY, None, None, now=1000.0)
    assert enrolled.expires_at == 1900
    assert await service.bootstrap_supernodes(now=1000.0) == []  # no address reported


async def test_prune_forgets_long_expired_certificates(service: LoginService, clock: Any) -> None:
    await registered(service)
    serial = parse_certificate(await login(service))[0].serial
    clock.advance(3 * DAY)
    assert await service.prune() >= 1
    assert await service.db.get_certificate(serial) is None
