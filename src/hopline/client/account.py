"""Account operations against the login server, over a secure connection.

Each call opens a connection to the pinned login server, checks its
certificate (role ``LOGIN_SERVER``, signed by the pinned key, bound to the
static key its handshake proved), sends one request and closes. A device that
holds a valid certificate presents it; one that does not (not yet logged in,
or expired) connects anonymously, which the login server allows only for
registration, login and public lookups.

The connection is UDP first; when UDP has not connected within
``TCP_AFTER`` seconds (or failed), TCP to the same port joins the race and
the first handshake to complete carries the request — so a device on a
network that blocks UDP still logs in, a fraction of a second later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hopline.client.profile import Profile
from hopline.connection import Expectation
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.runtime.peer import Addr
from hopline.wire import Message
from hopline.wire.commands import (
    BootstrapReply,
    ChangePassword,
    DeleteAccount,
    GetBootstrap,
    Login,
    LoginReply,
    Logout,
    Register,
    RegisterReply,
    Renew,
    RenewReply,
)

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0  # password hashing on a busy server can take a while
TCP_AFTER = 0.5  # UDP's head start before TCP is tried alongside (Happy Eyeballs style)


@dataclass(frozen=True)
class LoginResult:
    """What a successful login gives the device."""

    username: str
    expires_at: int
    bootstrap: tuple[str, ...]
    server_time: int


def _current_certificate(profile: Profile) -> bytes | None:
    body = profile.certificate_body()
    if body is None or body.expires_at <= time.time():
        return None
    return profile.certificate


async def _call(
    profile: Profile, request: Message, *, anonymous: bool = False, bind: str | None = None
) -> Message:
    """One request on a fresh connection (``bind``: the local UDP address)."""
    address = profile.login_server.as_tuple()  # first: "no login server known" comes first
    endpoint = Endpoint(
        static=profile.keys.static,
        certificate=None if anonymous else _current_certificate(profile),
        verifier=CertificateVerifier(profile.ls_key),
    )
    try:
        if bind is not None:
            await endpoint.open_udp(bind, 0)
        pc = await connect_udp_then_tcp(endpoint, address)
        return await pc.request(request, timeout=REQUEST_TIMEOUT)
    finally:
        endpoint.close()


async def connect_udp_then_tcp(
    endpoint: Endpoint, address: Addr, *, tcp_after: float = TCP_AFTER
) -> PeerConnection:
    """Connect to the login server over UDP, racing TCP once UDP is late or failed.

    When both fail, UDP's error is raised (it is the usual path). The loser
    is cancelled; closing ``endpoint`` closes it if it connected anyway.
    """
    expect = Expectation(role=Role.LOGIN_SERVER)

    def dial(tcp: bool) -> asyncio.Future[PeerConnection]:
        attempt = endpoint.connect(address, expect, tcp=tcp, timeout=CONNECT_TIMEOUT)
        return asyncio.ensure_future(attempt)

    udp = dial(False)
    tcp: asyncio.Future[PeerConnection] | None = None
    pending: set[asyncio.Future[PeerConnection]] = {udp}
    try:
        while pending:
            wait = None if tcp is not None else tcp_after
            done, pending = await asyncio.wait(pending, timeout=wait, return_when="FIRST_COMPLETED")
            for attempt in done:
                if attempt.exception() is None:
                    return attempt.result()
            if tcp is None:
                tcp = dial(True)
                pending.add(tcp)
        error = udp.exception()
        assert error is not None  # both attempts are done and neither connected
        raise error
    finally:
        for attempt in pending:
            attempt.cancel()


async def register(
    profile: Profile,
    username: str,
    password: str,
    *,
    full_name: str | None = None,
    city: str | None = None,
    country: str | None = None,
    language: str | None = None,
    bind: str | None = None,
) -> str:
    """Create an account; return its canonical username (``bind``: local address)."""
    request = Register(
        username=username,
        password=password,
        full_name=full_name,
        city=city,
        country=country,
        language=language,
    )
    reply = await _call(profile, request, anonymous=True, bind=bind)
    assert isinstance(reply, RegisterReply)
    public = {"full_name": full_name, "city": city, "country": country, "language": language}
    profile.config["public_profile"] = {k: v for k, v in public.items() if v}
    profile.save_config()
    return reply.username


async def login(
    profile: Profile, username: str, password: str, bind: str | None = None
) -> LoginResult:
    """Log this device in: the login server certifies its keys (``bind``: local address)."""
    request = Login(
        username=username,
        password=password,
        device_id=profile.device_id,
        static_key=profile.keys.static.public,
        signing_key=profile.keys.public.signing,
    )
    reply = await _call(profile, request, anonymous=True, bind=bind)
    assert isinstance(reply, LoginReply)
    bootstrap = tuple(str(a) for a in reply.bootstrap)
    profile.store_certificate(reply.certificate, list(bootstrap))
    body = profile.certificate_body()
    assert body is not None
    return LoginResult(body.subject, reply.expires_at, bootstrap, reply.server_time)


async def renew(profile: Profile) -> int:
    """Renew the stored certificate before it expires; return the new expiry."""
    certificate = _current_certificate(profile)
    if certificate is None:
        raise PermissionError("no valid certificate to renew: log in again")
    reply = await _call(profile, Renew(certificate=certificate))
    assert isinstance(reply, RenewReply)
    profile.store_certificate(reply.certificate)
    return reply.expires_at


async def logout(profile: Profile) -> bool:
    """Revoke this device's certificate and forget it; False if none was held."""
    certificate = _current_certificate(profile)
    if certificate is not None:
        await _call(profile, Logout(certificate=certificate))
    had = profile.certificate is not None
    profile.forget_certificate()
    return had


async def bootstrap(profile: Profile) -> list[str]:
    """Supernodes the login server knows now (kept in the profile too)."""
    reply = await _call(profile, GetBootstrap())
    assert isinstance(reply, BootstrapReply)
    addresses = [str(a) for a in reply.supernodes]
    profile.config["bootstrap"] = addresses
    profile.save_config()
    return addresses


async def change_password(profile: Profile, username: str, old: str, new: str) -> None:
    """Change the account's password."""
    request = ChangePassword(username=username, old_password=old, new_password=new)
    await _call(profile, request, anonymous=True)


async def delete_account(profile: Profile, username: str, password: str) -> None:
    """Delete the account (all its certificates are revoked)."""
    await _call(profile, DeleteAccount(username=username, password=password), anonymous=True)
    profile.forget_certificate()
