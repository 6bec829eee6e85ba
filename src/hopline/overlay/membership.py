"""Supernode membership: a sans-I/O, SWIM-style gossip protocol.

Every supernode keeps a table of every other supernode. The design follows
SWIM (Das, Gupta, Motivala 2002) with ideas from Lifeguard (Dadgar et al.
2018) and HashiCorp memberlist:

* **Failure detection.** Once per protocol period ``T`` a member probes one
  other member, chosen round-robin from a list reshuffled after each pass
  (SWIM 4.3: every member is probed by every other within ``2n-1`` periods).
  No ack within ``ping_timeout``: ask ``indirect_probes`` (k) random members
  to probe it for us (ping-req). No ack by the end of the period: the target
  becomes *suspect*.
* **Suspicion.** A suspect is declared *dead* when its suspicion timeout
  runs out, unless it refutes first. The timeout is memberlist's
  ``suspicion_mult * max(1, log10 n) * T``: fixed for a given cluster size,
  scaled with log n so that the gossip carrying the suspicion can reach the
  suspect and its refutation can come back (Lifeguard's shrinking timeout,
  driven by independent confirmations, is not implemented). Lifeguard's
  *buddy system* is: a ping to a member we suspect carries that suspicion
  first, so the suspect learns of it at once.
* **Incarnations.** Only a member raises its own incarnation, to refute a
  suspicion (or a death, or someone claiming its id). Precedence (SWIM 4.2):
  ``alive(i)`` beats ``alive/suspect/dead(j)`` if ``i > j``; ``suspect(i)``
  beats ``alive(j)`` if ``i >= j``, ``suspect(j)`` if ``i > j``;
  ``dead/left(i)`` beat ``alive/suspect(j)`` if ``i >= j``. So a restarted
  supernode (same id, incarnation forgotten) hears that it is dead and comes
  back with a higher incarnation.
* **Dissemination.** State changes are piggybacked on pings, acks and
  ping-reqs (SWIM's infection-style dissemination), and, while there is
  anything to tell, pushed every ``gossip_interval`` to ``gossip_fanout``
  random members (memberlist's gossip fan-out; it costs nothing when the
  queue is empty). Each update is sent at most
  ``retransmit_mult * ceil(log10(n + 1))`` times (memberlist's rule),
  least-sent first, and at most as many as fit in ``max_message_bytes``.
* **Anti-entropy.** Joining is a push-pull of the whole table with a seed;
  every ``sync_period(n)`` (``sync_interval``, scaled up by log n above
  ``sync_scale_above`` members, as memberlist does) each member also does a
  push-pull with one random member, so members that missed gossip (loss, bursts of joins larger than
  the piggyback budget) converge anyway. Updates learnt by sync are merged
  but not re-gossiped (the sync itself is their dissemination).
* **Leave.** A leaving member tells every member directly (a one-hop overlay
  knows them all) and they gossip the ``left`` state on.

Bounds (``T`` = protocol period, ``n`` = cluster size, ``S = sync_period(n)``,
``g = gossip_interval``, ``f = gossip_fanout``), each a with-high-probability
bound computed by :class:`MembershipConfig` and checked by the simulator tests:

* dissemination ``D(n) = ceil(log_{f+1} n + ln n / f + 4) * g + T``;
* convergence after the last join ``join_retry + D(n) + 1.5 S``;
* failure detection ``(ceil(ln n) + 6) T + D(n) + 1.5 S + suspicion(n)``,
  and never sooner than ``suspicion(n) = suspicion_mult * max(1, log10 n) * T``
  after the crash;
* graceful leave ``D(n)``.

Memory is bounded: at most ``max_members`` entries; dead and left members are
kept as tombstones (so stale gossip cannot resurrect them) and forgotten
after ``dead_retention`` seconds. Remote input never raises: malformed or
hostile updates (bad ids, absurd incarnations) are dropped and counted in
:attr:`Membership.dropped`. Authentication is the caller's job: it passes
only messages from certified supernodes.

The API is aioquic-style: :meth:`Membership.receive`,
:meth:`Membership.handle_timer` and :meth:`Membership.join` /
:meth:`Membership.leave` change state; :meth:`Membership.messages_to_send`,
:meth:`Membership.get_timer` and :meth:`Membership.next_event` read what to
do next. Time is always passed in (seconds, any monotonic origin).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, replace

from hopline.wire.codec import encode_record
from hopline.wire.membership import (
    MembershipAck,
    MembershipGossip,
    MembershipJoin,
    MembershipJoinReply,
    MembershipLeave,
    MembershipPing,
    MembershipPingReq,
    MembershipPingReqReply,
    MembershipSync,
    MembershipSyncReply,
    MemberState,
    MemberUpdate,
)
from hopline.wire.schema import Message
from hopline.wire.types import Address
from hopline.wire.varint import encode_varint

__all__ = [
    "Member",
    "MemberAlive",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberState",
    "MemberSuspected",
    "Membership",
    "MembershipConfig",
    "MembershipEvent",
]

MAX_NODE_ID_BYTES = 64
_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_STATES = frozenset(int(state) for state in MemberState)
# Room for the message header, the sender's record, a target id and address.
_FIXED_OVERHEAD = 8 + 2 * (MAX_NODE_ID_BYTES + 40)


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Tuning of the protocol; defaults suit a WAN of up to ~10,000 supernodes."""

    protocol_period: float = 1.0
    """T: one probe per member per period (seconds)."""
    ping_timeout: float = 0.4
    """Wait this long for a direct ack before sending ping-reqs (< protocol_period)."""
    indirect_probes: int = 3
    """k: helpers asked to probe a target that did not ack."""
    suspicion_mult: float = 5.0
    """Suspicion timeout = suspicion_mult * max(1, log10 n) * T."""
    gossip_interval: float = 0.2
    """While updates are queued, push them this often (seconds)..."""
    gossip_fanout: int = 3
    """... to this many random members."""
    retransmit_mult: int = 4
    """lambda: each update is piggybacked retransmit_mult * ceil(log10(n + 1)) times."""
    max_message_bytes: int = 1000
    """Every message (pings, acks, snapshot parts) stays under this encoded size."""
    sync_interval: float = 10.0
    """Mean time between push-pull syncs with a random member (jittered +-50%)..."""
    sync_scale_above: int = 128
    """... multiplied by ``1 + ceil(log2(n / sync_scale_above))`` in larger clusters."""
    join_retry: float = 2.0
    """Resend the join to the seeds if no reply came within this time."""
    dead_retention: float = 60.0
    """Forget dead and left members (tombstones) after this many seconds."""
    max_members: int = 10_000
    """Bound on the table (live members and tombstones)."""
    max_incarnation: int = 2**32
    """Updates with larger incarnations are absurd and dropped."""
    max_incarnation_step: int = 1 << 16
    """Updates raising a known member's incarnation by more than this are dropped."""
    max_relays: int = 256
    """Bound on indirect probes this member runs for others at once."""

    def __post_init__(self) -> None:
        """Refuse settings the protocol cannot work with."""
        if not 0 < self.ping_timeout < self.protocol_period:
            raise ValueError("need 0 < ping_timeout < protocol_period")
        if self.indirect_probes < 0 or self.retransmit_mult < 1 or self.max_members < 2:
            raise ValueError("indirect_probes >= 0, retransmit_mult >= 1, max_members >= 2")
        if self.gossip_fanout < 1 or self.gossip_interval <= 0:
            raise ValueError("gossip_fanout >= 1 and gossip_interval > 0")
        if self.max_message_bytes < 2 * _FIXED_OVERHEAD:
            raise ValueError(f"max_message_bytes must be at least {2 * _FIXED_OVERHEAD}")

    def suspicion_timeout(self, n: int) -> float:
        """Seconds a suspect has to refute before it is declared dead."""
        return self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.protocol_period

    def sync_period(self, n: int) -> float:
        """Mean time between push-pull syncs in a cluster of ``n`` (memberlist's scaling).

        A sync moves the whole table both ways (~36 bytes a member), so its
        interval grows with log n to keep the per-member cost modest.
        """
        if n <= self.sync_scale_above:
            return self.sync_interval
        return self.sync_interval * (1 + math.ceil(math.log2(n / self.sync_scale_above)))

    def retransmit_limit(self, n: int) -> int:
        """How many times each member piggybacks one update."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def dissemination_time(self, n: int) -> float:
        """W.h.p. time for a fresh update to reach all ``n`` members by gossip.

        Every ``gossip_interval`` each informed member pushes the update to
        ``f = gossip_fanout`` random members, so the informed set grows
        ``(f + 1)``-fold per interval (Pittel / Demers et al. push epidemic):
        ``log_{f+1} n + ln n / f`` intervals, plus 4 for loss and phase. One
        protocol period is added for the probe traffic and the event that
        started it. A member the epidemic misses (retransmit limit reached,
        piggyback budget full in a burst) catches up at its next push-pull
        sync, so the convergence bounds add ``1.5 * sync_period(n)``.
        """
        n = max(n, 2)
        f = self.gossip_fanout
        intervals = math.log(n, f + 1) + math.log(n) / f + 4
        return math.ceil(intervals) * self.gossip_interval + self.protocol_period

    def detection_bound(self, n: int) -> float:
        """W.h.p. time from a crash until every member has declared it dead.

        First probe of the crashed member: each of the ``n - 1`` others probes
        it in a given period with probability ~1/n, so some member probes it
        within ``ceil(ln n) + 5`` periods with probability ``>= 1 - e^-5``
        (SWIM's round-robin gives the hard worst case ``2n - 1``). That
        period ends in suspicion; the suspicion reaches everyone within
        :meth:`dissemination_time` (plus ``1.5 * sync_period(n)`` for stragglers), and each
        member declares death :meth:`suspicion_timeout` after it heard.
        """
        probe = (math.ceil(math.log(max(n, 2))) + 5) * self.protocol_period
        spread = self.dissemination_time(n) + 1.5 * self.sync_period(n)
        return probe + self.protocol_period + spread + self.suspicion_timeout(n)

    def convergence_bound(self, n: int) -> float:
        """W.h.p. time after the last join (or a leave) until all ``n`` agree.

        The joiner has the seed's snapshot after one round trip; its alive
        update and the seed's gossip reach the others within
        :meth:`dissemination_time`; members that missed it (bursts bigger than
        the piggyback budget) get it at their next push-pull sync, which
        comes within ``1.5 * sync_period(n)``.
        """
        return self.join_retry + self.dissemination_time(n) + 1.5 * self.sync_period(n)

    def leave_bound(self, n: int) -> float:
        """W.h.p. time for a graceful leave to reach everyone.

        The leaver tells every member directly; one lost notice is repaired
        by gossip within :meth:`dissemination_time`.
        """
        return self.dissemination_time(n)


@dataclass(frozen=True, slots=True)
class Member:
    """A member as the local node sees it."""

    node_id: str
    address: Address
    incarnation: int
    state: MemberState
    capacity: int | None = None
    load: int | None = None

    @classmethod
    def of(cls, update: MemberUpdate) -> Member:
        """The member an (already validated) update describes."""
        return cls(
            update.node_id,
            update.address,
            update.incarnation,
            MemberState(update.state),
            update.capacity,
            update.load,
        )


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """Base of the events :meth:`Membership.next_event` returns."""

    member: Member
    at: float


@dataclass(frozen=True, slots=True)
class MemberJoined(MembershipEvent):
    """A member is new, or came back after being dead or gone."""


@dataclass(frozen=True, slots=True)
class MemberSuspected(MembershipEvent):
    """A member did not answer probes; it has until the suspicion timeout."""


@dataclass(frozen=True, slots=True)
class MemberAlive(MembershipEvent):
    """A suspect refuted the suspicion (higher incarnation)."""


@dataclass(frozen=True, slots=True)
class MemberFailed(MembershipEvent):
    """A member was declared dead."""


@dataclass(frozen=True, slots=True)
class MemberLeft(MembershipEvent):
    """A member left gracefully."""


@dataclass(slots=True)
class _Entry:
    update: MemberUpdate
    cost: int  # bytes this update takes inside a message
    changed_at: float
    suspect_deadline: float | None = None


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    address: Address
    ping_deadline: float
    acked: bool = False
    indirect_sent: bool = False


@dataclass(slots=True)
class _Relay:
    requester: Address
    request_id: int
    target: str
    expires: float


def _cost(update: MemberUpdate) -> int:
    body = len(encode_record(update))
    return 1 + len(encode_varint(body)) + body


def _overrides(new: MemberUpdate, old: MemberUpdate) -> bool:
    """SWIM precedence: does ``new`` replace ``old`` (same member)?"""
    i, j, was = new.incarnation, old.incarnation, old.state
    if new.state == MemberState.ALIVE:
        return i > j
    if new.state == MemberState.SUSPECT:
        return i >= j if was == MemberState.ALIVE else i > j
    if new.state == MemberState.LEFT and was == MemberState.DEAD:
        return i >= j
    return i >= j if was in _LIVE else i > j


class _GossipQueue:
    """Updates to piggyback, least-transmitted first (memberlist's broadcast queue)."""

    def __init__(self) -> None:
        self._buckets: list[dict[str, MemberUpdate]] = []
        self._count: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._count)

    def push(self, update: MemberUpdate) -> None:
        """Queue ``update``, replacing any older update about the same member."""
        self.discard(update.node_id)
        if not self._buckets:
            self._buckets.append({})
        self._buckets[0][update.node_id] = update
        self._count[update.node_id] = 0

    def discard(self, node_id: str) -> None:
        """Forget the queued update about ``node_id``, if any."""
        count = self._count.pop(node_id, None)
        if count is not None:
            del self._buckets[count][node_id]

    def take(self, budget: int, limit: int, cost: dict[str, int]) -> list[MemberUpdate]:
        """Updates fitting in ``budget`` bytes; each counts one more transmission."""
        chosen: list[MemberUpdate] = []
        for bucket in self._buckets:
            for node_id in reversed(bucket):  # newest first
                size = cost.get(node_id, _FIXED_OVERHEAD)
                if size > budget:
                    return self._bump(chosen, limit)
                budget -= size
                chosen.append(bucket[node_id])
        return self._bump(chosen, limit)

    def _bump(self, chosen: list[MemberUpdate], limit: int) -> list[MemberUpdate]:
        for update in chosen:
            count = self._count.pop(update.node_id)
            del self._buckets[count][update.node_id]
            if count + 1 < limit:
                while len(self._buckets) <= count + 1:
                    self._buckets.append({})
                self._buckets[count + 1][update.node_id] = update
                self._count[update.node_id] = count + 1
        return chosen


class Membership:
    """One supernode's view of the overlay; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        address: Address,
        *,
        config: MembershipConfig | None = None,
        rng: random.Random,
        now: float,
        incarnation: int = 0,
        capacity: int | None = None,
    ) -> None:
        """A member that is not yet in any overlay; call :meth:`join` next."""
        if not node_id or len(node_id.encode()) > MAX_NODE_ID_BYTES:
            raise ValueError(f"node id must be 1..{MAX_NODE_ID_BYTES} bytes of UTF-8")
        self.node_id = node_id
        self.config = config or MembershipConfig()
        self.dropped: Counter[str] = Counter()
        """Remote input ignored, by reason."""
        self.stats: Counter[str] = Counter()
        """Messages sent and received by name, refutations, syncs."""
        self._rng = rng
        self._self = MemberUpdate(
            node_id=node_id,
            address=address,
            incarnation=incarnation,
            state=MemberState.ALIVE,
            capacity=capacity,
        )
        self._self_cost = _cost(self._self)
        self._table: dict[str, _Entry] = {}
        self._costs: dict[str, int] = {}
        self._live = 0
        self._alive = 0
        self._gossip = _GossipQueue()
        self._outbox: list[tuple[Address, Message]] = []
        self._events: deque[MembershipEvent] = deque()
        self._suspicions: list[tuple[float, str, int]] = []
        self._tombstones: deque[tuple[float, str, int]] = deque()
        self._order: list[str] = []
        self._order_pos = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = rng.getrandbits(31)
        self._seeds: list[Address] = []
        self._joined = False
        self._left = False
        self._next_probe: float | None = None
        self._next_sync: float | None = None
        self._next_gossip: float | None = None
        self._join_retry_at: float | None = None
        self._created = now

    # ------------------------------------------------------------ public state

    @property
    def address(self) -> Address:
        """Where this member is reached."""
        return self._self.address

    @property
    def incarnation(self) -> int:
        """This member's current incarnation."""
        return self._self.incarnation

    @property
    def joined(self) -> bool:
        """Whether a seed answered (or this member started the overlay)."""
        return self._joined

    @property
    def has_left(self) -> bool:
        """Whether :meth:`leave` was called."""
        return self._left

    @property
    def live_count(self) -> int:
        """Other members alive or suspect (O(1))."""
        return self._live

    @property
    def alive_count(self) -> int:
        """Other members alive, not suspect (O(1))."""
        return self._alive

    @property
    def cluster_size(self) -> int:
        """n: live members including this one."""
        return self._live + 1

    @property
    def gossip_backlog(self) -> int:
        """Updates still waiting to be piggybacked."""
        return len(self._gossip)

    def members(self, include_self: bool = False) -> list[Member]:
        """Members alive or suspect, sorted by node id."""
        found = [Member.of(e.update) for e in self._table.values() if e.update.state in _LIVE]
        if include_self and not self._left:
            found.append(Member.of(self._self))
        return sorted(found, key=lambda m: m.node_id)

    def member(self, node_id: str) -> Member | None:
        """What this member knows of ``node_id`` (tombstones included), or None."""
        if node_id == self.node_id:
            return Member.of(self._self)
        entry = self._table.get(node_id)
        return None if entry is None else Member.of(entry.update)

    # ------------------------------------------------------------ commands

    def join(self, seeds: list[Address], now: float) -> None:
        """Join the overlay through ``seeds``; with no other seed, start it alone."""
        self._seeds = [s for s in seeds if s != self.address]
        if not self._seeds:
            self._become_joined(now)
            return
        self._send_joins(now)

    def leave(self, now: float) -> None:
        """Leave gracefully: tell every member, then fall silent."""
        if self._left:
            return
        self._left = True
        self._self = replace(self._self, state=MemberState.LEFT)
        notice = MembershipLeave(source=self._self)
        for entry in self._table.values():
            if entry.update.state in _LIVE:
                self._send(entry.update.address, notice)

    def update_load(self, capacity: int | None, load: int | None) -> None:
        """Change the capacity hints this member advertises (gossiped on)."""
        self._self = replace(self._self, capacity=capacity, load=load)
        self._self_cost = _cost(self._self)
        self._gossip.push(self._self)
        self._costs[self.node_id] = self._self_cost

    # ------------------------------------------------------------ I/O surface

    def messages_to_send(self, now: float) -> list[tuple[Address, Message]]:
        """Messages to transmit now, each with its destination."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> MembershipEvent | None:
        """The next membership change, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next, or None."""
        if self._left:
            return None
        times = [self._next_probe, self._join_retry_at]
        if self._probe is not None and not self._probe.acked and not self._probe.indirect_sent:
            times.append(self._probe.ping_deadline)
        if self._suspicions:
            times.append(self._suspicions[0][0])
        if self._joined and self._gossip:
            times.append(self._next_gossip or 0.0)
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def handle_timer(self, now: float) -> None:
        """Do whatever is due at ``now``."""
        if self._left:
            return
        if self._join_retry_at is not None and now >= self._join_retry_at:
            self._send_joins(now)
        probe = self._probe
        waiting = probe is not None and not probe.acked and not probe.indirect_sent
        if probe is not None and waiting and now >= probe.ping_deadline:
            self._send_ping_reqs(probe)
        self._expire_suspicions(now)
        if self._next_probe is not None and now >= self._next_probe:
            self._tick(now)
        if self._joined and self._gossip and now >= (self._next_gossip or 0.0):
            self._push_gossip(now)

    def receive(self, source: Address, message: Message, now: float) -> None:
        """Handle one message from the supernode at ``source``; never raises."""
        if self._left:
            self.dropped["after_leave"] += 1
            return
        handler = _HANDLERS.get(type(message))
        if handler is None:
            self.dropped["not_membership"] += 1
            return
        sender = getattr(message, "source", None)
        if isinstance(sender, MemberUpdate) and sender.node_id == self.node_id:
            self.dropped["from_self_id"] += 1
            return
        self.stats[f"recv {type(message).__name__}"] += 1
        handler(self, source, message, now)

    # ------------------------------------------------------------ joining

    def _send_joins(self, now: float) -> None:
        for seed in self._seeds:
            self._send(seed, MembershipJoin(source=self._self))
        self.stats["join attempts"] += 1
        self._join_retry_at = now + self.config.join_retry

    def _become_joined(self, now: float) -> None:
        if self._joined:
            return
        self._joined = True
        self._join_retry_at = None
        self._gossip.push(self._self)
        self._costs[self.node_id] = self._self_cost
        self._next_probe = now + self._rng.uniform(0.0, self.config.protocol_period)
        self._schedule_sync(now)

    def _schedule_sync(self, now: float) -> None:
        jitter = self._rng.uniform(0.5, 1.5)
        self._next_sync = now + jitter * self.config.sync_period(self.cluster_size)

    # ------------------------------------------------------------ probing

    def _tick(self, now: float) -> None:
        period = self.config.protocol_period
        self._finish_probe(now)
        self._forget_tombstones(now)
        self._expire_relays(now)
        if self._next_sync is not None and now >= self._next_sync:
            self._start_sync(now)
        self._start_probe(now)
        self._next_probe = (self._next_probe or now) + period
        if self._next_probe <= now:  # the caller was late: do not burst
            self._next_probe = now + period

    def _finish_probe(self, now: float) -> None:
        probe, self._probe = self._probe, None
        if probe is None or probe.acked:
            return
        entry = self._table.get(probe.target)
        if entry is None or entry.update.state != MemberState.ALIVE:
            return
        suspect = replace(entry.update, state=MemberState.SUSPECT)
        self._apply(suspect, now, gossip=True)

    def _next_target(self) -> _Entry | None:
        for _ in range(2):
            while self._order_pos < len(self._order):
                node_id = self._order[self._order_pos]
                self._order_pos += 1
                entry = self._table.get(node_id)
                if entry is not None and entry.update.state in _LIVE:
                    return entry
            live = [k for k, e in self._table.items() if e.update.state in _LIVE]
            self._rng.shuffle(live)
            self._order, self._order_pos = live, 0
        return None

    def _start_probe(self, now: float) -> None:
        entry = self._next_target()
        if entry is None:
            return
        target = entry.update
        seq = self._next_seq()
        self._probe = _Probe(target.node_id, seq, target.address, now + self.config.ping_timeout)
        self._send_ping(target, seq)

    def _send_ping(self, target: MemberUpdate, seq: int) -> None:
        first = [target] if target.state != MemberState.ALIVE else []  # Lifeguard buddy
        updates = self._piggyback(first)
        ping = MembershipPing(
            request_id=seq, source=self._self, target=target.node_id, updates=updates
        )
        self._send(target.address, ping)

    def _send_ping_reqs(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        helpers = self._random_alive(self.config.indirect_probes, exclude=probe.target)
        for helper in helpers:
            request = MembershipPingReq(
                request_id=probe.seq,
                source=self._self,
                target=probe.target,
                target_address=probe.address,
                updates=self._piggyback([]),
            )
            self._send(helper.address, request)

    def _push_gossip(self, now: float) -> None:
        self._next_gossip = now + self.config.gossip_interval
        for peer in self._random_alive(self.config.gossip_fanout, exclude=self.node_id):
            updates = self._piggyback([])
            if not updates:
                return
            self._send(peer.address, MembershipGossip(source=self._self, updates=updates))

    def _random_alive(self, count: int, exclude: str) -> list[MemberUpdate]:
        """Up to ``count`` distinct random alive members other than ``exclude``."""
        pool = self._order if self._order else list(self._table)
        picked: dict[str, MemberUpdate] = {}
        for _ in range(4 * count + 4):
            if len(picked) >= count or not pool:
                break
            entry = self._table.get(self._rng.choice(pool))
            if entry is None or entry.update.state != MemberState.ALIVE:
                continue
            if entry.update.node_id != exclude:
                picked[entry.update.node_id] = entry.update
        return list(picked.values())

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _expire_relays(self, now: float) -> None:
        for seq in [s for s, r in self._relays.items() if r.expires <= now]:
            del self._relays[seq]

    # ------------------------------------------------------------ suspicion, tombstones

    def _expire_suspicions(self, now: float) -> None:
        while self._suspicions and self._suspicions[0][0] <= now:
            _, node_id, incarnation = heapq.heappop(self._suspicions)
            entry = self._table.get(node_id)
            if entry is None or entry.update.state != MemberState.SUSPECT:
                continue
            if entry.update.incarnation != incarnation:
                continue
            self._apply(replace(entry.update, state=MemberState.DEAD), now, gossip=True)

    def _forget_tombstones(self, now: float) -> None:
        horizon = now - self.config.dead_retention
        while self._tombstones and self._tombstones[0][0] <= horizon:
            _, node_id, incarnation = self._tombstones.popleft()
            entry = self._table.get(node_id)
            if entry is None or entry.update.state in _LIVE:
                continue
            if entry.update.incarnation == incarnation and entry.changed_at <= horizon:
                self._remove(node_id)

    def _remove(self, node_id: str) -> None:
        del self._table[node_id]
        self._costs.pop(node_id, None)
        self._gossip.discard(node_id)

    def _evict_tombstone(self) -> bool:
        while self._tombstones:
            _, node_id, incarnation = self._tombstones.popleft()
            entry = self._table.get(node_id)
            if entry is None or entry.update.state in _LIVE:
                continue
            if entry.update.incarnation == incarnation:
                self._remove(node_id)
                return True
        return False

    # ------------------------------------------------------------ merging updates

    def _valid(self, update: MemberUpdate) -> bool:
        """Validate a remote update; count and refuse what cannot be right."""
        reason = None
        if not update.node_id or len(update.node_id.encode(errors="replace")) > MAX_NODE_ID_BYTES:
            reason = "bad_node_id"
        elif update.state not in _STATES:
            reason = "bad_state"
        elif update.incarnation > self.config.max_incarnation:
            reason = "absurd_incarnation"
        elif not update.node_id.isprintable():
            reason = "bad_node_id"
        if reason is not None:
            self.dropped[reason] += 1
        return reason is None

    def _apply(self, update: MemberUpdate, now: float, *, gossip: bool) -> None:
        """Merge one update by the SWIM precedence rules."""
        if not self._valid(update):
            return
        if update.node_id == self.node_id:
            self._about_me(update)
            return
        entry = self._table.get(update.node_id)
        if entry is None:
            self._insert(update, now, gossip=gossip)
            return
        if not _overrides(update, entry.update):
            return
        if update.incarnation - entry.update.incarnation > self.config.max_incarnation_step:
            self.dropped["incarnation_jump"] += 1
            return
        self._change(entry, update, now)
        if gossip:
            self._gossip.push(update)

    def _insert(self, update: MemberUpdate, now: float, *, gossip: bool) -> None:
        if not gossip and update.state not in _LIVE:
            return  # a stranger's tombstone from a sync: nothing to protect, so no echo
        if len(self._table) >= self.config.max_members and not self._evict_tombstone():
            self.dropped["table_full"] += 1
            return
        entry = _Entry(update, _cost(update), now)
        self._table[update.node_id] = entry
        self._costs[update.node_id] = entry.cost
        state = MemberState(update.state)
        if state in _LIVE:
            self._count(state, +1)
            self._order.insert(self._rng.randint(self._order_pos, len(self._order)), update.node_id)
            self._events.append(MemberJoined(Member.of(update), now))
            if state == MemberState.SUSPECT:
                self._start_suspicion(entry, now)
        else:
            self._tombstones.append((now, update.node_id, update.incarnation))
        if gossip:
            self._gossip.push(update)

    def _change(self, entry: _Entry, update: MemberUpdate, now: float) -> None:
        old, new = MemberState(entry.update.state), MemberState(update.state)
        entry.update, entry.changed_at = update, now
        entry.cost = _cost(update)
        self._costs[update.node_id] = entry.cost
        self._count(old, -1)
        self._count(new, +1)
        member = Member.of(update)
        if new in _LIVE and old not in _LIVE:  # back from the dead: a restart
            position = self._rng.randint(self._order_pos, len(self._order))
            self._order.insert(position, update.node_id)
            self._events.append(MemberJoined(member, now))
        elif new == MemberState.ALIVE and old == MemberState.SUSPECT:
            self._events.append(MemberAlive(member, now))
        elif new == MemberState.SUSPECT and old == MemberState.ALIVE:
            self._events.append(MemberSuspected(member, now))
        elif new not in _LIVE and old in _LIVE:
            kind = MemberFailed if new == MemberState.DEAD else MemberLeft
            self._events.append(kind(member, now))
        if new == MemberState.SUSPECT:
            self._start_suspicion(entry, now)
        elif new not in _LIVE:
            self._tombstones.append((now, update.node_id, update.incarnation))

    def _count(self, state: MemberState, delta: int) -> None:
        if state in _LIVE:
            self._live += delta
        if state == MemberState.ALIVE:
            self._alive += delta

    def _start_suspicion(self, entry: _Entry, now: float) -> None:
        deadline = now + self.config.suspicion_timeout(self.cluster_size)
        entry.suspect_deadline = deadline
        item = (deadline, entry.update.node_id, entry.update.incarnation)
        heapq.heappush(self._suspicions, item)

    def _about_me(self, update: MemberUpdate) -> None:
        """Refute any claim about us that could win over our own state (SWIM 4.2)."""
        mine = self._self.incarnation
        if self._left:
            return
        if update.state == MemberState.ALIVE and update.incarnation <= mine:
            return
        if update.state != MemberState.ALIVE and update.incarnation < mine:
            return
        if update.incarnation + 1 > self.config.max_incarnation:
            self.dropped["absurd_incarnation"] += 1
            return
        self.stats["refutations"] += 1
        self._self = replace(self._self, incarnation=update.incarnation + 1)
        self._self_cost = _cost(self._self)
        self._costs[self.node_id] = self._self_cost
        self._gossip.push(self._self)

    def _merge_all(self, updates: tuple[MemberUpdate, ...], now: float, *, gossip: bool) -> None:
        for update in updates:
            self._apply(update, now, gossip=gossip)

    # ------------------------------------------------------------ building messages

    def _piggyback(self, first: list[MemberUpdate]) -> tuple[MemberUpdate, ...]:
        budget = self.config.max_message_bytes - _FIXED_OVERHEAD
        chosen = []
        for update in first:
            budget -= self._costs.get(update.node_id, _FIXED_OVERHEAD)
            chosen.append(update)
        limit = self.config.retransmit_limit(self.cluster_size)
        taken = self._gossip.take(budget, limit, self._costs)
        chosen += [u for u in taken if all(u.node_id != f.node_id for f in first)]
        return tuple(chosen)

    def _snapshot_parts(self) -> list[tuple[MemberUpdate, ...]]:
        """The whole table (and us), cut into parts that each fit a message."""
        budget = self.config.max_message_bytes - _FIXED_OVERHEAD
        parts: list[tuple[MemberUpdate, ...]] = []
        current: list[MemberUpdate] = [self._self]
        used = self._self_cost
        for entry in self._table.values():
            if used + entry.cost > budget:
                parts.append(tuple(current))
                current, used = [], 0
            current.append(entry.update)
            used += entry.cost
        parts.append(tuple(current))
        return parts

    def _send(self, address: Address, message: Message) -> None:
        self.stats[f"sent {type(message).__name__}"] += 1
        self._outbox.append((address, message))

    def _start_sync(self, now: float) -> None:
        self._schedule_sync(now)
        peers = self._random_alive(1, exclude=self.node_id)
        if not peers:
            return
        seq = self._next_seq()
        parts = self._snapshot_parts()
        for index, members in enumerate(parts):
            sync = MembershipSync(
                request_id=seq, source=self._self, members=members, part=index, parts=len(parts)
            )
            self._send(peers[0].address, sync)
        self.stats["syncs"] += 1

    # ------------------------------------------------------------ handlers

    def _accept_source(self, source: MemberUpdate, now: float) -> _Entry | None:
        """Merge the sender's own record; return its entry if it is one of ours."""
        self._apply(source, now, gossip=True)
        entry = self._table.get(source.node_id)
        if entry is None:
            self.dropped["unknown_sender"] += 1
        return entry

    def _correction(self, entry: _Entry | None, source: MemberUpdate) -> list[MemberUpdate]:
        """Our record of a sender we think suspect or dead, so it can refute."""
        if entry is None or entry.update.state == MemberState.ALIVE:
            return []
        if entry.update.incarnation < source.incarnation:
            return []
        return [entry.update]

    def _on_ping(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipPing)
        entry = self._accept_source(message.source, now)
        self._merge_all(message.updates, now, gossip=True)
        if message.target != self.node_id:
            self.dropped["wrong_target"] += 1
            return
        updates = self._piggyback(self._correction(entry, message.source))
        ack = MembershipAck(request_id=message.request_id, source=self._self, updates=updates)
        self._send(source, ack)

    def _on_ack(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipAck)
        self._accept_source(message.source, now)
        self._merge_all(message.updates, now, gossip=True)
        probe, seq = self._probe, message.request_id
        if probe is not None and probe.seq == seq and probe.target == message.source.node_id:
            probe.acked = True
            return
        relay = self._relays.get(seq)
        if relay is not None and relay.target == message.source.node_id:
            del self._relays[seq]
            reply = MembershipPingReqReply(
                request_id=relay.request_id,
                source=self._self,
                target=relay.target,
                updates=self._piggyback([]),
            )
            self._send(relay.requester, reply)
            return
        self.dropped["unexpected_ack"] += 1

    def _on_ping_req(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipPingReq)
        if self._accept_source(message.source, now) is None:
            return
        self._merge_all(message.updates, now, gossip=True)
        if message.target == self.node_id:
            self.dropped["ping_req_for_self"] += 1
            return
        if len(self._relays) >= self.config.max_relays:
            self.dropped["relays_full"] += 1
            return
        seq = self._next_seq()
        expires = now + self.config.protocol_period
        self._relays[seq] = _Relay(source, message.request_id, message.target, expires)
        entry = self._table.get(message.target)
        target = entry.update if entry is not None else None
        if target is None or target.address != message.target_address:
            target = MemberUpdate(
                node_id=message.target,
                address=message.target_address,
                incarnation=0,
                state=MemberState.ALIVE,
            )
        self._send_ping(target, seq)

    def _on_ping_req_reply(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipPingReqReply)
        self._accept_source(message.source, now)
        self._merge_all(message.updates, now, gossip=True)
        probe = self._probe
        if probe is not None and probe.seq == message.request_id and probe.target == message.target:
            probe.acked = True
            return
        self.dropped["unexpected_ack"] += 1

    def _on_join(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipJoin)
        if self._accept_source(message.source, now) is None:
            return
        self._send_snapshot(source, MembershipJoinReply, message.request_id)

    def _on_join_reply(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipJoinReply)
        self._accept_source(message.source, now)
        self._merge_all(message.members, now, gossip=False)
        self._become_joined(now)

    def _on_sync(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipSync)
        if self._accept_source(message.source, now) is None:
            return
        self._merge_all(message.members, now, gossip=False)
        if message.part != 0:
            return
        self._send_snapshot(source, MembershipSyncReply, message.request_id)

    def _send_snapshot(
        self,
        target: Address,
        reply: type[MembershipJoinReply] | type[MembershipSyncReply],
        request_id: int,
    ) -> None:
        """Our member table, in parts that each fit one message."""
        parts = self._snapshot_parts()
        for index, members in enumerate(parts):
            message = reply(
                request_id=request_id,
                source=self._self,
                members=members,
                part=index,
                parts=len(parts),
            )
            self._send(target, message)

    def _on_sync_reply(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipSyncReply)
        self._accept_source(message.source, now)
        self._merge_all(message.members, now, gossip=False)

    def _on_gossip(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipGossip)
        self._accept_source(message.source, now)
        self._merge_all(message.updates, now, gossip=True)

    def _on_leave(self, source: Address, message: Message, now: float) -> None:
        assert isinstance(message, MembershipLeave)
        if message.source.state != MemberState.LEFT:
            self.dropped["bad_leave"] += 1
            return
        self._accept_source(message.source, now)


_HANDLERS = {
    MembershipPing: Membership._on_ping,
    MembershipAck: Membership._on_ack,
    MembershipPingReq: Membership._on_ping_req,
    MembershipPingReqReply: Membership._on_ping_req_reply,
    MembershipJoin: Membership._on_join,
    MembershipJoinReply: Membership._on_join_reply,
    MembershipSync: Membership._on_sync,
    MembershipSyncReply: Membership._on_sync_reply,
    MembershipLeave: Membership._on_leave,
    MembershipGossip: Membership._on_gossip,
}
