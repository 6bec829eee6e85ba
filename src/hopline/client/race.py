"""The login race: connect to the first supernode that answers.

Like the classic client, Hopline starts by racing several host-cache entries
in parallel and falls back to the login server's bootstrap supernodes. The
plan is a sans-I/O state machine, :class:`ConnectRace`; :func:`race_connect` is
the thin asyncio driver around it.

How the plan runs (in the spirit of Happy Eyeballs, RFC 8305):

* Each candidate supernode has a *fallback chain* of attempts: UDP to its
  address, then TCP to it, then each alternate port (e.g. 443, 80) with the
  alternate transports (TCP by default) — all configurable in
  :class:`RaceConfig`.
* Candidates run in two *lanes*: the host cache's and bootstrap's. At most
  ``parallelism`` host-cache attempts are in flight; bootstrap candidates may
  use ``bootstrap_slots`` more on top, so dead cache entries can never hold
  every slot. Starts in a lane are spaced ``stagger`` seconds apart, except
  that a failure frees its slot at once.
* When an attempt fails (or exceeds ``attempt_timeout``, which cancels it),
  or has had no answer for ``fallback_after`` (it keeps running), the next
  step of its chain joins its lane's fallback queue. Fallback steps
  and fresh candidates take turns, so a network that blocks UDP reaches TCP
  quickly while dead hosts cannot hog every slot with their chains.
* The race asks once for bootstrap addresses (:class:`NeedBootstrap`) and
  goes on with them alongside the attempts in flight — at the start when the
  cache offers no known-good entry, after ``bootstrap_after`` seconds without
  a winner (a stale cache: entries that answered once but are gone now), and
  at the latest when nothing is left to start. Addresses already tried are
  not tried again.
* The first success wins (:class:`Won`, and every other attempt gets a
  :class:`CancelAttempt`); when every chain has failed and bootstrap has been
  answered, the race ends with :class:`Exhausted` listing every failure.

The machine never sleeps or touches sockets: inputs are method calls with
``now`` (any monotonic seconds), outputs are the returned action lists, and
:meth:`ConnectRace.get_timer` says when :meth:`ConnectRace.handle_timer` is due.
:class:`CandidateFailed` tells the driver a whole chain failed, which is what
the host cache records as one failure; a cancelled loser is not a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from hopline.client.hostcache import HostCache, Source
from hopline.runtime.peer import EndpointError
from hopline.wire import Address

__all__ = [
    "Action",
    "AttemptFailure",
    "CancelAttempt",
    "CandidateFailed",
    "ConnectRace",
    "Exhausted",
    "NeedBootstrap",
    "RaceConfig",
    "RaceExhausted",
    "StartAttempt",
    "Transport",
    "Won",
    "race_connect",
]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("hopline.race")


class Transport(StrEnum):
    """How an attempt reaches the supernode."""

    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True)
class RaceConfig:
    """How aggressively to race (defaults follow RFC 8305's 250 ms stagger).

    ``bootstrap_after``: seconds without a winner after which bootstrap is
    fetched even though host-cache entries are still being tried (None: only
    when the cache has no known-good entry or nothing is left to start).
    ``bootstrap_slots``: attempts bootstrap candidates may run on top of
    ``parallelism``.
    ``fallback_after``: seconds an attempt may stay unanswered before the next
    step of its chain starts alongside it (UDP silently dropped by a firewall
    reaches TCP after this, not after ``attempt_timeout``; None: only on failure).
    """

    parallelism: int = 3
    stagger: float = 0.25
    attempt_timeout: float = 3.0
    transports: tuple[Transport, ...] = (Transport.UDP, Transport.TCP)
    alternate_ports: tuple[int, ...] = ()  # e.g. (443, 80)
    alternate_transports: tuple[Transport, ...] = (Transport.TCP,)
    max_candidates: int = 32  # how many host-cache entries the driver races
    bootstrap_after: float | None = 0.3
    bootstrap_slots: int = 2
    fallback_after: float | None = 0.5

    def __post_init__(self) -> None:
        if self.parallelism < 1 or self.stagger < 0 or self.attempt_timeout <= 0:
            raise ValueError(f"unusable race config: {self}")
        if self.bootstrap_slots < 0 or min(self.bootstrap_after or 0, self.fallback_after or 0) < 0:
            raise ValueError(f"unusable race config: {self}")
        if not self.transports:
            raise ValueError("a race needs at least one transport")

    def chain(self, candidate: Address) -> list[tuple[Address, Transport]]:
        """The attempts for one candidate, in the order they are tried."""
        steps = [(candidate, t) for t in self.transports]
        for port in self.alternate_ports:
            if port != candidate.port:
                steps += [(Address(candidate.host, port), t) for t in self.alternate_transports]
        return steps


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class StartAttempt:
    """Dial ``address`` over ``transport``; report back with ``attempt_id``."""

    attempt_id: int
    address: Address
    transport: Transport
    candidate: Address  # the host-cache address this attempt stands for


@dataclass(frozen=True)
class CancelAttempt:
    """Stop attempt ``attempt_id`` (it timed out, or another attempt won)."""

    attempt_id: int
    timed_out: bool


@dataclass(frozen=True)
class NeedBootstrap:
    """Fetch bootstrap supernodes and pass them to :meth:`ConnectRace.add_bootstrap`."""


@dataclass(frozen=True)
class AttemptFailure:
    """One failed attempt and why."""

    address: Address
    transport: Transport
    reason: str


@dataclass(frozen=True)
class CandidateFailed:
    """Every attempt for ``candidate`` failed (one host-cache failure)."""

    candidate: Address
    failures: tuple[AttemptFailure, ...]


@dataclass(frozen=True)
class Won:
    """The race is over: this attempt connected."""

    attempt_id: int
    address: Address
    transport: Transport
    candidate: Address
    rtt: float


@dataclass(frozen=True)
class Exhausted:
    """The race is over: nothing connected."""

    failures: tuple[AttemptFailure, ...]


Action = StartAttempt | CancelAttempt | NeedBootstrap | CandidateFailed | Won | Exhausted


@dataclass(eq=False)
class _Lane:
    """The chains of one origin (host cache or bootstrap) and their slots."""

    limit: int  # attempts of this lane in flight at most
    fresh: deque[_Chain] = field(default_factory=deque)
    fallbacks: deque[_Chain] = field(default_factory=deque)
    prefer_fallback: bool = True
    next_start: float = -math.inf
    active: int = 0

    def pending(self) -> bool:
        return bool(self.fresh or self.fallbacks)

    def take(self) -> _Chain:
        """The next chain to step: fallbacks and fresh candidates take turns."""
        if self.fresh and self.fallbacks:
            queue = self.fallbacks if self.prefer_fallback else self.fresh
            self.prefer_fallback = not self.prefer_fallback
            return queue.popleft()
        return (self.fallbacks or self.fresh).popleft()


@dataclass(eq=False)
class _Chain:
    candidate: Address
    steps: deque[tuple[Address, Transport]]
    lane: _Lane
    failures: list[AttemptFailure] = field(default_factory=list)
    running: int = 0  # attempts of this chain in flight

    def queue_next_step(self) -> None:
        """Let the chain's next step start (once: it is queued at most once)."""
        if self.steps and self not in self.lane.fallbacks:
            self.lane.fallbacks.append(self)


@dataclass
class _Attempt:
    chain: _Chain
    address: Address
    transport: Transport
    deadline: float
    fallback_at: float | None = None  # when the chain's next step may start alongside
    holds_slot: bool = True  # an attempt that handed over to its next step frees its slot


# ---------------------------------------------------------------- the core


class ConnectRace:
    """The sans-I/O login race (see the module docstring)."""

    def __init__(
        self,
        candidates: Iterable[Address],
        config: RaceConfig | None = None,
        *,
        known_good: bool = True,
    ) -> None:
        """Plan a race over ``candidates`` (best first); nothing starts before :meth:`start`.

        ``known_good``: whether any candidate answered before and has not
        failed since; if not, bootstrap is fetched at once, alongside.
        """
        self.config = config or RaceConfig()
        self._known_good = known_good
        self._seen: set[Address] = set()
        self._cache = _Lane(limit=self.config.parallelism)
        self._from_bootstrap = _Lane(limit=self._capacity)
        self._active: dict[int, _Attempt] = {}
        self._ids = itertools.count(1)
        self._started_at: float | None = None
        self._bootstrap = "unasked"  # -> "asked" -> "answered"
        self._failures: list[AttemptFailure] = []
        self.result: Won | Exhausted | None = None
        self._queue(candidates, self._cache)

    @property
    def done(self) -> bool:
        """Whether the race has ended (see :attr:`result`)."""
        return self.result is not None

    def start(self, now: float) -> list[Action]:
        """Begin racing."""
        self._started_at = now
        return self._advance(now)

    def add_bootstrap(self, addresses: Iterable[Address], now: float) -> list[Action]:
        """The answer to :class:`NeedBootstrap` (may be empty, e.g. the fetch failed)."""
        if self._bootstrap != "asked" or self.done:
            return []
        self._bootstrap = "answered"
        self._queue(addresses, self._from_bootstrap)
        return self._advance(now)

    def attempt_succeeded(self, attempt_id: int, rtt: float, now: float) -> list[Action]:
        """Attempt ``attempt_id`` connected after ``rtt`` seconds: it wins."""
        attempt = self._active.pop(attempt_id, None)
        if attempt is None or self.done:
            return []
        actions: list[Action] = [CancelAttempt(i, timed_out=False) for i in self._active]
        self._active.clear()
        self.result = Won(
            attempt_id, attempt.address, attempt.transport, attempt.chain.candidate, rtt
        )
        return [*actions, self.result]

    def attempt_failed(self, attempt_id: int, reason: str, now: float) -> list[Action]:
        """Attempt ``attempt_id`` failed; ``reason`` is kept for :class:`Exhausted`."""
        attempt = self._active.pop(attempt_id, None)
        if attempt is None or self.done:
            return []
        return [*self._fail(attempt, reason, now), *self._advance(now)]

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: wait for input)."""
        if self.done:
            return None
        deadlines = [a.deadline for a in self._active.values()]
        deadlines += [a.fallback_at for a in self._active.values() if a.fallback_at is not None]
        deadlines += [lane.next_start for lane in self._lanes if self._can_start(lane)]
        asking_at = self._bootstrap_at()
        if self._bootstrap == "unasked" and asking_at is not None:
            deadlines.append(asking_at)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        """Time out overdue attempts, start the next ones that are due, ask for bootstrap."""
        if self.done:
            return []
        actions: list[Action] = []
        for attempt_id, attempt in list(self._active.items()):
            if attempt.fallback_at is not None and now >= attempt.fallback_at:
                attempt.fallback_at, attempt.holds_slot = None, False
                attempt.chain.lane.active -= 1
                attempt.chain.queue_next_step()
            if now >= attempt.deadline:
                del self._active[attempt_id]
                actions.append(CancelAttempt(attempt_id, timed_out=True))
                actions += self._fail(attempt, "timeout", now)
        return actions + self._advance(now)

    # ------------------------------------------------------------ internals

    @property
    def _capacity(self) -> int:
        return self.config.parallelism + self.config.bootstrap_slots

    @property
    def _lanes(self) -> tuple[_Lane, _Lane]:
        return (self._from_bootstrap, self._cache)  # bootstrap answers are fresher

    def _queue(self, candidates: Iterable[Address], lane: _Lane) -> None:
        for candidate in candidates:
            if candidate not in self._seen:
                self._seen.add(candidate)
                lane.fresh.append(_Chain(candidate, deque(self.config.chain(candidate)), lane))

    def _has_pending(self) -> bool:
        return any(lane.pending() for lane in self._lanes)

    def _can_start(self, lane: _Lane) -> bool:
        """Whether ``lane`` has a chain waiting and a free slot (time aside)."""
        return lane.pending() and lane.active < lane.limit and len(self._active) < self._capacity

    def _bootstrap_at(self) -> float | None:
        if self._started_at is None or self.config.bootstrap_after is None:
            return None
        return self._started_at + self.config.bootstrap_after

    def _bootstrap_due(self, now: float) -> bool:
        if self._bootstrap != "unasked":
            return False
        due = self._bootstrap_at()
        return not self._known_good or not self._has_pending() or (due is not None and now >= due)

    def _fail(self, attempt: _Attempt, reason: str, now: float) -> list[Action]:
        failure = AttemptFailure(attempt.address, attempt.transport, reason)
        self._failures.append(failure)
        chain = attempt.chain
        chain.failures.append(failure)
        chain.running -= 1
        if attempt.holds_slot:
            chain.lane.active -= 1  # the caller took it out of _active
        chain.lane.next_start = now  # a failure frees its slot at once (RFC 8305)
        if chain.steps:
            chain.queue_next_step()
            return []
        if chain.running or chain in chain.lane.fallbacks:
            return []  # another step of this candidate is still under way
        return [CandidateFailed(chain.candidate, tuple(chain.failures))]

    def _advance(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for lane in self._lanes:
            while self._can_start(lane) and now >= lane.next_start:
                actions.append(self._start_next(lane, now))
        if self._bootstrap_due(now):
            self._bootstrap = "asked"
            actions.append(NeedBootstrap())
        if self._bootstrap == "answered" and not self._has_pending() and not self._active:
            self.result = Exhausted(tuple(self._failures))
            actions.append(self.result)
        return actions

    def _start_next(self, lane: _Lane, now: float) -> StartAttempt:
        chain = lane.take()
        address, transport = chain.steps.popleft()
        attempt_id = next(self._ids)
        after = self.config.fallback_after
        fallback_at = now + after if after is not None and chain.steps else None
        self._active[attempt_id] = _Attempt(
            chain, address, transport, now + self.config.attempt_timeout, fallback_at
        )
        chain.running += 1
        lane.active += 1
        lane.next_start = now + self.config.stagger
        return StartAttempt(attempt_id, address, transport, chain.candidate)


# ---------------------------------------------------------------- the driver


class RaceExhausted(EndpointError):
    """No supernode could be reached; ``failures`` says what went wrong where."""

    def __init__(self, failures: tuple[AttemptFailure, ...]) -> None:
        """Keep the failures and summarise them in the message."""
        summary = "; ".join(f"{f.transport}:{f.address}: {f.reason}" for f in failures[:8])
        super().__init__(f"no supernode reachable ({len(failures)} attempts) {summary}".strip())
        self.failures = failures


Bootstrap = Iterable[Address] | Callable[[], Awaitable[Iterable[Address]]]
FAILURES: tuple[type[BaseException], ...] = (OSError, TimeoutError, EndpointError)


async def race_connect(
    cache: HostCache,
    bootstrap: Bootstrap,
    connect: Callable[[Address, bool], Awaitable[T]],
    config: RaceConfig | None = None,
    clock: Callable[[], float] = time.monotonic,
    *,
    wall_clock: Callable[[], float] = time.time,
    failures: tuple[type[BaseException], ...] = FAILURES,
    discard: Callable[[T], object] | None = None,
) -> tuple[T, Won]:
    """Race the host cache's best entries (then bootstrap) and return the first connection.

    ``connect(address, tcp)`` opens one connection; an exception of a type in
    ``failures`` fails that attempt (any other propagates after the losers are
    cancelled). ``bootstrap`` is a list of addresses or an async function
    fetching them (called at most once). Outcomes are recorded in ``cache``
    with ``wall_clock`` times (saving it is the caller's business). A loser
    that connected anyway is passed to ``discard`` (e.g. to close it).
    Raises :class:`RaceExhausted` when nothing connects.

    With the runtime, for example::

        conn, won = await race_connect(
            cache, [Address.parse(a) for a in profile.config.get("bootstrap", [])],
            lambda a, tcp: endpoint.connect(a.as_tuple(), expect, tcp=tcp),
            discard=PeerConnection.close,
        )
    """
    config = config or RaceConfig()
    candidates = cache.candidates(wall_clock(), config.max_candidates)
    known_good = any((entry := cache.get(c)) is not None and entry.known_good for c in candidates)
    race = ConnectRace(candidates, config, known_good=known_good)
    driver = _Driver(race, cache, bootstrap, connect, (clock, wall_clock), failures, discard)
    try:
        return await driver.run()
    finally:
        await driver.cancel_all()


class _Driver(Generic[R]):
    """Runs one :class:`ConnectRace` with asyncio tasks; the state lives in the core."""

    def __init__(
        self,
        race: ConnectRace,
        cache: HostCache,
        bootstrap: Bootstrap,
        connect: Callable[[Address, bool], Awaitable[R]],
        clocks: tuple[Callable[[], float], Callable[[], float]],
        failures: tuple[type[BaseException], ...],
        discard: Callable[[R], object] | None,
    ) -> None:
        self.race, self.cache, self.bootstrap, self.connect = race, cache, bootstrap, connect
        self.clock, self.wall_clock = clocks
        self.failures, self.discard = failures, discard
        self.tasks: dict[int, asyncio.Future[R]] = {}
        self.started: dict[int, float] = {}
        self.fetch: asyncio.Future[list[Address]] | None = None
        self.winner: tuple[R, Won] | None = None

    async def run(self) -> tuple[R, Won]:
        self.apply(self.race.start(self.clock()))
        while self.winner is None:
            if isinstance(self.race.result, Exhausted):
                raise RaceExhausted(self.race.result.failures)
            await self.wait()
            self.collect()
        return self.winner

    async def wait(self) -> None:
        waiting: set[asyncio.Future[Any]] = set(self.tasks.values())
        if self.fetch is not None:
            waiting.add(self.fetch)
        timer = self.race.get_timer()
        timeout = None if timer is None else max(0.0, timer - self.clock())
        if waiting:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        elif timeout is not None:
            await asyncio.sleep(timeout)
        else:
            raise RuntimeError("login race stalled: nothing to wait for")  # a core bug

    def collect(self) -> None:
        if self.fetch is not None and self.fetch.done():
            self._bootstrapped(self.fetch)
        for attempt_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[attempt_id]
                self._finished(attempt_id, task)
        timer = self.race.get_timer()
        if timer is not None and self.clock() >= timer:
            self.apply(self.race.handle_timer(self.clock()))

    def _bootstrapped(self, fetch: asyncio.Future[list[Address]]) -> None:
        self.fetch = None
        error = fetch.exception()
        if error is not None and not isinstance(error, self.failures):
            raise error
        addresses: list[Address] = []
        if error is not None:
            log.warning("fetching bootstrap supernodes failed: %s", _reason(error))
        else:
            addresses = fetch.result()
            self.cache.merge(addresses, Source.BOOTSTRAP, self.wall_clock())
        self.apply(self.race.add_bootstrap(addresses, self.clock()))

    def _finished(self, attempt_id: int, task: asyncio.Future[R]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, self.failures):
            raise error
        if error is not None:
            self.apply(self.race.attempt_failed(attempt_id, _reason(error), self.clock()))
            return
        value = task.result()
        rtt = self.clock() - self.started[attempt_id]
        self.apply(self.race.attempt_succeeded(attempt_id, rtt, self.clock()))
        won = self.race.result
        if self.winner is None and isinstance(won, Won) and won.attempt_id == attempt_id:
            self.winner = (value, won)
        else:
            self._discard(value)  # a loser, or an attempt already given up, connected

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            self._apply_one(action)

    def _apply_one(self, action: Action) -> None:
        match action:
            case StartAttempt(attempt_id, address, transport, _):
                tcp = transport is Transport.TCP
                self.tasks[attempt_id] = asyncio.ensure_future(self.connect(address, tcp))
                self.started[attempt_id] = self.clock()
            case CancelAttempt(attempt_id, _):
                if attempt_id in self.tasks:
                    self.tasks[attempt_id].cancel()
            case NeedBootstrap():
                self.fetch = asyncio.ensure_future(_fetch(self.bootstrap))
            case CandidateFailed(candidate, _):
                self.cache.record_failure(candidate, self.wall_clock())
            case Won(candidate=candidate, rtt=rtt):
                self.cache.record_success(candidate, rtt, self.wall_clock(), Source.BOOTSTRAP)
            case Exhausted():
                return  # nothing to do here: run() reads race.result

    def _discard(self, value: R) -> None:
        if self.discard is not None:
            self.discard(value)

    async def cancel_all(self) -> None:
        """Stop every attempt and the bootstrap fetch; discard late connections."""
        attempts = list(self.tasks.values())
        self.tasks.clear()
        for task in attempts:
            task.cancel()
        for result in await asyncio.gather(*attempts, return_exceptions=True):
            if not isinstance(result, BaseException):
                self._discard(result)
        if self.fetch is not None:
            self.fetch.cancel()
            await asyncio.gather(self.fetch, return_exceptions=True)


async def _fetch(bootstrap: Bootstrap) -> list[Address]:
    if callable(bootstrap):
        return list(await bootstrap())
    return list(bootstrap)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
