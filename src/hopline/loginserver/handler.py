"""Login-server requests to service calls, and back to reply messages.

:func:`handle` takes one decoded request (a :class:`~hopline.wire.Message`)
and what the secure session knows about the peer (:class:`PeerInfo`), calls
:class:`~hopline.loginserver.service.LoginService`, and returns the reply
with the request's ``request_id``: the command's reply message, ``Done``, or
an :class:`~hopline.wire.commands.ErrorReply` (code, reason,
``retry_after_ms``, ``failed_command``).

Requests that bind a key to a certificate (Login, Enroll) must come over a
session that proved that static key; Renew and Logout must come over the
session of the certificate's key. Requests other than the login server's
commands are answered with 400. A :class:`LoginError` becomes its
ErrorReply; an unreachable database becomes 503 with a retry hint. Any
other exception is a bug and propagates.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hopline.loginserver.db import DatabaseUnavailable
from hopline.loginserver.service import Forbidden, LoginError, LoginService
from hopline.wire.commands import (
    BootstrapReply,
    ChangePassword,
    DeleteAccount,
    Done,
    Enroll,
    EnrollReply,
    ErrorCode,
    ErrorReply,
    GetBootstrap,
    GetRevocations,
    Login,
    LoginReply,
    Logout,
    Register,
    RegisterReply,
    Renew,
    RenewReply,
    RevocationsReply,
)
from hopline.wire.schema import Message
from hopline.wire.types import Kind

log = logging.getLogger(__name__)

DATABASE_RETRY_MS = 1000


@dataclass(frozen=True)
class PeerInfo:
    """What the transport knows about the requesting peer.

    ``source`` is its address as text (``host:port``); ``static_key`` is the
    X25519 static key its secure session proved, or None if it proved none.
    """

    source: str
    static_key: bytes | None = None


_Handler = Callable[[LoginService, Message, PeerInfo, float], Awaitable[Message]]


def _require_session_key(peer: PeerInfo, claimed: bytes) -> None:
    if peer.static_key is None:
        raise Forbidden("this request needs a secure session with a proven static key")
    if not hmac.compare_digest(peer.static_key, claimed):
        raise Forbidden("the static key in the request is not this session's key")


async def _register(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, Register)
    profile = await service.register(
        msg.username,
        msg.password,
        full_name=msg.full_name,
        city=msg.city,
        country=msg.country,
        language=msg.language,
        source=peer.source,
        now=now,
    )
    return RegisterReply(
        username=profile.username, created_at=int(profile.created_at), request_id=msg.request_id
    )


async def _login(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, Login)
    _require_session_key(peer, msg.static_key)
    issued = await service.login(
        msg.username,
        msg.password,
        msg.device_id,
        msg.static_key,
        msg.signing_key,
        peer.source,
        now,
    )
    return LoginReply(
        certificate=issued.certificate,
        expires_at=issued.expires_at,
        server_time=int(now),
        bootstrap=tuple(await service.bootstrap_supernodes(now)),
        revocations=await service.revocation_list(now),
        request_id=msg.request_id,
    )


async def _renew(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, Renew)
    issued = await service.renew(
        msg.certificate, peer.static_key, now, public_address=msg.public_address
    )
    return RenewReply(
        certificate=issued.certificate, expires_at=issued.expires_at, request_id=msg.request_id
    )


async def _change_password(
    service: LoginService, msg: Message, peer: PeerInfo, now: float
) -> Message:
    assert isinstance(msg, ChangePassword)
    await service.change_password(
        msg.username, msg.old_password, msg.new_password, peer.source, now
    )
    return Done(request_id=msg.request_id)


async def _delete_account(
    service: LoginService, msg: Message, peer: PeerInfo, now: float
) -> Message:
    assert isinstance(msg, DeleteAccount)
    await service.delete_account(msg.username, msg.password, peer.source, now)
    return Done(request_id=msg.request_id)


async def _revocations(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, GetRevocations)
    signed = await service.signed_revocations(now)
    return RevocationsReply(
        revocations=signed.data, issued_at=signed.issued_at, request_id=msg.request_id
    )


async def _enroll(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, Enroll)
    _require_session_key(peer, msg.static_key)
    enrolled = await service.enroll_supernode(
        msg.token, msg.static_key, msg.signing_key, msg.public_address, now
    )
    return EnrollReply(
        node_id=enrolled.node_id,
        certificate=enrolled.certificate,
        expires_at=enrolled.expires_at,
        request_id=msg.request_id,
    )


async def _logout(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, Logout)
    await service.logout(msg.certificate, peer.static_key, now)
    return Done(request_id=msg.request_id)


async def _bootstrap(service: LoginService, msg: Message, peer: PeerInfo, now: float) -> Message:
    assert isinstance(msg, GetBootstrap)
    supernodes = tuple(await service.bootstrap_supernodes(now))
    return BootstrapReply(supernodes=supernodes, request_id=msg.request_id)


HANDLERS: dict[type[Message], _Handler] = {
    Register: _register,
    Login: _login,
    Renew: _renew,
    ChangePassword: _change_password,
    DeleteAccount: _delete_account,
    GetRevocations: _revocations,
    Enroll: _enroll,
    Logout: _logout,
    GetBootstrap: _bootstrap,
}
"""The requests the login server answers, by message class."""


def error_reply(request: Message, error: LoginError) -> ErrorReply:
    """The ErrorReply that answers ``request`` with ``error``."""
    return ErrorReply(
        code=int(error.code),
        reason=error.message,
        retry_after_ms=error.retry_after_ms,
        failed_command=request.command_id,
        request_id=request.request_id,
    )


async def handle(
    service: LoginService, request: Message, peer: PeerInfo, now: float | None = None
) -> Message:
    """Answer one login-server request (see the module docstring)."""
    now = service.clock() if now is None else now
    handler = HANDLERS.get(type(request))
    if handler is None or request.KIND is not Kind.REQUEST:
        name = getattr(request, "NAME", type(request).__name__)
        unsupported = LoginError(
            ErrorCode.BAD_REQUEST, f"the login server does not answer {name!r} requests"
        )
        return error_reply(request, unsupported)
    try:
        return await handler(service, request, peer, now)
    except LoginError as error:
        return error_reply(request, error)
    except DatabaseUnavailable as exc:
        log.warning("%s failed: %s", type(request).__name__, exc)
        unavailable = LoginError(
            ErrorCode.UNAVAILABLE,
            "the account database is unavailable; try again later",
            DATABASE_RETRY_MS,
        )
        return error_reply(request, unavailable)
