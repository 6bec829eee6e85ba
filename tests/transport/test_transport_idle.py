"""ACK policy and keep-alives under a mock clock: what an idle or interactive link puts on the wire.

A request/reply conversation (the shape of a client session pinging its home
supernode) is driven datagram by datagram, so each test can assert exactly
which frames every datagram carried and when: the reply carries the ACK of the
request, the ACK of the reply goes out alone after ``max_ack_delay``, ACK-only
datagrams are never acknowledged, duplicates are acknowledged at once, the
timers that allow for the ACK delay never retransmit on a clean path, and the
link's own keep-alive stays silent while the application talks often enough.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest

from hopline.testing import FakeNet, ImpairmentConfig
from hopline.transport import LinkConfig, PeerUnreachable
from hopline.transport.link import Link, MessageReceived
from hopline.transport.packet import (
    ACK_DELAY_UNIT,
    AckFrame,
    DataFrame,
    Frame,
    PingFrame,
    PongFrame,
    decode_datagram,
    encode_datagram,
)
from hopline.transport.reliable import ReliableSender, RttEstimator

KEEPALIVE_S = 20.0  # a client session's ping period


@dataclass(frozen=True)
class Sent:
    """One datagram on the simulated wire."""

    time: float
    sender: str
    frames: list[Frame]

    @property
    def kinds(self) -> list[str]:
        """Frame type names, e.g. ``["AckFrame", "DataFrame"]``."""
        return [type(frame).__name__ for frame in self.frames]


@dataclass
class Conversation:
    """``a`` sends requests; ``b`` answers each one ``think`` seconds after it arrives.

    Both directions have a fixed one-way ``delay`` and lose nothing, unless a
    datagram's index in :attr:`wire` is listed in ``drop``. Like an event loop
    that services a connection after each wake-up, everything due at one
    instant (requests, replies, arrivals, timers) happens before the links
    are flushed, so a batch of requests shares datagrams.
    """

    a: Link
    b: Link
    delay: float
    think: float = 0.0
    drop: set[int] = field(default_factory=set)
    wire: list[Sent] = field(default_factory=list)
    now: float = 0.0
    _agenda: list[tuple[float, int, str, bytes]] = field(default_factory=list)
    _order: int = 0

    def run(self, requests: list[tuple[float, list[bytes]]], until: float) -> None:
        """Send each batch of messages at its time; run until ``until``."""
        for when, batch in requests:
            for message in batch:
                self._schedule(when, "request", message)
        while True:
            upcoming = self._next()
            if upcoming is None or upcoming > until:
                return
            self.now = upcoming
            self._step()

    def sent_by(self, name: str) -> list[Sent]:
        """The datagrams one side sent."""
        return [s for s in self.wire if s.sender == name]

    def _schedule(self, when: float, what: str, data: bytes) -> None:
        self._order += 1
        heapq.heappush(self._agenda, (when, self._order, what, data))

    def _next(self) -> float | None:
        times = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        if self._agenda:
            times.append(self._agenda[0][0])
        return min(times) if times else None

    def _step(self) -> None:
        while self._agenda and self._agenda[0][0] <= self.now:
            _, _, what, data = heapq.heappop(self._agenda)
            self._handle(what, data)
        for link in (self.a, self.b):
            timer = link.get_timer()
            if timer is not None and timer <= self.now:
                link.handle_timer(self.now)
        self._flush()

    def _handle(self, what: str, data: bytes) -> None:
        if what == "request":
            self.a.send(data, self.now)
        elif what == "reply":
            self.b.send(data, self.now)
        elif what == "to_a":
            self.a.receive_datagram(data, self.now)
        else:
            self.b.receive_datagram(data, self.now)
            while (event := self.b.next_event()) is not None:
                if isinstance(event, MessageReceived):
                    self._schedule(self.now + self.think, "reply", b"re:" + event.data)

    def _flush(self) -> None:
        for name, link, towards in (("a", self.a, "to_b"), ("b", self.b, "to_a")):
            for datagram in link.datagrams_to_send(self.now):
                if len(self.wire) not in self.drop:
                    self._schedule(self.now + self.delay, towards, datagram)
                self.wire.append(Sent(self.now, name, decode_datagram(datagram)))


def keepalive_rounds(count: int) -> list[tuple[float, list[bytes]]]:
    return [(i * KEEPALIVE_S, [b"ping %d" % i]) for i in range(count)]


def assert_clean(a: Link, b: Link) -> None:
    """Nothing was retransmitted, probed or received twice in either direction."""
    for sender, receiver in ((a, b), (b, a)):
        stats = sender.stats
        assert stats.segments_retransmitted == 0
        assert stats.tail_loss_probes == 0
        assert stats.rto_expirations == 0
        assert receiver.stats.duplicates_received == 0


# -- piggybacking and the delayed ACK ---------------------------------------------


def test_a_reply_within_the_ack_delay_carries_the_ack_of_its_request() -> None:
    a, b = Link(), Link()
    think = 0.8 * b.config.max_ack_delay
    talk = Conversation(a, b, delay=0.02, think=think)
    talk.run([(0.0, [b"question"])], until=5.0)
    (reply,) = talk.sent_by("b")
    assert reply.kinds == ["AckFrame", "DataFrame"]
    assert reply.time == pytest.approx(0.02 + think)
    ack = reply.frames[0]
    assert isinstance(ack, AckFrame) and ack.cumulative == 1
    assert ack.delay == round(think / ACK_DELAY_UNIT)  # held while the reply was prepared
    assert b.stats.ack_only_datagrams_sent == 0
    assert_clean(a, b)


def test_without_a_reply_the_ack_goes_alone_after_the_ack_delay() -> None:
    a, b = Link(), Link()
    delay = b.config.max_ack_delay
    assert 0.02 <= delay <= 0.04
    talk = Conversation(a, b, delay=0.02, think=0.5)
    talk.run([(0.0, [b"question"])], until=5.0)
    ack, reply = talk.sent_by("b")
    assert ack.kinds == ["AckFrame"]
    assert ack.time == pytest.approx(0.02 + delay)
    assert ack.frames == [AckFrame(1, round(delay / ACK_DELAY_UNIT))]
    assert reply.kinds == ["DataFrame"]  # nothing new to acknowledge
    assert_clean(a, b)


@pytest.mark.parametrize("one_way", [0.0002, 0.02, 0.15])
def test_an_idle_request_reply_round_is_three_datagrams(one_way: float) -> None:
    """Ping, Pong + ACK, ACK: 9 datagrams a minute at one round every 20 s, nothing else."""
    a, b = Link(), Link()
    talk = Conversation(a, b, delay=one_way)
    rounds = 30  # ten minutes
    talk.run(keepalive_rounds(rounds), until=rounds * KEEPALIVE_S)
    kinds = [(s.sender, s.kinds) for s in talk.wire]
    one_round = [
        ("a", ["DataFrame"]),
        ("b", ["AckFrame", "DataFrame"]),
        ("a", ["AckFrame"]),
    ]
    assert kinds == one_round * rounds
    assert a.stats.pings_sent == b.stats.pings_sent == 0
    assert a.stats.ack_only_datagrams_sent == rounds
    assert b.stats.ack_only_datagrams_received == rounds
    assert not a.closed and not b.closed
    assert_clean(a, b)


def test_ack_only_datagrams_are_never_acknowledged() -> None:
    a, b = Link(), Link()
    b.send(b"to be acked", 0.0)
    (data,) = b.datagrams_to_send(0.0)
    a.receive_datagram(data, 0.01)
    a.handle_timer(0.01 + a.config.max_ack_delay)
    (ack,) = a.datagrams_to_send(0.01 + a.config.max_ack_delay)
    assert [type(f) for f in decode_datagram(ack)] == [AckFrame]
    b.receive_datagram(ack, 0.05)
    assert b.stats.ack_only_datagrams_received == 1
    assert b.datagrams_to_send(0.05) == []
    assert b.quiescent
    timer = b.get_timer()
    assert timer is not None and timer >= 0.05 + b.config.keepalive_interval - 1.0


@pytest.mark.parametrize(
    "frames",
    [
        [PongFrame(7)],
        [DataFrame(False, 0, 0, 1, b"media")],
        [PingFrame(3)],
    ],
    ids=["pong", "unreliable", "ping"],
)
def test_datagrams_without_reliable_data_elicit_no_ack(frames: list[Frame]) -> None:
    link = Link()
    link.ping(0.0)
    link.datagrams_to_send(0.0)  # PING token 0 outstanding
    link.receive_datagram(encode_datagram(frames), 0.01)
    later = 0.01 + 2 * link.config.max_ack_delay
    link.handle_timer(later)
    out = [frame for d in link.datagrams_to_send(later) for frame in decode_datagram(d)]
    assert not any(isinstance(frame, AckFrame) for frame in out)
    expected_pongs = [PongFrame(3)] if isinstance(frames[0], PingFrame) else []
    assert out == expected_pongs


def test_a_duplicate_is_acknowledged_at_once() -> None:
    a, b = Link(), Link()
    a.send(b"once", 0.0)
    (data,) = a.datagrams_to_send(0.0)
    b.receive_datagram(data, 0.01)
    assert b.datagrams_to_send(0.01) == []  # first copy: the ACK waits for a reply
    b.receive_datagram(data, 0.02)  # a retransmission: our ACK may have been lost
    (ack,) = b.datagrams_to_send(0.02)
    assert decode_datagram(ack) == [AckFrame(1, 1000)]
    assert b.stats.duplicates_received == 1


def test_a_retransmission_filling_a_gap_is_acknowledged_at_once() -> None:
    a, b = Link(), Link()
    a.send(b"first", 0.0)
    (first,) = a.datagrams_to_send(0.0)
    a.send(b"second", 0.001)
    (second,) = a.datagrams_to_send(0.001)
    b.receive_datagram(second, 0.01)  # out of order: acked at once, with a gap
    (gap,) = b.datagrams_to_send(0.01)
    (gap_ack,) = decode_datagram(gap)
    assert isinstance(gap_ack, AckFrame) and gap_ack.cumulative == 0
    b.receive_datagram(first, 0.2)  # the retransmission that fills it
    (filled,) = b.datagrams_to_send(0.2)
    (filled_ack,) = decode_datagram(filled)
    assert isinstance(filled_ack, AckFrame) and filled_ack.cumulative == 2


# -- the timers allow for the ACK delay -------------------------------------------


@pytest.mark.parametrize("one_way", [0.0001, 0.002, 0.02, 0.15, 0.4])
@pytest.mark.parametrize("think", [0.0, 0.01, 0.5])
def test_no_spurious_retransmission_on_a_clean_path(one_way: float, think: float) -> None:
    """Lone requests (the ACK is always delayed) and batches of 1-4 messages sharing a
    datagram, over paths whose RTT is far below or far above the ACK delay."""
    a, b = Link(), Link()
    talk = Conversation(a, b, delay=one_way, think=think)
    period = 2 * one_way + think + 1.0
    batches = [(i * period, [b"%d.%d" % (i, j) for j in range(i % 4 + 1)]) for i in range(60)]
    talk.run(batches, until=60 * period + 5.0)
    assert a.stats.messages_received == sum(len(batch) for _, batch in batches)
    assert_clean(a, b)


def test_rto_allows_for_the_peers_ack_delay() -> None:
    """A steady 300 ms path: RTTVAR decays to nothing, but a delayed ACK still comes
    max_ack_delay after the RTT, so the RTO must leave room for it."""
    estimator = RttEstimator(min_rto=0.001, max_ack_delay=0.025)
    for _ in range(500):
        estimator.on_sample(0.325, ack_delay=0.025)
    assert estimator.srtt == pytest.approx(0.3)
    assert estimator.rto > 0.325
    assert estimator.rto == pytest.approx(0.3 + 0.001 + 0.025)
    assert RttEstimator(min_rto=0.001).max_ack_delay == 0.0  # RFC 6298 verbatim by default


def probe_timeout(messages_per_datagram: list[int]) -> float:
    """The tail-loss probe delay after sending these datagrams, on a 1 ms path."""
    config = LinkConfig()
    rtt = RttEstimator(min_rto=config.min_rto, max_ack_delay=config.max_ack_delay)
    rtt.on_sample(0.001)
    sender = ReliableSender(config, rtt)
    for datagram, count in enumerate(messages_per_datagram):
        for i in range(count):
            sender.enqueue(b"m%d" % i)
            assert sender.pop_frame(1200, 0.0, datagram) is not None
    deadline = sender.deadline
    assert deadline is not None
    return float(deadline)


def test_probe_timeout_adds_the_ack_delay_while_the_peer_may_hold_its_ack() -> None:
    srtt_part = 2 * 0.001 + LinkConfig().clock_granularity
    held = 2 * LinkConfig().max_ack_delay  # the peer's ACK timer, and its lateness
    assert probe_timeout([1]) == pytest.approx(srtt_part + held)
    assert probe_timeout([3]) == pytest.approx(srtt_part + held)  # one datagram, three segments
    assert probe_timeout([1, 1]) == pytest.approx(srtt_part)  # two datagrams: acked at once


# -- keep-alive --------------------------------------------------------------------


def test_the_link_keepalive_stays_silent_while_the_application_talks() -> None:
    a, b = Link(), Link()
    assert b.config.keepalive_interval > KEEPALIVE_S
    talk = Conversation(a, b, delay=0.05)
    talk.run(keepalive_rounds(10), until=9 * KEEPALIVE_S + 1.0)
    assert not any(isinstance(f, PingFrame) for s in talk.wire for f in s.frames)
    talk.run([], until=9 * KEEPALIVE_S + b.config.keepalive_interval + 1.0)
    assert a.stats.pings_sent + b.stats.pings_sent >= 1  # silence: now the link pings


def test_a_silent_link_pings_once_per_interval() -> None:
    a, b = Link(), Link()
    path = ImpairmentConfig(delay=0.01)
    net = FakeNet(a, b, a_to_b=path, b_to_a=path)
    a.send(b"hello", 0.0)
    interval = a.config.keepalive_interval
    net.run_for(10 * interval + 1.0)
    assert not a.closed and not b.closed
    assert a.stats.pings_sent == 10  # a spoke first: it leads, one PING per interval
    assert b.stats.pings_sent == 0  # b answers and never races it
    assert b.stats.pongs_sent == a.stats.pongs_received == 10
    assert a.stats.keepalive_probes == b.stats.keepalive_probes == 0


def test_an_unanswered_keepalive_is_repeated_long_before_the_idle_timeout() -> None:
    a, b = Link(), Link()
    talk = Conversation(a, b, delay=0.01, drop={3})  # the first keep-alive PING is lost
    interval = a.config.keepalive_interval
    talk.run([(0.0, [b"hello"])], until=8 * interval)
    pings = [s for s in talk.wire if any(isinstance(f, PingFrame) for f in s.frames)]
    lost, recovery = pings[0], pings[1]
    assert lost.sender == recovery.sender == "a"  # a sent first, so a leads the keep-alives
    assert recovery.time - lost.time == pytest.approx(a.stats.rto)  # not a whole interval later
    assert a.stats.keepalive_probes == 1
    assert b.stats.pings_sent == 0  # b would have stepped in had the repeat been lost too
    assert not a.closed and not b.closed
    later = [s for s in pings if s.time > lost.time + interval / 2]
    assert [round(s.time - recovery.time, 1) for s in later] == [25.0 * k for k in range(1, 7)]
    assert {s.sender for s in later} == {"a"}


def test_a_sender_that_hears_nothing_pings_for_itself() -> None:
    """One-way media: the sender's idle timer is fed by its own keep-alives."""
    a, b = Link(), Link()
    net = FakeNet(a, b, a_to_b=ImpairmentConfig(delay=0.01), b_to_a=ImpairmentConfig(delay=0.01))
    for i in range(3000):
        a.send(b"frame %d" % i, net.clock.now(), reliable=False)
        net.run_for(0.04)
    assert net.clock.now() > 3 * a.config.idle_timeout
    assert not a.closed and not b.closed
    assert a.stats.pings_sent >= 3
    assert a.stats.pongs_received == a.stats.pings_sent


def test_keepalives_to_a_dead_peer_back_off_until_the_idle_timeout() -> None:
    a, b = Link(), Link()
    net = FakeNet(a, b, a_to_b=ImpairmentConfig(drop=1.0), b_to_a=ImpairmentConfig(drop=1.0))
    a.ping(0.0)
    net.run_for(2 * a.config.idle_timeout)
    assert PeerUnreachable("idle_timeout") in net.a_events
    probes = a.stats.keepalive_probes
    assert 2 <= probes <= 8  # RTO, 2 RTO, 4 RTO ... within the last seconds
