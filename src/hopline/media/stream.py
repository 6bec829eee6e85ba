"""One party's voice stream, sans-I/O: PCM and datagrams in, PCM and datagrams out.

:class:`VoiceStream` is the media engine of one side of a call, in the shape
of aioquic's connection: it never touches a socket, a sound card or a clock.
The caller passes time in as ``now`` (seconds) and moves the bytes:

* :meth:`VoiceStream.send_audio` — one 20 ms frame of int16 PCM from the
  microphone: Opus-encoded and packed into a media packet
  (:mod:`hopline.media.packet`) that repeats as many past frames as the
  current settings ask for;
* :meth:`VoiceStream.receive_datagram` — a datagram from the peer: a media
  packet (first byte ``0x80-0x8F``) or a receiver report (``0xA1``, see
  :mod:`hopline.media.report`). Anything malformed is dropped and counted
  in :attr:`VoiceStream.dropped` under its reason, never raised;
* :meth:`VoiceStream.playout` — the next 20 ms to play, once per slot;
* :meth:`VoiceStream.datagrams_to_send` — media packets and due reports;
* :meth:`VoiceStream.get_timer` / :meth:`VoiceStream.handle_timer` — when
  the next receiver report is due (every ``report_interval_s``).

Receiving. The primary frame of each packet and every repeated past frame go
into the :class:`~hopline.media.jitterbuffer.JitterBuffer` (repeated ones
marked redundant, so they fill holes without skewing the delay estimate).
The buffer's lowest delay follows the peer's redundancy: when the oldest
repeated frame is ``d`` frames back, a lost frame's last copy comes ``d``
packets later, so the floor is ``(d + 1)`` frames (the deepest ``d`` of the
last 3 s).
Each slot the buffer says what to do: decode a frame (which may be a
repeated copy standing in for a lost packet: recovery by redundancy),
recover a lost frame from the Opus in-band FEC of the next packet, or
conceal. Primary frames also feed :class:`~hopline.media.report.ReceptionStats`,
which measures network loss, loss bursts and duplicates for the reports.

Sending. Each report from the peer says how our packets fare (loss since the
last report, mean burst length, jitter) and echoes our clock stamp, which
gives the round-trip time. With ``adaptive`` on, the
:class:`~hopline.media.ratecontrol.RateController` turns that into
:class:`~hopline.media.ratecontrol.MediaSettings`, applied at once to the
encoder (bitrate, FEC, expected loss) and the packetizer (redundancy). With
it off, the settings stay fixed (``VoiceConfig.fixed``), which is what
benchmarks comparing settings use.

Mute sends silence in place of the microphone; hold sends no media at all
(reports continue, so statistics and RTT stay live), and the first packet
after hold carries the marker bit. The media datagrams travel on a peer
connection's unreliable channel that is already sealed end to end with its
own replay window; this layer adds no cryptography.
"""

from __future__ import annotations

import secrets
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from hopline.media.jitterbuffer import Conceal, Frame, JitterBuffer, PlayoutItem
from hopline.media.opus import OpusDecoder, OpusEncoder, OpusError, Pcm, VoiceDecoder, VoiceEncoder
from hopline.media.packet import MediaPacket, MediaPacketError, Packetizer, decode_packet
from hopline.media.quality import estimate_mos, opus_impairment
from hopline.media.ratecontrol import MediaSettings, RateConfig, RateController
from hopline.media.report import (
    FLAG_ECHO,
    ReceiverReport,
    ReceptionStats,
    decode_report,
    encode_report,
    is_report,
    stamp_ms,
)

__all__ = ["CODEC", "VoiceConfig", "VoiceStats", "VoiceStream"]

CODEC = "opus/48000/1"
_MAX_RTT_MS = 60_000.0
_REDUNDANT_MEMORY = 1024
_DEPTH_MEMORY = 150
"""Packets over which the peer's redundancy depth is remembered (3 s)."""


@runtime_checkable
class _FecEncoder(Protocol):
    """An encoder whose in-band FEC can be switched (the Opus one can)."""

    def set_fec(self, enabled: bool) -> None:
        """Switch in-band FEC on or off."""
        ...


@dataclass(frozen=True)
class VoiceConfig:
    """How a :class:`VoiceStream` encodes, protects and plays voice."""

    sample_rate: int = 48000
    frame_samples: int = 960
    start_bitrate: int = 64000  # clean paths start at the top; lowered as soon as loss shows
    min_bitrate: int = 16000
    max_bitrate: int = 64000
    """The top of Hopline's voice range. The encoder is told it codes speech
    (``signal="voice"``): left to itself, libopus (1.3.1 and 1.6.1) switches
    to CELT at 64 kbit/s in VoIP mode and scores clearly worse there (PESQ-WB
    4.07 against 4.43 at 60 kbit/s on the voice benchmark's clean path); told,
    it stays in hybrid mode and scores 4.43 at 64."""
    complexity: int = 10  # libopus default; 8-10 score alike, 7 loses 0.03-0.13 PESQ, 5 0.3-0.6
    report_interval_s: float = 1.0
    adaptive: bool = True
    """Rate control on; when off, :attr:`fixed` (or the start bitrate alone) stays."""
    fixed: MediaSettings | None = None
    """The settings used when ``adaptive`` is off (benchmarks compare these)."""
    jitter_min_delay_ms: float = 40.0
    """Lowest playout delay: two frames, so a repeated copy of a lost frame is in time."""
    jitter_max_delay_ms: float = 400.0
    first_seq: int | None = None
    """First media sequence number (timestamps then start at ``first_seq * frame_samples``);
    random sequence number and timestamp when ``None``."""

    def __post_init__(self) -> None:
        """Refuse settings the codec, buffer or controller cannot take."""
        if self.frame_samples <= 0 or self.sample_rate <= 0:
            raise ValueError("sample_rate and frame_samples must be positive")
        if not self.report_interval_s > 0:
            raise ValueError("report_interval_s must be positive")
        if not 0 <= self.complexity <= 10:
            raise ValueError("complexity must be in 0-10")
        if not 0 < self.jitter_min_delay_ms <= self.jitter_max_delay_ms:
            raise ValueError("need 0 < jitter_min_delay_ms <= jitter_max_delay_ms")

    def rate_config(self) -> RateConfig:
        """The controller's configuration for these bitrate bounds."""
        return RateConfig(
            start_bitrate=self.start_bitrate,
            min_bitrate=self.min_bitrate,
            max_bitrate=self.max_bitrate,
        )

    def initial_settings(self) -> MediaSettings:
        """The settings before the first report: ``fixed``, else clean at the start rate."""
        if self.fixed is not None:
            return self.fixed
        return MediaSettings(self.start_bitrate, fec=False, packet_loss_perc=0, redundancy=0)


@dataclass(frozen=True)
class VoiceStats:
    """Live statistics of one voice stream (what the call screen shows)."""

    rtt_ms: float | None
    loss_send: float
    """Loss of our packets, from the peer's last report (fraction)."""
    loss_receive: float
    """Loss of the peer's packets on the network, over the call (fraction)."""
    residual_loss: float
    """Slots that had to be concealed after all recovery (fraction of played slots)."""
    jitter_ms: float
    bitrate: int
    fec: bool
    redundancy: int
    jb_delay_ms: float
    mos_estimate: float
    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int
    reports_sent: int
    reports_received: int
    concealed: int
    recovered: int
    recovered_fec: int
    recovered_redundancy: int
    late: int
    dropped: dict[str, int]
    codec: str = CODEC

    @property
    def loss(self) -> float:
        """The loss a call screen shows: of the media we receive (``loss_receive``)."""
        return self.loss_receive

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (numbers rounded for display), with ``loss`` as well."""
        out = asdict(self)
        out["loss"] = self.loss
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 4)
        return out


class VoiceStream:
    """One side of a voice call, sans-I/O (see the module docs)."""

    def __init__(
        self,
        config: VoiceConfig | None = None,
        *,
        encoder: VoiceEncoder | None = None,
        decoder: VoiceDecoder | None = None,
    ) -> None:
        """A stream with Opus at ``config``'s settings unless a codec is passed in."""
        self.config = cfg = config or VoiceConfig()
        self.settings = cfg.initial_settings()
        self._encoder = encoder or OpusEncoder(
            cfg.sample_rate,
            1,
            self.settings.bitrate,
            fec=False,
            complexity=cfg.complexity,
            signal="voice",
        )
        self._decoder = decoder or OpusDecoder(cfg.sample_rate, 1)
        if cfg.first_seq is None:  # random numbering, as RTP recommends
            first_seq, first_ts = secrets.randbelow(1 << 16), secrets.randbelow(1 << 32)
        else:
            first_seq, first_ts = cfg.first_seq, cfg.first_seq * cfg.frame_samples
        self._packetizer = Packetizer(
            first_seq=first_seq, first_timestamp=first_ts, frame_samples=cfg.frame_samples
        )
        self._controller = RateController(cfg.rate_config())
        self._jb = JitterBuffer(
            cfg.sample_rate,
            cfg.frame_samples,
            min_delay_ms=cfg.jitter_min_delay_ms,
            max_delay_ms=cfg.jitter_max_delay_ms,
        )
        self._reception = ReceptionStats()
        self._silence: Pcm = np.zeros(cfg.frame_samples, dtype=np.int16)
        self._out: list[bytes] = []
        self._next_report: float | None = None
        self._peer_stamp: tuple[int, float] | None = None  # (their sent_at_ms, our arrival)
        self._redundant_filled: set[int] = set()
        self._depths: deque[int] = deque(maxlen=_DEPTH_MEMORY)
        self._depth = 0
        self._marker = True
        self._muted = False
        self._held = False
        self.rtt_ms: float | None = None
        self.loss_send = 0.0
        self.dropped: Counter[str] = Counter()
        self._count: Counter[str] = Counter()
        self._apply(self.settings)

    # -- lifecycle --------------------------------------------------------

    def close(self) -> None:
        """Free the codec states."""
        self._encoder.close()
        self._decoder.close()

    def set_muted(self, on: bool) -> None:
        """Mute: send silence in place of the microphone."""
        self._muted = bool(on)

    def hold(self, on: bool) -> None:
        """Hold: send no media at all (reports continue)."""
        if self._held and not on:
            self._marker = True
        self._held = bool(on)

    @property
    def muted(self) -> bool:
        """Whether the microphone is muted."""
        return self._muted

    @property
    def held(self) -> bool:
        """Whether the call is on hold."""
        return self._held

    # -- sending ----------------------------------------------------------

    def send_audio(self, pcm: Pcm, now: float) -> None:
        """Encode and pack one frame of int16 PCM (``frame_samples`` long) taken at ``now``."""
        self._start_clock(now)
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            raise ValueError("pcm must be a numpy int16 array")
        if pcm.shape != (self.config.frame_samples,):
            raise ValueError(f"pcm must have shape ({self.config.frame_samples},), not {pcm.shape}")
        if self._held:
            return
        payload = self._encoder.encode(self._silence if self._muted else pcm)
        data = self._packetizer.pack(payload, marker=self._marker, fec=self.settings.fec)
        self._marker = False
        self._out.append(data)
        self._count["packets_sent"] += 1
        self._count["bytes_sent"] += len(data)

    def datagrams_to_send(self) -> list[bytes]:
        """Media packets and reports produced since the last call, in order."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run (``None`` before any activity)."""
        return self._next_report

    def handle_timer(self, now: float) -> None:
        """Queue a receiver report when one is due."""
        self._start_clock(now)
        assert self._next_report is not None
        if now < self._next_report:
            return
        self._out.append(encode_report(self._make_report(now)))
        self._count["reports_sent"] += 1
        interval = self.config.report_interval_s
        self._next_report = max(self._next_report + interval, now + interval / 2)

    def _start_clock(self, now: float) -> None:
        if self._next_report is None:
            self._next_report = now + self.config.report_interval_s

    def _make_report(self, now: float) -> ReceiverReport:
        fraction, burst_x10 = self._reception.interval()
        echo_ms = echo_delay_ms = flags = 0
        if self._peer_stamp is not None:
            echo_ms, at = self._peer_stamp
            echo_delay_ms = min(0xFFFF_FFFF, max(0, round((now - at) * 1000)))
            flags = FLAG_ECHO
        return ReceiverReport(
            highest_seq=max(0, self._reception.highest) & 0xFFFF_FFFF,
            cumulative_lost=min(0xFFFF_FFFF, self._reception.cumulative_lost),
            fraction_lost=fraction,
            jitter_us=min(0xFFFF_FFFF, round(self._jb.jitter_ms * 1000)),
            jb_delay_ms=min(0xFFFF, max(0, round(self._jb.current_delay_ms))),
            mean_burst_x10=burst_x10,
            sent_at_ms=stamp_ms(now),
            echo_ms=echo_ms,
            echo_delay_ms=echo_delay_ms,
            flags=flags,
        )

    # -- receiving --------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Take a media packet or a report from the peer; bad ones are dropped and counted."""
        self._start_clock(now)
        try:
            if is_report(data):
                self._on_report(decode_report(data), now)
            else:
                self._on_media(decode_packet(data), len(data), now)
        except MediaPacketError as err:
            self.dropped[err.reason] += 1

    def _on_report(self, report: ReceiverReport, now: float) -> None:
        self._count["reports_received"] += 1
        self._peer_stamp = (report.sent_at_ms, now)
        rtt = report.rtt_ms(stamp_ms(now))
        if rtt is not None and rtt < _MAX_RTT_MS:
            self.rtt_ms = rtt
        self.loss_send = report.loss
        if self.config.adaptive:
            settings = self._controller.update(
                report.loss,
                now,
                jitter_ms=report.jitter_ms,
                rtt_ms=self.rtt_ms,
                burst=report.mean_burst,
            )
            self._apply(settings)

    def _apply(self, settings: MediaSettings) -> None:
        self.settings = settings
        self._encoder.set_bitrate(settings.bitrate)
        self._encoder.set_packet_loss_perc(settings.packet_loss_perc)
        if isinstance(self._encoder, _FecEncoder):
            self._encoder.set_fec(settings.fec)
        self._packetizer.set_redundancy(settings.redundancy, spread=settings.spread)

    def _on_media(self, packet: MediaPacket, size: int, now: float) -> None:
        if self._reception.on_packet(packet.seq) is None:
            self.dropped["duplicate"] += 1
            return
        self._count["packets_received"] += 1
        self._count["bytes_received"] += size
        before = self._jb.dropped.copy()
        self._jb.put(packet.frame, now)
        for reason, n in (self._jb.dropped - before).items():
            if reason != "duplicate":  # its repeated copy came first: not a drop
                self.dropped[reason] += n
        self._redundant_filled.discard(packet.seq)
        if packet.redundant:
            self._follow_depth((packet.seq - packet.redundant[0].seq) % (1 << 16))
        else:
            self._follow_depth(0)
        for frame in packet.redundant:
            held = len(self._jb)
            self._jb.put(frame, now, redundant=True)
            if len(self._jb) > held:
                self._remember_filled(frame.seq)

    def _follow_depth(self, depth: int) -> None:
        """Keep the playout delay long enough for the peer's repeated frames to arrive.

        ``depth`` is how far back the oldest repeated frame of a packet is. A
        lost frame repeated ``depth`` packets later is only in time when the
        buffer holds ``depth + 1`` frames; the deepest redundancy of the last
        :data:`_DEPTH_MEMORY` packets sets that floor.
        """
        self._depths.append(depth)
        deepest = max(self._depths)
        if deepest == self._depth:
            return
        self._depth = deepest
        cfg = self.config
        frame_ms = 1000 * cfg.frame_samples / cfg.sample_rate
        floor = max(cfg.jitter_min_delay_ms, (deepest + 1) * frame_ms)
        self._jb.set_min_delay(min(floor, cfg.jitter_max_delay_ms))

    def _remember_filled(self, seq: int) -> None:
        if len(self._redundant_filled) >= _REDUNDANT_MEMORY:
            self._redundant_filled.clear()
        self._redundant_filled.add(seq)

    # -- playout ----------------------------------------------------------

    def playout(self, now: float) -> Pcm:
        """The next ``frame_samples`` of int16 PCM to play (silence before media starts)."""
        item = self._jb.get(now)
        if item is None:
            return self._silence.copy()
        self._count["slots"] += 1
        return self._fit(self._render(item))

    def _render(self, item: PlayoutItem) -> Pcm:
        if isinstance(item, Conceal):
            return self._conceal(lost=not item.stretch)
        try:
            if isinstance(item, Frame):
                pcm = self._decoder.decode(item.frame.payload)
                if item.frame.seq in self._redundant_filled:
                    self._redundant_filled.discard(item.frame.seq)
                    self._count["recovered_redundancy"] += 1
                return pcm
            pcm = self._decoder.decode_fec(item.via_next.payload, self.config.frame_samples)
        except OpusError:
            self.dropped["opus:decode"] += 1
            return self._conceal(lost=True)
        self._count["recovered_fec"] += 1
        return pcm

    def _conceal(self, *, lost: bool) -> Pcm:
        """Loss concealment; ``lost`` when the slot's frame is given up (not a wait)."""
        self._count["concealed"] += 1
        self._count["lost"] += lost
        return self._decoder.conceal(self.config.frame_samples)

    def _fit(self, pcm: Pcm) -> Pcm:
        samples = self.config.frame_samples
        if pcm.shape == (samples,):
            return pcm
        self.dropped["opus:frame-size"] += 1
        out: Pcm = np.zeros(samples, dtype=np.int16)
        flat = pcm.reshape(-1)[:samples]
        out[: flat.shape[0]] = flat
        return out

    # -- statistics -------------------------------------------------------

    def stats(self, now: float) -> VoiceStats:
        """A snapshot of the call statistics at ``now``."""
        del now  # every figure is kept up to date as events happen
        c, jb = self._count, self._jb
        residual = c["lost"] / c["slots"] if c["slots"] else 0.0
        mos = estimate_mos(
            self.rtt_ms or 0.0,
            jb.jitter_ms,
            min(1.0, residual),
            jitter_buffer_ms=max(0.0, jb.current_delay_ms),
            codec=opus_impairment(self.settings.bitrate, self.settings.fec),
        )
        return VoiceStats(
            rtt_ms=self.rtt_ms,
            loss_send=self.loss_send,
            loss_receive=self._reception.loss,
            residual_loss=residual,
            jitter_ms=jb.jitter_ms,
            bitrate=self.settings.bitrate,
            fec=self.settings.fec,
            redundancy=self.settings.redundancy,
            jb_delay_ms=max(0.0, jb.current_delay_ms),
            mos_estimate=mos,
            packets_sent=c["packets_sent"],
            packets_received=c["packets_received"],
            bytes_sent=c["bytes_sent"],
            bytes_received=c["bytes_received"],
            reports_sent=c["reports_sent"],
            reports_received=c["reports_received"],
            concealed=c["concealed"],
            recovered=c["recovered_fec"] + c["recovered_redundancy"],
            recovered_fec=c["recovered_fec"],
            recovered_redundancy=c["recovered_redundancy"],
            late=self.dropped["late"],
            dropped=dict(self.dropped),
        )
