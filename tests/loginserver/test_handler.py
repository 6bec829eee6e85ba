"""Wire requests to service calls and back: replies, ErrorReplies, session-key checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hopline.identity import CertificateVerifier, Role, parse_certificate
from hopline.loginserver import (
    TEST_COST,
    Database,
    DatabaseUnavailable,
    LoginService,
    PasswordHasher,
    PeerInfo,
    handle,
)
from hopline.wire import Address, ErrorCode, ErrorReply, Message, decode, encode
from hopline.wire.commands import (
    BootstrapReply,
    ChangePassword,
    DeleteAccount,
    Done,
    Echo,
    Enroll,
    EnrollReply,
    GetBootstrap,
    GetRevocations,
    Login,
    LoginReply,
    Logout,
    Ping,
    Register,
    RegisterReply,
    Renew,
    RenewReply,
    RevocationsReply,
)

NOW = 1_800_000_000.0
PASSWORD = "blue-Otter-42"
KEY = bytes(range(32))
PEER = PeerInfo(source="198.51.100.7:40000", static_key=KEY)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LoginService]:
    database = await Database.open(f"sqlite:///{tmp_path / 'ls.sqlite3'}", now=NOW)
    try:
        yield LoginService(
            database,
            Ed25519PrivateKey.generate(),
            hasher=PasswordHasher(TEST_COST),
            clock=lambda: NOW,
        )
    finally:
        await database.close()


async def ask(service: LoginService, request: Message, peer: PeerInfo = PEER) -> Message:
    """Handle ``request`` and check the reply survives the wire."""
    reply = await handle(service, request, peer, NOW)
    assert reply.request_id == request.request_id
    again = decode(encode(reply))
    assert type(again) is type(reply)
    return reply


def error_of(reply: Message) -> ErrorReply:
    assert isinstance(reply, ErrorReply), reply
    return reply


async def signed_in(service: LoginService) -> LoginReply:
    await ask(service, Register(username="alice", password=PASSWORD, request_id=1))
    reply = await ask(
        service,
        Login(username="alice", password=PASSWORD, device_id=b"dev", static_key=KEY, request_id=2),
    )
    assert isinstance(reply, LoginReply)
    return reply


async def test_register_and_login(service: LoginService) -> None:
    reply = await ask(
        service, Register(username="Alice", password=PASSWORD, country="ee", request_id=11)
    )
    assert isinstance(reply, RegisterReply)
    assert (reply.username, reply.created_at) == ("alice", int(NOW))
    login = await ask(
        service,
        Login(username="alice", password=PASSWORD, device_id=b"dev", static_key=KEY, request_id=12),
    )
    assert isinstance(login, LoginReply)
    assert login.server_time == int(NOW)
    assert login.expires_at == int(NOW) + 86_400
    assert login.revocations is not None
    assert login.bootstrap == ()
    cert = CertificateVerifier(service.public_key).verify(
        login.certificate, NOW, role=Role.USER, subject="alice", static_key=KEY
    )
    assert cert.body.device_id == b"dev"


async def test_login_must_certify_the_sessions_own_key(service: LoginService) -> None:
    await ask(service, Register(username="alice", password=PASSWORD, request_id=1))
    request = Login(
        username="alice", password=PASSWORD, device_id=b"d", static_key=bytes(32), request_id=3
    )
    error = error_of(await ask(service, request))
    assert (error.code, error.failed_command) == (ErrorCode.FORBIDDEN, Login.COMMAND)
    keyless = PeerInfo(source=PEER.source, static_key=None)
    error = error_of(await ask(service, request, keyless))
    assert error.code == ErrorCode.FORBIDDEN


async def test_wrong_password_then_throttled_with_retry_after(service: LoginService) -> None:
    await ask(service, Register(username="alice", password=PASSWORD, request_id=1))
    wrong = Login(
        username="alice", password="wrong-Pass-99", device_id=b"d", static_key=KEY, request_id=5
    )
    errors = [error_of(await ask(service, wrong)) for _ in range(10)]
    assert errors[0].code == ErrorCode.UNAUTHORIZED
    assert errors[0].reason == "wrong username or password"
    assert errors[0].retry_after_ms is None
    assert errors[-1].code == ErrorCode.TOO_MANY_REQUESTS
    assert errors[-1].retry_after_ms is not None and errors[-1].retry_after_ms > 0
    assert errors[-1].failed_command == Login.COMMAND


async def test_renew_and_logout_use_the_sessions_key(service: LoginService) -> None:
    login = await signed_in(service)
    stranger = PeerInfo(source=PEER.source, static_key=bytes(32))
    refused = error_of(await ask(service, Renew(certificate=login.certificate), stranger))
    assert refused.code == ErrorCode.FORBIDDEN
    renewed = await ask(service, Renew(certificate=login.certificate, request_id=21))
    assert isinstance(renewed, RenewReply)
    assert parse_certificate(renewed.certificate)[0].static_key == KEY
    done = await ask(service, Logout(certificate=renewed.certificate, request_id=22))
    assert isinstance(done, Done)
    revocations = await ask(service, GetRevocations(request_id=23))
    assert isinstance(revocations, RevocationsReply)
    checker = CertificateVerifier(service.public_key)
    assert checker.update_revocations(revocations.revocations)
    assert parse_certificate(renewed.certificate)[0].serial in checker.revoked
    # The login signed an (empty) list at NOW; the changed one must be newer.
    assert revocations.issued_at == int(NOW) + 1


async def test_change_password_and_delete_account(service: LoginService) -> None:
    await signed_in(service)
    changed = await ask(
        service,
        ChangePassword(
            username="alice", old_password=PASSWORD, new_password="green-Heron-77", request_id=31
        ),
    )
    assert isinstance(changed, Done)
    weak = error_of(
        await ask(
            service,
            ChangePassword(username="alice", old_password="green-Heron-77", new_password="x"),
        )
    )
    assert weak.code == ErrorCode.BAD_REQUEST
    assert "at least 10" in weak.reason
    gone = await ask(
        service, DeleteAccount(username="alice", password="green-Heron-77", request_id=32)
    )
    assert isinstance(gone, Done)
    taken_back = error_of(await ask(service, DeleteAccount(username="alice", password=PASSWORD)))
    assert taken_back.code == ErrorCode.UNAUTHORIZED


async def test_enroll_and_bootstrap(service: LoginService) -> None:
    token = await service.create_enrollment_token()
    address = Address.parse("[2001:db8::5]:33033")
    sn_key = bytes(range(7, 39))
    sn_peer = PeerInfo(source="[2001:db8::5]:50000", static_key=sn_key)
    request = Enroll(token=token, static_key=sn_key, public_address=address, request_id=41)
    mismatch = error_of(await ask(service, request))  # PEER's session key is not sn_key
    assert mismatch.code == ErrorCode.FORBIDDEN
    enrolled = await ask(service, request, sn_peer)
    assert isinstance(enrolled, EnrollReply)
    assert enrolled.node_id.startswith("sn-")
    again = error_of(await ask(service, request, sn_peer))
    assert (again.code, again.failed_command) == (ErrorCode.UNAUTHORIZED, Enroll.COMMAND)
    bootstrap = await ask(service, GetBootstrap(request_id=42))
    assert isinstance(bootstrap, BootstrapReply)
    assert bootstrap.supernodes == (address,)
    login = await signed_in(service)
    assert login.bootstrap == (address,)


@pytest.mark.parametrize("request_", [Ping(nonce=1, request_id=9), Echo(data=b"x", request_id=9)])
async def test_requests_the_login_server_does_not_answer_are_400(
    service: LoginService, request_: Message
) -> None:
    error = error_of(await ask(service, request_))
    assert error.code == ErrorCode.BAD_REQUEST
    assert error.failed_command == request_.command_id
    assert "does not answer" in error.reason


async def test_a_reply_sent_as_a_request_is_400(service: LoginService) -> None:
    error = error_of(await ask(service, Done(request_id=4)))
    assert error.code == ErrorCode.BAD_REQUEST


async def test_an_unavailable_database_is_503(
    service: LoginService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: object, **kwargs: object) -> None:
        raise DatabaseUnavailable("database sqlite:///x unavailable: disk I/O error")

    monkeypatch.setattr(service.db, "account_exists", down)
    error = error_of(await ask(service, Register(username="alice", password=PASSWORD)))
    assert (error.code, error.retry_after_ms) == (ErrorCode.UNAVAILABLE, 1000)
    assert "disk" not in error.reason  # internals stay in the log


async def test_bugs_are_not_swallowed(
    service: LoginService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(service.db, "account_exists", broken)
    with pytest.raises(ZeroDivisionError):
        await handle(service, Register(username="alice", password=PASSWORD), PEER, NOW)
