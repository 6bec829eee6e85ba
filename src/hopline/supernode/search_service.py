"""The white pages as a supernode serves them: publish, replicate, search in one hop.

The index is partitioned by *search term*, not by user
(:mod:`hopline.overlay.search`): a term's slot is hashed like a username's,
and its owners are the same rendezvous-hash owners the presence directory
uses (:class:`~hopline.overlay.slots.OwnershipMap`, R replicas). Every
supernode computes them from the overlay's members.

* **Publish.** A logged-in user sends :class:`ProfilePublish` to its home
  supernode. The home checks the profile is the user's own (its username is
  the session's certified name), indexes the terms of the slots it owns, and
  sends the profile in one :class:`ProfileReplica` to every other node that
  owns a slot among the profile's terms (:func:`profile_slots`); each
  receiver indexes only the terms it owns. The reply counts the terms at
  least one owner accepted.
* **Search.** A :class:`SearchRequest` reaching a non-owner goes to the
  owners of :func:`query_slot` in order, one overlay hop each; a timeout,
  connection failure or 5xx moves on to the next owner. The owner answers
  from its index: at most 50 profiles a page, ordered by username, with a
  cursor for the next page.
* **Membership change.** :meth:`SearchService.refresh` rebuilds the local
  index for the new owned slots and pushes the profiles of every slot this
  node held, and that moved, to the slot's new owners (in batches).
* **Leave.** A node that leaves gracefully freezes its index
  (``leaving``), refuses replicas, and its profiles go to the new owners of
  its slots (:mod:`hopline.supernode.handover`, driven by the node).

Bounds: the index keeps at most ``max_profiles`` profiles, one per user with
fields of at most 64 characters (so a few dozen terms); :attr:`profiles`
(the copies kept for handover) holds exactly the profiles the index holds.
A user may publish at most once per :data:`PUBLISH_INTERVAL_S` through one
home node (remembered for the last :data:`RECENT_PUBLISHERS` users), which
bounds the replica fan-out one user can cause.

Changes: a publish may carry the ``previous`` profile it replaces; the new
profile then also goes to the owners of the old terms' slots, whose index
re-indexes the user and so drops the terms that no longer apply. (A client
that lost track of its previous profile leaves stale copies behind until
those owners restart or evict them.) Profiles whose every owner was lost at
once come back only when their users republish, which clients do
periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping

from hopline.identity import Role, canonical_username
from hopline.overlay.search import (
    SearchError,
    SearchIndex,
    profile_slots,
    profile_terms,
    query_slot,
)
from hopline.overlay.slots import OwnershipMap, slot_of_key
from hopline.runtime.endpoint import (
    Endpoint,
    EndpointError,
    PeerConnection,
    RequestError,
    ServiceError,
)
from hopline.supernode.handover import route_items
from hopline.supernode.overlay import OverlayNode
from hopline.supernode.service import OverlayService, peer_role, require_own
from hopline.wire import ErrorCode, Message
from hopline.wire.directory import (
    ProfilePublish,
    ProfilePublishReply,
    PublicProfile,
    SearchReply,
    SearchRequest,
)
from hopline.wire.search_replica import (
    MAX_REPLICA_PROFILES,
    ProfileReplica,
    ProfileReplicaReply,
)

log = logging.getLogger("hopline.search")
REPLICATION = 3
MAX_LIMIT = 50
MAX_PROFILES = 100_000
PUBLISH_INTERVAL_S = 1.0
RECENT_PUBLISHERS = 4096
_REFUSAL_CODES = {
    "full": ErrorCode.UNAVAILABLE,
    "not-owner": ErrorCode.UNAVAILABLE,
    "too-large": ErrorCode.TOO_LARGE,
}


class SearchService(OverlayService):
    """One supernode's part of the white pages.

    Attributes: ``index`` (the terms of the slots this node owns),
    ``profiles`` (canonical username to the profile the index holds),
    ``ownership`` (the current slot owners) and ``counters`` (``searches``,
    ``search-retries``, ``publishes``, ``replicas``, ``replica-failed``,
    ``handover``).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        overlay: OverlayNode,
        replication: int = REPLICATION,
        *,
        max_profiles: int = MAX_PROFILES,
    ) -> None:
        super().__init__(endpoint, overlay)
        self.replication = replication
        self.max_profiles = max_profiles
        self.index = SearchIndex(owned_slots=(), max_profiles=max_profiles)
        self.profiles: dict[str, PublicProfile] = {}
        self.ownership = OwnershipMap([self.node_id], replication)
        self.counters: Counter[str] = Counter()
        self._recent: OrderedDict[str, float] = OrderedDict()
        self.refresh()

    # ------------------------------------------------------------ ownership

    def refresh(self) -> None:
        """Recompute owners from the overlay; hand over moved slots; keep our own."""
        if self.leaving:
            return  # the leave handover sends what we hold; keep it until then
        members = self.overlay.members()
        self.addresses = {m.node_id: m.address for m in members}
        new = OwnershipMap(sorted(self.addresses), self.replication)
        owned = frozenset(new.slots_owned_by(self.node_id))
        if new.members == self.ownership.members and owned == self.index.owned_slots:
            return
        moving = self._moving_slots(new)
        self.ownership = new
        outgoing = self._reindex(owned, moving)
        for node, profiles in outgoing.items():
            self.counters["handover"] += len(profiles)
            self._spawn(self._replicate(node, profiles))

    def leave_profiles(
        self, targets: Mapping[int, tuple[str, ...]]
    ) -> dict[str, list[PublicProfile]]:
        """Node -> the profiles it gains when this node leaves (see :func:`leave_targets`)."""
        return route_items(targets, ((p, profile_slots(p)) for p in self.profiles.values()))

    def _moving_slots(self, new: OwnershipMap) -> dict[str, set[int]]:
        """Slots this node held that ``new`` gives to other nodes, by new owner."""
        moving: dict[str, set[int]] = {}
        for transfer in self.ownership.transfers_to(new):
            if self.node_id in transfer.from_nodes and transfer.to_node != self.node_id:
                moving.setdefault(transfer.to_node, set()).add(transfer.slot)
        return moving

    def _reindex(
        self, owned: Iterable[int], moving: dict[str, set[int]]
    ) -> dict[str, list[PublicProfile]]:
        """Rebuild the index for ``owned``; return the profiles each new owner needs."""
        old, refused = self.profiles, self.index.refused
        self.index = SearchIndex(owned_slots=owned, max_profiles=self.max_profiles)
        self.index.refused = refused
        self.profiles = {}
        outgoing: dict[str, list[PublicProfile]] = {}
        for profile in old.values():
            slots = profile_slots(profile) if moving else set()
            for node, moved in moving.items():
                if slots & moved:
                    outgoing.setdefault(node, []).append(profile)
            try:
                self._index_local(profile)
            except SearchError:  # cannot happen for a profile indexed before
                continue
        return outgoing

    # ------------------------------------------------------------ requests

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        """Answer white-pages requests (None: not a white-pages request)."""
        if isinstance(message, ProfilePublish):
            return await self._publish(pc, message.profile, message.previous)
        if isinstance(message, ProfileReplica):
            return self._store_replica(pc, message)
        if isinstance(message, SearchRequest):
            return await self._search(pc, message)
        return None

    def _index_local(self, profile: PublicProfile) -> int:
        """Index the terms this node owns; keep the handover copy in step."""
        terms = self.index.index(profile)
        user = canonical_username(profile.username)  # index() checked it
        if terms:
            self.profiles[user] = profile
        else:
            self.profiles.pop(user, None)
        return terms

    async def _publish(
        self, pc: PeerConnection, profile: PublicProfile, previous: PublicProfile | None = None
    ) -> Message:
        user = _require_own_profile(pc, profile)
        if previous is not None and _require_own_profile(pc, previous) != user:
            raise ServiceError(ErrorCode.BAD_REQUEST, "the previous profile is another user's")
        self._throttle(user)
        try:
            accepted = {self.node_id} if self._index_local(profile) else set()
        except SearchError as exc:
            raise _refusal(exc) from None
        slots = profile_slots(profile)
        # owners of the old terms get the new profile too: re-indexing drops their stale copy
        reach = slots | (profile_slots(previous) if previous is not None else set())
        remote = sorted({n for s in reach for n in self.ownership.owners_of_slot(s)})
        remote = [node for node in remote if node != self.node_id]
        results = await asyncio.gather(*(self._replicate(n, [profile]) for n in remote))
        accepted.update(node for node, ok in zip(remote, results, strict=True) if ok)
        terms = self._terms_covered(profile, accepted)
        if slots and not terms:
            raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of the profile's slots kept it")
        self.counters["publishes"] += 1
        return ProfilePublishReply(terms=terms)

    def _terms_covered(self, profile: PublicProfile, accepted: set[str]) -> int:
        """How many of the profile's terms some node in ``accepted`` owns."""
        return sum(
            1
            for term in profile_terms(profile)
            if accepted & set(self.ownership.owners_of_slot(slot_of_key(term)))
        )

    def _throttle(self, user: str) -> None:
        """At most one publish per user per PUBLISH_INTERVAL_S (bounded memory)."""
        now = time.monotonic()
        last = self._recent.pop(user, None)
        if last is not None and now - last < PUBLISH_INTERVAL_S:
            self._recent[user] = last
            wait_ms = int((PUBLISH_INTERVAL_S - (now - last)) * 1000) + 1
            raise ServiceError(ErrorCode.TOO_MANY_REQUESTS, "publishing too often", wait_ms)
        self._recent[user] = now
        while len(self._recent) > RECENT_PUBLISHERS:
            self._recent.popitem(last=False)

    async def _replicate(self, node: str, profiles: list[PublicProfile]) -> int:
        """Send profiles to another owner in batches; 1 if it took every batch."""
        for start in range(0, len(profiles), MAX_REPLICA_PROFILES):
            batch = tuple(profiles[start : start + MAX_REPLICA_PROFILES])
            try:
                reply = await self._ask(node, ProfileReplica(profiles=batch))
            except (EndpointError, KeyError) as exc:
                self.counters["replica-failed"] += 1
                log.info(
                    "profile replica to %s failed: %s",
                    node,
                    exc,
                    extra={"peer": node, "profiles": len(batch)},
                )
                return 0
            if not isinstance(reply, ProfileReplicaReply) or reply.refused:
                return 0
        return 1

    def _store_replica(self, pc: PeerConnection, message: ProfileReplica) -> Message:
        if peer_role(pc) != Role.SUPERNODE:
            raise ServiceError(ErrorCode.FORBIDDEN, "replicas come from supernodes only")
        self._refuse_if_leaving()
        if len(message.profiles) > MAX_REPLICA_PROFILES:
            raise ServiceError(ErrorCode.TOO_LARGE, f"at most {MAX_REPLICA_PROFILES} profiles")
        indexed = refused = 0
        for profile in message.profiles:
            try:
                self._index_local(profile)
            except SearchError:
                refused += 1
            else:
                indexed += 1
        self.counters["replicas"] += 1
        return ProfileReplicaReply(indexed=indexed, refused=refused)

    async def _search(self, pc: PeerConnection, request: SearchRequest) -> Message:
        role = peer_role(pc)
        if role not in (Role.USER, Role.SUPERNODE):
            raise ServiceError(ErrorCode.FORBIDDEN, "only certified peers search")
        try:
            slot = query_slot(request.field, request.text)
        except SearchError as exc:
            raise _refusal(exc) from None
        self.counters["searches"] += 1
        owners = self.ownership.owners_of_slot(slot)
        if self.node_id in owners or role == Role.SUPERNODE:
            return self._answer(request)
        forward = SearchRequest(
            field=request.field,
            text=request.text,
            limit=max(1, min(request.limit, MAX_LIMIT)),
            cursor=request.cursor,
        )
        for node in owners:  # one hop to an owner; the next one if it is down
            reply = await self._ask_owner(node, forward)
            if isinstance(reply, SearchReply):
                return reply
        raise ServiceError(ErrorCode.UNAVAILABLE, "no owner of this query's slot answered")

    async def _ask_owner(self, node: str, request: SearchRequest) -> Message | None:
        """The owner's reply; None (counted as a retry) if it is down or unavailable."""
        try:
            return await self._ask(node, request)
        except RequestError as exc:
            if exc.code < 500:  # the query itself is wrong: no other owner will differ
                raise ServiceError(ErrorCode(exc.code), exc.reason) from None
            self.counters["search-retries"] += 1  # this owner is unavailable: try the next
        except (EndpointError, KeyError):
            self.counters["search-retries"] += 1  # this owner is down or unknown: the next
        return None

    def _answer(self, request: SearchRequest) -> SearchReply:
        try:
            found, cursor = self.index.query(
                request.field, request.text, request.limit, request.cursor
            )
        except SearchError as exc:
            raise _refusal(exc) from None
        return SearchReply(profiles=tuple(found), next_cursor=cursor)


def _refusal(exc: SearchError) -> ServiceError:
    """The error reply for a refused profile or query."""
    return ServiceError(_REFUSAL_CODES.get(exc.reason, ErrorCode.BAD_REQUEST), str(exc))


def _require_own_profile(pc: PeerConnection, profile: PublicProfile) -> str:
    """A client may publish only its own profile; return its canonical name."""
    return require_own(pc, profile.username, "profiles")
