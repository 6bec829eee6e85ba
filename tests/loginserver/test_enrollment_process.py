"""Supernode enrollment and renewal against a real login-server process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.crypto.keys import IdentityKeys
from hopline.demo.cluster import Cluster, Proc, enrollment_token
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import ConnectionLost, RequestError
from hopline.supernode.enrollment import enroll, renew
from hopline.wire import Address


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Proc]:
    args = ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "ls")]
    with Cluster(tmp_path / "logs") as cluster:
        yield cluster.start("loginserver", args)


def new_token(tmp_path: Path) -> str:
    return enrollment_token(tmp_path / "ls")


async def test_enroll_renew_and_bootstrap(server: Proc, tmp_path: Path) -> None:
    address = Address.parse(server.ready["listen"])
    ls_key = parse_ls_key(server.ready["public_key"])
    keys = IdentityKeys.generate()
    public = Address.parse("203.0.113.7:33033")
    cert = await enroll(address, ls_key, keys, new_token(tmp_path), public)

    verifier = CertificateVerifier(ls_key)
    checked = verifier.verify(
        cert.certificate,
        time.time(),
        role=Role.SUPERNODE,
        subject=cert.node_id,
        static_key=keys.static.public,
    )
    assert checked.body.expires_at - time.time() > 6 * 86400  # supernodes: a week

    renewed = await renew(address, ls_key, keys, cert, public)
    body = verifier.verify(renewed.certificate, time.time(), role=Role.SUPERNODE).body
    assert body.serial != checked.body.serial and body.expires_at >= checked.body.expires_at

    # a logged-in client is offered the enrolled supernode as a bootstrap node
    profile = Profile.open(tmp_path / "client")
    profile.pin_login_server(address, ls_key)
    await account.register(profile, "alice", "correct horse battery staple")
    result = await account.login(profile, "alice", "correct horse battery staple")
    assert result.bootstrap == (str(public),)


async def test_a_token_works_once(server: Proc, tmp_path: Path) -> None:
    address = Address.parse(server.ready["listen"])
    ls_key = parse_ls_key(server.ready["public_key"])
    token = new_token(tmp_path)
    await enroll(address, ls_key, IdentityKeys.generate(), token)
    with pytest.raises(RequestError) as caught:
        await enroll(address, ls_key, IdentityKeys.generate(), token)
    assert caught.value.code in (401, 403)
    with pytest.raises(RequestError):
        await enroll(address, ls_key, IdentityKeys.generate(), "made-up-token-" + "x" * 30)


async def test_a_user_certificate_cannot_be_renewed_by_another_device(
    server: Proc, tmp_path: Path
) -> None:
    address = Address.parse(server.ready["listen"])
    ls_key = parse_ls_key(server.ready["public_key"])
    alice = Profile.open(tmp_path / "alice")
    alice.pin_login_server(address, ls_key)
    await account.register(alice, "alice", "correct horse battery staple")
    await account.login(alice, "alice", "correct horse battery staple")
    assert await account.renew(alice) > time.time()

    thief = Profile.open(tmp_path / "thief")
    thief.pin_login_server(address, ls_key)
    stolen = alice.certificate
    assert stolen is not None
    thief.store_certificate(stolen)  # the certificate without alice's device key
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="refused"):
        await account.renew(thief)
    assert time.monotonic() - started < 5  # told at once, not left to time out
