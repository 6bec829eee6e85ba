"""Supernode certificates: enroll once with a token, then renew.

An operator prints a one-time token with ``hopline loginserver enroll``; the
new supernode presents it (over a secure connection that proves its static
key) and receives a ``SUPERNODE`` certificate for that key, with its node id
as subject. Before the certificate expires the supernode renews it over a
connection authenticated by the certificate itself, reporting its current
public address so the login server can offer it to clients as a bootstrap
node.
"""

from __future__ import annotations

from dataclasses import dataclass

from hopline.connection import Expectation
from hopline.crypto.keys import IdentityKeys
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import request_once
from hopline.wire import Address, Message
from hopline.wire.commands import Enroll, EnrollReply, Renew, RenewReply

TIMEOUT = 30.0


@dataclass(frozen=True)
class SupernodeCertificate:
    """A supernode's certificate and what it says."""

    node_id: str
    certificate: bytes
    expires_at: int


async def _request(
    login_server: Address,
    ls_key: bytes,
    keys: IdentityKeys,
    certificate: bytes | None,
    request: Message,
) -> Message:
    return await request_once(
        login_server.as_tuple(),
        request,
        static=keys.static,
        certificate=certificate,
        verifier=CertificateVerifier(ls_key),
        expect=Expectation(role=Role.LOGIN_SERVER),
        timeout=TIMEOUT,
    )


async def enroll(
    login_server: Address,
    ls_key: bytes,
    keys: IdentityKeys,
    token: str,
    public_address: Address | None = None,
) -> SupernodeCertificate:
    """Trade a one-time token for a supernode certificate."""
    request = Enroll(
        token=token,
        static_key=keys.static.public,
        signing_key=keys.public.signing,
        public_address=public_address,
    )
    reply = await _request(login_server, ls_key, keys, None, request)
    assert isinstance(reply, EnrollReply)
    return SupernodeCertificate(reply.node_id, reply.certificate, reply.expires_at)


async def renew(
    login_server: Address,
    ls_key: bytes,
    keys: IdentityKeys,
    current: SupernodeCertificate,
    public_address: Address | None = None,
) -> SupernodeCertificate:
    """Renew the certificate before it expires."""
    request = Renew(certificate=current.certificate, public_address=public_address)
    reply = await _request(login_server, ls_key, keys, current.certificate, request)
    assert isinstance(reply, RenewReply)
    return SupernodeCertificate(current.node_id, reply.certificate, reply.expires_at)
