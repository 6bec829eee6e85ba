"""``Link``: one peer-to-peer link, as a sans-I/O state machine.

A link multiplexes, over one stream of datagrams (UDP, or a length-prefixed
TCP stream -- it does not care):

* the reliable channel (:mod:`hopline.transport.reliable`): in order,
  exactly once, retransmitted, flow-controlled by a fixed window;
* the unreliable channel (:mod:`hopline.transport.unreliable`): sent once,
  sequenced so the receiver can count loss, for media;
* ACKs, which are delayed (up to ``max_ack_delay``) and coalesced and ride
  along with whatever the link sends next: a reply within the delay carries
  the ACK of its request. Only reliable data is acknowledged, never a
  datagram of ACKs, PINGs, PONGs or unreliable data;
* PING/PONG keep-alives, sent after ``keepalive_interval`` without sending, or
  without receiving, anything: they keep NAT bindings open, detect a silent
  peer (``idle_timeout``) and give RTT samples on an idle link. A keep-alive
  PING that no PONG answers is repeated, backing off from the RTO, until the
  idle timeout. A link whose application talks more often than
  ``keepalive_interval`` (a client session pings its home every 20 s) sends
  no PINGs at all. :meth:`Link.ping` asks for one explicitly.

The API follows aioquic / h11: the caller owns sockets and clocks and passes
``now`` (seconds on any monotonic clock) into every call::

    link.send(b"hello", now)                 # queue a message
    for datagram in link.datagrams_to_send(now):
        sock.sendto(datagram, peer)
    link.receive_datagram(data, now)         # never raises on bad input
    while (event := link.next_event()) is not None:
        ...                                  # MessageReceived, PeerUnreachable...
    deadline = link.get_timer()              # call handle_timer(now) then

Bad input from the peer is dropped and counted by reason in
:attr:`LinkStats.dropped`; only local misuse raises
(:class:`~hopline.transport.errors.LocalTransportError`). A link never reads
the time, sleeps, touches a socket or draws random numbers.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from hopline.transport.config import LinkConfig, fragment_payload
from hopline.transport.errors import (
    ConfigError,
    LinkClosedError,
    MalformedPacket,
    ProtocolViolation,
    RemoteTransportError,
)
from hopline.transport.packet import (
    SEQ_MASK,
    AckFrame,
    CloseFrame,
    DataFrame,
    DatagramBuilder,
    Frame,
    PingFrame,
    PongFrame,
    decode_datagram,
    encode_datagram,
)
from hopline.transport.reliable import ReliableReceiver, ReliableSender, RttEstimator
from hopline.transport.unreliable import UnreliableReceiver, UnreliableSender

__all__ = [
    "Link",
    "LinkEvent",
    "LinkStats",
    "MessageReceived",
    "PeerClosed",
    "PeerUnreachable",
]


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Base class of everything :meth:`Link.next_event` returns."""


@dataclass(frozen=True, slots=True)
class MessageReceived(LinkEvent):
    """A whole message arrived (``reliable`` tells which channel)."""

    data: bytes
    reliable: bool = True


@dataclass(frozen=True, slots=True)
class PeerUnreachable(LinkEvent):
    """The link gave up: ``reason`` is ``"retransmissions"`` or ``"idle_timeout"``."""

    reason: str


@dataclass(frozen=True, slots=True)
class PeerClosed(LinkEvent):
    """The peer sent a CLOSE frame."""

    code: int


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A snapshot of a link's counters and estimates."""

    datagrams_sent: int
    datagrams_received: int
    bytes_sent: int
    bytes_received: int
    ack_only_datagrams_sent: int
    ack_only_datagrams_received: int
    messages_sent: int
    messages_received: int
    segments_sent: int
    segments_retransmitted: int
    segments_lost: int
    spurious_retransmissions: int
    tail_loss_probes: int
    rto_expirations: int
    duplicates_received: int
    unreliable_received: int
    unreliable_lost: int
    partial_messages_expired: int
    partial_messages_evicted: int
    pings_sent: int
    pongs_received: int
    pings_received: int
    pongs_sent: int
    keepalive_probes: int
    """Keep-alive PINGs repeated because none was answered (a lossy or dead path)."""
    send_queue_depth: int
    in_flight: int
    receive_buffer_bytes: int
    """Reliable bytes held out of order or in a message being assembled."""
    reassembly_bytes: int
    """Unreliable bytes held in partial messages."""
    srtt: float | None
    rttvar: float | None
    min_rtt: float | None
    latest_rtt: float | None
    rto: float
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        """All refused datagrams and frames."""
        return sum(self.dropped.values())

    @property
    def retransmission_ratio(self) -> float:
        """Retransmissions per first transmission of a reliable segment."""
        return self.segments_retransmitted / self.segments_sent if self.segments_sent else 0.0

    @property
    def loss_estimate(self) -> float:
        """Fraction of reliable transmissions declared lost (loss towards the peer)."""
        total = self.segments_sent + self.segments_retransmitted
        return self.segments_lost / total if total else 0.0

    @property
    def unreliable_loss_estimate(self) -> float:
        """Fraction of the peer's unreliable fragments that never arrived (loss from the peer)."""
        expected = self.unreliable_received + self.unreliable_lost
        return self.unreliable_lost / expected if expected else 0.0


@dataclass(slots=True)
class _Counters:
    datagrams_sent: int = 0
    datagrams_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    ack_only: int = 0
    ack_only_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    pings_received: int = 0
    pongs_sent: int = 0
    keepalive_probes: int = 0


class Link:
    """One peer-to-peer link: reliable + unreliable channels over datagrams."""

    def __init__(self, config: LinkConfig | None = None) -> None:
        """Create a link; timers start with the first call that passes ``now``."""
        self.config = config or LinkConfig()
        cfg = self.config
        self._rtt = RttEstimator(
            initial_rto=cfg.initial_rto,
            min_rto=cfg.min_rto,
            max_rto=cfg.max_rto,
            granularity=cfg.clock_granularity,
            max_ack_delay=cfg.max_ack_delay,
        )
        self._sender = ReliableSender(cfg, self._rtt)
        self._receiver = ReliableReceiver(cfg)
        self._usender = UnreliableSender(cfg)
        self._ureceiver = UnreliableReceiver(cfg)
        self._events: deque[LinkEvent] = deque()
        self._dropped: Counter[str] = Counter()
        self._counters = _Counters()
        self._started = False
        self._last_sent = 0.0
        self._last_received = 0.0
        self._close_reason: str | None = None
        self._close_frame: CloseFrame | None = None
        self._pongs: deque[int] = deque()
        self._pings: dict[int, float] = {}
        self._ping_wanted = False
        self._unanswered_keepalives = 0
        self._last_keepalive = 0.0
        self._leads_keepalive: bool | None = None  # decided by who sends first
        self._next_token = 0
        self._datagram_number = 0
        self._send_mtu = cfg.mtu

    # -- public state ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """The link no longer sends or accepts data."""
        return self._close_reason is not None

    @property
    def close_reason(self) -> str | None:
        """``"local"``, ``"peer_closed"``, ``"retransmissions"``, ``"idle_timeout"`` or None."""
        return self._close_reason

    @property
    def send_queue_depth(self) -> int:
        """Reliable messages waiting for window space (backpressure signal)."""
        return self._sender.queue_depth

    @property
    def in_flight(self) -> int:
        """Reliable segments sent and not yet acknowledged."""
        return self._sender.in_flight

    @property
    def quiescent(self) -> bool:
        """Nothing to send, nothing unacknowledged in either direction."""
        if self._close_frame is not None:
            return False
        if self.closed:
            return True
        return (
            self._sender.idle
            and not self._usender.pending
            and not self._receiver.ack_pending
            and not self._pongs
            and not self._ping_wanted
        )

    @property
    def stats(self) -> LinkStats:
        """A snapshot of counters, drop reasons and RTT estimates."""
        c, snd, rtt = self._counters, self._sender.stats, self._rtt
        reassembly = self._ureceiver.reassembler.stats
        dropped = self._dropped + self._receiver.drops
        if self._receiver.abandoned_messages:
            dropped["abandoned_message"] += self._receiver.abandoned_messages
        return LinkStats(
            datagrams_sent=c.datagrams_sent,
            datagrams_received=c.datagrams_received,
            bytes_sent=c.bytes_sent,
            bytes_received=c.bytes_received,
            ack_only_datagrams_sent=c.ack_only,
            ack_only_datagrams_received=c.ack_only_received,
            messages_sent=c.messages_sent,
            messages_received=c.messages_received,
            segments_sent=snd.segments_sent,
            segments_retransmitted=snd.segments_retransmitted,
            segments_lost=snd.segments_lost,
            spurious_retransmissions=snd.spurious_retransmissions,
            tail_loss_probes=snd.tail_loss_probes,
            rto_expirations=snd.rto_expirations,
            duplicates_received=self._receiver.duplicates + self._ureceiver.duplicates,
            unreliable_received=self._ureceiver.received,
            unreliable_lost=self._ureceiver.lost,
            partial_messages_expired=reassembly.expired,
            partial_messages_evicted=reassembly.evicted,
            pings_sent=c.pings_sent,
            pongs_received=c.pongs_received,
            pings_received=c.pings_received,
            pongs_sent=c.pongs_sent,
            keepalive_probes=c.keepalive_probes,
            send_queue_depth=self._sender.queue_depth,
            in_flight=self._sender.in_flight,
            receive_buffer_bytes=self._receiver.buffered_bytes,
            reassembly_bytes=self._ureceiver.reassembler.buffered_bytes,
            srtt=rtt.srtt,
            rttvar=rtt.rttvar,
            min_rtt=rtt.min_rtt,
            latest_rtt=rtt.latest,
            rto=rtt.rto,
            dropped=dict(dropped),
        )

    @property
    def send_mtu(self) -> int:
        """The largest datagram this link builds now (``config.mtu`` unless lowered)."""
        return self._send_mtu

    def set_send_mtu(self, mtu: int) -> None:
        """Build datagrams of at most ``mtu`` bytes from now on.

        Messages queued from now on (and reliable ones not yet started) are
        cut for the new size; a fragment cut earlier, or sent earlier and
        retransmitted, that does not fit goes out in one datagram of up to
        ``config.mtu``, which the peer accepts.

        Raises :class:`~hopline.transport.errors.ConfigError` outside
        ``config.min_send_mtu`` .. ``config.mtu``.
        """
        cfg = self.config
        if not cfg.smallest_send_mtu <= mtu <= cfg.mtu:
            raise ConfigError(f"send mtu {mtu} outside {cfg.smallest_send_mtu}..{cfg.mtu}")
        self._send_mtu = mtu
        self._sender.fragment_payload = fragment_payload(mtu)
        self._usender.fragment_payload = fragment_payload(mtu)

    # -- application calls -----------------------------------------------------

    def send(self, data: bytes, now: float, *, reliable: bool = True) -> None:
        """Queue a message on the reliable (default) or unreliable channel.

        Raises :class:`~hopline.transport.errors.MessageTooLarge`,
        :class:`~hopline.transport.errors.SendQueueFull` or
        :class:`~hopline.transport.errors.LinkClosedError`.
        """
        self._start(now)
        if self.closed:
            raise LinkClosedError(f"link closed ({self._close_reason})")
        data = bytes(data)
        if reliable:
            self._sender.enqueue(data)
        else:
            self._usender.enqueue(data)
        self._counters.messages_sent += 1

    def ping(self, now: float) -> None:
        """Send a PING with the next datagrams (an explicit RTT probe)."""
        self._start(now)
        if not self.closed:
            self._ping_wanted = True

    def close(self, now: float, code: int = 0) -> None:
        """Close the link; one CLOSE frame goes out with the next datagrams_to_send."""
        self._start(now)
        if not self.closed:
            self._close_reason = "local"
            self._close_frame = CloseFrame(code)

    def next_event(self) -> LinkEvent | None:
        """Pop the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    # -- datagrams in ----------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Process one datagram from the peer. Never raises: bad input is counted and dropped."""
        self._start(now)
        self._counters.datagrams_received += 1
        self._counters.bytes_received += len(data)
        try:
            frames = self._decode(data)
        except RemoteTransportError as err:
            self._dropped[err.reason] += 1
            return
        self._last_received = now
        if self._leads_keepalive is None:
            self._leads_keepalive = False  # the peer spoke first
        if len(frames) == 1 and isinstance(frames[0], AckFrame):
            self._counters.ack_only_received += 1  # a link sends at most one ACK per datagram
        carried_reliable = False
        for frame in frames:
            try:
                carried_reliable |= self._on_frame(frame, now)
            except RemoteTransportError as err:
                self._dropped[err.reason] += 1
            if self.closed:
                return
        if carried_reliable:
            self._receiver.end_of_datagram(now)

    def _decode(self, data: bytes) -> list[Frame]:
        if self.closed:
            raise ProtocolViolation("datagram after close", reason="closed")
        if len(data) > self.config.mtu:
            raise MalformedPacket(f"{len(data)}-byte datagram", reason="too_large")
        return decode_datagram(bytes(data))

    def _on_frame(self, frame: Frame, now: float) -> bool:
        if isinstance(frame, DataFrame):
            return self._on_data(frame, now)
        if isinstance(frame, AckFrame):
            self._sender.on_ack(frame, now)
        elif isinstance(frame, PingFrame):
            self._on_ping(frame)
        elif isinstance(frame, PongFrame):
            self._on_pong(frame, now)
        else:
            self._shutdown(PeerClosed(frame.code), "peer_closed")
        return False

    def _on_data(self, frame: DataFrame, now: float) -> bool:
        if frame.reliable:
            for message in self._receiver.on_data(frame, now):
                self._deliver(message, reliable=True)
            return True
        whole = self._ureceiver.on_data(frame, now)
        if whole is not None:
            self._deliver(whole, reliable=False)
        return False

    def _deliver(self, message: bytes, *, reliable: bool) -> None:
        self._counters.messages_received += 1
        self._events.append(MessageReceived(message, reliable))

    def _on_ping(self, frame: PingFrame) -> None:
        if len(self._pongs) >= self.config.max_outstanding_pings:
            raise ProtocolViolation("too many pings to answer", reason="ping_flood")
        self._counters.pings_received += 1
        self._unanswered_keepalives = 0  # the peer is alive, and our PONG will say we are
        self._pongs.append(frame.token)

    def _on_pong(self, frame: PongFrame, now: float) -> None:
        sent = self._pings.pop(frame.token, None)
        if sent is None:
            raise ProtocolViolation("pong for no outstanding ping", reason="unknown_pong")
        self._counters.pongs_received += 1
        self._unanswered_keepalives = 0
        self._rtt.on_sample(now - sent)

    # -- datagrams out ---------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Return every datagram that should be sent now (possibly none)."""
        self._start(now)
        if self._close_frame is not None:
            datagrams = [encode_datagram([self._close_frame])]
            self._close_frame = None
        elif self.closed:
            return []
        else:
            datagrams = []
            while (datagram := self._build_datagram(now)) is not None:
                datagrams.append(datagram)
        if datagrams:
            self._last_sent = now
            if self._leads_keepalive is None:
                self._leads_keepalive = True
            self._counters.datagrams_sent += len(datagrams)
            self._counters.bytes_sent += sum(map(len, datagrams))
        return datagrams

    def _build_datagram(self, now: float) -> bytes | None:
        datagram = self._build(now, self._send_mtu)
        if datagram is None and self._send_mtu < self.config.mtu and self._has_payload():
            # a fragment cut (or sent) before the send size was lowered: the peer
            # accepts up to config.mtu, so it goes out whole rather than never
            datagram = self._build(now, self.config.mtu)
        return datagram

    def _build(self, now: float, mtu: int) -> bytes | None:
        builder = DatagramBuilder(mtu)
        if self._receiver.ack_due or (self._receiver.ack_pending and self._has_payload()):
            ack = self._receiver.build_ack(now, builder.remaining)
            if ack is not None:
                builder.add(ack)
        acks = builder.frame_count
        self._add_control(builder, now)
        self._add_data(builder, now)
        if builder.frame_count == 0:
            return None
        if builder.frame_count == acks:
            self._counters.ack_only += 1
        self._datagram_number += 1
        return builder.finish()

    def _has_payload(self) -> bool:
        return bool(
            self._pongs or self._ping_wanted or self._usender.pending or self._sender.has_pending()
        )

    def _add_control(self, builder: DatagramBuilder, now: float) -> None:
        while self._pongs and builder.add(PongFrame(self._pongs[0])):
            self._pongs.popleft()
            self._counters.pongs_sent += 1
        if self._ping_wanted and builder.add(PingFrame(self._next_token)):
            self._ping_wanted = False
            self._pings[self._next_token] = now
            self._next_token = (self._next_token + 1) & SEQ_MASK
            self._counters.pings_sent += 1
            if len(self._pings) > self.config.max_outstanding_pings:
                del self._pings[next(iter(self._pings))]

    def _add_data(self, builder: DatagramBuilder, now: float) -> None:
        while (frame := self._usender.pop_frame(builder.remaining)) is not None:
            builder.add(frame)
        number = self._datagram_number
        while (segment := self._sender.pop_frame(builder.remaining, now, number)) is not None:
            builder.add(segment)

    # -- timers ----------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next time :meth:`handle_timer` must run, or None."""
        if self.closed or not self._started:
            return None
        deadlines = [
            self._sender.deadline,
            self._receiver.ack_deadline,
            self._ureceiver.reassembler.next_deadline(),
            self._last_received + self.config.idle_timeout,
            self._keepalive_deadline(),
        ]
        return min(t for t in deadlines if t is not None)

    def _keepalive_deadline(self) -> float | None:
        """When the next keep-alive PING is due (None while one is waiting to go out).

        Normally ``keepalive_interval`` after the link last sent or last
        received anything, whichever is older: silence in either direction
        needs a PING (our NAT binding, or proof that the peer is alive). One
        PING/PONG serves both ends, so only one should ping: the end that sent
        the link's first datagram leads, and the other waits two RTOs longer
        (its PING goes out only if neither the leader's PING nor its first
        repeat arrived). Without that, both timers expire within a one-way
        delay of each other and both ends ping. While a keep-alive PING is
        unanswered, the next follows after one RTO, doubling each time up to
        ``keepalive_interval``.
        """
        if self._ping_wanted:
            return None
        interval = self.config.keepalive_interval
        if self._unanswered_keepalives:
            backoff = self._rtt.rto * 2.0 ** min(self._unanswered_keepalives - 1, 32)
            return self._last_keepalive + min(backoff, interval)
        due = min(self._last_sent, self._last_received) + interval
        if self._leads_keepalive is False:
            due += min(2 * self._rtt.rto, (self.config.idle_timeout - interval) / 2)
        return due

    def handle_timer(self, now: float) -> None:
        """Run every timer that has expired at ``now``."""
        self._start(now)
        if self.closed:
            return
        self._receiver.on_timer(now)
        self._sender.on_timer(now)
        self._ureceiver.reassembler.expire(now)
        if self._sender.exhausted:
            self._shutdown(PeerUnreachable("retransmissions"), "retransmissions")
        elif now >= self._last_received + self.config.idle_timeout:
            self._shutdown(PeerUnreachable("idle_timeout"), "idle_timeout")
        else:
            self._maybe_keepalive(now)

    def _maybe_keepalive(self, now: float) -> None:
        deadline = self._keepalive_deadline()
        if deadline is None or now < deadline:
            return
        if self._unanswered_keepalives:
            self._counters.keepalive_probes += 1
        self._unanswered_keepalives += 1
        self._last_keepalive = now
        self._ping_wanted = True

    # -- internals -------------------------------------------------------------

    def _start(self, now: float) -> None:
        if not self._started:
            self._started = True
            self._last_sent = self._last_received = now

    def _shutdown(self, event: LinkEvent, reason: str) -> None:
        if self._close_reason is None:
            self._close_reason = reason
            self._events.append(event)
