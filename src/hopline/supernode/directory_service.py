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
* A client's publish is answered as soon as one owner stored the record;
  the replicas to the other owners finish in the background, so a crashed
  owner does not hold up a client coming online (or re-homing).
* A lookup reaches the client's home supernode, which asks the slot's owners
  (itself first if it is one), one overlay hop each, hedged: the next owner
  is asked a quarter second after the previous, and the first that has the
  user online ends the search; a crashed owner costs a quarter second, not
  the lookup, and an owner still waiting for a handover does not hide a
  record another owner holds.
* A node that leaves gracefully freezes its slots (``leaving``), refuses
  replicas, and its records go to the slots' next owners
  (:mod:`hopline.supernode.handover`, driven by the node).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import Mapping

from hopline.identity import CertificateVerifier, InvalidUsername, Role, canonical_username
from hopline.overlay.directory import DirectoryError, DirectoryStore
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import (
    Endpoint,
    EndpointError,
    PeerConnection,
    ServiceError,
)
from hopline.supernode.handover import route_items
from hopline.supernode.overlay import OverlayNode
from hopline.supernode.service import OverlayService, peer_role, require_own
from hopline.wire import ErrorCode, Message
from hopline.wire.commands import PresencePublish, PresencePublishReply, PresenceRecord
from hopline.wire.directory import (
    DirectoryLookup,
    DirectoryLookupReply,
    LookupState,
    StoreReplica,
    StoreReplicaReply,
)

log = logging.getLogger("hopline.directory")
_RANK: dict[int, int] = {LookupState.NOT_FOUND: 0, LookupState.OFFLINE: 1, LookupState.ONLINE: 2}
REPLICATION = 3
HEDGE_S = 0.25  # a lookup asks the next owner this long after the previous one


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
        if self.leaving:
            return  # the leave handover sends what we hold; keep it until then
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

    def leave_records(
        self, targets: Mapping[int, tuple[str, ...]]
    ) -> dict[str, list[PresenceRecord]]:
        """Node -> the records it gains when this node leaves (see :func:`leave_targets`)."""
        items = ((record, (slot,)) for slot in targets for record in self.store.export_slot(slot))
        return route_items(targets, items)

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
        pending = {asyncio.create_task(self._replicate(n, [record])) for n in remote}
        while not accepted and pending:  # answered once one owner stored it
            done, pending = await asyncio.wait(pending, return_when=FIRST_COMPLETED)
            accepted += sum(replica.result() for replica in done)
        for replica in pending:  # the other replicas finish in the background
            self._tasks.add(replica)
            replica.add_done_callback(self._tasks.discard)
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
            fields = {"peer": node, "records": len(records)}
            log.info("replica to %s failed: %s", node, exc, extra=fields)
            return 0
        ok = isinstance(reply, StoreReplicaReply) and reply.stored + reply.unchanged > 0
        return int(ok)

    def _store_replica(self, pc: PeerConnection, message: StoreReplica) -> Message:
        if peer_role(pc) != Role.SUPERNODE:
            raise ServiceError(ErrorCode.FORBIDDEN, "replicas come from supernodes only")
        self._refuse_if_leaving()
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
        if peer_role(pc) == Role.SUPERNODE:
            return self._answer(user)  # a hop from another supernode: answer what we hold
        return await self._ask_owners(user)

    async def _ask_owners(self, user: str) -> DirectoryLookupReply:
        """The best answer among the owners, one hop each, stopping at ONLINE.

        While ownership moves, a new owner may not have received a record yet,
        so "not found" or "offline" from one owner does not end the search;
        an owner that lacked a record another owner had takes a copy.
        """
        owners = self.ownership.owners_of_user(user)
        best = self._answer(user) if self.node_id in owners else None
        remote = [node for node in owners if node != self.node_id]
        if best is None or best.state != LookupState.ONLINE:
            best = await self._ask_remote_owners(user, remote, best)
        if best is None:
            raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of this user's slot answered")
        if best.record is not None and self.node_id in owners:
            self.store.import_records([best.record], time.time(), self.verifier)  # read repair
        return best

    async def _ask_remote_owners(
        self, user: str, owners: list[str], best: DirectoryLookupReply | None
    ) -> DirectoryLookupReply | None:
        """Ask the owners one after another, hedged: the next owner is asked as
        soon as the one before answered, or :data:`HEDGE_S` after it was asked
        if it has not, so a crashed owner costs a quarter second, not a
        timeout, and an owner that answered "offline" costs nothing more than
        its answer. The first ONLINE answer ends the search."""
        waiting = list(owners)
        asks: set[asyncio.Future[DirectoryLookupReply | None]] = set()
        try:
            while waiting or asks:
                if waiting:
                    asks.add(asyncio.ensure_future(self._ask_owner(waiting.pop(0), user)))
                done, asks = await asyncio.wait(
                    asks, timeout=HEDGE_S if waiting else None, return_when=FIRST_COMPLETED
                )
                for ask in done:
                    best = _better(best, ask.result())
                if best is not None and best.state == LookupState.ONLINE:
                    break
        finally:
            for ask in asks:
                ask.cancel()
        return best

    async def _ask_owner(self, node: str, user: str) -> DirectoryLookupReply | None:
        try:
            reply = await self._ask(node, DirectoryLookup(username=user))
        except (EndpointError, KeyError):
            self.counters["lookup-retries"] += 1  # that owner is down: the next one
            return None
        return reply if isinstance(reply, DirectoryLookupReply) else None

    def _answer(self, user: str) -> DirectoryLookupReply:
        found = self.store.lookup(user, time.time())
        return DirectoryLookupReply(
            state=int(found.state), record=found.record, last_seen=found.last_seen
        )


def _better(
    best: DirectoryLookupReply | None, reply: DirectoryLookupReply | None
) -> DirectoryLookupReply | None:
    """The more informative of two lookup answers (online over offline over unknown)."""
    if reply is not None and (best is None or _RANK[reply.state] > _RANK[best.state]):
        return reply
    return best


def _require_own_record(pc: PeerConnection, record: PresenceRecord) -> None:
    """A client may publish only its own record, including the key it proved."""
    require_own(pc, record.user, "presence")
    assert pc.peer is not None  # require_own checked it
    keys = [device.identity_key for device in record.devices]
    if not any(hmac.compare_digest(key, pc.peer.static_key) for key in keys):
        raise ServiceError(ErrorCode.FORBIDDEN, "the record does not list this device's key")
