"""The login race: the sans-I/O core on a MockClock, then the asyncio driver."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import cast

import pytest

from hopline.client.hostcache import HostCache, Source
from hopline.client.race import (
    Action,
    AttemptFailure,
    CancelAttempt,
    CandidateFailed,
    ConnectRace,
    Exhausted,
    NeedBootstrap,
    RaceConfig,
    RaceExhausted,
    StartAttempt,
    Transport,
    Won,
    race_connect,
)
from hopline.testing.clock import MockClock
from hopline.wire import Address

UDP, TCP = Transport.UDP, Transport.TCP


def addr(i: int, port: int = 33033) -> Address:
    return Address.parse(f"10.0.0.{i}:{port}")


def starts(actions: list[Action]) -> list[tuple[Address, Transport]]:
    return [(a.address, a.transport) for a in actions if isinstance(a, StartAttempt)]


def only_start(actions: list[Action]) -> StartAttempt:
    started = [a for a in actions if isinstance(a, StartAttempt)]
    assert len(started) == 1, actions
    return started[0]


# ---------------------------------------------------------------- the core


def test_starts_are_staggered_up_to_k_parallel() -> None:
    clock = MockClock()
    race = ConnectRace(
        [addr(i) for i in range(1, 6)], RaceConfig(parallelism=3, stagger=0.25, fallback_after=None)
    )
    assert starts(race.start(clock())) == [(addr(1), UDP)]
    assert race.get_timer() == 0.25
    assert race.handle_timer(clock.advance(0.1)) == []  # early: nothing
    assert starts(race.handle_timer(clock.advance_to(0.25))) == [(addr(2), UDP)]
    assert starts(race.handle_timer(clock.advance_to(0.5))) == [(addr(3), UDP)]
    # k=3 in flight: the next event is the first attempt's timeout, not a start
    assert race.get_timer() == 3.0
    assert race.handle_timer(clock.advance_to(0.75)) == []


def test_a_failure_frees_its_slot_at_once_and_tcp_follows_udp() -> None:
    clock = MockClock()
    config = RaceConfig(parallelism=1, stagger=0.25, bootstrap_after=None, fallback_after=None)
    race = ConnectRace([addr(1), addr(2)], config)
    first = only_start(race.start(clock()))
    assert race.get_timer() == 3.0  # the only slot is busy
    clock.advance(0.01)
    fallback = only_start(race.attempt_failed(first.attempt_id, "refused", clock()))
    assert (fallback.address, fallback.transport, fallback.candidate) == (addr(1), TCP, addr(1))
    actions = race.attempt_failed(fallback.attempt_id, "refused", clock())
    assert (
        CandidateFailed(
            addr(1),
            (AttemptFailure(addr(1), UDP, "refused"), AttemptFailure(addr(1), TCP, "refused")),
        )
        in actions
    )
    assert starts(actions) == [(addr(2), UDP)]


def test_timeout_cancels_the_attempt_and_falls_back() -> None:
    clock = MockClock()
    race = ConnectRace(
        [addr(1)], RaceConfig(parallelism=1, attempt_timeout=2.0, fallback_after=None)
    )
    first = only_start(race.start(clock()))
    assert race.get_timer() == 2.0
    actions = race.handle_timer(clock.advance(2.0))
    assert CancelAttempt(first.attempt_id, timed_out=True) in actions
    assert starts(actions) == [(addr(1), TCP)]
    # a late report about the cancelled attempt changes nothing
    assert race.attempt_succeeded(first.attempt_id, 2.1, clock()) == []
    assert not race.done


def test_fallbacks_and_fresh_candidates_take_turns() -> None:
    clock = MockClock()
    race = ConnectRace([addr(i) for i in range(1, 5)], RaceConfig(parallelism=2, stagger=0.0))
    udp1, udp2 = (a for a in race.start(clock()) if isinstance(a, StartAttempt))
    tcp1 = only_start(race.attempt_failed(udp1.attempt_id, "x", clock()))
    assert (tcp1.address, tcp1.transport) == (addr(1), TCP)  # a fallback first...
    # ...then a fresh candidate, although UDP 2's TCP step is waiting too
    assert starts(race.attempt_failed(udp2.attempt_id, "x", clock())) == [(addr(3), UDP)]
    assert starts(race.attempt_failed(tcp1.attempt_id, "x", clock())) == [(addr(2), TCP)]


def test_alternate_ports_come_after_the_main_port() -> None:
    config = RaceConfig(alternate_ports=(443, 80))
    assert config.chain(addr(1)) == [
        (addr(1), UDP),
        (addr(1), TCP),
        (addr(1, 443), TCP),
        (addr(1, 80), TCP),
    ]
    assert config.chain(addr(1, 443)) == [
        (addr(1, 443), UDP),
        (addr(1, 443), TCP),
        (addr(1, 80), TCP),
    ]
    both = RaceConfig(alternate_ports=(443,), alternate_transports=(UDP, TCP))
    assert both.chain(addr(1))[2:] == [(addr(1, 443), UDP), (addr(1, 443), TCP)]

    clock = MockClock()
    race = ConnectRace([addr(1)], RaceConfig(parallelism=1, alternate_ports=(443,)))
    seen = []
    actions = race.start(clock())
    while not race.done:
        attempt = only_start(actions)
        seen.append((attempt.address, attempt.transport))
        if attempt.address.port == 443:
            actions = race.attempt_succeeded(attempt.attempt_id, 0.03, clock())
        else:
            actions = race.attempt_failed(attempt.attempt_id, "blocked", clock())
    assert seen == [(addr(1), UDP), (addr(1), TCP), (addr(1, 443), TCP)]
    assert race.result == Won(3, addr(1, 443), TCP, addr(1), 0.03)


def test_winner_cancels_every_other_attempt() -> None:
    clock = MockClock()
    race = ConnectRace([addr(i) for i in range(1, 4)], RaceConfig(stagger=0.0))
    a, b, c = (x for x in race.start(clock()) if isinstance(x, StartAttempt))
    actions = race.attempt_succeeded(b.attempt_id, 0.04, clock.advance(0.04))
    assert actions == [
        CancelAttempt(a.attempt_id, timed_out=False),
        CancelAttempt(c.attempt_id, timed_out=False),
        Won(b.attempt_id, addr(2), UDP, addr(2), 0.04),
    ]
    assert race.done and race.get_timer() is None
    assert race.attempt_failed(a.attempt_id, "late", clock()) == []
    assert race.handle_timer(clock.advance(10)) == []


def run_to_the_end(
    race: ConnectRace, clock: MockClock, live: set[Address], *, refuse: bool
) -> Iterator[Action]:
    """Answer every attempt: live addresses connect after 10 ms; the others are
    refused at once (``refuse``) or never answer."""
    actions = race.start(clock())
    active: list[StartAttempt] = []
    while True:
        yield from actions
        if race.done:
            return
        active += [a for a in actions if isinstance(a, StartAttempt)]
        active = [a for a in active if CancelAttempt(a.attempt_id, timed_out=True) not in actions]
        winner = next((a for a in active if a.address in live), None)
        if winner is not None:
            actions = race.attempt_succeeded(winner.attempt_id, 0.01, clock.advance(0.01))
        elif any(isinstance(a, NeedBootstrap) for a in actions):
            actions = race.add_bootstrap([addr(1), addr(8), addr(9)], clock())
        elif refuse and active:
            actions = race.attempt_failed(active.pop(0).attempt_id, "refused", clock())
        else:
            timer = race.get_timer()
            assert timer is not None, "the race stalled"
            actions = race.handle_timer(clock.advance_to(timer))


def test_bootstrap_is_asked_once_when_every_cache_entry_is_dead() -> None:
    clock = MockClock()
    race = ConnectRace([addr(1), addr(2)], RaceConfig(transports=(UDP,)))
    actions = list(run_to_the_end(race, clock, live={addr(9)}, refuse=True))
    assert sum(isinstance(a, NeedBootstrap) for a in actions) == 1
    failed = [a.candidate for a in actions if isinstance(a, CandidateFailed)]
    assert set(failed) == {addr(1), addr(2), addr(8)}
    started = [a.address for a in actions if isinstance(a, StartAttempt)]
    assert started.count(addr(1)) == 1  # a bootstrap address already tried is not retried
    assert isinstance(race.result, Won) and race.result.candidate == addr(9)


def test_exhausted_when_bootstrap_fails_too() -> None:
    clock = MockClock()
    race = ConnectRace([addr(1)], RaceConfig(attempt_timeout=1.0))
    actions = list(run_to_the_end(race, clock, live=set(), refuse=False))
    assert sum(isinstance(a, NeedBootstrap) for a in actions) == 1
    assert isinstance(actions[-1], Exhausted)
    assert actions[-1] == race.result
    assert {(f.address, f.transport) for f in actions[-1].failures} == {
        (addr(i), t) for i in (1, 8, 9) for t in (UDP, TCP)
    }
    assert {f.reason for f in actions[-1].failures} == {"timeout"}


def test_empty_cache_asks_for_bootstrap_right_away() -> None:
    race = ConnectRace([], RaceConfig())
    assert race.start(0.0) == [NeedBootstrap()]
    assert race.get_timer() is None  # waits for the bootstrap answer
    assert race.add_bootstrap([], 0.5) == [Exhausted(())]
    assert race.add_bootstrap([addr(1)], 0.6) == []  # only once


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        RaceConfig(parallelism=0)
    with pytest.raises(ValueError):
        RaceConfig(transports=())


# ---------------------------------------------------------------- a stale cache


def bootstrap_asked(actions: list[Action]) -> bool:
    return any(isinstance(a, NeedBootstrap) for a in actions)


def test_a_stale_cache_asks_for_bootstrap_after_the_bound_and_races_it_alongside() -> None:
    clock = MockClock()
    cached = [addr(1), addr(2), addr(3)]  # all once good, all dead now: nothing ever answers
    race = ConnectRace(
        cached, RaceConfig(bootstrap_after=0.3, bootstrap_slots=2, fallback_after=None)
    )
    assert not bootstrap_asked(race.start(clock()))  # a known-good cache is trusted at first
    assert starts(race.handle_timer(clock.advance_to(0.25))) == [(addr(2), UDP)]
    assert race.get_timer() == 0.3
    actions = race.handle_timer(clock.advance_to(0.3))
    assert actions == [NeedBootstrap()]

    clock.advance(0.01)  # the login server answers
    first = only_start(race.add_bootstrap([addr(8), addr(9)], clock()))
    assert (first.address, first.candidate) == (addr(8), addr(8))  # at once, not after 3 s
    assert starts(race.handle_timer(clock.advance_to(0.5))) == [(addr(3), UDP)]
    # three cache attempts and one bootstrap attempt in flight; the second bootstrap
    # address uses the other extra slot, a stagger after the first
    assert race.get_timer() == 0.31 + 0.25
    assert starts(race.handle_timer(clock.advance_to(0.56))) == [(addr(9), UDP)]
    assert race.get_timer() == 3.0  # every slot is busy now

    actions = race.attempt_succeeded(first.attempt_id, 0.02, clock.advance_to(0.6))
    assert race.result == Won(first.attempt_id, addr(8), UDP, addr(8), 0.02)
    cancelled = [a for a in actions if isinstance(a, CancelAttempt)]
    assert len(cancelled) == 4 and not any(a.timed_out for a in cancelled)
    assert not any(isinstance(a, CandidateFailed) for a in actions)  # the dead were not failed


def test_a_cache_without_known_good_entries_asks_for_bootstrap_at_once() -> None:
    race = ConnectRace([addr(1), addr(2)], RaceConfig(), known_good=False)
    actions = race.start(0.0)
    assert starts(actions) == [(addr(1), UDP)]
    assert bootstrap_asked(actions)
    assert starts(race.add_bootstrap([addr(9)], 0.05)) == [(addr(9), UDP)]


def test_bootstrap_slots_come_on_top_of_the_cache_lanes_parallelism() -> None:
    config = RaceConfig(parallelism=1, stagger=0.0, bootstrap_slots=1, fallback_after=None)
    race = ConnectRace([addr(1), addr(2)], config, known_good=False)
    cache_attempt = only_start(race.start(0.0))
    # one extra slot: the first bootstrap address starts, the second waits
    assert starts(race.add_bootstrap([addr(8), addr(9)], 0.0)) == [(addr(8), UDP)]
    assert race.get_timer() == 3.0
    # the cache attempt fails: its TCP step and the waiting bootstrap address share
    # the two slots (bootstrap first), and the cache never gets more than one
    actions = race.attempt_failed(cache_attempt.attempt_id, "refused", 0.1)
    assert starts(actions) == [(addr(9), UDP)]
    assert race.get_timer() == 3.0


def test_bootstrap_takes_every_slot_once_the_cache_is_used_up() -> None:
    config = RaceConfig(parallelism=1, stagger=0.0, bootstrap_slots=1, transports=(UDP,))
    race = ConnectRace([addr(1)], config)
    actions = race.start(0.0)
    cache_attempt = only_start(actions)
    assert bootstrap_asked(actions)  # nothing left to start: ask now, not after the bound
    assert starts(race.add_bootstrap([addr(7), addr(8), addr(9)], 0.01)) == [(addr(7), UDP)]
    actions = race.attempt_failed(cache_attempt.attempt_id, "refused", 0.05)
    assert starts(actions) == [(addr(8), UDP)]  # both slots run bootstrap candidates now
    assert race.get_timer() == 3.01


def test_without_a_bound_bootstrap_waits_until_nothing_is_left_to_start() -> None:
    clock = MockClock()
    config = RaceConfig(parallelism=2, stagger=0.0, bootstrap_after=None, fallback_after=None)
    race = ConnectRace([addr(i) for i in range(1, 5)], config)
    assert not bootstrap_asked(race.start(clock()))
    assert race.get_timer() == 3.0  # no bootstrap timer: the attempts' timeouts only
    actions = race.handle_timer(clock.advance_to(3.0))  # both time out
    assert starts(actions) == [(addr(1), TCP), (addr(3), UDP)]
    assert not bootstrap_asked(actions)  # addr(2)'s TCP step and addr(4) are still waiting


# ---------------------------------------------------------------- the driver


class FakeNet:
    """connect() that sleeps instead of dialling: address -> (delay, works)."""

    def __init__(self, plan: dict[tuple[Address, bool], tuple[float, bool]]) -> None:
        self.plan = plan
        self.dialled: list[tuple[Address, bool]] = []
        self.cancelled: list[tuple[Address, bool]] = []

    async def connect(self, address: Address, tcp: bool) -> str:
        self.dialled.append((address, tcp))
        delay, works = self.plan.get((address, tcp), (0.001, False))
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append((address, tcp))
            raise
        if not works:
            raise ConnectionRefusedError(f"{address} refused")
        return f"conn:{'tcp' if tcp else 'udp'}:{address}"


async def test_race_connect_with_a_fake_network() -> None:
    cache = HostCache()
    dead, slow, fast = addr(1), addr(2), addr(3)
    cache.merge([dead, slow, fast], Source.OVERLAY, now=time.time())
    net = FakeNet({(slow, False): (5.0, True), (fast, False): (0.05, True)})
    config = RaceConfig(parallelism=3, stagger=0.01, attempt_timeout=2.0)

    conn, won = await race_connect(cache, [], net.connect, config)

    assert conn == f"conn:udp:{fast}"
    assert (won.candidate, won.transport) == (fast, UDP)
    assert 0.03 < won.rtt < 1.0
    assert (dead, True) in net.dialled  # UDP refused, so TCP was tried too
    assert net.cancelled == [(slow, False)]  # the loser was cancelled, not recorded
    fast_entry, dead_entry, slow_entry = cache.get(fast), cache.get(dead), cache.get(slow)
    assert fast_entry is not None and fast_entry.rtt == won.rtt
    assert dead_entry is not None and dead_entry.failures == 1
    assert slow_entry is not None and slow_entry.failures == 0
    assert cache.candidates(time.time())[0] == fast


async def test_race_connect_falls_back_to_bootstrap_once() -> None:
    cache = HostCache()
    cache.merge([addr(1), addr(2)], Source.OVERLAY, now=time.time())
    live = addr(7)
    net = FakeNet({(live, True): (0.01, True)})  # only TCP gets through
    calls = []

    async def fetch_bootstrap() -> list[Address]:
        calls.append(1)
        await asyncio.sleep(0.01)
        return [addr(1), live]

    conn, won = await race_connect(cache, fetch_bootstrap, net.connect, RaceConfig(stagger=0.0))
    assert conn == f"conn:tcp:{live}" and won.transport is TCP
    assert calls == [1]
    entry = cache.get(live)
    assert entry is not None and entry.source is Source.BOOTSTRAP and entry.known_good
    assert net.dialled.count((addr(1), False)) == 1


async def test_race_connect_with_a_stale_cache_wins_through_bootstrap_before_any_timeout() -> None:
    cache = HostCache()
    dead = [addr(1), addr(2), addr(3)]
    for address in dead:  # answered a minute ago, silent now
        cache.record_success(address, 0.002, time.time() - 60)
    live = addr(9)
    net = FakeNet({**{(d, False): (30.0, False) for d in dead}, (live, False): (0.01, True)})
    fetched = []

    async def fetch_bootstrap() -> list[Address]:
        fetched.append(1)
        return [live]

    # no stagger: the three dead entries take all three slots at once
    config = RaceConfig(parallelism=3, stagger=0.0, attempt_timeout=3.0, bootstrap_slots=1)
    conn, won = await race_connect(cache, fetch_bootstrap, net.connect, config)

    assert conn == f"conn:udp:{live}" and won.candidate == live
    assert fetched == [1]
    # the live one started in the extra slot while every dead entry was still in
    # its first attempt: those were cancelled, not failed
    assert set(net.cancelled) == {(d, False) for d in dead}
    assert all(e.failures == 0 for e in cache)
    assert (addr(1), True) not in net.dialled  # no TCP step: no attempt ever timed out


async def test_race_connect_exhausted_records_failures() -> None:
    cache = HostCache()
    cache.merge([addr(1), addr(2)], Source.OVERLAY, now=time.time())
    net = FakeNet({})
    with pytest.raises(RaceExhausted) as caught:
        await race_connect(cache, [], net.connect, RaceConfig(stagger=0.0))
    assert len(caught.value.failures) == 4
    assert "refused" in str(caught.value)
    assert cache.candidates(time.time()) == []  # both backed off now
    assert all(e.failures == 1 for e in cache)


async def test_race_connect_lets_unexpected_errors_through_and_cleans_up() -> None:
    cache = HostCache()
    cache.merge([addr(1), addr(2)], Source.OVERLAY, now=time.time())
    net = FakeNet({(addr(2), False): (5.0, True)})

    async def connect(address: Address, tcp: bool) -> str:
        if address == addr(1):
            await asyncio.sleep(0.02)
            raise ValueError("a bug, not a dead supernode")
        return await net.connect(address, tcp)

    with pytest.raises(ValueError, match="a bug"):
        await race_connect(cache, [], connect, RaceConfig(stagger=0.0))
    assert net.cancelled == [(addr(2), False)]


# ---------------------------------------------------------------- real sockets


class Echo(asyncio.DatagramProtocol):
    """A live "supernode": answers every datagram."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"pong:" + data, addr)


class Ping(asyncio.DatagramProtocol):
    """The client side of a UDP ping: resolves on the answer or an ICMP error."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def udp_or_tcp_ping(address: Address, tcp: bool) -> str:
    """Reach ``address`` over loopback: a UDP ping, or a TCP connect."""
    host, port = address.as_tuple()
    if tcp:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return f"tcp:{port}"
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Ping, remote_addr=(host, port))
    try:
        transport.sendto(b"hello")
        return (await protocol.answer).decode()
    finally:
        transport.close()


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_race_connect_over_real_udp_sockets() -> None:
    loop = asyncio.get_running_loop()
    live_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        live = Address.of("127.0.0.1", live_transport.get_extra_info("sockname")[1])
        quiet = Address.of("127.0.0.1", silent.getsockname()[1])
        refusing = [Address.of("127.0.0.1", unused_port()) for _ in range(3)]
        cache = HostCache()
        now = time.time()
        # the dead ones look best, so the race has to get past them
        for i, dead in enumerate([quiet, *refusing]):
            cache.record_success(dead, 0.001 * (i + 1), now - 60)
        cache.merge([live], Source.OVERLAY, now)
        assert cache.candidates(now)[-1] == live
        # UDP only, so each refusal (ICMP port unreachable) ends its candidate's chain
        # before the live one starts; TCP fallback is covered by the fake-network tests
        config = RaceConfig(parallelism=2, stagger=0.02, attempt_timeout=1.0, transports=(UDP,))

        answer, won = await race_connect(cache, [], udp_or_tcp_ping, config)

        assert answer == "pong:hello"
        assert (won.address, won.transport) == (live, UDP)
        live_entry = cache.get(live)
        assert live_entry is not None and live_entry.known_good
        for dead in refusing:  # refused: one cache failure each
            entry = cache.get(dead)
            assert entry is not None and entry.failures == 1, dead
        quiet_entry = cache.get(quiet)  # still waiting when the live one won: not a failure
        assert quiet_entry is not None and quiet_entry.failures == 0
    finally:
        live_transport.close()
        silent.close()


def test_an_unanswered_attempt_lets_the_next_step_start_alongside() -> None:
    """UDP silently dropped: TCP starts after fallback_after, UDP keeps running."""
    config = RaceConfig(parallelism=1, stagger=0.0, fallback_after=0.5, bootstrap_after=None)
    race = ConnectRace([addr(1)], config)
    udp = only_start(race.start(0.0))
    assert udp.transport == UDP and race.get_timer() == 0.5
    tcp = only_start(race.handle_timer(0.5))
    assert (tcp.address, tcp.transport) == (addr(1), TCP)
    assert race.attempt_failed(udp.attempt_id, "timeout", 3.0) == []  # TCP still runs
    won = race.attempt_succeeded(tcp.attempt_id, 0.01, 3.1)
    assert isinstance(won[-1], Won) and won[-1].transport == TCP


def test_a_candidate_fails_once_when_its_parallel_steps_both_fail() -> None:
    config = RaceConfig(parallelism=2, stagger=0.0, fallback_after=0.5, bootstrap_after=None)
    race = ConnectRace([addr(1)], config)
    udp = only_start(race.start(0.0))
    tcp = only_start(race.handle_timer(0.5))
    assert race.attempt_failed(tcp.attempt_id, "refused", 0.6) == []  # UDP still runs
    actions = race.attempt_failed(udp.attempt_id, "timeout", 3.0)
    failed = [a for a in actions if isinstance(a, CandidateFailed)]
    assert len(failed) == 1 and len(failed[0].failures) == 2
