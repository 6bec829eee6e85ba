"""Connectivity checks between two peers' candidates, sans-I/O (RFC 8445 in spirit).

Both peers learn each other's candidates through their supernodes and then
probe every *pair* (one local base, one remote address) at the same time, so
that each side's outgoing check opens its own NAT for the other's. A
:class:`PathChecker` is one side of that exchange. It never touches a socket
or a clock: the asyncio shell feeds it datagrams (:meth:`PathChecker.receive`)
and timer expiries (:meth:`PathChecker.handle_timer`), sends what
:meth:`PathChecker.datagrams_to_send` returns, sleeps until
:meth:`PathChecker.get_timer`, and reads outcomes from
:meth:`PathChecker.next_event`.

Checks
    A check is a STUN Binding request (:mod:`hopline.nat.stun`) with
    ``USERNAME = "<remote ufrag>:<local ufrag>"``, MESSAGE-INTEGRITY keyed
    with the shared ``key`` (both peers derive it from their identities) and
    FINGERPRINT. The answer is a Binding success carrying XOR-MAPPED-ADDRESS
    (the source as the answering side saw it), integrity and FINGERPRINT. A
    request with a foreign USERNAME is not ours (``receive`` returns False, so
    the shell can offer it to another checker); one with our USERNAME but bad
    integrity, a missing FINGERPRINT or unknown required attributes is
    dropped and counted in :attr:`PathChecker.dropped` -- never answered, so
    an unauthenticated sender cannot make us send anything. A response must
    match a transaction we sent, carry valid integrity and come from the
    address and base the request went to.

Pairs
    Host, server-reflexive, predicted and peer-reflexive candidates on the
    ``"udp"`` base all leave through the same socket, so pairs are keyed by
    ``(local base, remote address)`` and each carries the best local
    candidate of that base and address family as its representative. A pair
    is *direct* when its base is ``"udp"`` and the remote candidate is not
    relayed. Ordinary checks start one pair at a time, best pair first, every
    ``pace_s``; a check is retransmitted after ``rto_s``, doubling up to one
    second, at most ``max_tries`` times, and then the pair has failed.

Peer-reflexive candidates
    A valid request from an address that is not among the remote candidates
    (a peer behind an address-and-port-dependent, "symmetric", NAT) creates a
    peer-reflexive remote candidate and a *triggered check* back to it at
    once; a request on a known pair that has not succeeded triggers a check
    the same way (also when a check of that pair is already waiting for a
    backed-off retransmission: the peer's request shows its NAT is open now;
    at most one triggered check per ``pace_s`` and pair). A response whose
    XOR-MAPPED-ADDRESS is not one of our candidates creates a local
    peer-reflexive candidate; the :class:`PairSucceeded` event names the
    local candidate the peer actually saw. When signalling later brings a
    candidate with the address of a learned peer-reflexive one, the signalled
    one (say, a relay address) replaces it.

Drop counters (:attr:`PathChecker.dropped`)
    ``malformed:<reason>`` (STUN that does not decode), ``unknown-ufrag`` (a
    request for another checker: ``receive`` returns False, so with several
    checkers on one socket each one it is offered to counts it),
    ``bad-integrity``, ``no-fingerprint``, ``unknown-attribute``,
    ``wrong-source`` (a response from elsewhere than the check went),
    ``error-response``, ``no-mapped-address``, ``no-local-base`` (a request
    on a base and address family we have no candidate for: answered, not
    paired), ``too-many-candidates`` and ``too-many-pairs`` (the bounds).

Selection
    The caller is *controlling* (the shell guarantees it, so there are no role
    conflicts). After its first direct success it waits up to
    ``nominate_wait_s`` for a better direct pair still in progress, then
    selects the best direct pair that succeeded. It selects a relayed pair
    only when no direct pair succeeded within ``direct_wait_s``. Selecting,
    it *nominates*: the checks it sends on the selected pair carry
    USE-CANDIDATE. The *controlled* side selects the pair a nominated request
    arrived on, as soon as its own check on that pair has succeeded. Either
    side reports :class:`PathSelected`.

After a relayed selection
    Failed direct pairs are probed again once per ``background_s`` until
    ``timeout_s`` after the start, and new remote candidates are checked as
    usual. When a direct pair succeeds the controlling side selects it
    (another :class:`PathSelected`, ``direct=True``) and nominates it, and
    the controlled side follows. Once a direct pair is selected, checking
    stops. Without any selection by ``timeout_s``, :class:`ChecksFailed`.

Keep-alives
    After selection a Binding request goes over the selected pair every
    ``keepalive_s`` (with USE-CANDIDATE from the controlling side, which also
    repeats the nomination) so the NAT bindings on the path stay open.

Memory a peer can make us use is bounded: at most :data:`MAX_REMOTE`
remote and :data:`MAX_LOCAL` local candidates, :data:`MAX_PAIRS` pairs and
:data:`MAX_TRANSACTIONS` outstanding transactions; anything more is counted
in :attr:`PathChecker.dropped` and ignored.
"""

from __future__ import annotations

import collections
import hmac
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from hopline.nat.stun import (
    BINDING,
    MessageClass,
    StunError,
    StunMessage,
    decode,
    encode,
    integrity_ok,
    is_stun,
)
from hopline.path.candidates import (
    REMOTE_BASE,
    UDP_BASE,
    Candidate,
    CandidateKind,
    candidate_priority,
    is_relay_base,
    pair_priority,
)
from hopline.wire.errors import EncodeError
from hopline.wire.types import Address

__all__ = [
    "MAX_LOCAL",
    "MAX_PAIRS",
    "MAX_REMOTE",
    "MAX_TRANSACTIONS",
    "CheckConfig",
    "ChecksFailed",
    "PairState",
    "PathChecker",
    "PathEvent",
    "PairSucceeded",
    "PathSelected",
]

MAX_REMOTE = 32
MAX_LOCAL = 32
MAX_PAIRS = 128
MAX_TRANSACTIONS = 512
_MAX_RTO = 1.0
_TXID_SIZE = 12


@dataclass(frozen=True)
class CheckConfig:
    """Timing of the checks (seconds)."""

    pace_s: float = 0.02
    """One new ordinary check every ``pace_s``."""
    rto_s: float = 0.1
    """First retransmission timeout of a check; it doubles up to one second."""
    max_tries: int = 7
    """Transmissions of one check before its pair has failed."""
    nominate_wait_s: float = 0.15
    """After the first direct success, how long to wait for a better pair."""
    direct_wait_s: float = 2.0
    """How long direct pairs have before a relayed pair may be selected."""
    timeout_s: float = 10.0
    """Without a selection by then, the checks have failed; background probes stop."""
    keepalive_s: float = 15.0
    """Interval of keep-alive requests on the selected pair."""
    background_s: float = 1.0
    """Interval of the probes of failed pairs while no direct pair is selected."""


@dataclass(frozen=True)
class PairSucceeded:
    """Our check on ``(local, remote)`` was answered; ``local`` is the address the peer saw."""

    local: Candidate
    remote: Candidate
    rtt: float
    at: float


@dataclass(frozen=True)
class PathSelected:
    """The pair to use from now on (may come again: an upgrade from relayed to direct)."""

    local: Candidate
    remote: Candidate
    at: float
    direct: bool


@dataclass(frozen=True)
class ChecksFailed:
    """No pair was selected within ``timeout_s``; the checker stops checking."""

    reason: str
    at: float


PathEvent = PairSucceeded | PathSelected | ChecksFailed


class PairState(Enum):
    """Where the checks of one pair stand."""

    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_PairKey = tuple[str, Address]


@dataclass
class _Pair:
    local: Candidate  # the representative of the base (what we send from)
    remote: Candidate
    priority: int
    state: PairState = PairState.WAITING
    inflight: bool = False  # a transaction with retransmissions is running
    tries: int = 0
    next_send: float = math.inf
    nominate: bool = False  # we (controlling) nominate this pair
    nominated: bool = False  # the peer (controlling) nominated this pair
    valid_local: Candidate | None = None
    last_sent: float = -math.inf

    @property
    def key(self) -> _PairKey:
        return (self.local.base, self.remote.address)

    @property
    def direct(self) -> bool:
        return self.local.base == UDP_BASE and self.remote.kind is not CandidateKind.RELAYED


@dataclass(frozen=True)
class _Transaction:
    key: _PairKey
    sent_at: float
    nominating: bool


class PathChecker:
    """One side of the connectivity checks towards one peer (see the module docstring)."""

    def __init__(
        self,
        *,
        controlling: bool,
        local_ufrag: str,
        remote_ufrag: str,
        key: bytes,
        local: Sequence[Candidate],
        remote: Sequence[Candidate],
        now: float,
        config: CheckConfig | None = None,
        tie_breaker: int = 0,
    ) -> None:
        """Start checking ``local`` against ``remote`` candidates at time ``now``.

        ``tie_breaker`` is kept for RFC 8445 role conflicts, which Hopline
        does not have (the caller is always controlling).
        """
        self.controlling = controlling
        self.config = config or CheckConfig()
        self.tie_breaker = tie_breaker
        self.dropped: collections.Counter[str] = collections.Counter()
        self._local_ufrag = local_ufrag
        self._remote_ufrag = remote_ufrag
        self._key = key
        self._start = now
        self._clock = now
        self._locals: list[Candidate] = []
        self._reps: dict[tuple[str, int], Candidate] = {}
        self._remotes: dict[Address, Candidate] = {}
        self._pairs: dict[_PairKey, _Pair] = {}
        self._transactions: dict[bytes, _Transaction] = {}
        self._out: list[tuple[str, Address, bytes]] = []
        self._events: collections.deque[PathEvent] = collections.deque()
        self._selected: _Pair | None = None
        self._first_direct_at: float | None = None
        self._evaluated_at = -math.inf
        self._next_paced = now
        self._next_keepalive = math.inf
        self._failed = False
        self.add_local(sorted(local, key=lambda c: c.priority, reverse=True), now)
        self.add_remote(remote, now)

    # ------------------------------------------------------------ public API

    @property
    def selected(self) -> tuple[Candidate, Candidate] | None:
        """The selected ``(local, remote)`` pair, or None."""
        pair = self._selected
        if pair is None:
            return None
        return (pair.valid_local or pair.local, pair.remote)

    @property
    def selected_base(self) -> str | None:
        """The local base to send on over the selected pair, or None."""
        return None if self._selected is None else self._selected.local.base

    @property
    def failed(self) -> bool:
        """Whether :class:`ChecksFailed` was reported."""
        return self._failed

    @property
    def remote_candidates(self) -> Mapping[Address, Candidate]:
        """The peer's candidates by address, signalled and peer-reflexive (read-only view)."""
        return MappingProxyType(self._remotes)

    @property
    def local_candidates(self) -> tuple[Candidate, ...]:
        """Our candidates, gathered and peer-reflexive."""
        return tuple(self._locals)

    def pair_states(self) -> dict[tuple[str, Address], PairState]:
        """The state of every pair by ``(local base, remote address)`` (for tests and stats)."""
        return {key: pair.state for key, pair in self._pairs.items()}

    def add_local(self, candidates: Sequence[Candidate], now: float) -> None:
        """Add local candidates (say, a relay allocated later) and pair any new base."""
        self._clock = max(self._clock, now)
        for candidate in candidates:
            if any(
                c.address == candidate.address and c.base == candidate.base for c in self._locals
            ):
                continue
            if len(self._locals) >= MAX_LOCAL:
                self.dropped["too-many-candidates"] += 1
                continue
            self._locals.append(candidate)
            rep_key = (candidate.base, candidate.address.family)
            if rep_key not in self._reps:
                self._reps[rep_key] = candidate
                for remote in list(self._remotes.values()):
                    self._pair(candidate, remote)

    def add_remote(self, candidates: Sequence[Candidate], now: float) -> None:
        """Add the peer's candidates (trickled through signalling) and pair them."""
        self._clock = max(self._clock, now)
        for candidate in candidates:
            known = self._remotes.get(candidate.address)
            if known is None:
                if self._learn_remote(candidate) is not None:
                    self._pair_all(candidate)
            elif known.kind is CandidateKind.PRFLX and candidate.kind is not CandidateKind.PRFLX:
                self._replace_remote(candidate)

    def receive(self, data: bytes, base: str, source: Address, now: float) -> bool:
        """Take a datagram that arrived on ``base`` from ``source``; True if it was ours."""
        self._clock = max(self._clock, now)
        if not is_stun(data):
            return False
        try:
            message = decode(data)
        except StunError as exc:
            self.dropped[f"malformed:{exc.reason}"] += 1
            return False
        if message.method != BINDING:
            return False
        if message.message_class is MessageClass.REQUEST:
            return self._on_request(message, base, source, now)
        if message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            return self._on_response(message, base, source, now)
        return False

    def datagrams_to_send(self, now: float) -> list[tuple[str, Address, bytes]]:
        """Due datagrams as ``(base, destination, datagram)``; runs due timers first."""
        self._service(now)
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run, or None."""
        times = [t for t in self._timer_candidates() if t < math.inf]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: checks, retransmissions, selection, keep-alives."""
        self._service(now)

    def keepalive_due(self, now: float) -> bool:
        """Whether a keep-alive on the selected pair is due (it is sent by :meth:`handle_timer`)."""
        return self._selected is not None and now >= self._next_keepalive

    def next_event(self) -> PathEvent | None:
        """The next outcome, oldest first, or None."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------ candidates and pairs

    def _learn_remote(self, candidate: Candidate) -> Candidate | None:
        if len(self._remotes) >= MAX_REMOTE:
            self.dropped["too-many-candidates"] += 1
            return None
        self._remotes[candidate.address] = candidate
        return candidate

    def _pair_all(self, remote: Candidate) -> None:
        for (_base, family), local in list(self._reps.items()):
            if family == remote.address.family:
                self._pair(local, remote)

    def _pair(self, local: Candidate, remote: Candidate) -> _Pair | None:
        if local.address.family != remote.address.family:
            return None
        key = (local.base, remote.address)
        pair = self._pairs.get(key)
        if pair is not None:
            return pair
        if len(self._pairs) >= MAX_PAIRS:
            self.dropped["too-many-pairs"] += 1
            return None
        pair = _Pair(local, remote, self._pair_priority(local, remote))
        self._pairs[key] = pair
        return pair

    def _pair_priority(self, local: Candidate, remote: Candidate) -> int:
        if self.controlling:
            return pair_priority(local, remote)
        return pair_priority(remote, local)

    def _replace_remote(self, candidate: Candidate) -> None:
        self._remotes[candidate.address] = candidate
        for pair in self._pairs.values():
            if pair.remote.address == candidate.address:
                pair.remote = candidate
                pair.priority = self._pair_priority(pair.local, candidate)
        self._pair_all(candidate)

    def _local_seen_as(self, pair: _Pair, mapped: Address) -> Candidate:
        base = pair.local.base
        for candidate in self._locals:
            if candidate.address == mapped and candidate.base == base:
                return candidate
        if len(self._locals) >= MAX_LOCAL:
            self.dropped["too-many-candidates"] += 1
            return pair.local
        kind = CandidateKind.RELAYED if is_relay_base(base) else CandidateKind.PRFLX
        learned = Candidate(mapped, kind, base, candidate_priority(kind, mapped, base), "prflx")
        self._locals.append(learned)
        return learned

    # ------------------------------------------------------------ incoming

    def _on_request(self, message: StunMessage, base: str, source: Address, now: float) -> bool:
        expected = f"{self._local_ufrag}:{self._remote_ufrag}".encode()
        username = (message.username or "").encode()
        if not hmac.compare_digest(username, expected):
            self.dropped["unknown-ufrag"] += 1
            return False
        problem = self._request_problem(message)
        if problem is not None:
            self.dropped[problem] += 1
            return True
        self._answer(message, base, source)
        pair = self._pair_for_request(base, source)
        if pair is None:
            return True
        if message.use_candidate and not self.controlling:
            self._nominated(pair, now)
        self._triggered_check(pair, now)
        return True

    def _request_problem(self, message: StunMessage) -> str | None:
        if not integrity_ok(message, self._key):
            return "bad-integrity"
        if not message.fingerprint:
            return "no-fingerprint"
        if message.unknown_required:
            return "unknown-attribute"
        return None

    def _answer(self, message: StunMessage, base: str, source: Address) -> None:
        answer = StunMessage(
            BINDING,
            MessageClass.SUCCESS,
            message.transaction_id,
            xor_mapped_address=source.as_tuple(),
            fingerprint=True,
        )
        self._out.append((base, source, encode(answer, integrity_key=self._key)))

    def _pair_for_request(self, base: str, source: Address) -> _Pair | None:
        pair = self._pairs.get((base, source))
        if pair is not None:
            return pair
        local = self._reps.get((base, source.family))
        if local is None:
            self.dropped["no-local-base"] += 1
            return None
        remote = self._remotes.get(source)
        if remote is None:
            kind = CandidateKind.PRFLX
            learned = Candidate(
                source, kind, REMOTE_BASE, candidate_priority(kind, source, REMOTE_BASE), "prflx"
            )
            remote = self._learn_remote(learned)
            if remote is None:
                return None
        return self._pair(local, remote)

    def _on_response(self, message: StunMessage, base: str, source: Address, now: float) -> bool:
        transaction = self._transactions.get(message.transaction_id)
        if transaction is None:
            return False
        if not integrity_ok(message, self._key):
            self.dropped["bad-integrity"] += 1
            return True
        if transaction.key != (base, source):
            self.dropped["wrong-source"] += 1
            return True
        del self._transactions[message.transaction_id]
        pair = self._pairs[transaction.key]
        if message.message_class is MessageClass.ERROR:
            self.dropped["error-response"] += 1
            self._give_up(pair, now)
            return True
        if message.xor_mapped_address is None:
            self.dropped["no-mapped-address"] += 1
            return True
        if transaction.nominating or not pair.nominate:
            # an answer to an older check must not end an unconfirmed nomination
            pair.inflight = False
            pair.next_send = math.inf
        self._succeeded(pair, message.xor_mapped_address, now - transaction.sent_at, now)
        return True

    def _succeeded(self, pair: _Pair, mapped: tuple[str, int], rtt: float, now: float) -> None:
        try:
            seen = Address.of(*mapped)
        except (ValueError, EncodeError):
            self.dropped["bad-mapped-address"] += 1
            return
        if pair.state is PairState.SUCCEEDED:
            return
        pair.state = PairState.SUCCEEDED
        pair.valid_local = self._local_seen_as(pair, seen)
        self._events.append(PairSucceeded(pair.valid_local, pair.remote, rtt, now))
        if pair.direct and self._first_direct_at is None:
            self._first_direct_at = now
        if pair.nominated and not self.controlling:
            self._select(pair, now)
        self._evaluate(now)

    def _nominated(self, pair: _Pair, now: float) -> None:
        for other in self._pairs.values():
            other.nominated = other is pair
        if pair.state is PairState.SUCCEEDED and pair is not self._selected:
            self._select(pair, now)

    # ------------------------------------------------------------ sending

    def _send_check(self, pair: _Pair, now: float) -> None:
        txid = secrets.token_bytes(_TXID_SIZE)
        request = StunMessage(
            BINDING,
            MessageClass.REQUEST,
            txid,
            username=f"{self._remote_ufrag}:{self._local_ufrag}",
            use_candidate=True if pair.nominate else None,
            fingerprint=True,
        )
        if len(self._transactions) >= MAX_TRANSACTIONS:
            del self._transactions[next(iter(self._transactions))]
        self._transactions[txid] = _Transaction(pair.key, now, pair.nominate)
        pair.last_sent = now
        self._out.append((pair.local.base, pair.remote.address, encode(request, self._key)))

    def _start_transaction(self, pair: _Pair, now: float) -> None:
        if pair.state is not PairState.SUCCEEDED:
            pair.state = PairState.IN_PROGRESS
        pair.inflight = True
        pair.tries = 1
        pair.next_send = now + self._rto(1)
        self._send_check(pair, now)

    def _rto(self, tries: int) -> float:
        backoff: float = self.config.rto_s * 2.0 ** (tries - 1)
        return min(backoff, max(_MAX_RTO, self.config.rto_s))

    def _triggered_check(self, pair: _Pair, now: float) -> None:
        if self._failed or self._settled or pair.state is PairState.SUCCEEDED:
            return
        # The peer's check just opened its NAT for us: check back now rather than at
        # the next backed-off retransmission, at most once per pace_s per pair.
        if not pair.inflight or now >= pair.last_sent + self.config.pace_s:
            self._start_transaction(pair, now)

    def _give_up(self, pair: _Pair, now: float) -> None:
        pair.inflight = False
        if pair.state is PairState.IN_PROGRESS:
            pair.state = PairState.FAILED
        pair.next_send = now + self.config.background_s

    # ------------------------------------------------------------ timers

    @property
    def _settled(self) -> bool:
        return self._selected is not None and self._selected.direct

    @property
    def _expired(self) -> bool:
        return self._clock >= self._start + self.config.timeout_s

    def _background(self, pair: _Pair) -> bool:
        if self._failed or self._settled or self._expired:
            return False
        return pair.state is PairState.FAILED and (self._selected is None or pair.direct)

    def _timer_candidates(self) -> Iterable[float]:
        if self._failed:
            return
        yield self._next_keepalive if self._selected is not None else math.inf
        if self._selected is None:
            yield self._start + self.config.timeout_s
        for pair in self._pairs.values():
            if pair.inflight or self._background(pair):
                yield pair.next_send
        if not self._settled and any(p.state is PairState.WAITING for p in self._pairs.values()):
            yield self._next_paced
        yield from self._selection_deadlines()

    def _selection_deadlines(self) -> Iterable[float]:
        if not self.controlling or self._selected is not None:
            return
        deadlines = [self._start + self.config.direct_wait_s]
        if self._first_direct_at is not None:
            deadlines.append(self._first_direct_at + self.config.nominate_wait_s)
        yield from (t for t in deadlines if t > self._evaluated_at)

    def _service(self, now: float) -> None:
        self._clock = max(self._clock, now)
        if self._failed:
            return
        if self._check_timeout(now):
            return
        self._retransmit(now)
        self._probe_failed(now)
        self._paced_check(now)
        self._evaluate(now)
        self._keepalive(now)

    def _check_timeout(self, now: float) -> bool:
        if self._selected is not None or now < self._start + self.config.timeout_s:
            return False
        self._failed = True
        for pair in self._pairs.values():
            pair.inflight = False
        succeeded = any(p.state is PairState.SUCCEEDED for p in self._pairs.values())
        reason = "no pair nominated" if succeeded else "no pair succeeded"
        self._events.append(ChecksFailed(reason, now))
        return True

    def _retransmit(self, now: float) -> None:
        for pair in list(self._pairs.values()):
            if not pair.inflight or pair.next_send > now:
                continue
            if pair.tries >= self.config.max_tries:
                self._give_up(pair, now)
                continue
            pair.tries += 1
            pair.next_send = now + self._rto(pair.tries)
            self._send_check(pair, now)

    def _probe_failed(self, now: float) -> None:
        for pair in self._pairs.values():
            if self._background(pair) and pair.next_send <= now:
                pair.next_send = now + self.config.background_s
                self._send_check(pair, now)

    def _paced_check(self, now: float) -> None:
        if self._settled or now < self._next_paced:
            return
        waiting = [p for p in self._pairs.values() if p.state is PairState.WAITING]
        if not waiting:
            return
        self._start_transaction(max(waiting, key=lambda p: p.priority), now)
        self._next_paced = now + self.config.pace_s

    def _keepalive(self, now: float) -> None:
        pair = self._selected
        if pair is None or now < self._next_keepalive:
            return
        self._next_keepalive = now + self.config.keepalive_s
        self._send_check(pair, now)

    # ------------------------------------------------------------ selection

    def _evaluate(self, now: float) -> None:
        if not self.controlling or self._failed or self._settled:
            return
        self._evaluated_at = max(self._evaluated_at, now)
        succeeded = [p for p in self._pairs.values() if p.state is PairState.SUCCEEDED]
        direct = [p for p in succeeded if p.direct]
        if direct:
            best = max(direct, key=lambda p: p.priority)
            if self._selected is None and self._better_pending(best, now):
                return
            self._select(best, now)
        elif (
            succeeded and self._selected is None and now >= self._start + self.config.direct_wait_s
        ):
            self._select(max(succeeded, key=lambda p: p.priority), now)

    def _better_pending(self, best: _Pair, now: float) -> bool:
        assert self._first_direct_at is not None
        if now >= self._first_direct_at + self.config.nominate_wait_s:
            return False
        return any(
            p.direct
            and p.priority > best.priority
            and p.state in (PairState.WAITING, PairState.IN_PROGRESS)
            for p in self._pairs.values()
        )

    def _select(self, pair: _Pair, now: float) -> None:
        if pair is self._selected or self._failed:
            return
        self._selected = pair
        local = pair.valid_local or pair.local
        self._events.append(PathSelected(local, pair.remote, now, pair.direct))
        self._next_keepalive = now + self.config.keepalive_s
        if pair.direct:
            for other in self._pairs.values():
                if other is not pair:
                    other.inflight = False
        if self.controlling:
            for other in self._pairs.values():
                other.nominate = other is pair
            self._start_transaction(pair, now)
