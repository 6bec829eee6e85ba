"""Offline messages as a supernode serves them: store on the slot owners, fetch, ack.

A thin asyncio shell over the sans-I/O :class:`~hopline.offline.store.OfflineStore`
(made durable by :class:`~hopline.offline.sqlite.OfflineDatabase` in
``offline.sqlite3`` of the node's data dir, or in memory without one) and
the wire glue of :mod:`hopline.offline.wireform`. The owners of a user's
offline envelopes are the owners of the user's directory slot, read from
the directory's :class:`~hopline.overlay.slots.OwnershipMap`.

* **Store.** A client's ``offline.store`` reaches its home supernode, which
  stamps every envelope with the session's certified user and the time
  (whatever the client wrote as sender is ignored), refuses malformed or
  oversized envelopes at once, and hands the rest to the recipient's slot
  owners: itself first if it is one, else the owners in rank order with
  ``offline.put`` (:mod:`hopline.wire.offline_owner`), moving on when one
  is unreachable. The owner that stored them answers one outcome per
  envelope (so quota and sender-share refusals reach the client with their
  reason) and copies what it newly stored to the slot's other owners as
  ``offline.replica`` in the background: the client is answered as soon as
  one owner has the envelopes on disk.
* **Fetch.** A device's ``offline.fetch`` names no user: the home takes user
  and device from the session. An owning home serves it from its own store;
  otherwise it asks the owners with ``offline.pull``, hedged (the next owner
  :data:`HEDGE_S` after the previous), and remembers which owner served the
  device, so the following pages come from the same arrival order. The
  owner that starts a device's fetch (cursor 0) first merges what the
  slot's other reachable owners hold for that device, so an owner that was
  down or is new does not hide messages, and asks them (``offline.check``)
  which of its own envelopes for the device were acked or delivered while
  it was away, so it does not hand those out again; owners it could not
  reach are counted (``merge-unreachable``) and logged.
* **Ack.** ``offline.ack`` is applied at every owner (``offline.owner-ack``
  to the remote ones); the client has its answer from the first owner, the
  others finish in the background. An envelope is deleted once every
  device it was sealed to acked it (a tombstone keeps late replicas out).
* **Membership.** When the owners of a slot change, this node hands what it
  holds for that slot's users to the slot's new owners as
  ``offline.replica`` batches (as the directory does with records); a
  failed batch is tried again twice. A node that starts (or restarts from
  its file) owns every slot alone until it joins, so on joining it offers
  what it holds to the owners it now shares slots with.
* **Expiry.** Every :data:`EXPIRE_EVERY_S` the store drops envelopes, acks
  and tombstones older than the retention.

Bounds: the store's :class:`~hopline.offline.store.StoreLimits` (per
recipient, per sender and recipient, per envelope, whole store); the memory
of which owner served a device holds at most :data:`MAX_PINS` entries.
Requests that break the rules are answered with a typed error and counted.
Supernodes see only ciphertext.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hopline.identity import Role
from hopline.offline.sqlite import OfflineDatabase
from hopline.offline.store import (
    MESSAGE_ID_SIZE,
    Envelope,
    FetchPage,
    OfflineError,
    PutOutcome,
    ReplicaBatch,
    StoreLimits,
    wire_cost,
)
from hopline.offline.wireform import (
    MAX_REPLICA_BYTES,
    batch_from_replica,
    envelope_from_replica,
    envelope_to_wire,
    replica_messages,
    stamp_envelopes,
)
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import Endpoint, EndpointError, PeerConnection, ServiceError
from hopline.supernode.overlay import OverlayNode
from hopline.supernode.service import HOP_TIMEOUT, OverlayService, peer_role
from hopline.wire import ErrorCode, Message
from hopline.wire.offline import (
    MAX_FETCH,
    AckRecord,
    OfflineAck,
    OfflineAckReply,
    OfflineFetch,
    OfflineFetchReply,
    OfflineReplica,
    OfflineReplicaReply,
    OfflineStoreReply,
    OfflineStoreRequest,
    SealedEnvelope,
    StoreOutcome,
    TombstoneRecord,
)
from hopline.wire.offline_owner import (
    MAX_CHECK_IDS,
    OfflineCheck,
    OfflineCheckReply,
    OfflineOwnerAck,
    OfflineOwnerAckReply,
    OfflinePull,
    OfflinePullReply,
    OfflinePut,
    OfflinePutReply,
)

log = logging.getLogger("hopline.offline")
DB_FILE = "offline.sqlite3"
HEDGE_S = 0.25  # a fetch asks the next owner this long after the previous one
EXPIRE_EVERY_S = 60.0
MAX_PINS = 4096  # devices remembered with the owner that serves their fetch
MERGE_TIMEOUT_S = 3.0  # bound on merging the other owners' copies before a first page
MAX_ACK_IDS = 1000  # message ids in one ack
RETRY_S = (0.5, 1.5)  # waits before trying a failed replica again
OWNER_ERRORS = (EndpointError, KeyError, TimeoutError)
EventCallback = Callable[[str, dict[str, Any]], None]


class OfflineService(OverlayService):
    """One supernode's part of the offline message store.

    ``ownership`` returns the directory's current slot owners; ``data_dir``
    holds ``offline.sqlite3`` (None: the store lives in memory only);
    ``on_event(name, fields)`` hears ``stored``, ``refused``, ``handover``,
    ``merge`` and ``expired``. Attributes: ``db`` (the durable store) and
    ``counters`` (requests served, refusals by reason, failed hops).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        overlay: OverlayNode,
        ownership: Callable[[], OwnershipMap],
        data_dir: Path | None,
        *,
        limits: StoreLimits | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        super().__init__(endpoint, overlay)
        self._ownership = ownership
        self.path = data_dir / DB_FILE if data_dir is not None else None
        self.db = OfflineDatabase.open(self.path or ":memory:", time.time(), limits)
        self.limits = self.db.store.limits
        self.on_event = on_event
        self.counters: Counter[str] = Counter()
        self._pins: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._map = ownership()
        self.refresh()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run periodic expiry (call once, inside the event loop)."""
        self._spawn(self._expire_loop())

    def close(self) -> None:
        """Cancel background work and close the database file."""
        super().close()
        self.db.close()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            removed = self.db.expire(time.time())
            if removed:
                self.counters["expired"] += removed
                self._event("expired", removed=removed)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: what is held, and the counters."""
        store = self.db.store
        return {
            "node": self.node_id,
            "database": str(self.path) if self.path is not None else None,
            "users": len(store.users()),
            "messages": store.total_messages,
            "bytes": store.total_bytes,
            "pending_acks": store.total_pending,
            "tombstones": store.total_tombstones,
            "refused": dict(store.refused),
            "counters": dict(self.counters),
        }

    def _event(self, name: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(name, fields)

    # ------------------------------------------------------------ ownership

    def owners(self, user: str) -> tuple[str, ...]:
        """The nodes that keep ``user``'s offline envelopes, primary first."""
        return self._ownership().owners_of_user(user)

    def refresh(self) -> None:
        """Follow membership: hand the users of slots that gained owners to those owners."""
        if self.leaving:
            return
        self.addresses = {m.node_id: m.address for m in self.overlay.members()}
        new = self._ownership()
        if new.members == self._map.members:
            return
        targets: dict[str, set[int]] = {}
        for transfer in self._map.transfers_to(new):
            if self.node_id in transfer.from_nodes and transfer.to_node != self.node_id:
                targets.setdefault(transfer.to_node, set()).add(transfer.slot)
        self._map = new
        for node, slots in targets.items():
            users = [u for u in self.db.store.users() if new.slot_of_user(u) in slots]
            if users:
                batch = self.db.store.export_for_replica(users)
                self._spawn(self._replicate(node, batch, "handover"))
                self._event("handover", node=node, users=len(users))

    async def _replicate(self, node: str, batch: ReplicaBatch, what: str = "replica") -> int:
        """Send ``batch`` to owner ``node`` as offline.replica requests; count what it stored.

        A part that fails is tried again after :data:`RETRY_S` (a node that
        just joined may still be opening its connections), then given up
        and counted: a device's first fetch merges what owners missed.
        """
        stored = 0
        for message in replica_messages(batch):
            reply = await self._replica_with_retries(node, message, what)
            if reply is None:
                return stored
            stored += reply.stored
        self.counters[f"{what}-sent"] += 1
        return stored

    async def _replica_with_retries(
        self, node: str, message: OfflineReplica, what: str
    ) -> OfflineReplicaReply | None:
        for delay in (*RETRY_S, None):
            try:
                reply = await self._ask(node, message)
            except OWNER_ERRORS as exc:
                if delay is None or node not in self.addresses:
                    self.counters[f"{what}-failed"] += 1
                    log.info("offline %s to %s failed: %s", what, node, exc, extra={"peer": node})
                    return None
                await asyncio.sleep(delay)
                continue
            return reply if isinstance(reply, OfflineReplicaReply) else None
        return None

    # ------------------------------------------------------------ requests

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        """Answer offline requests (None: not one of ours)."""
        if isinstance(message, OfflineStoreRequest):
            return await self._store(pc, message)
        if isinstance(message, OfflineFetch):
            return await self._fetch(pc, message)
        if isinstance(message, OfflineAck):
            return await self._ack(pc, message)
        if isinstance(message, OfflinePull):
            _require_supernode(pc)
            return await self._serve(message)
        if isinstance(message, OfflineReplica | OfflinePut | OfflineOwnerAck | OfflineCheck):
            _require_supernode(pc)
            return self._owner_request(message)
        return None

    def _owner_request(self, message: Message) -> Message:
        if isinstance(message, OfflineReplica):
            return self._import(message)
        if isinstance(message, OfflinePut):
            return self._put(message)
        if isinstance(message, OfflineCheck):
            return self._check(message)
        assert isinstance(message, OfflineOwnerAck)
        reply = self._ack_local(message.user, message.device, message.message_ids)
        return OfflineOwnerAckReply(acked=reply.acked, removed=reply.removed)

    # ------------------------------------------------------------ store

    async def _store(self, pc: PeerConnection, request: OfflineStoreRequest) -> Message:
        sender, _ = _session_device(pc)
        good, refused = stamp_envelopes(request, sender, time.time(), self.limits)
        outcomes: dict[tuple[bytes, str], StoreOutcome] = {
            (o.message_id, o.recipient): o for o in refused
        }
        for reason in (o.outcome for o in refused):
            self.counters[f"refused:{reason}"] += 1
        groups: dict[tuple[str, ...], list[Envelope]] = {}
        for envelope in good:
            groups.setdefault(self.owners(envelope.recipient), []).append(envelope)
        for owners, envelopes in groups.items():
            for outcome in await self._store_on_owners(owners, envelopes):
                outcomes[(outcome.message_id, outcome.recipient)] = outcome
        self.counters["store-requests"] += 1
        results = [outcomes[(e.message_id, e.recipient)] for e in request.envelopes]
        return OfflineStoreReply(results=tuple(results))

    async def _store_on_owners(
        self, owners: tuple[str, ...], envelopes: list[Envelope]
    ) -> list[StoreOutcome]:
        """Outcomes from the first owner that answers (this node first if it owns the slot)."""
        if self.node_id in owners:
            return self._put_local(envelopes, owners)
        outcomes: list[StoreOutcome] = []
        for chunk in _chunks(envelopes):
            outcomes += await self._put_remote(owners, chunk)
        return outcomes

    async def _put_remote(self, owners: Sequence[str], chunk: list[Envelope]) -> list[StoreOutcome]:
        request = OfflinePut(envelopes=tuple(envelope_to_wire(e) for e in chunk))
        for node in owners:
            try:
                reply = await self._ask(node, request)
            except OWNER_ERRORS:
                self.counters["put-retries"] += 1  # that owner is down: the next one
                continue
            if isinstance(reply, OfflinePutReply) and len(reply.results) == len(chunk):
                return list(reply.results)
        self.counters["put-failed"] += len(chunk)
        detail = "no owner of the recipient's slot answered"
        return [_outcome(e, "unavailable", detail) for e in chunk]

    def _put(self, message: OfflinePut) -> Message:
        """An owner's part of offline.put: store here, copy to the other owners."""
        self._refuse_if_leaving()
        envelopes: list[Envelope] = []
        refused: dict[int, StoreOutcome] = {}
        for n, record in enumerate(message.envelopes):
            try:
                envelopes.append(envelope_from_replica(record, self.limits))
            except OfflineError as exc:
                refused[n] = StoreOutcome(
                    message_id=record.message_id,
                    recipient=record.recipient,
                    outcome=exc.reason,
                    detail=exc.detail[:200],
                )
        stored = iter(self._put_by_owners(envelopes))
        count = len(message.envelopes)
        results = [refused[n] if n in refused else next(stored) for n in range(count)]
        return OfflinePutReply(results=tuple(results))

    def _put_by_owners(self, envelopes: list[Envelope]) -> list[StoreOutcome]:
        """Store here, grouped by the owners to copy to; outcomes in the given order."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for n, envelope in enumerate(envelopes):
            groups.setdefault(self.owners(envelope.recipient), []).append(n)
        outcomes: dict[int, StoreOutcome] = {}
        for owners, indices in groups.items():
            done = self._put_local([envelopes[n] for n in indices], owners)
            outcomes.update(zip(indices, done, strict=True))
        return [outcomes[n] for n in range(len(envelopes))]

    def _put_local(self, envelopes: list[Envelope], owners: Iterable[str]) -> list[StoreOutcome]:
        """Store here in one transaction; copy what is new to the other owners."""
        results = self.db.put_many(envelopes, time.time())
        outcomes: list[StoreOutcome] = []
        stored: list[Envelope] = []
        for envelope, result in zip(envelopes, results, strict=True):
            if isinstance(result, OfflineError):
                self.counters[f"refused:{result.reason}"] += 1
                self._event("refused", recipient=envelope.recipient, reason=result.reason)
                outcomes.append(_outcome(envelope, result.reason, result.detail))
                continue
            outcomes.append(_outcome(envelope, result.value))
            if result is PutOutcome.STORED:
                stored.append(envelope)
        if stored:
            self.counters["stored"] += len(stored)
            self._event("stored", envelopes=len(stored))
            batch = ReplicaBatch(envelopes=tuple(stored))
            for node in owners:
                if node != self.node_id:
                    self._spawn(self._replicate(node, batch))
        return outcomes

    def _import(self, message: OfflineReplica) -> Message:
        self._refuse_if_leaving()
        batch, bad = batch_from_replica(message, self.limits)
        result = self.db.import_replica(batch, time.time())
        self.counters["replicas"] += 1
        self.counters["replica-malformed"] += bad
        return OfflineReplicaReply(
            stored=result.stored,
            unchanged=result.unchanged,
            refused=bad + sum(result.refused.values()),
            removed=result.removed,
        )

    # ------------------------------------------------------------ fetch

    async def _fetch(self, pc: PeerConnection, request: OfflineFetch) -> Message:
        user, device = _session_device(pc)
        self.counters["fetches"] += 1
        limit = max(1, min(request.limit, MAX_FETCH))
        pull = OfflinePull(user=user, device=device, cursor=request.cursor, limit=limit, merge=1)
        if self.node_id in self.owners(user):
            reply = await self._serve(pull)
        else:
            reply = await self._pull_remote(pull)
        return OfflineFetchReply(
            envelopes=tuple(_without_devices(e) for e in reply.envelopes),
            next_cursor=reply.next_cursor,
            more=reply.more,
        )

    async def _serve(self, pull: OfflinePull) -> OfflinePullReply:
        """A page from this owner, after merging the other owners' copies on a first page."""
        if pull.merge and pull.cursor == 0:
            await self._merge(pull.user, pull.device)
        return self._pull_local(pull)

    def _pull_local(self, pull: OfflinePull) -> OfflinePullReply:
        """A page of this owner's store, cut to fit one message with device lists."""
        page: FetchPage = self.db.fetch(pull.user, pull.device, pull.cursor, pull.limit)
        kept: list[SealedEnvelope] = []
        size, next_cursor, more, kept_seq = 0, page.next_cursor, page.more, pull.cursor
        for message in page.messages:
            cost = wire_cost(message.envelope)
            if kept and size + cost > MAX_REPLICA_BYTES:
                next_cursor, more = kept_seq, True
                break
            kept.append(envelope_to_wire(message.envelope))
            size, kept_seq = size + cost, message.seq
        return OfflinePullReply(envelopes=tuple(kept), next_cursor=next_cursor, more=int(more))

    async def _merge(self, user: str, device: bytes) -> None:
        """Import what the other owners hold for ``device`` (bounded by MERGE_TIMEOUT_S)."""
        others = [n for n in self.owners(user) if n != self.node_id]
        if not others:
            return
        pulls = [self._sync(node, user, device) for node in others]
        bounded = (asyncio.wait_for(p, MERGE_TIMEOUT_S) for p in pulls)
        done = await asyncio.gather(*bounded, return_exceptions=True)
        unreachable = [n for n, d in zip(others, done, strict=True) if isinstance(d, BaseException)]
        imported = sum(d for d in done if isinstance(d, int))
        self.counters["merge-unreachable"] += len(unreachable)
        self._event("merge", user=user, imported=imported, unreachable=unreachable)
        if unreachable:
            log.info("offline merge for %s: owners unreachable: %s", user, unreachable)

    async def _sync(self, node: str, user: str, device: bytes) -> int:
        """Take ``node``'s envelopes for ``device``, then its acks and deliveries of ours."""
        imported = await self._pull_all(node, user, device)
        due = [
            m.envelope.message_id
            for m in self.db.store.messages(user)
            if device in m.envelope.devices and device not in m.acked
        ]
        for start in range(0, len(due), MAX_CHECK_IDS):
            check = OfflineCheck(user=user, message_ids=tuple(due[start : start + MAX_CHECK_IDS]))
            reply = await self._ask(node, check)
            if not isinstance(reply, OfflineCheckReply):
                raise EndpointError(f"unexpected reply {reply.NAME!r}")
            known = OfflineReplica(envelopes=(), acks=reply.acks, tombstones=reply.tombstones)
            batch, _ = batch_from_replica(known, self.limits)
            self.db.import_replica(batch, time.time())
        return imported

    def _check(self, message: OfflineCheck) -> OfflineCheckReply:
        """What this owner knows of some messages: delivered everywhere, or acked by devices."""
        if len(message.message_ids) > MAX_CHECK_IDS:
            raise ServiceError(ErrorCode.BAD_REQUEST, f"a check names at most {MAX_CHECK_IDS} ids")
        store, now = self.db.store, time.time()
        delivered = store.tombstones(message.user)
        acked = {m.envelope.message_id: m.acked for m in store.messages(message.user) if m.acked}
        acked.update(store.pending_acks(message.user))
        stones, acks = [], []
        for mid in message.message_ids:
            if mid in delivered:
                until = round(delivered[mid] * 1000)
                stones.append(TombstoneRecord(recipient=message.user, message_id=mid, until=until))
            elif mid in acked:
                devices = tuple(sorted(acked[mid]))
                at = round(now * 1000)
                acks.append(
                    AckRecord(recipient=message.user, message_id=mid, devices=devices, at=at)
                )
        return OfflineCheckReply(tombstones=tuple(stones), acks=tuple(acks))

    async def _pull_all(self, node: str, user: str, device: bytes) -> int:
        """Every page ``node`` holds for ``device``, imported here; how many were new."""
        cursor, imported = 0, 0
        while True:
            pull = OfflinePull(user=user, device=device, cursor=cursor, limit=MAX_FETCH)
            reply = await self._ask(node, pull)
            if not isinstance(reply, OfflinePullReply):
                raise EndpointError(f"unexpected reply {reply.NAME!r}")
            batch, _ = batch_from_replica(
                OfflineReplica(envelopes=reply.envelopes, acks=(), tombstones=()), self.limits
            )
            imported += self.db.import_replica(batch, time.time()).stored
            if not reply.more or reply.next_cursor <= cursor:
                return imported
            cursor = reply.next_cursor

    async def _pull_remote(self, pull: OfflinePull) -> OfflinePullReply:
        """Ask the owners hedged; a device keeps the owner that served its previous page."""
        key = (pull.user, pull.device)
        owners = list(self.owners(pull.user))
        pinned = self._pins.get(key)
        if pull.cursor and pinned in owners:
            owners.remove(pinned)
            owners.insert(0, pinned)  # the cursor is that owner's arrival number
        asks = [
            asyncio.ensure_future(self._pull_after(node, pull, n * HEDGE_S))
            for n, node in enumerate(owners)
        ]
        try:
            for done in asyncio.as_completed(asks):
                node, reply = await done
                if reply is not None:
                    self._pin(key, node)
                    return reply
        finally:
            for ask in asks:
                ask.cancel()
        raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of this user's slot answered")

    async def _pull_after(
        self, node: str, pull: OfflinePull, delay: float
    ) -> tuple[str, OfflinePullReply | None]:
        await asyncio.sleep(delay)
        try:  # an owner merging the others' copies first may take MERGE_TIMEOUT_S
            pc = await self.connection(node)
            reply = await pc.request(pull, timeout=HOP_TIMEOUT + MERGE_TIMEOUT_S)
        except OWNER_ERRORS:
            self.counters["fetch-retries"] += 1
            return node, None
        return node, reply if isinstance(reply, OfflinePullReply) else None

    def _pin(self, key: tuple[str, bytes], node: str) -> None:
        self._pins[key] = node
        self._pins.move_to_end(key)
        while len(self._pins) > MAX_PINS:
            self._pins.popitem(last=False)

    # ------------------------------------------------------------ ack

    async def _ack(self, pc: PeerConnection, request: OfflineAck) -> Message:
        user, device = _session_device(pc)
        ids = request.message_ids
        if len(ids) > MAX_ACK_IDS or any(len(m) != MESSAGE_ID_SIZE for m in ids):
            self.counters["refused:bad-ack"] += 1
            raise ServiceError(
                ErrorCode.BAD_REQUEST, f"an ack names 1 to {MAX_ACK_IDS} ids of 16 bytes"
            )
        self.counters["acks"] += 1
        owners = self.owners(user)
        owner_ack = OfflineOwnerAck(user=user, device=device, message_ids=ids)
        remote = [n for n in owners if n != self.node_id]
        asks = [asyncio.ensure_future(self._owner_ack(n, owner_ack)) for n in remote]
        for ask in asks:  # the other owners finish in the background
            self._tasks.add(ask)
            ask.add_done_callback(self._tasks.discard)
        if self.node_id in owners:
            return self._ack_local(user, device, ids)
        for done in asyncio.as_completed(asks):
            reply = await done
            if reply is not None:
                return OfflineAckReply(acked=reply.acked, removed=reply.removed)
        raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of this user's slot answered")

    def _ack_local(self, user: str, device: bytes, ids: Iterable[bytes]) -> OfflineAckReply:
        result = self.db.ack(user, device, ids, time.time())
        return OfflineAckReply(acked=result.acked, removed=result.removed)

    async def _owner_ack(self, node: str, ack: OfflineOwnerAck) -> OfflineOwnerAckReply | None:
        try:
            reply = await self._ask(node, ack)
        except OWNER_ERRORS:
            self.counters["ack-failed"] += 1
            return None
        return reply if isinstance(reply, OfflineOwnerAckReply) else None


def _session_device(pc: PeerConnection) -> tuple[str, bytes]:
    """The certified user and device of a client's session; FORBIDDEN otherwise."""
    peer = pc.peer
    if peer is None or peer.certificate is None or peer.name is None or peer_role(pc) != Role.USER:
        raise ServiceError(ErrorCode.FORBIDDEN, "only logged-in users use the offline store")
    return peer.name, peer.certificate.body.device_id


def _require_supernode(pc: PeerConnection) -> None:
    if peer_role(pc) != Role.SUPERNODE:
        raise ServiceError(ErrorCode.FORBIDDEN, "owner requests come from supernodes only")


def _outcome(envelope: Envelope, outcome: str, detail: str = "") -> StoreOutcome:
    return StoreOutcome(
        message_id=envelope.message_id,
        recipient=envelope.recipient,
        outcome=outcome,
        detail=detail[:200],
    )


def _without_devices(record: SealedEnvelope) -> SealedEnvelope:
    """A fetch reply does not tell a device which other devices a message was sealed to."""
    return SealedEnvelope(
        message_id=record.message_id,
        recipient=record.recipient,
        devices=(),
        ciphertext=record.ciphertext,
        sender=record.sender,
        received_at=record.received_at,
        acked=(),
    )


def _chunks(envelopes: list[Envelope]) -> list[list[Envelope]]:
    """Envelopes cut into offline.put requests of about MAX_REPLICA_BYTES each."""
    chunks: list[list[Envelope]] = [[]]
    size = 0
    for envelope in envelopes:
        cost = wire_cost(envelope)
        if chunks[-1] and size + cost > MAX_REPLICA_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(envelope)
        size += cost
    return chunks
