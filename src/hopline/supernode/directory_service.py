"""The directory as a supernode serves it: publish, replicate, look up in one hop.

Every supernode computes the same slot owners from the overlay's members
(:class:`~hopline.overlay.slots.OwnershipMap`, rendezvous hashing, R
replicas). When membership changes, a node first hands each slot it no
longer holds alone to the slot's new owners, then keeps only its own slots.

* A client publishes its presence record to its home supernode. The home
  node checks that the record is the publisher's own (the certified user
  name and static key of the client's session), then stores it if it owns
  the slot and sends it as a replica to the slot's other owners, which
  verify every device certificate again on import.
* A lookup reaches the client's home supernode; if that node owns the slot
  it answers, otherwise it asks the slot's owners in order, one overlay hop
  each, so a crashed owner costs one short timeout, not the lookup.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter

from hopline.identity import CertificateVerifier, InvalidUsername, Role, canonical_username
from hopline.overlay.directory import DirectoryError, DirectoryStore
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import (
    Endpoint,
    EndpointError,
    PeerConnection,
    ServiceError,
)
from hopline.supernode.overlay import OverlayNode
from hopline.supernode.service import OverlayService, peer_role
from hopline.wire import ErrorCode, Message
from hopline.wire.commands import PresencePublish, PresencePublishReply, PresenceRecord
from hopline.wire.directory import (
    DirectoryLookup,
    DirectoryLookupReply,
    StoreReplica,
    StoreReplicaReply,
)

log = logging.getLogger("hopline.directory")
REPLICATION = 3


class DirectoryService(OverlayService):
    """One supernode's part of the directory."""

    def __init__(
        self,
        endpoint: Endpoint,
        overlay: OverlayNode,
        verifier: CertificateVerifier,
        replication: int = REPLICATION,
    ) -> None:
        super().__init__(endpoint, overlay)
        self.verifier = verifier
        self.replication = replication
        self.store = DirectoryStore()
        self.ownership = OwnershipMap([self.node_id], replication)
        self.counters: Counter[str] = Counter()
        overlay.on_change = self.refresh
        self.refresh()

    # ------------------------------------------------------------ ownership

    def refresh(self) -> None:
        """Recompute owners from the overlay; hand over what moves; keep our slots."""
        members = self.overlay.members()
        self.addresses = {m.node_id: m.address for m in members}
        new = OwnershipMap(sorted(self.addresses), self.replication)
        for transfer in self.ownership.transfers_to(new):
            if self.node_id in transfer.from_nodes and transfer.to_node != self.node_id:
                records = self.store.export_slot(transfer.slot)
                if records:
                    self._spawn(self._replicate(transfer.to_node, records))
        self.ownership = new
        self.store.set_owned_slots(new.slots_owned_by(self.node_id))

    # ------------------------------------------------------------ requests

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        """Answer directory requests (None: not a directory request)."""
        if isinstance(message, PresencePublish):
            return await self._publish(pc, message.record)
        if isinstance(message, StoreReplica):
            return self._store_replica(pc, message)
        if isinstance(message, DirectoryLookup):
            return await self._lookup(pc, message.username)
        return None

    async def _publish(self, pc: PeerConnection, record: PresenceRecord) -> Message:
        _require_own_record(pc, record)
        owners = self.ownership.owners_of_user(record.user)
        accepted = 0
        expires = 0
        if self.node_id in owners:
            try:
                result = self.store.publish(record, time.time(), self.verifier)
            except DirectoryError as exc:
                raise ServiceError(ErrorCode.BAD_REQUEST, f"record refused: {exc}") from None
            accepted, expires = 1, result.expires
        remote = [node for node in owners if node != self.node_id]
        results = await asyncio.gather(*(self._replicate(n, [record]) for n in remote))
        accepted += sum(results)
        if accepted == 0:
            raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of this user's slot stored it")
        self.counters["publishes"] += 1
        return PresencePublishReply(expires=expires or record.expires)

    async def _replicate(self, node: str, records: list[PresenceRecord]) -> int:
        """Send records to another owner; 1 if it kept them."""
        try:
            reply = await self._ask(node, StoreReplica(records=tuple(records)))
        except (EndpointError, KeyError) as exc:
            self.counters["replica-failed"] += 1
            log.info("replica to %s failed: %s", node, exc)
            return 0
        ok = isinstance(reply, StoreReplicaReply) and reply.stored + reply.unchanged > 0
        return int(ok)

    def _store_replica(self, pc: PeerConnection, message: StoreReplica) -> Message:
        if peer_role(pc) != Role.SUPERNODE:
            raise ServiceError(ErrorCode.FORBIDDEN, "replicas come from supernodes only")
        result = self.store.import_records(message.records, time.time(), self.verifier)
        self.counters["replicas"] += 1
        return StoreReplicaReply(
            stored=result.stored,
            unchanged=result.unchanged,
            refused=sum(result.refused.values()),
        )

    async def _lookup(self, pc: PeerConnection, username: str) -> Message:
        try:
            user = canonical_username(username)
        except InvalidUsername as exc:
            raise ServiceError(ErrorCode.BAD_REQUEST, str(exc)) from None
        self.counters["lookups"] += 1
        owners = self.ownership.owners_of_user(user)
        if self.node_id in owners or peer_role(pc) == Role.SUPERNODE:
            return self._answer(user)
        for node in owners:  # one hop to an owner; the next one if it is down
            try:
                reply = await self._ask(node, DirectoryLookup(username=user))
            except (EndpointError, KeyError):
                self.counters["lookup-retries"] += 1
                continue
            if isinstance(reply, DirectoryLookupReply):
                return reply
        raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of this user's slot answered")

    def _answer(self, user: str) -> DirectoryLookupReply:
        found = self.store.lookup(user, time.time())
        return DirectoryLookupReply(
            state=int(found.state), record=found.record, last_seen=found.last_seen
        )


def _require_own_record(pc: PeerConnection, record: PresenceRecord) -> None:
    """A client may publish only its own record, including the key it proved."""
    peer = pc.peer
    if peer is None or peer.certificate is None or peer_role(pc) != Role.USER:
        raise ServiceError(ErrorCode.FORBIDDEN, "only logged-in users publish presence")
    try:
        user = canonical_username(record.user)
    except InvalidUsername as exc:
        raise ServiceError(ErrorCode.BAD_REQUEST, str(exc)) from None
    if user != peer.name:
        raise ServiceError(ErrorCode.FORBIDDEN, "a user may publish only their own record")
    keys = [device.identity_key for device in record.devices]
    if not any(hmac.compare_digest(key, peer.static_key) for key in keys):
        raise ServiceError(ErrorCode.FORBIDDEN, "the record does not list this device's key")
