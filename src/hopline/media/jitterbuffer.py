"""Adaptive jitter buffer: turns irregular frame arrivals into one decision per 20 ms slot.

A pure component, separate from the codec (the shape of aiortc's
``jitterbuffer.py``): :meth:`JitterBuffer.put` takes a frame and its
arrival time, :meth:`JitterBuffer.get` is called once per playout slot
with the current time and says what the decoder should do for that slot:

* :class:`Frame` — decode this frame;
* :class:`Recover` — the frame is missing but the next one is here:
  decode the next one's in-band FEC;
* :class:`Conceal` — nothing usable: run packet-loss concealment. A
  conceal with ``stretch=True`` consumes no sequence number: the buffer
  is waiting for that frame and lengthens playout by one slot.

No sockets, no clock of its own: all times are passed in (seconds).

Delay estimate. Every new frame gives a *transit* ``arrival - ts/rate``
(the sender-to-receiver offset plus the network delay). Over a sliding
window (2 s) the buffer keeps the transits; the delay variation of a frame
is its transit minus the window's minimum, and the raw target is the
95th percentile of that variation, or twice the RFC 3550 smoothed
interarrival jitter if larger, plus one frame for slot quantisation,
clamped to ``[min_delay_ms, max_delay_ms]``. The target follows a rise at
once and falls by at most ``decay_ms_per_s`` (40 ms per second), so a
spike raises it immediately and a calm network brings it back in a
bounded time (the window length plus the decay). A frame that arrives
after its slot (and at most ``capacity`` frames behind) raises the target
at once to cover that frame's delay, even before the percentile moves.
Redundant copies, duplicates and frames outside the window do not feed
the estimate, so a flood of garbage numbers cannot inflate it.

Playout delay. The *current delay* is how long after its earliest
possible arrival (the window's minimum transit) the next slot's frame is
being played. Playout follows the target by time-scaling:

* grow — when the next frame is missing and either nothing later is
  buffered or the current delay is below the target, the slot is
  concealed with ``stretch=True`` (the sequence number waits), which
  adds one frame of delay;
* shrink — when the current delay is more than one frame above the
  target, one frame is skipped, at most once every ``skip_interval``
  slots (25 slots: 40 ms of delay per second), so shrinking is gradual.

Memory is bounded: only sequence numbers in ``[next, next + capacity)``
are stored; anything else is dropped and counted in :attr:`dropped`.
After ``capacity`` consecutive frames too far ahead the buffer resyncs to
the new numbering (a sender that restarted), and after a stall longer
than ``max_delay_ms`` it re-buffers from scratch.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass

from hopline.media.packet import MediaFrame

__all__ = ["Conceal", "Frame", "JitterBuffer", "JitterStats", "PlayoutItem", "Recover"]

_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15
_TS_MOD = 1 << 32
_TS_HALF = 1 << 31
_RFC3550_GAIN = 1 / 16
_JITTER_FACTOR = 2.0
_PERCENTILE = 0.95
_MAX_SAMPLES = 1024  # transits kept at most, whatever the window (bounded memory)


@dataclass(frozen=True, slots=True)
class Frame:
    """Decode ``frame`` for this slot."""

    frame: MediaFrame


@dataclass(frozen=True, slots=True)
class Recover:
    """Frame ``seq`` is lost but ``via_next`` is here: decode its in-band FEC."""

    seq: int
    via_next: MediaFrame


@dataclass(frozen=True, slots=True)
class Conceal:
    """Nothing to decode for ``seq``: conceal; ``stretch`` means ``seq`` is still awaited."""

    seq: int
    stretch: bool = False


PlayoutItem = Frame | Recover | Conceal


@dataclass(frozen=True, slots=True)
class JitterStats:
    """A snapshot of the buffer's numbers, for live call statistics."""

    target_delay_ms: float
    current_delay_ms: float
    jitter_ms: float
    late: int
    lost: int
    concealed: int
    recovered: int
    skipped: int
    buffered: int


def _unwrap(value: int, reference: int, modulus: int, half: int) -> int:
    """The integer congruent to ``value`` (mod ``modulus``) nearest ``reference``."""
    delta = (value - reference) % modulus
    if delta >= half:
        delta -= modulus
    return reference + delta


class _DelayEstimator:
    """Interarrival jitter (RFC 3550) and a windowed percentile of delay variation.

    The transits of the window are also kept sorted (inserted and removed by
    bisection as samples come and go), so the minimum and the percentile are
    read, not recomputed: the buffer asks for them several times per packet
    and per slot.
    """

    def __init__(self, clock_rate: int, window_s: float) -> None:
        self._rate = clock_rate
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []  # the transits of _samples, ascending
        self._last: tuple[float, int] | None = None
        self.jitter_s = 0.0

    def add(self, arrival: float, ext_ts: int) -> None:
        transit = arrival - ext_ts / self._rate
        if self._last is not None:
            last_arrival, last_ts = self._last
            d = (arrival - last_arrival) - (ext_ts - last_ts) / self._rate
            self.jitter_s += (abs(d) - self.jitter_s) * _RFC3550_GAIN
        self._last = (arrival, ext_ts)
        self._samples.append((arrival, transit))
        bisect.insort(self._sorted, transit)
        while self._samples and (
            self._samples[0][0] < arrival - self.window_s or len(self._samples) > _MAX_SAMPLES
        ):
            _, old = self._samples.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def _summarise(self) -> tuple[float, float] | None:
        """Minimum transit and the variation percentile of the window."""
        transits = self._sorted
        if not transits:
            return None
        index = min(len(transits) - 1, int(_PERCENTILE * len(transits)))
        return transits[0], transits[index] - transits[0]

    def min_transit(self) -> float | None:
        summary = self._summarise()
        return None if summary is None else summary[0]

    def variation_s(self) -> float:
        """The high percentile of transit above the window's minimum."""
        summary = self._summarise()
        return 0.0 if summary is None else summary[1]


class JitterBuffer:
    """Reorders frames and decides, slot by slot, what to play (see the module docs)."""

    def __init__(
        self,
        clock_rate: int = 48000,
        frame_samples: int = 960,
        min_delay_ms: float = 20,
        max_delay_ms: float = 400,
        capacity: int = 64,
        *,
        window_s: float = 2.0,
        decay_ms_per_s: float = 40.0,
        skip_interval: int = 25,
    ) -> None:
        """A buffer for ``frame_samples``-sample frames at ``clock_rate`` Hz."""
        self._rate = clock_rate
        self._frame_samples = frame_samples
        self._frame_ms = 1000 * frame_samples / clock_rate
        self._min_ms = min_delay_ms
        self._max_ms = max_delay_ms
        self._capacity = capacity
        self._decay = decay_ms_per_s
        self._skip_interval = skip_interval
        self._estimator = _DelayEstimator(clock_rate, window_s)
        self._frames: dict[int, MediaFrame] = {}
        self._next: int | None = None  # extended seq of the next slot to play
        self._floor: int | None = None  # while not playing: seqs below were consumed
        self._ref: tuple[int, int] | None = None  # newest accepted (ext seq, ext ts)
        self._playing = False
        self._buffering_since = 0.0
        self._target_ms = min_delay_ms
        self._target_at: float | None = None
        self._far_run = 0
        self._since_skip = 0
        self._current_ms = 0.0
        self.dropped: Counter[str] = Counter()
        self.lost = 0
        self.concealed = 0
        self.recovered = 0
        self.skipped = 0

    # statistics ---------------------------------------------------------

    @property
    def min_delay_ms(self) -> float:
        """The lowest playout delay the buffer aims for."""
        return self._min_ms

    def set_min_delay(self, ms: float) -> None:
        """Change the lowest target delay (e.g. to wait for repeated copies of lost frames).

        A higher floor takes effect at the next slot; playout then grows
        towards it at the next missing frame, as for any target rise.
        """
        if not 0 < ms <= self._max_ms:
            raise ValueError(f"min delay {ms} ms outside (0, {self._max_ms}]")
        self._min_ms = ms

    @property
    def target_delay_ms(self) -> float:
        """The playout delay the buffer aims for."""
        return self._target_ms

    @property
    def current_delay_ms(self) -> float:
        """Playout delay at the last slot, above the earliest possible arrival."""
        return self._current_ms

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 smoothed interarrival jitter."""
        return 1000 * self._estimator.jitter_s

    @property
    def late(self) -> int:
        """Frames that arrived after their slot had been played or given up."""
        return self.dropped["late"]

    def stats(self) -> JitterStats:
        """All statistics at once."""
        return JitterStats(
            target_delay_ms=self.target_delay_ms,
            current_delay_ms=self.current_delay_ms,
            jitter_ms=self.jitter_ms,
            late=self.late,
            lost=self.lost,
            concealed=self.concealed,
            recovered=self.recovered,
            skipped=self.skipped,
            buffered=len(self._frames),
        )

    def __len__(self) -> int:
        """Frames held right now (never more than ``capacity``)."""
        return len(self._frames)

    # input ---------------------------------------------------------------

    def put(self, frame: MediaFrame, arrival: float, *, redundant: bool = False) -> None:
        """Store ``frame`` that arrived at ``arrival`` s; ``redundant`` for repeated copies.

        Redundant copies fill holes but do not feed the delay estimate (they
        arrive late by design).
        """
        ext_seq, ext_ts = self._extend(frame)
        reason = self._reject_reason(ext_seq, redundant)
        recent_late = reason == "late" and self._recent(ext_seq)
        if not redundant and (reason is None or recent_late):
            self._estimator.add(arrival, ext_ts)
            self._update_target(arrival)
        if recent_late:
            self._raise_for_late(arrival, ext_ts)
        if reason == "too-far":
            self._far_run += 1
            if self._far_run < self._capacity:
                self.dropped[reason] += 1
                return
            self.dropped["resync"] += 1
            self._reset(ext_seq)
        elif reason is not None:
            self.dropped[reason] += 1
            return
        self._far_run = 0
        self._accept(frame, ext_seq, ext_ts, arrival)

    def _extend(self, frame: MediaFrame) -> tuple[int, int]:
        if self._ref is None:
            return frame.seq % _SEQ_MOD, frame.timestamp % _TS_MOD
        ref_seq, ref_ts = self._ref
        return (
            _unwrap(frame.seq, ref_seq, _SEQ_MOD, _SEQ_HALF),
            _unwrap(frame.timestamp, ref_ts, _TS_MOD, _TS_HALF),
        )

    def _reject_reason(self, ext_seq: int, redundant: bool) -> str | None:
        if self._next is None:
            return None
        if ext_seq in self._frames:
            return "duplicate"
        floor = self._next if self._playing else self._floor
        if floor is not None and ext_seq < floor:
            return "redundant-stale" if redundant else "late"
        if ext_seq - self._next >= self._capacity:
            return "too-far"
        if self._frames and self._newest() - ext_seq >= self._capacity:
            return "too-old"  # before playout: would not fit beside the newest
        return None

    def _recent(self, ext_seq: int) -> bool:
        """Whether a late ``ext_seq`` is recent enough to say something about delay."""
        return self._next is not None and self._next - ext_seq <= self._capacity

    def _newest(self) -> int:
        return max(self._frames)

    def _accept(self, frame: MediaFrame, ext_seq: int, ext_ts: int, arrival: float) -> None:
        if self._next is None or (not self._playing and not self._frames):
            self._next = ext_seq
            self._buffering_since = arrival
        elif not self._playing and ext_seq < self._next:
            self._next = ext_seq
        self._frames[ext_seq] = frame
        if self._ref is None or ext_seq > self._ref[0]:
            self._ref = (ext_seq, ext_ts)

    def _reset(self, ext_seq: int) -> None:
        self._frames.clear()
        self._next = ext_seq
        self._floor = None
        self._playing = False
        self._far_run = 0
        self._estimator = _DelayEstimator(self._rate, self._estimator.window_s)
        self._target_ms = self._min_ms

    def _raise_for_late(self, arrival: float, ext_ts: int) -> None:
        """A frame missed its slot: the target covers its delay at once."""
        min_transit = self._estimator.min_transit()
        if min_transit is None:
            return
        variation_ms = 1000 * (arrival - ext_ts / self._rate - min_transit)
        wanted = min(self._max_ms, variation_ms + self._frame_ms)
        self._target_ms = max(self._target_ms, wanted)

    def _update_target(self, now: float) -> None:
        variation_ms = 1000 * self._estimator.variation_s()
        raw = max(variation_ms, _JITTER_FACTOR * self.jitter_ms) + self._frame_ms
        raw = min(self._max_ms, max(self._min_ms, raw))
        elapsed = 0.0 if self._target_at is None else max(0.0, now - self._target_at)
        self._target_at = now
        self._target_ms = max(raw, self._target_ms - self._decay * elapsed)

    # output --------------------------------------------------------------

    def get(self, now: float) -> PlayoutItem | None:
        """What to play for the slot starting at ``now``; ``None`` while (re)buffering."""
        if not self._playing and not self._start(now):
            return None
        assert self._next is not None  # set whenever playing
        self._update_target(now)
        self._current_ms = self._delay_ms(now)
        self._since_skip += 1
        frame = self._frames.pop(self._next, None)
        if frame is not None:
            return Frame(self._maybe_skip(frame))
        return self._missing(now)

    def _start(self, now: float) -> bool:
        if not self._frames or now - self._buffering_since < self._target_ms / 1000:
            return False
        self._playing = True
        self._next = min(self._frames)
        self._since_skip = 0
        return True

    def _delay_ms(self, now: float) -> float:
        """How late slot ``_next`` plays compared with its earliest possible arrival."""
        min_transit = self._estimator.min_transit()
        if self._ref is None or self._next is None or min_transit is None:
            return 0.0
        ref_seq, ref_ts = self._ref
        ts = ref_ts + (self._next - ref_seq) * self._frame_samples
        return 1000 * (now - (ts / self._rate + min_transit))

    def _maybe_skip(self, frame: MediaFrame) -> MediaFrame:
        assert self._next is not None
        self._next += 1
        following = self._frames.get(self._next)
        too_long = self._current_ms > self._target_ms + self._frame_ms
        if following is None or not too_long or self._since_skip < self._skip_interval:
            return frame
        del self._frames[self._next]
        self._next += 1
        self._since_skip = 0
        self.skipped += 1
        self._current_ms -= self._frame_ms
        return following

    def _missing(self, now: float) -> PlayoutItem | None:
        assert self._next is not None
        seq = self._next
        if not self._frames or self._current_ms < self._target_ms:
            if self._current_ms > self._max_ms and not self._frames:
                self._playing = False  # the stream paused: buffer afresh
                self._floor = self._next
                self._buffering_since = now
                return None
            self.concealed += 1
            return Conceal(seq % _SEQ_MOD, stretch=True)
        self._next += 1
        self.lost += 1
        following = self._frames.get(self._next)
        if following is not None:
            self.recovered += 1
            return Recover(seq % _SEQ_MOD, following)
        self.concealed += 1
        return Conceal(seq % _SEQ_MOD)
