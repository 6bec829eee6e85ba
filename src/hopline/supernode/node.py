"""The supernode process: identity, certificate, endpoint.

A supernode keeps its identity in its data dir:

| file | what |
|---|---|
| ``supernode.key`` | X25519 static + Ed25519 signing keys (PEM, 0600) |
| ``certificate`` | the supernode certificate from the login server (0600) |
| ``node.json`` | node id, pinned login server address and key |
| ``offline.sqlite3`` | sealed offline envelopes of the users whose slots it owns |

On first start it needs a one-time enrollment token (``hopline loginserver
enroll``); later starts reuse the stored certificate and renew it at once,
and again when half its lifetime has passed (checked every
:data:`RENEW_CHECK_S`). Enrollment and every renewal report the address the
node listens on (or ``--public-address``), so the login server can hand it
out to clients as a bootstrap node. It serves certified users and supernodes over UDP and TCP
on one port, answers pings, forwards envelopes between its peers, relays
datagrams for users behind NAT (:mod:`hopline.supernode.relay_service`), and
tells clients which other supernodes are alive (:mod:`hopline.supernode.hosts`).

Stopping (:meth:`Supernode.close`, on SIGTERM or SIGINT) is a graceful
leave: the node tells the overlay it is leaving, hands every presence record
and profile it holds to the nodes that now own their slots
(:mod:`hopline.supernode.handover`, bounded by ``handover_timeout``), and
only then closes its sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from hopline.client.profile import format_ls_key, write_private
from hopline.connection import Expectation
from hopline.crypto.keys import IdentityKeys
from hopline.identity import CertificateError, CertificateVerifier, Role, parse_certificate
from hopline.nat.service import StunService, partners_after
from hopline.runtime.endpoint import Endpoint, PeerConnection, ServiceError
from hopline.supernode.directory_service import REPLICATION, DirectoryService
from hopline.supernode.enrollment import SupernodeCertificate, enroll, renew
from hopline.supernode.handover import (
    HANDOVER_TIMEOUT_S,
    HandoverPlan,
    HandoverReport,
    hand_over,
    leave_targets,
)
from hopline.supernode.hosts import HostsService
from hopline.supernode.metrics import Snapshot, SnapshotCollector, serve_metrics
from hopline.supernode.offline_service import OfflineService
from hopline.supernode.overlay import OverlayNode
from hopline.supernode.relay_service import RelayService
from hopline.supernode.search_service import SearchService
from hopline.wire import Address, ErrorCode, Message
from hopline.wire.membership import MembershipLeave, MemberState

log = logging.getLogger("hopline.supernode")
KEY_FILE, CERT_FILE, NODE_FILE = "supernode.key", "certificate", "node.json"
RENEW_CHECK_S = 3600.0
LEAVE_GRACE_S = 0.2


class SupernodeError(Exception):
    """The supernode cannot start; the message says why."""


def _load_keys(data_dir: Path) -> IdentityKeys:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    if not path.exists():
        IdentityKeys.generate().save(path)
    return IdentityKeys.load(path)


def _stored_certificate(data_dir: Path, ls_key: bytes) -> SupernodeCertificate | None:
    """The stored certificate if it is still valid under ``ls_key``."""
    path = data_dir / CERT_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    try:
        body = parse_certificate(data)[0]
        CertificateVerifier(ls_key).verify(data, time.time())
    except CertificateError as exc:
        log.warning(
            "stored certificate unusable (%s): enrolling again",
            exc.reason,
            extra={"reason": exc.reason},
        )
        return None
    return SupernodeCertificate(body.subject, data, body.expires_at)


def _needs_renewal(cert: SupernodeCertificate, now: float) -> bool:
    body = parse_certificate(cert.certificate)[0]
    return now > body.issued_at + (body.expires_at - body.issued_at) / 2


@dataclass
class Supernode:
    """A running supernode."""

    data_dir: Path
    keys: IdentityKeys
    login_server: Address
    ls_key: bytes
    public_address: Address | None
    certificate: SupernodeCertificate
    endpoint: Endpoint
    address: tuple[str, int]
    overlay: OverlayNode
    directory: DirectoryService
    search: SearchService
    handover_timeout: float = HANDOVER_TIMEOUT_S
    housekeeping: asyncio.Task[None] | None = None
    metrics: SnapshotCollector | None = None
    metrics_server: WSGIServer | None = None
    relay: RelayService | None = None
    stun: StunService | None = None
    offline: OfflineService | None = None

    @classmethod
    async def start(
        cls,
        listen: Address,
        login_server: Address,
        ls_key: bytes,
        data_dir: Path,
        *,
        token: str | None = None,
        public_address: Address | None = None,
        join: list[Address] | None = None,
        metrics: Address | None = None,
        replication: int = REPLICATION,
        handover_timeout: float = HANDOVER_TIMEOUT_S,
        stun_alt_port: int | None = None,
    ) -> Supernode:
        """Enroll or renew as needed, listen on UDP and TCP, join the overlay.

        ``replication`` (owners per directory slot) must be the same on every
        supernode of a network; ``handover_timeout`` bounds the graceful leave.
        ``stun_alt_port``: the STUN alternate port (None: main port + 1, 0: none).
        """
        keys = _load_keys(data_dir)
        services: list[Service] = []
        overlays: list[OverlayNode] = []

        async def on_request(pc: PeerConnection, message: Message) -> Message | None:
            if isinstance(message, MembershipLeave) and overlays:
                overlays[0].on_notice(pc, message)  # ahead of a leaving node's handover
                return None
            for service in services:
                reply = await service.handle(pc, message)
                if reply is not None:
                    return reply
            raise ServiceError(ErrorCode.BAD_REQUEST, f"not served here: {message.NAME!r}")

        verifier = CertificateVerifier(ls_key)
        endpoint = Endpoint(
            static=keys.static,
            certificate=None,  # set below, once enrolled with the address we listen on
            verifier=verifier,
            accept=Expectation(),  # any role the login server certified
            handler=on_request,
            forwarding=True,
        )
        address = await endpoint.listen(listen)
        advertised = public_address or Address.of(*address)
        try:
            cert = await _certificate(data_dir, keys, login_server, ls_key, token, advertised)
        except BaseException:
            endpoint.close()
            raise
        endpoint.set_certificate(cert.certificate)
        overlay = OverlayNode(endpoint, cert.node_id, advertised)
        directory = DirectoryService(endpoint, overlay, verifier, replication)
        search = SearchService(endpoint, overlay, replication)
        offline = OfflineService(endpoint, overlay, lambda: directory.ownership, data_dir)

        def on_change() -> None:
            directory.refresh()
            search.refresh()
            offline.refresh()

        overlay.on_change = on_change
        overlays.append(overlay)
        relay_host = str(public_address.host) if public_address is not None else None
        relay = RelayService(endpoint, address[0], relay_host)  # after the overlay's handler
        services += [directory, search, offline, HostsService(overlay), relay]
        stun = await StunService.start(  # after the relay: chains to its datagram handler
            endpoint, advertised, stun_alt_port, partners=lambda: _stun_partners(overlay)
        )
        node = cls(
            data_dir,
            keys,
            login_server,
            ls_key,
            public_address,
            cert,
            endpoint,
            address,
            overlay,
            directory,
            search,
            handover_timeout=handover_timeout,
            relay=relay,
            stun=stun,
            offline=offline,
        )
        node.save_identity()
        if metrics is not None:
            node.metrics, node.metrics_server = serve_metrics(*metrics.as_tuple())
        overlay.join(join or [])
        offline.start()
        node.housekeeping = asyncio.get_running_loop().create_task(node._housekeeping())
        return node

    def save_identity(self) -> None:
        """Write node.json: what this node is and whom it trusts."""
        doc = {
            "node_id": self.certificate.node_id,
            "login_server": str(self.login_server),
            "ls_key": format_ls_key(self.ls_key),
        }
        write_private(self.data_dir / NODE_FILE, json.dumps(doc, indent=2).encode())

    async def _housekeeping(self) -> None:
        """Refresh the metrics snapshot every second; check the certificate hourly."""
        checked = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            self._publish_metrics()
            if time.monotonic() - checked >= RENEW_CHECK_S:
                checked = time.monotonic()
                await self._renew_if_due()

    def _publish_metrics(self) -> None:
        if self.metrics is None:
            return
        roles: Counter[str] = Counter()
        for pc in self.endpoint.connections.values():
            cert = pc.peer.certificate if pc.peer is not None else None
            roles[Role(cert.role).name.lower() if cert is not None else "anonymous"] += 1
        refused = Counter({f"directory:{k}": v for k, v in self.directory.store.refused.items()})
        dropped = Counter(self.endpoint.dropped) + Counter(self.overlay.dropped) + refused
        if self.offline is not None:
            dropped += Counter(
                {f"offline:{k}": v for k, v in self.offline.db.store.refused.items()}
            )
        relay = self.relay.table if self.relay is not None else None
        dropped += self.relay.drop_counts() if self.relay is not None else Counter()
        dropped += self.stun.drop_counts() if self.stun is not None else Counter()
        self.metrics.snapshot = Snapshot(
            members=len(self.overlay.members()),
            records=len(self.directory.store),
            lookups=self.directory.counters["lookups"],
            connections=dict(roles),
            forwarded=self.endpoint.forwarded,
            relayed_bytes=self.endpoint.forwarded_bytes,
            dropped=dict(dropped),
            relay_allocations=len(relay) if relay is not None else 0,
            relay_counters=dict(relay.counters) if relay is not None else {},
            stun_answered=self.stun.answered if self.stun is not None else 0,
            offline_messages=self.offline.db.store.total_messages if self.offline else 0,
            offline_bytes=self.offline.db.store.total_bytes if self.offline else 0,
        )

    async def _renew_if_due(self) -> None:
        if not _needs_renewal(self.certificate, time.time()):
            return
        advertised = self.public_address or Address.of(*self.address)
        self.certificate = await renew(
            self.login_server, self.ls_key, self.keys, self.certificate, advertised
        )
        write_private(self.data_dir / CERT_FILE, self.certificate.certificate)
        self.endpoint.set_certificate(self.certificate.certificate)
        log.info(
            "certificate renewed until %d",
            self.certificate.expires_at,
            extra={"expires_at": self.certificate.expires_at},
        )

    def ready_report(self) -> dict[str, Any]:
        """The one JSON line printed when the node is ready."""
        metrics = None
        if self.metrics_server is not None:
            host, port = self.metrics_server.server_address[:2]
            metrics = str(Address.of(str(host), int(port)))
        return {
            "ready": True,
            "role": "supernode",
            "node_id": self.certificate.node_id,
            "metrics": metrics,
            "listen": str(Address.of(*self.address)),
            "certificate_expires_at": self.certificate.expires_at,
        }

    async def close(self) -> None:
        """Leave the overlay (so others learn at once), hand over what we hold, stop serving."""
        if self.housekeeping is not None:
            self.housekeeping.cancel()
        await self.leave()
        await asyncio.sleep(LEAVE_GRACE_S)
        self.overlay.close()
        self.directory.close()
        self.search.close()
        if self.relay is not None:
            self.relay.close()
        if self.stun is not None:
            self.stun.close()
        self.endpoint.close()
        if self.offline is not None:
            self.offline.close()  # after the endpoint: no request reaches a closed file
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        await asyncio.sleep(0)

    async def leave(self) -> HandoverReport:
        """Announce the leave, then push every record and profile to the nodes that gain it.

        Bounded by ``handover_timeout``; the outcome is logged (how many went
        to how many nodes) and returned.
        """
        self.directory.leaving = self.search.leaving = True  # freeze our slots as they are
        if self.offline is not None:
            self.offline.leaving = True  # the remaining owners hand its slots on
        notice = self.overlay.leave()
        remaining = [m.node_id for m in self.overlay.members() if m.node_id != self.node_id]
        targets = leave_targets(self.directory.ownership, remaining, self.node_id)
        plan = HandoverPlan(
            records=self.directory.leave_records(targets),
            profiles=self.search.leave_profiles(targets),
        )
        report = await hand_over(
            plan, self.directory.connection, notice, timeout=self.handover_timeout
        )
        log.info(
            "handover: %d records and %d profiles to %d nodes, %d acknowledged in %.2f s%s",
            report.records,
            report.profiles,
            report.nodes,
            report.acknowledged,
            report.seconds,
            " (timed out)" if report.timed_out else "",
            extra=report.fields(),
        )
        return report

    @property
    def node_id(self) -> str:
        """This supernode's id (the subject of its certificate)."""
        return self.certificate.node_id


def _stun_partners(overlay: OverlayNode) -> list[tuple[str, int]]:
    """The STUN partners of this node: the other members, next in node-id order first."""
    members = [
        (m.node_id, m.address.as_tuple(), m.state == MemberState.ALIVE)
        for m in overlay.members()
        if m.node_id != overlay.node_id
    ]
    return partners_after(overlay.node_id, members)


class Service(Protocol):
    """A part of the supernode that answers some requests."""

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        """The reply, or None if ``message`` is not for this service."""
        ...


async def _certificate(
    data_dir: Path,
    keys: IdentityKeys,
    login_server: Address,
    ls_key: bytes,
    token: str | None,
    public_address: Address | None,
) -> SupernodeCertificate:
    cert = _stored_certificate(data_dir, ls_key)
    if cert is None:
        if token is None:
            raise SupernodeError(
                "no supernode certificate yet: start once with --enroll-token "
                "(from 'hopline loginserver enroll')"
            )
        cert = await enroll(login_server, ls_key, keys, token, public_address)
        log.info("enrolled as %s", cert.node_id, extra={"node_id": cert.node_id})
    else:  # renewing at start also tells the login server where we are now
        cert = await renew(login_server, ls_key, keys, cert, public_address)
        fields = {"expires_at": cert.expires_at}
        log.info("certificate renewed until %d", cert.expires_at, extra=fields)
    write_private(data_dir / CERT_FILE, cert.certificate)
    return cert
