"""Membership and directory in one simulation: supernodes, users, one simulated network.

:class:`NetworkSim` runs N supernodes, each with the real sans-I/O cores the
supernode process runs -- :class:`~hopline.overlay.membership.Membership`
(SWIM) and a :class:`~hopline.overlay.directory.DirectoryStore` -- on one
:class:`~hopline.testing.simnet.SimNetwork` (a mock clock, an event queue,
seeded per-message latency, optional loss), and drives them the way
:class:`~hopline.supernode.directory_service.DirectoryService` does:

* **Ownership from each node's own view.** Every supernode keeps the owners
  of every slot as *its* membership view gives them (members alive or
  suspect, itself included), updated after each batch of membership events,
  exactly when the service's ``refresh`` runs. Views that disagree during
  churn therefore really send publishes, replicas and lookups to the wrong
  node, and stores really refuse them (``not-owner``).
* **Publish.** A user's home supernode stores the record if it owns the slot
  and sends a ``directory.replica`` to the slot's other owners, which verify
  it again; the publish succeeds if one owner kept it.
* **Lookup.** The home asks the slot's owners in rank order (itself, locally,
  in its place), one overlay hop each, stops at the first ONLINE answer,
  moves on after a ``not found`` or after ``HOP_TIMEOUT`` without a reply,
  and repairs its own copy when it is an owner.
* **Handover.** When a node's view changes, it pushes the records of every
  slot it held to each node that newly owns the slot in its view, then drops
  the slots it no longer owns (``set_owned_slots``).
* **Graceful leave** is ``SupernodeNode.leave``: the node freezes its slots,
  sends its SWIM leave notices, repeats the notice on the reliable channel to
  each node that gains one of its slots and then sends it those records
  (:mod:`hopline.supernode.handover` plans and batches them), and closes
  ``LEAVE_GRACE_S`` after the last acknowledgement. A crash hands over
  nothing.
* **Users** publish when they come online, refresh every ``presence_ttl / 3``
  like :class:`~hopline.client.session.ClientSession`, and re-home to
  another supernode when theirs dies (noticed at the next keepalive ping) or
  leaves, then republish.

What is simulated: the network (latency uniform in ``latency``; SWIM
datagrams may be lost, directory messages ride the reliable channel, so a
loss costs a resend after the link's minimum RTO), the clock, the clients
(publish and lookup arrive at the home as events) and certificates (the
signature-less :class:`~hopline.testing.directory_sim.SimulationVerifier`
unless ``signed``). Messages are real wire messages, encoded and decoded when
``wire`` is set.

**Ownership, fast and exact.** :class:`~hopline.overlay.slots.OwnershipMap`
hashes every (slot, member) pair: 2 s for 1,000 members, far too slow to
rebuild after every event on every node. :class:`HrwIndex` computes each
supernode's rendezvous scores once (the same hash) and keeps each slot's
ranking; :class:`ViewOwnership` then updates one node's owner table
incrementally, touching only the dozen slots a joining or departing member
can own (see :class:`HrwIndex` on the reference set). A node still receiving
its join snapshot applies it to its view at once and rebuilds its table when
it next needs it; its store is empty then, so no handover is delayed. The
tests check every table against ``OwnershipMap`` for the same view.

Phases of :meth:`NetworkSim.run` (each reported by :class:`NetworkSimReport`):
bootstrap (nodes join one every ``join_spacing`` through early members, until
membership converges; the directory starts on each node from its own view),
publish (every user comes online within ``publish_window``), lookups
(``lookups`` from random supernodes for random users), churn (``churn`` of
the supernodes crash with no handover and as many join, while lookups go on
at ``lookup_rate``) and leave (``leave`` of them leave gracefully).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import random
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import contains, ge
from typing import Any, Protocol

from hopline.client.session import SessionConfig
from hopline.overlay.directory import DirectoryError, DirectoryStore, StoreLimits
from hopline.overlay.membership import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MembershipConfig,
    MembershipEvent,
)
from hopline.overlay.slots import DEFAULT_REPLICATION, DEFAULT_SLOTS, slot_of_key
from hopline.overlay.slots import _score as hrw_score  # the hash OwnershipMap ranks by
from hopline.supernode.handover import HANDOVER_TIMEOUT_S, record_batches, route_items
from hopline.supernode.node import LEAVE_GRACE_S
from hopline.supernode.overlay import leave_notice_of
from hopline.supernode.service import HOP_TIMEOUT
from hopline.testing.directory_sim import SIM_NOW, Certifier, make_record, percentile, user_name
from hopline.testing.lossy import Impairment, ImpairmentConfig
from hopline.testing.overlay_sim import OverlaySim, SimNode
from hopline.testing.simnet import FifoTimers, SimNetwork
from hopline.wire.codec import encode
from hopline.wire.commands import PresenceRecord
from hopline.wire.directory import (
    DirectoryLookup,
    DirectoryLookupReply,
    LookupState,
    StoreReplica,
    StoreReplicaReply,
)
from hopline.wire.membership import MembershipLeave
from hopline.wire.schema import Message
from hopline.wire.types import Address

__all__ = [
    "HrwIndex",
    "NetworkSim",
    "NetworkSimConfig",
    "NetworkSimReport",
    "ViewOwnership",
    "run_network_simulation",
    "summarize_lookups",
]

_SESSION = SessionConfig()
_ONLINE = int(LookupState.ONLINE)
_RANK = {int(LookupState.NOT_FOUND): 0, int(LookupState.OFFLINE): 1, _ONLINE: 2}
_REBUILD_BATCH = 16  # membership events in one batch that make a partial view rebuild its table
_KEEP_UNANSWERED = 50


@dataclass(frozen=True)
class NetworkSimConfig:
    """Size, network and workload of one run (defaults: the full 1,000 x 100,000 run)."""

    supernodes: int = 1000
    users: int = 100_000
    replication: int = DEFAULT_REPLICATION
    slots: int = DEFAULT_SLOTS
    seed: int = 1
    latency: tuple[float, float] = (0.005, 0.080)
    """One-way delay of each message, uniform in this range (seconds)."""
    loss: float = 0.0
    """Datagram loss probability (SWIM loses them; the reliable channel resends)."""
    join_spacing: float = 0.01
    publish_window: float = 20.0
    lookups: int = 100_000
    lookup_window: float = 20.0
    lookup_rate: float = 500.0
    """Lookups per simulated second during the churn and leave phases."""
    churn: float = 0.05
    """Fraction of the supernodes that crash in the churn phase (as many new ones join)."""
    churn_join_window: float = 5.0
    churn_observe: float | None = None
    """Length of the churn phase; default: the detection bound or a refresh period
    (whichever is longer) plus 30 s."""
    leave: float = 0.05
    """Fraction of the supernodes that leave gracefully in the leave phase."""
    leave_observe: float = 30.0
    presence_ttl: int = _SESSION.presence_ttl_s
    refresh_every: float = _SESSION.presence_ttl_s / 3
    keepalive: float = _SESSION.keepalive_s
    ping_timeout: float = _SESSION.ping_timeout_s
    rehome_backoff: float = _SESSION.rehome_backoff_s
    hop_timeout: float = HOP_TIMEOUT
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    signed: bool = False
    wire: bool = False

    def observe_churn(self) -> float:
        """How long the churn phase runs."""
        if self.churn_observe is not None:
            return self.churn_observe
        bound = self.membership.detection_bound(self.supernodes)
        return max(bound, self.refresh_every) + 30.0


# ---------------------------------------------------------------- ownership


class HrwIndex:
    """Every started supernode's rendezvous score in every slot, and each slot's ranking.

    The scores are those of :mod:`hopline.overlay.slots` (same hash, same
    order: score, then node id), computed once per node. The owners of a slot
    in any view are the first ``R`` nodes of the slot's ranking that the view
    holds, so no view ever needs a map of its own built from scratch.

    **Reference set.** A view that contains the whole :attr:`reference` set
    (the supernodes every view is expected to hold: those up since the
    start, minus each one that crashed or left) has, in every slot, a weakest
    owner at least as strong as the reference set's. So a member can own a
    slot in such a view only where its score reaches the reference set's
    weakest owner: :meth:`candidates`, about ``R * slots / n`` slots, cached
    per member. That turns every membership event into a dozen slot checks
    instead of a pass over all slots.
    """

    def __init__(self, slots: int, replication: int) -> None:
        """An empty index over ``slots`` slots, ``replication`` owners each."""
        self.slots, self.replication = slots, replication
        self._slot_keys = [slot.to_bytes(4, "big") for slot in range(slots)]
        self.scores: dict[str, array[int]] = {}
        self._ascending: list[array[int]] = [array("Q") for _ in range(slots)]
        self._ranked: list[list[str]] = [[] for _ in range(slots)]  # ascending, like _ascending
        self.reference: frozenset[str] = frozenset()
        self._reference_floor = array("Q", bytes(8 * slots))
        self._candidates: dict[str, list[int]] = {}

    def _row(self, node: str) -> array[int]:
        raw = node.encode("utf-8")
        row = array("Q", [hrw_score(key, raw) for key in self._slot_keys])
        self.scores[node] = row
        return row

    def add(self, node: str) -> None:
        """Score one more node and insert it in every slot's ranking."""
        if node in self.scores:
            return
        row = self._row(node)
        for slot, score in enumerate(row):
            scores, ranked = self._ascending[slot], self._ranked[slot]
            position = bisect.bisect_left(scores, score)
            while position < len(scores) and scores[position] == score and ranked[position] < node:
                position += 1
            scores.insert(position, score)
            ranked.insert(position, node)

    def add_many(self, nodes: Iterable[str]) -> None:
        """Score many nodes at once (one sort per slot instead of one insert per node)."""
        fresh = sorted(set(nodes) - self.scores.keys())
        rows = [self._row(node) for node in fresh]
        for slot in range(self.slots):
            merged = sorted(
                [*zip(self._ascending[slot], self._ranked[slot], strict=True)]
                + [(row[slot], node) for row, node in zip(rows, fresh, strict=True)]
            )
            self._ascending[slot] = array("Q", [score for score, _ in merged])
            self._ranked[slot] = [node for _, node in merged]

    def owners(self, slot: int, view: Set[str]) -> tuple[str, ...]:
        """The ``R`` best-ranked nodes of ``slot`` that ``view`` holds, best first."""
        found: list[str] = []
        count = self.replication
        for node in reversed(self._ranked[slot]):
            if node in view:
                found.append(node)
                if len(found) == count:
                    break
        return tuple(found)

    def table(self, view: Set[str]) -> tuple[list[tuple[str, ...]], array[int]]:
        """Owners of every slot in ``view``, and each slot's weakest-owner score (0: < R)."""
        table = [self.owners(slot, view) for slot in range(self.slots)]
        return table, self.floors(table)

    def floors(self, table: list[tuple[str, ...]]) -> array[int]:
        """Each slot's weakest-owner score in ``table`` (0 where it has fewer than R owners)."""
        scores, count = self.scores, self.replication
        return array(
            "Q",
            [
                scores[owners[-1]][slot] if len(owners) == count else 0
                for slot, owners in enumerate(table)
            ],
        )

    def set_reference(self, nodes: Iterable[str]) -> None:
        """Make ``nodes`` the reference set (every node of it must be scored)."""
        self.reference = frozenset(nodes)
        self._reference_floor = self.table(self.reference)[1]
        self._candidates.clear()

    def candidates(self, node: str) -> list[int]:
        """Slots ``node`` can own in any view that holds the reference set."""
        found = self._candidates.get(node)
        if found is None:
            row, floor = self.scores[node], self._reference_floor
            found = self._candidates[node] = list(compress(range(self.slots), map(ge, row, floor)))
        return found


class ViewOwnership:
    """One supernode's owners of every slot, from its own view, kept current incrementally.

    :meth:`join` and :meth:`drop` record in ``changed`` the owners each
    touched slot had before (the first time it is touched), so a caller can
    compare a whole batch of membership events at once, as the supernode's
    refresh compares two ownership maps. While the view lacks part of the
    index's reference set (a node still receiving its join snapshot, or one
    that wrongly declared a member dead) the candidate slots are found by a
    pass over every slot instead; a large batch is applied to the view with
    :meth:`defer` and the table rebuilt once, by :meth:`rebuild`.
    """

    def __init__(
        self,
        index: HrwIndex,
        node: str,
        view: Iterable[str] = (),
        base: tuple[list[tuple[str, ...]], array[int]] | None = None,
    ) -> None:
        """Owners for ``view`` (plus ``node``); ``base`` is that view's precomputed table."""
        self.index, self.node = index, node
        self.view: set[str] = {*view, node}
        if base is None and self.view == {node}:
            base = ([(node,)] * index.slots, array("Q", bytes(8 * index.slots)))
        table, floors = base or index.table(self.view)
        self.table: list[tuple[str, ...]] = list(table)
        self.floors: array[int] = array("Q", floors)
        self.owned: set[int] = {slot for slot, owners in enumerate(self.table) if node in owners}
        self.missing = len(index.reference - self.view)
        """How many members of the index's reference set this view lacks."""
        self.stale = False
        """The view changed by :meth:`defer` and the table is not rebuilt yet."""

    def join(self, member: str, changed: dict[int, tuple[str, ...]]) -> None:
        """``member`` entered the view: it takes the slots where it outranks the weakest owner."""
        if member in self.view:
            return
        covered = self.missing == 0
        self.view.add(member)
        self.missing -= member in self.index.reference
        row, floors = self.index.scores[member], self.floors
        if covered:
            slots: Iterable[int] = self.index.candidates(member)
        else:
            slots = compress(range(len(row)), map(ge, row, floors))
        for slot in slots:
            if row[slot] >= floors[slot]:
                self._admit(slot, member, changed)

    def drop(self, member: str, changed: dict[int, tuple[str, ...]]) -> None:
        """``member`` left the view: the slots it owned go to the next in their ranking."""
        if member == self.node or member not in self.view:
            return
        covered = self.missing == 0
        self.view.discard(member)
        self.missing += member in self.index.reference
        table = self.table
        if covered:
            slots: Iterable[int] = self.index.candidates(member)
        else:
            slots = compress(range(len(table)), map(contains, table, repeat(member)))
        for slot in slots:
            if member in table[slot]:
                self._set(slot, self.index.owners(slot, self.view), changed)

    def defer(self, joined: Iterable[str], dropped: Iterable[str]) -> None:
        """Change the view only; the table waits for :meth:`rebuild`."""
        reference = self.index.reference
        for member in joined:
            self.missing -= member in reference and member not in self.view
            self.view.add(member)
        for member in dropped:
            if member != self.node:
                self.missing += member in reference and member in self.view
                self.view.discard(member)
        self.stale = True

    def rebuild(self) -> dict[int, tuple[str, ...]]:
        """A fresh table for the view; the old owners of every slot that changed."""
        self.stale = False
        old = self.table
        self.table, self.floors = self.index.table(self.view)
        changed = {slot: before for slot, before in enumerate(old) if before != self.table[slot]}
        self.owned = {slot for slot, owners in enumerate(self.table) if self.node in owners}
        return changed

    def leave_targets(self) -> dict[int, tuple[str, ...]]:
        """Slot -> the nodes that gain it when this node leaves its view.

        What :func:`hopline.supernode.handover.leave_targets` computes from an
        ``OwnershipMap`` of the same view.
        """
        remaining = self.view - {self.node}
        targets: dict[int, tuple[str, ...]] = {}
        for slot in sorted(self.owned):
            before = self.table[slot]
            gained = tuple(n for n in self.index.owners(slot, remaining) if n not in before)
            if gained:
                targets[slot] = gained
        return targets

    def reference_shrunk(self, gone: Iterable[str]) -> None:
        """The index's reference set lost ``gone`` (call after each change of it)."""
        self.missing -= sum(node not in self.view for node in gone)

    def _admit(self, slot: int, member: str, changed: dict[int, tuple[str, ...]]) -> None:
        scores = self.index.scores
        ranked = sorted(
            (*self.table[slot], member), key=lambda node: (scores[node][slot], node), reverse=True
        )
        self._set(slot, tuple(ranked[: self.index.replication]), changed)

    def _set(self, slot: int, owners: tuple[str, ...], changed: dict[int, tuple[str, ...]]) -> None:
        changed.setdefault(slot, self.table[slot])
        self.table[slot] = owners
        full = len(owners) == self.index.replication
        self.floors[slot] = self.index.scores[owners[-1]][slot] if full else 0
        if self.node in owners:
            self.owned.add(slot)
        else:
            self.owned.discard(slot)


# ---------------------------------------------------------------- supernodes and requests


@dataclass(slots=True)
class _Directory:
    """The directory part of one simulated supernode."""

    sim_node: SimNode
    ownership: ViewOwnership
    store: DirectoryStore
    leaving: bool = False
    """Handing its slots over before it closes: answers lookups, refuses replicas."""
    closed: bool = False

    @property
    def node_id(self) -> str:
        return self.sim_node.node_id

    @property
    def up(self) -> bool:
        """A full member: neither crashed nor leaving nor gone."""
        return not (self.sim_node.crashed or self.leaving or self.closed)

    @property
    def serving(self) -> bool:
        """Still answering requests (up, or leaving but not closed yet)."""
        return not (self.sim_node.crashed or self.closed)


class _Waiter(Protocol):
    """Whoever waits for the reply to one request."""

    def on_reply(self, reply: Message) -> None:
        """The reply came."""

    def on_timeout(self) -> None:
        """No reply within the hop timeout."""


class _Lookup:
    """One lookup as the home supernode runs it (DirectoryService._ask_owners)."""

    __slots__ = (
        "best",
        "home",
        "hops",
        "messages",
        "misses",
        "owners",
        "phase",
        "position",
        "sim",
        "slot",
        "started",
        "timeouts",
        "user",
    )

    def __init__(self, sim: NetworkSim, home: _Directory, user: str) -> None:
        self.sim, self.home, self.user = sim, home, user
        self.slot = slot_of_key(user, sim.config.slots)
        self.owners = sim.ownership(home).table[self.slot]
        self.position = self.hops = self.messages = self.misses = self.timeouts = 0
        self.started, self.phase = sim.now(), sim.phase
        self.best: tuple[int, PresenceRecord | None] = (int(LookupState.NOT_FOUND), None)

    def advance(self) -> None:
        """Ask the next owner in rank order (itself locally), or finish."""
        home = self.home
        while self.position < len(self.owners):
            node = self.owners[self.position]
            self.position += 1
            if node != home.node_id:
                self._ask(node)
                return
            found = home.store.lookup(self.user, self.sim.unix())
            if self._take(int(found.state), found.record):
                break
        self._finish()

    def _ask(self, node: str) -> None:
        self.hops += 1
        self.messages += 1
        request = DirectoryLookup(request_id=self.sim.expect(self), username=self.user)
        self.sim.send(self.home, node, request)

    def on_reply(self, reply: Message) -> None:
        """An owner answered: done if ONLINE, else the next owner."""
        assert isinstance(reply, DirectoryLookupReply)
        self.messages += 1
        if not self.home.up:
            return
        if self._take(reply.state, reply.record):
            self._finish()
        else:
            self.advance()

    def on_timeout(self) -> None:
        """The owner is down (or unreachable): the next one."""
        self.timeouts += 1
        if self.home.up:
            self.advance()

    def _take(self, state: int, record: PresenceRecord | None) -> bool:
        if state != _ONLINE:
            self.misses += 1
        if _RANK.get(state, 0) > _RANK[self.best[0]]:
            self.best = (state, record)
        return state == _ONLINE

    def _finish(self) -> None:
        state, record = self.best
        home = self.home
        if record is not None and home.node_id in self.owners:  # read repair
            self.sim.ownership(home)
            home.store.import_records([record], self.sim.unix(), self.sim.certifier.verifier)
        answered = state == _ONLINE and record is not None and record.user == self.user
        self.sim.log_lookup(self, answered)


class _Publish:
    """One publish at the home supernode (DirectoryService._publish)."""

    __slots__ = ("home", "record", "sim", "stored", "waiting")

    def __init__(self, sim: NetworkSim, home: _Directory, record: PresenceRecord) -> None:
        self.sim, self.home, self.record = sim, home, record
        self.stored = self.waiting = 0

    def start(self) -> None:
        """Store locally if an owner; replicate to the other owners."""
        sim, home = self.sim, self.home
        owners = sim.ownership(home).table[slot_of_key(self.record.user, sim.config.slots)]
        for node in owners:
            if node == home.node_id:
                self._store_here()
                continue
            self.waiting += 1
            request_id = sim.expect(self)
            sim.send(home, node, StoreReplica(request_id=request_id, records=(self.record,)))
        if not self.waiting:
            self._finish()

    def _store_here(self) -> None:
        try:
            self.home.store.publish(self.record, self.sim.unix(), self.sim.certifier.verifier)
        except DirectoryError as exc:
            self.sim.counters[f"publish refused {exc.reason}"] += 1
            return
        self.stored += 1

    def on_reply(self, reply: Message) -> None:
        """An owner kept the record (or refused it)."""
        assert isinstance(reply, StoreReplicaReply)
        self.stored += int(reply.stored + reply.unchanged > 0)
        self._settle()

    def on_timeout(self) -> None:
        """An owner did not answer."""
        self.sim.counters["replica timeouts"] += 1
        self._settle()

    def _settle(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self._finish()

    def _finish(self) -> None:
        counters = self.sim.counters
        counters["publishes"] += 1
        counters["publishes stored"] += int(self.stored > 0)
        counters["replicas stored"] += self.stored


class _Push:
    """A handover push of one slot's records to a new owner."""

    __slots__ = ("sim",)

    def __init__(self, sim: NetworkSim) -> None:
        self.sim = sim

    def on_reply(self, reply: Message) -> None:
        """The new owner answered with what it kept."""
        assert isinstance(reply, StoreReplicaReply)
        self.sim.counters["handover records stored"] += reply.stored + reply.unchanged
        self.sim.counters["handover records refused"] += reply.refused

    def on_timeout(self) -> None:
        """The new owner did not answer."""
        self.sim.counters["handover timeouts"] += 1


class _LeaveHandover:
    """A graceful leave as the supernode does it (``SupernodeNode.leave``).

    The node freezes its slots, sends SWIM leave notices, then, for every node
    that gains one of its slots, repeats the notice on the reliable channel
    and sends that node's records in ``StoreReplica`` batches, one request at
    a time (the notice arrives first, so the receiver already owns the slot).
    It closes :data:`LEAVE_GRACE_S` after the last acknowledgement, or after
    :data:`HANDOVER_TIMEOUT_S` at most.
    """

    def __init__(self, sim: NetworkSim, directory: _Directory) -> None:
        self.sim, self.directory = sim, directory
        self.queues: dict[str, list[StoreReplica]] = {}
        self.done = False

    def start(self) -> None:
        """Freeze, notify, plan, send the first batch to every gaining node."""
        sim, directory = self.sim, self.directory
        ownership = sim.ownership(directory)
        directory.leaving = True
        sim.overlay.leave(directory.node_id)
        routed = route_items(ownership.leave_targets(), self._items(ownership))
        self.queues = {node: record_batches(records) for node, records in routed.items()}
        counters = sim.counters
        counters["leave handover nodes"] += len(routed)
        counters["leave handover records"] += sum(len(records) for records in routed.values())
        sim.net.call_at(sim.now() + HANDOVER_TIMEOUT_S, self._finish)
        notice = self._notice()
        for node in sorted(self.queues):
            arrival = sim.send(directory, node, notice)
            self._next(node, arrival)
        self._maybe_finish()

    def _items(self, ownership: ViewOwnership) -> Iterable[tuple[PresenceRecord, tuple[int]]]:
        store = self.directory.store
        for slot in sorted(ownership.owned):
            for record in store.export_slot(slot):
                yield record, (slot,)

    def _notice(self) -> MembershipLeave:
        me = self.directory.sim_node.core.member(self.directory.node_id)
        assert me is not None
        return leave_notice_of(me)

    def _next(self, node: str, not_before: float | None = None) -> None:
        queue = self.queues[node]
        if not queue or self.done:
            self.queues.pop(node)
            self._maybe_finish()
            return
        batch = queue.pop(0)
        waiter = _LeaveBatch(self, node)
        request = StoreReplica(request_id=self.sim.expect(waiter), records=batch.records)
        self.sim.send(self.directory, node, request, not_before=not_before)

    def acknowledged(self, node: str, reply: StoreReplicaReply | None) -> None:
        """A batch was answered (or not: None), so the next one goes, or this node is done."""
        counters = self.sim.counters
        if reply is None:
            counters["leave handover failed nodes"] += 1
            self.queues.pop(node, None)
            self._maybe_finish()
            return
        counters["leave handover stored"] += reply.stored + reply.unchanged
        counters["leave handover refused"] += reply.refused
        if node in self.queues:
            self._next(node)

    def _maybe_finish(self) -> None:
        if not self.queues:
            self._finish()

    def _finish(self, _: object = None) -> None:
        if self.done:
            return
        self.done = True
        if self.queues:
            self.sim.counters["leave handover timed out"] += 1
        self.sim.net.call_at(self.sim.now() + LEAVE_GRACE_S, self._close)

    def _close(self, _: object) -> None:
        self.directory.closed = True


class _LeaveBatch:
    """The reply to one batch of a leave handover."""

    __slots__ = ("handover", "node")

    def __init__(self, handover: _LeaveHandover, node: str) -> None:
        self.handover, self.node = handover, node

    def on_reply(self, reply: Message) -> None:
        """The receiver stored (or refused) the batch."""
        assert isinstance(reply, StoreReplicaReply)
        self.handover.acknowledged(self.node, reply)

    def on_timeout(self) -> None:
        """The receiver did not answer in time: give that node up."""
        self.handover.acknowledged(self.node, None)


# ---------------------------------------------------------------- reports


_LookupRow = tuple[float, bool, int, int, float, int, int]
"""started, answered, hops, messages, latency (s), timeouts, owners that lacked the record."""


def summarize_lookups(rows: Sequence[_LookupRow]) -> dict[str, Any]:
    """Answered fraction, hops, messages and latency of a list of finished lookups."""
    n = len(rows)
    if not n:
        return {"lookups": 0}
    remote = [row for row in rows if row[2]]
    answered = sum(row[1] for row in rows)
    messages = [row[3] for row in rows]
    latencies = [row[4] * 1000 for row in rows]
    return {
        "lookups": n,
        "answered_pct": round(100.0 * answered / n, 3),
        "unanswered": n - answered,
        "hops_mean": round(sum(row[2] for row in rows) / n, 4),
        "hops_remote_mean": round(sum(row[2] for row in remote) / max(1, len(remote)), 4),
        "hops_max": max(row[2] for row in rows),
        "one_hop_pct": round(100.0 * sum(row[1] and row[2] == 1 for row in rows) / n, 3),
        "answered_locally": sum(row[1] and row[2] == 0 for row in rows),
        "messages_mean": round(sum(messages) / n, 4),
        "messages_p99": percentile(messages, 0.99),
        "messages_max": max(messages),
        "latency_p50_ms": round(percentile(latencies, 0.50), 1),
        "latency_p99_ms": round(percentile(latencies, 0.99), 1),
        "timeouts": sum(row[5] for row in rows),
        "misdirected": sum(row[6] > 0 for row in rows),
    }


@dataclass
class NetworkSimReport:
    """What :meth:`NetworkSim.run` measured, phase by phase (JSON-ready via :meth:`summary`)."""

    config: NetworkSimConfig
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_seconds: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    unanswered: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Configuration, phases, counters and wall-clock seconds."""
        config = self.config
        return {
            "supernodes": config.supernodes,
            "users": config.users,
            "replication": config.replication,
            "slots": config.slots,
            "latency_ms": [config.latency[0] * 1000, config.latency[1] * 1000],
            "loss": config.loss,
            "seed": config.seed,
            "phases": self.phases,
            "counters": self.counters,
            "unanswered": self.unanswered,
            "wall_seconds": {k: round(v, 1) for k, v in self.wall_seconds.items()},
        }


# ---------------------------------------------------------------- the simulation


class NetworkSim:
    """Supernodes (membership + directory), users and one simulated network; see module doc."""

    def __init__(self, config: NetworkSimConfig | None = None) -> None:
        """An empty network; :meth:`run` (or the phase methods in order) fills it."""
        self.config = config = config or NetworkSimConfig()
        self.rng = random.Random(f"{config.seed}:workload")
        low, high = config.latency
        impairment = ImpairmentConfig(delay=low, jitter=high - low, drop=config.loss)
        self.net = SimNetwork(Impairment(impairment, random.Random(f"{config.seed}:net")))
        self.overlay = OverlaySim(
            config=config.membership,
            seed=config.seed,
            wire=config.wire,
            net=self.net,
            record_events=False,
        )
        self.overlay.on_message = self._on_message
        self.overlay.on_events = self._on_events
        self.index = HrwIndex(config.slots, config.replication)
        self.certifier = Certifier(config.signed)
        self.limits = StoreLimits()
        self.directories: dict[str, _Directory] = {}
        self.addresses: dict[str, Address] = {}
        self.up: list[str] = []
        self.counters: Counter[str] = Counter()
        self.sent_by_type: Counter[str] = Counter()
        self.bytes_sent = 0
        self.lookups: dict[str, list[_LookupRow]] = {}
        self.unanswered: list[dict[str, Any]] = []
        """The first unanswered lookups, with who was asked and who really owns the slot."""
        self.phase = "idle"
        self.records: list[PresenceRecord | None] = [None] * config.users
        self.homes: list[str] = [""] * config.users
        self._refresh_due: list[float] = [-1.0] * config.users
        self._pending: dict[int, _Waiter] = {}
        self._request_ids = itertools.count(1)
        self._timeouts = FifoTimers(self.net, self._expire)
        self._refreshes = FifoTimers(self.net, self._refresh)
        self._lookup_starts = FifoTimers(self.net, self._start_lookup)

    # ------------------------------------------------------------ time

    def now(self) -> float:
        """Simulated seconds since the start."""
        return self.net.clock.now()

    def unix(self) -> int:
        """The simulated wall clock the stores and records use (Unix seconds)."""
        return SIM_NOW + int(self.net.clock.now())

    # ------------------------------------------------------------ requests

    def expect(self, waiter: _Waiter) -> int:
        """A fresh request id whose reply (or timeout) goes to ``waiter``."""
        request_id = next(self._request_ids)
        self._pending[request_id] = waiter
        self._timeouts.add(self.now() + self.config.hop_timeout, request_id)
        return request_id

    def send(
        self, home: _Directory, node: str, message: Message, not_before: float | None = None
    ) -> float | None:
        """A message from ``home`` to supernode ``node`` on the reliable channel; its arrival."""
        return self._transmit(home.sim_node.address, self.addresses[node], message, not_before)

    def _transmit(
        self,
        source: Address,
        destination: Address,
        message: Message,
        not_before: float | None = None,
    ) -> float | None:
        self.sent_by_type[type(message).__name__] += 1
        payload: Message | bytes = message
        if self.config.wire:
            payload = encode(message)
            self.bytes_sent += len(payload)
        return self.net.send(source, destination, payload, reliable=True, not_before=not_before)

    def _expire(self, request_id: int) -> None:
        waiter = self._pending.pop(request_id, None)
        if waiter is not None:
            waiter.on_timeout()

    def _on_message(self, node: SimNode, source: Address, message: Message) -> None:
        directory = self.directories.get(node.node_id)
        if directory is None or not directory.serving:
            self.counters["directory messages to closed nodes"] += 1
            return
        if isinstance(message, DirectoryLookupReply | StoreReplicaReply):
            waiter = self._pending.pop(message.request_id, None)
            if waiter is None:
                self.counters["late replies"] += 1
            else:
                waiter.on_reply(message)
        elif isinstance(message, StoreReplica) and directory.leaving:
            self.counters["replica refused leaving"] += len(message.records)
            reply = StoreReplicaReply(request_id=message.request_id, refused=len(message.records))
            self._transmit(node.address, source, reply)
        elif isinstance(message, DirectoryLookup):
            self._answer_lookup(directory, source, message)
        elif isinstance(message, StoreReplica):
            self._store_replica(directory, source, message)
        else:
            self.counters["unexpected messages"] += 1

    def _answer_lookup(
        self, directory: _Directory, source: Address, request: DirectoryLookup
    ) -> None:
        found = directory.store.lookup(request.username, self.unix())
        reply = DirectoryLookupReply(
            request_id=request.request_id,
            state=int(found.state),
            record=found.record,
            last_seen=found.last_seen,
        )
        self._transmit(directory.sim_node.address, source, reply)

    def _store_replica(self, directory: _Directory, source: Address, request: StoreReplica) -> None:
        self.ownership(directory)  # the store's owned slots must be current
        verifier = self.certifier.verifier
        result = directory.store.import_records(request.records, self.unix(), verifier)
        for reason, count in result.refused.items():
            self.counters[f"replica refused {reason}"] += count
        reply = StoreReplicaReply(
            request_id=request.request_id,
            stored=result.stored,
            unchanged=result.unchanged,
            refused=sum(result.refused.values()),
        )
        self._transmit(directory.sim_node.address, source, reply)

    # ------------------------------------------------------------ membership changes

    def _on_events(self, node: SimNode, events: list[MembershipEvent]) -> None:
        """The supernode's refresh: new owners from its view, handover, keep own slots."""
        directory = self.directories.get(node.node_id)
        if directory is None or not directory.up:
            return
        ownership = directory.ownership
        if ownership.missing and len(events) >= _REBUILD_BATCH:  # a join snapshot arriving
            joined = [e.member.node_id for e in events if isinstance(e, MemberJoined)]
            gone = [e.member.node_id for e in events if isinstance(e, MemberFailed | MemberLeft)]
            ownership.defer(joined, gone)
            if len(directory.store):
                self.ownership(directory)  # records to hand over: no waiting
            return
        ownership = self.ownership(directory)
        changed: dict[int, tuple[str, ...]] = {}
        for event in events:
            member = event.member.node_id
            if isinstance(event, MemberJoined):
                ownership.join(member, changed)
            elif isinstance(event, MemberFailed | MemberLeft):
                ownership.drop(member, changed)
        if changed:
            self._hand_over(directory, changed)

    def ownership(self, directory: _Directory) -> ViewOwnership:
        """The node's ownership, its table rebuilt first if a batch was deferred.

        A table waits only while the node's store is empty, so nothing it
        would have handed over in between is missed: deferring changes no
        message, only when the table is computed.
        """
        ownership = directory.ownership
        if ownership.stale:
            self._hand_over(directory, ownership.rebuild())
        return ownership

    def _hand_over(self, directory: _Directory, changed: dict[int, tuple[str, ...]]) -> None:
        me, table = directory.node_id, directory.ownership.table
        moved = False
        for slot, before in changed.items():
            after = table[slot]
            if after == before:
                continue
            moved = moved or ((me in before) != (me in after))
            newcomers = [node for node in after if node not in before]
            if me in before and newcomers:
                self._push(directory, slot, newcomers)
        if moved:
            directory.store.set_owned_slots(directory.ownership.owned)

    def _push(self, directory: _Directory, slot: int, newcomers: list[str]) -> None:
        records = tuple(directory.store.export_slot(slot))
        if not records:
            return
        for node in newcomers:
            self.counters["handover pushes"] += 1
            self.counters["handover records"] += len(records)
            request_id = self.expect(_Push(self))
            self.send(directory, node, StoreReplica(request_id=request_id, records=records))

    # ------------------------------------------------------------ supernodes

    def _start_supernode(self, seeds: list[Address]) -> SimNode:
        node = self.overlay.add_node(seeds)
        self.addresses[node.node_id] = node.address
        return node

    def _attach(self, node: SimNode, ownership: ViewOwnership) -> None:
        store = DirectoryStore(self.limits, slots=self.config.slots, owned_slots=ownership.owned)
        self.directories[node.node_id] = _Directory(node, ownership, store)
        self.up.append(node.node_id)

    def _join_supernode(self, _: object = None) -> None:
        """A new supernode joins through a random live one; its directory starts at once."""
        seed = self.addresses[self.rng.choice(self.up)]
        node = self._start_supernode([seed])
        self.index.add(node.node_id)
        self._attach(node, ViewOwnership(self.index, node.node_id))

    def _take_down(self, node_ids: list[str], *, crash: bool) -> None:
        gone = set(node_ids)
        for node_id in node_ids:
            if crash:
                self.overlay.crash(node_id)
            else:
                _LeaveHandover(self, self.directories[node_id]).start()
        self.up = [node for node in self.up if node not in gone]
        self.index.set_reference(self.index.reference - gone)
        for node_id in self.up:
            self.directories[node_id].ownership.reference_shrunk(gone)
        for user, home in enumerate(self.homes):
            if home in gone:
                self._schedule_rehome(user, crash=crash)

    # ------------------------------------------------------------ users

    def _schedule_rehome(self, user: int, *, crash: bool) -> None:
        """When the client notices: at its next keepalive ping's timeout, or at once on a close."""
        config = self.config
        if crash:
            delay = self.rng.uniform(0.0, config.keepalive) + config.ping_timeout
        else:
            delay = self.rng.uniform(0.0, config.rehome_backoff)
        self._refresh_due[user] = -1.0
        self.net.call_at(self.now() + delay, self._rehome, user)

    def _rehome(self, user: int) -> None:
        self.counters["rehomes"] += 1
        self.homes[user] = self.rng.choice(self.up)
        self._publish(user)

    def _publish(self, user: int) -> None:
        """The user's client publishes (or refreshes) its record at its home."""
        home = self.directories[self.homes[user]]
        if not home.up:
            return  # the client notices at its next keepalive; a rehome is scheduled
        now, config = self.unix(), self.config
        record = self.records[user]
        if record is None:
            record = make_record(user, self.certifier, now, config.presence_ttl)
        else:
            expires, sequence = now + config.presence_ttl, record.sequence + 1
            record = dataclasses.replace(record, last_seen=now, expires=expires, sequence=sequence)
        self.records[user] = record
        _Publish(self, home, record).start()
        due = self.now() + config.refresh_every
        self._refresh_due[user] = due
        self._refreshes.add(due, (user, due))

    def _refresh(self, item: tuple[int, float]) -> None:
        user, due = item
        if self._refresh_due[user] == due:
            self._publish(user)

    # ------------------------------------------------------------ lookups

    def _schedule_lookups(self, count: int, start: float, duration: float) -> None:
        for when in sorted(start + self.rng.uniform(0.0, duration) for _ in range(count)):
            self._lookup_starts.add(when)

    def _start_lookup(self, _: object = None) -> None:
        home = self.directories[self.rng.choice(self.up)]
        user = self.rng.randrange(self.config.users)
        _Lookup(self, home, user_name(user)).advance()

    def log_lookup(self, lookup: _Lookup, answered: bool) -> None:
        """Record a finished lookup under the phase it started in."""
        row = (
            lookup.started,
            answered,
            lookup.hops,
            lookup.messages,
            self.now() - lookup.started,
            lookup.timeouts,
            lookup.misses,
        )
        self.lookups.setdefault(lookup.phase, []).append(row)
        if not answered and len(self.unanswered) < _KEEP_UNANSWERED:
            self.unanswered.append(
                {
                    "phase": lookup.phase,
                    "at_s": round(lookup.started, 3),
                    "user": lookup.user,
                    "home": lookup.home.node_id,
                    "asked": list(lookup.owners[: lookup.position]),
                    "timeouts": lookup.timeouts,
                    "true_owners": list(self.index.owners(lookup.slot, self.true_view())),
                }
            )

    # ------------------------------------------------------------ checks (oracle: measurement only)

    def true_view(self) -> set[str]:
        """The supernodes that are really up."""
        return set(self.up)

    def views_agreeing(self) -> int:
        """How many live supernodes' views are exactly the live set."""
        truth = self.true_view()
        return sum(self.directories[node].ownership.view == truth for node in self.up)

    def replicas_complete(self) -> float:
        """Percentage of (user, true owner) pairs where the owner holds the user online."""
        truth, config = self.true_view(), self.config
        now, held, total = self.unix(), 0, 0
        for user in range(config.users):
            name = user_name(user)
            slot = slot_of_key(name, config.slots)
            for node in self.index.owners(slot, truth):
                total += 1
                found = self.directories[node].store.lookup(name, now)
                held += found.state == LookupState.ONLINE
        return round(100.0 * held / max(1, total), 3)

    # ------------------------------------------------------------ phases

    def bootstrap(self) -> dict[str, Any]:
        """Start the supernodes, wait for membership to converge, start every directory."""
        config = self.config
        first = self._start_supernode([])
        early = [first.address]
        for _ in range(config.supernodes - 1):
            node = self._start_supernode([self.rng.choice(early)])
            if len(early) < 8:
                early.append(node.address)
            self.overlay.run_for(config.join_spacing)
        joined = self.now()
        bound = config.membership.convergence_bound(config.supernodes)
        converged = self.overlay.run_until(self.overlay.converged, 3 * bound, check_every=0.5)
        self.index.add_many(self.addresses)
        self.index.set_reference(node.node_id for node in self.overlay.live_nodes())
        self._attach_all()
        return {
            "converged": converged,
            "converge_s": round(self.now() - joined, 2),
            "converge_bound_s": round(bound, 1),
            "membership_messages": self.overlay.messages_sent,
        }

    def _attach_all(self) -> None:
        tables: dict[frozenset[str], tuple[list[tuple[str, ...]], array[int]]] = {}
        for node in self.overlay.live_nodes():
            view = frozenset(m.node_id for m in node.core.members(include_self=True))
            if view not in tables:
                tables[view] = self.index.table(view)
            self._attach(node, ViewOwnership(self.index, node.node_id, view, tables[view]))

    def publish_all(self) -> dict[str, Any]:
        """Every user comes online at a random home within the publish window."""
        self.phase = "publish"
        config, start = self.config, self.now()
        online = FifoTimers(self.net, self._publish)
        times = [start + self.rng.uniform(0.0, config.publish_window) for _ in range(config.users)]
        for when, user in sorted(zip(times, range(config.users), strict=True)):
            self.homes[user] = self.rng.choice(self.up)
            online.add(when, user)
        self.overlay.run_for(config.publish_window + 2 * config.hop_timeout)
        return {
            "publishes": self.counters["publishes"],
            "stored_pct": round(
                100.0 * self.counters["publishes stored"] / max(1, self.counters["publishes"]), 3
            ),
            "replicas_per_publish": round(
                self.counters["replicas stored"] / max(1, self.counters["publishes"]), 4
            ),
            "replicas_complete_pct": self.replicas_complete(),
        }

    def lookup_phase(self, name: str = "lookups", count: int | None = None) -> dict[str, Any]:
        """``count`` (default ``lookups``) lookups from random supernodes for random users."""
        self.phase = name
        config = self.config
        count = config.lookups if count is None else count
        self._schedule_lookups(count, self.now(), config.lookup_window)
        self.overlay.run_for(config.lookup_window + config.replication * config.hop_timeout + 1)
        return summarize_lookups(self.lookups.get(name, []))

    def churn_phase(self) -> dict[str, Any]:
        """Crash ``churn`` of the supernodes and join as many, lookups going on throughout."""
        self.phase = "churn"
        config = self.config
        start, duration = self.now(), config.observe_churn()
        count = max(1, round(config.churn * len(self.up)))
        self._schedule_lookups(round(config.lookup_rate * duration), start, duration)
        self._take_down(self.rng.sample(sorted(self.up), count), crash=True)
        for _ in range(count):
            when = start + self.rng.uniform(0.0, config.churn_join_window)
            self.net.call_at(when, self._join_supernode)
        self.overlay.run_for(duration)
        self.phase = "drain"
        self.overlay.run_for(config.replication * config.hop_timeout + 1)
        return self._churn_summary(start, count, duration)

    def _churn_summary(self, start: float, count: int, duration: float) -> dict[str, Any]:
        rows = self.lookups.get("churn", [])
        bound = self.config.membership.detection_bound(len(self.up))
        failed = [row[0] for row in rows if not row[1]]
        return {
            "crashed": count,
            "joined": count,
            "observed_s": round(duration, 1),
            "detection_bound_s": round(bound, 1),
            "all": summarize_lookups(rows),
            "within_bound": summarize_lookups([r for r in rows if r[0] < start + bound]),
            "after_bound": summarize_lookups([r for r in rows if r[0] >= start + bound]),
            "last_unanswered_s": round(max(failed) - start, 2) if failed else None,
            "converged": self.overlay.converged(),
            "views_agreeing": self.views_agreeing(),
            "replicas_complete_pct": self.replicas_complete(),
        }

    def leave_phase(self) -> dict[str, Any]:
        """``leave`` of the supernodes leave gracefully while lookups go on."""
        self.phase = "leave"
        config = self.config
        start, duration = self.now(), config.leave_observe
        count = max(1, round(config.leave * len(self.up)))
        self._schedule_lookups(round(config.lookup_rate * duration), start, duration)
        self._take_down(self.rng.sample(sorted(self.up), count), crash=False)
        self.overlay.run_for(duration)
        self.phase = "drain"
        self.overlay.run_for(config.replication * config.hop_timeout + 1)
        rows = self.lookups.get("leave", [])
        failed = [row[0] for row in rows if not row[1]]
        return {
            "left": count,
            "observed_s": round(duration, 1),
            "leave_bound_s": round(config.membership.leave_bound(len(self.up)), 1),
            "all": summarize_lookups(rows),
            "last_unanswered_s": round(max(failed) - start, 2) if failed else None,
            "converged": self.overlay.converged(),
            "views_agreeing": self.views_agreeing(),
            "replicas_complete_pct": self.replicas_complete(),
        }

    def run(self) -> NetworkSimReport:
        """All phases in order; the report of each, with wall-clock seconds."""
        report = NetworkSimReport(self.config)
        steps = (
            ("bootstrap", self.bootstrap),
            ("publish", self.publish_all),
            ("lookups", self.lookup_phase),
            ("churn", self.churn_phase),
            ("leave", self.leave_phase),
        )
        for name, step in steps:
            started, before = time.perf_counter(), self.all_counters()
            report.phases[name] = step()
            report.wall_seconds[name] = time.perf_counter() - started
            report.phases[name]["sim_time_s"] = round(self.now(), 1)
            report.phases[name]["counters"] = dict(sorted((self.all_counters() - before).items()))
        report.counters = dict(sorted(self.all_counters().items()))
        report.unanswered = self.unanswered
        return report

    def all_counters(self) -> Counter[str]:
        """Directory counters, messages sent by type, membership messages."""
        counters = self.counters.copy()
        counters.update({f"sent {k}": v for k, v in self.sent_by_type.items()})
        counters["sent membership"] = self.overlay.messages_sent
        return counters


def run_network_simulation(config: NetworkSimConfig | None = None) -> NetworkSimReport:
    """Build a :class:`NetworkSim` and run every phase."""
    return NetworkSim(config).run()
