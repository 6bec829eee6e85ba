"""The login-server process: key, database, service and endpoint, wired together.

:func:`load_or_create_keys` keeps the server's identity in its data dir
(``loginserver.key``, 0600): an Ed25519 signing key, whose public half is
what clients and supernodes pin, and an X25519 static key for Noise. At each
start the server signs itself a ``LOGIN_SERVER`` certificate for that static
key, so a client verifies the server exactly as it verifies any peer: against
the pinned key.

:class:`LoginServer` opens the database (SQLite by default, PostgreSQL by
URL), listens on UDP and TCP on the same port, and answers requests through
:func:`hopline.loginserver.handler.handle`. It accepts anonymous clients
(registration and login come before a device has a certificate) and
certified users and supernodes (renewal, logout).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopline.connection import Expectation
from hopline.crypto.keys import IdentityKeys
from hopline.identity import CertificateBody, Role, issue_certificate
from hopline.identity.certificate import public_bytes
from hopline.loginserver.db import Database
from hopline.loginserver.handler import PeerInfo, handle
from hopline.loginserver.passwords import PRODUCTION_COST, Argon2Cost, PasswordHasher
from hopline.loginserver.service import LoginService
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.wire import Address, Message

log = logging.getLogger("hopline.loginserver")
KEY_FILE = "loginserver.key"
SELF_CERT_LIFETIME_S = 30 * 24 * 3600
PRUNE_INTERVAL_S = 3600.0


def load_or_create_keys(data_dir: Path) -> tuple[IdentityKeys, bool]:
    """The server's keys from its data dir, created on first use; (keys, created)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    if path.exists():
        return IdentityKeys.load(path), False
    keys = IdentityKeys.generate()
    keys.save(path)
    return keys, True


def public_key_text(keys: IdentityKeys) -> str:
    """The pinnable public key: base64 of the Ed25519 public key."""
    return base64.b64encode(public_bytes(keys.signing.private_key.public_key())).decode()


def default_db_url(data_dir: Path) -> str:
    """``sqlite:///DATA_DIR/accounts.sqlite3``."""
    return f"sqlite:///{(data_dir / 'accounts.sqlite3').resolve()}"


def self_certificate(keys: IdentityKeys, now: float) -> bytes:
    """A LOGIN_SERVER certificate for the server's own static key."""
    signing = keys.signing.private_key
    body = CertificateBody(
        version=1,
        role=Role.LOGIN_SERVER,
        subject="loginserver",
        device_id=b"loginserver",
        static_key=keys.static.public,
        issued_at=int(now),
        expires_at=int(now) + SELF_CERT_LIFETIME_S,
        serial=0,
        issuer=public_bytes(signing.public_key()),
    )
    return issue_certificate(signing, body)


@dataclass
class LoginServer:
    """A running login server."""

    keys: IdentityKeys
    database: Database
    service: LoginService
    endpoint: Endpoint
    address: tuple[str, int]
    housekeeping: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        listen: Address,
        data_dir: Path,
        db_url: str | None = None,
        cost: Argon2Cost = PRODUCTION_COST,
    ) -> LoginServer:
        """Open keys and database, and listen on UDP and TCP."""
        keys, _ = load_or_create_keys(data_dir)
        database = await Database.open(db_url or default_db_url(data_dir))
        service = LoginService(database, keys.signing.private_key, hasher=PasswordHasher(cost))

        async def on_request(pc: PeerConnection, message: Message) -> Message | None:
            peer = pc.peer
            info = PeerInfo(
                source=f"{pc.address[0]}:{pc.address[1]}",
                static_key=peer.static_key if peer is not None else None,
            )
            return await handle(service, message, info)

        endpoint = Endpoint(
            static=keys.static,
            certificate=self_certificate(keys, time.time()),
            verifier=service.verifier,
            accept=Expectation(anonymous_ok=True),
            handler=on_request,
        )
        address = await endpoint.listen(listen)
        server = cls(keys, database, service, endpoint, address)
        server.housekeeping = asyncio.get_running_loop().create_task(server._prune_forever())
        return server

    async def _prune_forever(self) -> None:
        """Drop long-expired certificates, dead tokens and stale throttle entries hourly."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            removed = await self.service.prune()
            log.info("pruned %d expired entries", removed)

    def ready_report(self) -> dict[str, Any]:
        """The one JSON line printed when the server is ready."""
        return {
            "ready": True,
            "role": "loginserver",
            "listen": str(Address.of(*self.address)),
            "public_key": public_key_text(self.keys),
            "database": self.database.dialect,
        }

    async def close(self) -> None:
        """Stop answering and close the database."""
        if self.housekeeping is not None:
            self.housekeeping.cancel()
        self.endpoint.close()
        await asyncio.sleep(0)
        await self.database.close()
