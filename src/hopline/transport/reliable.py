"""The reliable, in-order channel: sequence numbers, SACK/NACK, RFC 6298 retransmission.

Sans-I/O: every method takes ``now`` (seconds, any monotonic origin) and
returns frames or messages; nothing here reads a clock, sleeps or draws
random numbers.

Sender (:class:`ReliableSender`)
    Messages wait in a send queue and are cut into fragments only when the
    window has room, so ``queue_depth`` is real backpressure. Each fragment
    is a *segment* with its own sequence number; at most ``window`` segments
    (counted from the oldest unacknowledged one) are in flight, which also
    bounds the receiver's out-of-order buffer. A segment is declared lost,
    and retransmitted ahead of new data, when the peer acknowledges a segment
    sent ``packet_threshold`` datagrams later or more than 9/8 of an RTT after
    it (RFC 9002's thresholds; the gaps between SACK ranges are exactly the
    NACKs that trigger this fast retransmit). Only segments the latest ACK
    describes -- below the end of its last SACK range -- can be declared lost
    this way: an ACK truncated to ``max_ack_ranges`` says nothing about the
    segments above its last range, which have usually arrived, and an
    acknowledged retransmission (a recent datagram number) must not condemn
    them. Datagram numbers are local
    (not on the wire), so an ACK of a retransmitted segment is trusted only
    if it came back at least ``min_rtt`` after the retransmission; one that
    came sooner acknowledged the original, i.e. the retransmission was
    spurious, and the reordering tolerance widens (up to 64 datagrams and 2
    RTT, as RACK's adaptive window does, RFC 8985 6.2), decaying back after
    16 RTTs without another. A tail loss probe (RFC 8985 7) resends the last
    segment once after about 2 SRTT without an ACK (plus twice
    ``max_ack_delay`` while the peer may be holding its ACK). Otherwise the RFC 6298
    retransmission timer fires: the earliest unacknowledged segment is
    resent and the RTO doubles (exponential backoff) until an RTT sample from
    a segment that was never retransmitted resets it (Karn's rule). Both
    timers allow for the peer holding its ACK up to ``max_ack_delay``, so a
    delayed ACK is never mistaken for loss.
    ``max_retransmissions`` consecutive expirations without progress make the
    peer unreachable.

Receiver (:class:`ReliableReceiver`)
    Buffers out-of-order segments within the window, delivers each message
    exactly once and in order through an
    :class:`~hopline.transport.fragment.InOrderAssembler`, and builds ACK
    frames (cumulative + up to ``max_ack_ranges`` NACK/SACK pairs). ACKs are
    delayed: sent at once after ``ack_every`` datagrams with reliable data,
    after anything out of order or duplicated (the peer is recovering from
    loss, or our ACK was lost), or ``max_ack_delay`` after the first
    unacknowledged arrival; until then any datagram the link sends carries
    the ACK, so a reply within the delay costs no ACK of its own. Only
    reliable data is ever acknowledged: a datagram holding nothing but ACKs,
    PINGs, PONGs or unreliable data elicits no ACK, so ACKs never bounce.
    The ACK reports how long it was held so the sender can subtract it from
    its RTT sample (as QUIC does); that keeps RTT estimates honest while a
    bulk transfer sends far fewer ACKs than data datagrams.

:class:`RttEstimator` is RFC 6298 section 2 and 5 verbatim (SRTT, RTTVAR,
K = 4, alpha = 1/8, beta = 1/4, clock granularity, min/max clamp, doubling
on expiry), plus the peer's ``max_ack_delay`` in the RTO as in RFC 9002's
PTO (the link passes it; the estimator's own default of 0 is the RFC as is).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass

from hopline.transport.config import LinkConfig
from hopline.transport.errors import (
    MessageTooLarge,
    ProtocolViolation,
    ReassemblyError,
    SendQueueFull,
)
from hopline.transport.fragment import InOrderAssembler, split_message
from hopline.transport.packet import (
    ACK_DELAY_UNIT,
    ACK_FRAME_BASE,
    ACK_RANGE_SIZE,
    DATA_FRAME_OVERHEAD,
    AckFrame,
    AckRange,
    DataFrame,
    expand_seq,
)

__all__ = ["ReliableReceiver", "ReliableSender", "RttEstimator", "SenderStats"]

_REORDER_STEP = 1 / 8  # RFC 9002's time threshold is 1 + 1/8 RTT
_MAX_REORDER_FRACTION = 1.0
_MAX_REORDER_THRESHOLD = 64
_REORDER_MEMORY_RTTS = 16
_MAX_DELAY_FIELD = 0xFFFF
_HELD_ACK_ALLOWANCE = 2  # max_ack_delays a tail loss probe waits for an ACK the peer holds


class RttEstimator:
    """Round-trip time estimation and retransmission timeout per RFC 6298."""

    ALPHA = 1 / 8
    BETA = 1 / 4
    K = 4

    def __init__(
        self,
        *,
        initial_rto: float = 1.0,
        min_rto: float = 1.0,
        max_rto: float = 60.0,
        granularity: float = 0.001,
        max_ack_delay: float = 0.0,
    ) -> None:
        """Start with no sample: RTO is ``initial_rto`` (RFC 6298 2.1).

        ``max_ack_delay`` is how long the peer may hold an ACK. Samples have
        the reported hold time subtracted, so it is added back to the RTO
        (as RFC 9002 6.2.1 does for its PTO); 0 gives RFC 6298 verbatim.
        """
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.max_ack_delay = max_ack_delay
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.latest: float | None = None
        self.min_rtt: float | None = None
        self.samples = 0
        self.backoff = 0
        self._base_rto = self._clamp(initial_rto)

    @property
    def rto(self) -> float:
        """The current retransmission timeout, backoff included."""
        return min(self.max_rto, self._base_rto * (1 << self.backoff))

    def on_sample(self, rtt: float, ack_delay: float = 0.0) -> None:
        """Feed one RTT measurement (RFC 6298 2.2/2.3).

        ``ack_delay`` -- how long the peer held its ACK -- is subtracted when
        that leaves a positive sample. Unlike RFC 9002 5.3 it is subtracted
        even below ``min_rtt``: with delayed ACKs on every message of an
        interactive flow ``min_rtt`` itself includes the delay. Callers cap
        ``ack_delay`` at ``max_ack_delay``, which bounds what a lying peer can
        shave off. ``latest`` and ``min_rtt`` keep the raw measurement.
        """
        rtt = max(rtt, 0.0)
        self.latest = rtt
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        if 0.0 < ack_delay < rtt:
            rtt -= ack_delay
        if self.srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt
        self.samples += 1
        self.backoff = 0
        variance = max(self.granularity, self.K * self.rttvar)
        self._base_rto = self._clamp(self.srtt + variance + self.max_ack_delay)

    def on_timeout(self) -> None:
        """The retransmission timer expired: double the RTO (RFC 6298 5.5), up to the max."""
        if self.rto < self.max_rto:
            self.backoff += 1

    def _clamp(self, rto: float) -> float:
        return min(self.max_rto, max(self.min_rto, rto))


@dataclass(slots=True)
class SenderStats:
    """Counters of a :class:`ReliableSender`."""

    messages_queued: int = 0
    segments_sent: int = 0
    """First transmissions."""
    segments_retransmitted: int = 0
    segments_lost: int = 0
    """Segments declared lost (fast retransmit or RTO)."""
    segments_acked: int = 0
    spurious_retransmissions: int = 0
    """Retransmissions whose original turned out to have arrived (reordering)."""
    tail_loss_probes: int = 0
    rto_expirations: int = 0


@dataclass(slots=True)
class _Segment:
    seq: int
    index: int
    count: int
    payload: bytes
    sent_time: float = 0.0
    datagram: int = -1
    previous_datagram: int = -1
    transmissions: int = 0
    lost: bool = False
    probe: bool = False


class ReliableSender:
    """Sending half of the reliable channel (see the module docstring)."""

    def __init__(self, config: LinkConfig, rtt: RttEstimator) -> None:
        """Create an idle sender sharing ``rtt`` with the rest of the link."""
        self._config = config
        self._rtt = rtt
        self.fragment_payload = config.max_fragment_payload  # lowered by Link.set_send_mtu
        self.stats = SenderStats()
        self.consecutive_timeouts = 0
        self.reorder_threshold = config.packet_threshold
        self.reorder_fraction = _REORDER_STEP
        self._last_spurious: float | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._fragments: deque[bytes] = deque()
        self._frag_index = 0
        self._frag_count = 0
        self._inflight: dict[int, _Segment] = {}
        self._flight_datagrams: dict[int, int] = {}  # datagram number -> segments in flight
        self._retransmit: list[int] = []
        self._snd_nxt = 0
        self._largest_acked_datagram = -1
        self._ack_horizon = 0
        self._rto_deadline: float | None = None
        self._pto_deadline: float | None = None
        self._loss_deadline: float | None = None
        self._probe_outstanding = False

    # -- queue ---------------------------------------------------------------

    def enqueue(self, data: bytes) -> None:
        """Queue one message; raise MessageTooLarge or SendQueueFull (nothing queued then)."""
        if len(data) > self._config.max_message_size:
            raise MessageTooLarge(f"{len(data)} > {self._config.max_message_size} bytes")
        if self._queued_bytes + len(data) > self._config.max_send_queue_bytes:
            raise SendQueueFull(f"{self._queued_bytes} bytes already queued")
        self._queue.append(data)
        self._queued_bytes += len(data)
        self.stats.messages_queued += 1

    @property
    def queue_depth(self) -> int:
        """Messages not yet fully handed to the window (waiting for room)."""
        return len(self._queue) + (1 if self._fragments else 0)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in the send queue."""
        return self._queued_bytes

    @property
    def in_flight(self) -> int:
        """Segments sent and not yet acknowledged."""
        return len(self._inflight)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing unacknowledged."""
        return not self._inflight and not self._queue and not self._fragments

    @property
    def rto_deadline(self) -> float | None:
        """When the RFC 6298 retransmission timer expires, or None when it is off."""
        return self._rto_deadline

    @property
    def deadline(self) -> float | None:
        """The earliest of the retransmission, probe and loss-detection timers."""
        times = [
            t
            for t in (self._rto_deadline, self._pto_deadline, self._loss_deadline)
            if t is not None
        ]
        return min(times) if times else None

    @property
    def _snd_una(self) -> int:
        for seq in self._inflight:
            return seq
        return self._snd_nxt

    def has_pending(self) -> bool:
        """Whether :meth:`pop_frame` would return something given enough space."""
        if self._next_retransmission() is not None:
            return True
        window_open = self._snd_nxt - self._snd_una < self._config.window
        return window_open and bool(self._fragments or self._queue)

    # -- sending -------------------------------------------------------------

    def pop_frame(self, space: int, now: float, datagram: int) -> DataFrame | None:
        """Return the next DATA frame fitting in ``space`` bytes (retransmissions first)."""
        seg = self._next_retransmission()
        if seg is not None:
            if DATA_FRAME_OVERHEAD + len(seg.payload) > space:
                return None
            heapq.heappop(self._retransmit)
            seg.lost = False
            self.stats.segments_retransmitted += 1
            return self._transmit(seg, now, datagram)
        return self._pop_new(space, now, datagram)

    def _next_retransmission(self) -> _Segment | None:
        while self._retransmit:
            seg = self._inflight.get(self._retransmit[0])
            if seg is not None and seg.lost:
                return seg
            heapq.heappop(self._retransmit)
        return None

    def _pop_new(self, space: int, now: float, datagram: int) -> DataFrame | None:
        if self._snd_nxt - self._snd_una >= self._config.window:
            return None
        if not self._fragments and self._queue:
            message = self._queue.popleft()
            self._fragments.extend(split_message(message, self.fragment_payload))
            self._frag_index, self._frag_count = 0, len(self._fragments)
        if not self._fragments or DATA_FRAME_OVERHEAD + len(self._fragments[0]) > space:
            return None
        payload = self._fragments.popleft()
        self._queued_bytes -= len(payload)
        seg = _Segment(self._snd_nxt, self._frag_index, self._frag_count, payload)
        self._frag_index += 1
        self._snd_nxt += 1
        self._inflight[seg.seq] = seg
        self.stats.segments_sent += 1
        return self._transmit(seg, now, datagram)

    def _transmit(self, seg: _Segment, now: float, datagram: int) -> DataFrame:
        seg.sent_time = now
        if seg.datagram >= 0:
            self._leave_flight(seg)
        seg.previous_datagram = seg.datagram
        seg.datagram = datagram
        flight = self._flight_datagrams
        flight[datagram] = flight.get(datagram, 0) + 1
        seg.transmissions += 1
        if self._rto_deadline is None:
            self._rto_deadline = now + self._rtt.rto  # RFC 6298 5.1
        if self._config.tail_loss_probe and not self._probe_outstanding:
            self._pto_deadline = now + self._probe_timeout()
        return DataFrame(True, seg.seq, seg.index, seg.count, seg.payload)

    def _probe_timeout(self) -> float:
        """RFC 8985 7.2: 2 SRTT (+ an allowance if the peer may hold its ACK), at most RTO.

        RFC 8985 adds the worst-case delayed-ACK time for a lone segment,
        because TCP acks every second segment. This receiver acks at once only
        after ``ack_every`` *datagrams*, and several segments often share one
        datagram, so the allowance is added while the segments in flight were
        sent in fewer datagrams than that (counting segments made a short path
        probe every datagram that carried two messages). The allowance is two
        ``max_ack_delay``: the peer's ACK timer runs in an event loop that may
        read the datagram and fire the timer late, and on a short path 2 SRTT
        leaves no room for that, so one ``max_ack_delay`` made an idle
        request/reply probe now and then on a loaded machine. Linux allows its
        full worst-case delayed ACK (200 ms) for the same reason. A lost lone
        datagram is still repaired long before the minimum RTO.
        """
        if self._rtt.srtt is None:
            return self._rtt.rto
        pto = 2 * self._rtt.srtt + self._rtt.granularity
        if len(self._flight_datagrams) < self._config.ack_every:
            pto += _HELD_ACK_ALLOWANCE * self._config.max_ack_delay
        return min(pto, self._rtt.rto)

    def _leave_flight(self, seg: _Segment) -> None:
        """``seg`` no longer counts towards the datagram it was last sent in."""
        flight = self._flight_datagrams
        left = flight[seg.datagram] - 1
        if left:
            flight[seg.datagram] = left
        else:
            del flight[seg.datagram]

    # -- acknowledgements ----------------------------------------------------

    def on_ack(self, frame: AckFrame, now: float) -> int:
        """Process an ACK; return how many segments it newly acknowledged.

        Raises :class:`ProtocolViolation` (before changing any state) if it
        acknowledges a sequence number that was never sent.
        """
        intervals, horizon = self._ack_intervals(frame)
        self._ack_horizon = horizon
        largest_before = self._largest_acked_datagram
        latest: _Segment | None = None  # the newly acked segment sent most recently
        newly = 0
        for low, high in intervals:
            for seq in range(max(low, self._snd_una), min(high, self._snd_nxt)):
                seg = self._inflight.pop(seq, None)
                if seg is not None:
                    self._leave_flight(seg)
                    newly += 1
                    if latest is None or seg.datagram > latest.datagram:
                        latest = seg
                    self._note_delivery(seg, now, largest_before)
        if latest is not None:
            self.stats.segments_acked += newly
            if latest.transmissions == 1 and latest.datagram > largest_before:
                # Karn's rule: only a never-retransmitted segment gives an RTT sample
                ack_delay = min(frame.delay * ACK_DELAY_UNIT, self._config.max_ack_delay)
                self._rtt.on_sample(now - latest.sent_time, ack_delay)
            self._on_progress(now)
        self._detect_losses(now)
        return newly

    def _ack_intervals(self, frame: AckFrame) -> tuple[list[tuple[int, int]], int]:
        """The acknowledged [low, high) seq intervals and the end of what the ACK describes."""
        cumulative = expand_seq(frame.cumulative, self._snd_una)
        intervals = [(self._snd_una, cumulative)]
        pos = cumulative
        for rng in frame.ranges:
            pos += rng.missing
            intervals.append((pos, pos + rng.received))
            pos += rng.received
        if max(cumulative, pos) > self._snd_nxt:
            raise ProtocolViolation("ack of a sequence number never sent", reason="ack_beyond_sent")
        return intervals, pos

    def _note_delivery(self, seg: _Segment, now: float, largest_before: int) -> None:
        if seg.transmissions > 1:
            min_rtt = self._rtt.min_rtt
            if min_rtt is None:
                return  # cannot tell which transmission arrived
            if now - seg.sent_time < min_rtt:  # RFC 8985 6.2: acks an earlier transmission
                if not seg.probe:
                    self._on_spurious(largest_before - seg.previous_datagram, now)
                return
        self._largest_acked_datagram = max(self._largest_acked_datagram, seg.datagram)

    def _on_spurious(self, distance: int, now: float) -> None:
        """A retransmission was unnecessary: tolerate more reordering (like RACK's reo_wnd)."""
        self.stats.spurious_retransmissions += 1
        self.reorder_threshold = min(
            _MAX_REORDER_THRESHOLD, max(self.reorder_threshold, distance + 1)
        )
        self.reorder_fraction = min(_MAX_REORDER_FRACTION, self.reorder_fraction + _REORDER_STEP)
        self._last_spurious = now

    def _decay_reordering(self, now: float) -> None:
        """Back to RFC 9002's thresholds after a long stretch without spurious retransmission."""
        srtt = self._rtt.srtt
        if self._last_spurious is None or srtt is None:
            return
        if now - self._last_spurious >= _REORDER_MEMORY_RTTS * max(srtt, self._rtt.granularity):
            self.reorder_threshold = self._config.packet_threshold
            self.reorder_fraction = _REORDER_STEP
            self._last_spurious = None

    def _on_progress(self, now: float) -> None:
        self.consecutive_timeouts = 0
        self._decay_reordering(now)
        self._probe_outstanding = False
        if not self._inflight:  # RFC 6298 5.2
            self._rto_deadline = self._pto_deadline = None
            return
        self._rto_deadline = now + self._rtt.rto  # RFC 6298 5.3
        if self._config.tail_loss_probe:
            self._pto_deadline = now + self._probe_timeout()

    def _detect_losses(self, now: float) -> None:
        """Packet- and time-threshold loss detection (RFC 9002 6.1) over segments.

        Only segments below the latest ACK's horizon (the end of its last
        range) are candidates: those it reports missing. It cannot report
        more than ``max_ack_ranges`` gaps, so segments above the horizon may
        well have arrived; they wait for an ACK that covers them (or for the
        probe and retransmission timers).
        """
        self._loss_deadline = None
        largest = self._largest_acked_datagram
        if largest < 0:
            return
        srtt = self._rtt.rto if self._rtt.srtt is None else self._rtt.srtt
        rtt = max(srtt, self._rtt.latest or 0.0)
        delay = max((1 + self.reorder_fraction) * rtt, self._rtt.granularity)
        for seg in self._inflight.values():
            if seg.seq >= self._ack_horizon:
                break  # in seq order: nothing the latest ACK reported missing is left
            if seg.lost or seg.datagram >= largest:
                continue
            if largest - seg.datagram >= self.reorder_threshold or seg.sent_time + delay <= now:
                self._mark_lost(seg)
            elif self._loss_deadline is None or seg.sent_time + delay < self._loss_deadline:
                self._loss_deadline = seg.sent_time + delay

    def _mark_lost(self, seg: _Segment, *, probe: bool = False) -> None:
        seg.lost = True
        seg.probe = probe
        heapq.heappush(self._retransmit, seg.seq)
        if not probe:
            self.stats.segments_lost += 1

    # -- timers --------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Run expired loss-detection, probe and retransmission timers."""
        if self._loss_deadline is not None and now >= self._loss_deadline:
            self._detect_losses(now)
        if self._rto_deadline is not None and now >= self._rto_deadline:
            self._on_rto(now)
        elif self._pto_deadline is not None and now >= self._pto_deadline:
            self._on_probe_timeout(now)

    def _on_probe_timeout(self, now: float) -> None:
        """Tail loss probe (RFC 8985 7): resend the last segment to provoke an ACK.

        When the last segment lies above the latest ACK's horizon, the first
        unacknowledged one is probed too: an ACK truncated to
        ``max_ack_ranges`` might not be able to report the last segment, but
        it always reports whether the first one arrived.
        """
        self._pto_deadline = None
        if not self._inflight:
            return
        self._probe_outstanding = True
        self.stats.tail_loss_probes += 1
        last = self._inflight[next(reversed(self._inflight))]
        first = self._inflight[next(iter(self._inflight))]
        probes = (first, last) if last.seq >= self._ack_horizon else (last,)
        for seg in probes:
            if not seg.lost:
                self._mark_lost(seg, probe=True)
        self._rto_deadline = now + self._rtt.rto  # RFC 8985 7.3

    def _on_rto(self, now: float) -> None:
        earliest = next(iter(self._inflight.values()), None)
        if earliest is None:
            self._rto_deadline = None
            return
        self.stats.rto_expirations += 1
        self.consecutive_timeouts += 1
        if not earliest.lost:
            self._mark_lost(earliest)  # RFC 6298 5.4
        self._rtt.on_timeout()  # 5.5
        self._rto_deadline = now + self._rtt.rto  # 5.6
        self._pto_deadline = None
        self._probe_outstanding = True  # no probe until the next ACK makes progress

    @property
    def exhausted(self) -> bool:
        """Too many consecutive RTO expirations: the peer is unreachable."""
        return self.consecutive_timeouts > self._config.max_retransmissions


class ReliableReceiver:
    """Receiving half of the reliable channel (see the module docstring)."""

    def __init__(self, config: LinkConfig) -> None:
        """Create a receiver expecting sequence number 0."""
        self._config = config
        self._assembler = InOrderAssembler(config.max_message_size)
        self._next = 0
        self._buffer: dict[int, DataFrame] = {}
        self._buffered_bytes = 0
        self._highest = -1
        self._highest_time = 0.0
        self._ack_pending = False
        self._ack_now = False
        self._ack_deadline: float | None = None
        self._unacked_datagrams = 0
        self.duplicates = 0
        self.drops: Counter[str] = Counter()

    @property
    def buffered_bytes(self) -> int:
        """Payload bytes held out of order plus the message being assembled."""
        return self._buffered_bytes + self._assembler.buffered_bytes

    @property
    def abandoned_messages(self) -> int:
        """Messages the peer started and never finished (a protocol violation)."""
        return self._assembler.abandoned

    def on_data(self, frame: DataFrame, now: float) -> list[bytes]:
        """Accept one reliable DATA frame; return the messages it completes, in order."""
        seq = expand_seq(frame.seq, self._next)
        if seq < self._next or seq in self._buffer:
            self.duplicates += 1
            self._ack_pending = self._ack_now = True  # our ACK may have been lost
            return []
        if seq >= self._next + self._config.window:
            raise ProtocolViolation(f"seq {seq} beyond window", reason="beyond_window")
        if seq != self._highest + 1:
            self._ack_now = True  # a new gap, or a gap being filled
        if seq > self._highest:
            self._highest, self._highest_time = seq, now
        self._ack_pending = True
        if seq != self._next:
            self._buffer[seq] = frame
            self._buffered_bytes += len(frame.payload)
            return []
        return self._deliver(frame)

    def _deliver(self, frame: DataFrame | None) -> list[bytes]:
        messages: list[bytes] = []
        while frame is not None:
            self._next += 1
            try:
                message = self._assembler.push(frame.index, frame.count, frame.payload)
            except ReassemblyError as err:
                self.drops[err.reason] += 1
                message = None
            if message is not None:
                messages.append(message)
            frame = self._buffer.pop(self._next, None)
            if frame is not None:
                self._buffered_bytes -= len(frame.payload)
        return messages

    # -- acknowledgements ----------------------------------------------------

    def end_of_datagram(self, now: float) -> None:
        """Called once per received datagram that carried reliable data."""
        self._unacked_datagrams += 1
        if self._unacked_datagrams >= self._config.ack_every:
            self._ack_now = True
        elif self._ack_deadline is None:
            self._ack_deadline = now + self._config.max_ack_delay

    @property
    def ack_due(self) -> bool:
        """An ACK should go out with the next datagram, even an ACK-only one."""
        return self._ack_pending and self._ack_now

    @property
    def ack_pending(self) -> bool:
        """Something is unacknowledged (an ACK may ride along with data)."""
        return self._ack_pending

    @property
    def ack_deadline(self) -> float | None:
        """When a delayed ACK must be sent at the latest."""
        return self._ack_deadline if self._ack_pending and not self._ack_now else None

    def on_timer(self, now: float) -> None:
        """Make a delayed ACK due once its deadline has passed."""
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_now = True

    def build_ack(self, now: float, space: int) -> AckFrame | None:
        """Build an ACK fitting in ``space`` bytes and reset the ACK state; None if no room."""
        if space < ACK_FRAME_BASE:
            return None
        max_ranges = min(self._config.max_ack_ranges, (space - ACK_FRAME_BASE) // ACK_RANGE_SIZE)
        delay = round((now - self._highest_time) / ACK_DELAY_UNIT)
        frame = AckFrame(
            cumulative=self._next,
            delay=min(_MAX_DELAY_FIELD, max(0, delay)),
            ranges=self._ranges(max_ranges),
        )
        self._ack_pending = self._ack_now = False
        self._ack_deadline = None
        self._unacked_datagrams = 0
        return frame

    def _ranges(self, limit: int) -> tuple[AckRange, ...]:
        runs: list[list[int]] = []
        for seq in sorted(self._buffer):
            if runs and runs[-1][1] == seq:
                runs[-1][1] = seq + 1
            elif len(runs) == limit:
                break
            else:
                runs.append([seq, seq + 1])
        ranges = []
        cursor = self._next
        for start, end in runs:
            ranges.append(AckRange(start - cursor, end - start))
            cursor = end
        return tuple(ranges)
