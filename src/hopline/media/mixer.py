"""The conference mixer, sans-I/O: every participant's voice in, a mix-minus for each out.

A Hopline conference is not a full mesh. One machine, the host, receives
every participant's media stream, mixes, and sends each participant one
stream: the mix of the others. :class:`ConferenceMixer` is that mixer as a
sans-I/O engine in the shape of :class:`~hopline.media.stream.VoiceStream`:
no socket, no sound card, no clock. The caller passes time in as ``now``
(seconds), hands in datagrams and the host's microphone frames, calls
:meth:`ConferenceMixer.tick` once per 20 ms, and moves what comes out.

Receiving. Each remote participant has a receive leg that *is* a
:class:`~hopline.media.stream.VoiceStream` used for its receive side only:
media packets and receiver reports go to
:meth:`~hopline.media.stream.VoiceStream.receive_datagram`, and each tick
takes one frame from :meth:`~hopline.media.stream.VoiceStream.playout`. So
every participant has its own jitter buffer, Opus decoder, FEC and
redundancy recovery and concealment, exactly as in a two-party call, and its
receiver reports go back to it (the participant's rate control keeps
working). Malformed datagrams are dropped and counted by that leg; datagrams
for an unknown participant are counted here. The host is a participant too,
added with ``local=True``: its microphone frames come in through
:meth:`ConferenceMixer.push_local_audio` (a bounded queue) and its mix comes
out as PCM, never encoded.

Levels and speakers. Every tick each input frame's energy is measured. Over
a sliding window (``window_frames``, 240 ms) the mean energy gives the
participant's level; a participant starts *speaking* when that level rises
above ``vad_on_dbfs`` and stops when it falls below ``vad_off_dbfs`` (the
gap between the two, and the window itself, are the hysteresis: a speaker
stays on for a window's length after the last loud frame). Of the speaking
participants only the ``max_speakers`` loudest are mixed (classic practice:
three). A speaker keeps its place until it stops speaking, or until a
speaking participant outside the set is louder than the quietest one in it
by ``switch_margin_db``. That challenge compares *short* levels (the last
``challenge_frames``, 60 ms), so a new talker takes the place of one who
fell silent and is only in its hangover at once, instead of waiting the
window's length with its first words cut. A speaker cannot be displaced in
its first ``min_hold_frames`` (0.5 s), and the margin means two talkers of
about the same level do not flip the set. Changes come out as
:class:`SpeakerStarted` and :class:`SpeakerStopped` events.

Level normalisation. Each input has a slow automatic gain (AGC): while the
participant speaks, its gain moves a fraction ``agc_rate`` per tick of the
way from the current gain towards the gain that brings its window level to
``target_dbfs``, bounded to ``[min_gain_db, max_gain_db]``; in silence the
gain is held, so background noise is never pumped up.

Mix-minus and clipping protection. The common mix is the sum of the
selected speakers. A participant that is not a selected speaker hears the
common mix; a selected speaker hears the common mix minus itself. Each
distinct output passes through a limiter: a gain that drops at once (over
1 ms) to keep the peak under ``limiter_ceiling_dbfs`` and recovers by
``limiter_release_db`` per tick, then a soft clipper (a tanh knee) that
bounds every sample inside the int16 range. Samples are rounded and cast
only after that, so the output never wraps around.

Encoding once per distinct mix. With at most ``max_speakers`` selected
speakers there are at most ``max_speakers + 1`` distinct mixes whatever the
size of the conference, and at most that many Opus encodes per tick:

* the common mix is encoded once by the *common encoder*, and that one
  payload goes to every listener; each listener has its own
  :class:`~hopline.media.packet.Packetizer`, so sequence numbers,
  timestamps and repeated frames are its own and an ordinary
  :class:`~hopline.media.stream.VoiceStream` decodes the stream unchanged;
* each selected speaker that is remote gets its mix-minus encoded by its
  *own encoder*, which the participant keeps for the whole conference.

An Opus stream is stateful (the decoder predicts from the frames before),
so which encoder feeds a participant matters. A listener is always fed by
the common encoder, whose state runs continuously from the first tick: the
stream it decodes is one unbroken Opus stream however the speakers change.
Only a participant that enters or leaves the speaker set changes encoder:
its decoder then receives one frame from an encoder whose history it has not
followed. The own encoder is reset when its participant enters the set, so
it starts from a clean state rather than from an old speaking turn. Opus
decoders take such a switch without error (a short transient in that frame);
with the hysteresis above it happens at most twice per speaking turn, and
only in the stream of the participant who is starting or stopping talking.
Keeping one encoder per participant and running it every tick would remove
even that, at the cost of one encode per participant per tick, which is
what the cap exists to avoid.

The common and own encoders run at fixed settings (``bitrate``, in-band FEC
with ``packet_loss_perc``, ``redundancy`` repeated frames): one common
stream cannot follow every listener's receiver reports.

Memory. Everything a participant can make the mixer hold is bounded: the
number of participants (``max_participants``), each jitter buffer (its
capacity), the local microphone queue (``local_queue_frames``; overflow is
dropped and counted), the level window, and the drop counters (keyed by a
fixed set of reasons).
"""

from __future__ import annotations

import math
import secrets
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hopline.media.opus import OpusEncoder, Pcm
from hopline.media.packet import Packetizer
from hopline.media.ratecontrol import MediaSettings
from hopline.media.stream import VoiceConfig, VoiceStream

__all__ = [
    "ConferenceFullError",
    "ConferenceMixer",
    "ConferenceStats",
    "MixTick",
    "MixerConfig",
    "MixerError",
    "ParticipantStats",
    "SpeakerEvent",
    "SpeakerStarted",
    "SpeakerStopped",
    "UnknownParticipantError",
    "soft_clip",
]

Signal = npt.NDArray[np.float32]

_FULL_SCALE = 32768.0
_INT16_MAX = 32767.0
_SILENCE_DB = -120.0
_ATTACK_MS = 1.0
_KNEE = 0.8
"""Fraction of full scale above which :func:`soft_clip` bends the signal."""


class MixerError(ValueError):
    """A caller mistake with the mixer (bad participant id, bad frame)."""


class ConferenceFullError(MixerError):
    """The conference already has ``max_participants`` participants."""


class UnknownParticipantError(MixerError, KeyError):
    """No participant with that id is in the conference."""


@dataclass(frozen=True, slots=True)
class MixerConfig:
    """How a :class:`ConferenceMixer` mixes, normalises, limits and encodes."""

    sample_rate: int = 48000
    frame_samples: int = 960
    max_speakers: int = 3
    """Speakers mixed at once; also caps the encodes per tick at ``max_speakers + 1``."""
    max_participants: int = 64
    bitrate: int = 32000
    complexity: int = 10
    fec: bool = True
    packet_loss_perc: int = 5
    redundancy: int = 0
    target_dbfs: float = -23.0
    min_gain_db: float = -20.0
    max_gain_db: float = 20.0
    agc_rate: float = 0.05
    """Fraction of the way to the target gain covered per speaking tick (about 0.4 s)."""
    vad_on_dbfs: float = -45.0
    vad_off_dbfs: float = -55.0
    window_frames: int = 12
    """Frames in the level window (12 x 20 ms = 240 ms)."""
    switch_margin_db: float = 6.0
    challenge_frames: int = 3
    """Frames of the short level a waiting talker is compared on (60 ms)."""
    min_hold_frames: int = 25
    """Ticks a new speaker keeps its place whatever the challengers (0.5 s)."""
    limiter_ceiling_dbfs: float = -1.0
    limiter_release_db: float = 0.5
    local_queue_frames: int = 5
    jitter_min_delay_ms: float = 40.0
    jitter_max_delay_ms: float = 400.0
    first_seq: int | None = None
    """First sequence number of every outgoing stream; random per stream when ``None``."""

    def __post_init__(self) -> None:
        """Refuse settings the codec, the mix or the bounds cannot take."""
        if self.frame_samples <= 0 or self.sample_rate <= 0:
            raise ValueError("sample_rate and frame_samples must be positive")
        if self.max_speakers < 1 or self.max_participants < 1:
            raise ValueError("max_speakers and max_participants must be at least 1")
        if not self.min_gain_db <= 0.0 <= self.max_gain_db:
            raise ValueError("need min_gain_db <= 0 <= max_gain_db")
        if not 0.0 < self.agc_rate <= 1.0:
            raise ValueError("agc_rate must be in (0, 1]")
        if not self.vad_off_dbfs <= self.vad_on_dbfs:
            raise ValueError("need vad_off_dbfs <= vad_on_dbfs")
        if self.window_frames < 1 or self.local_queue_frames < 1:
            raise ValueError("window_frames and local_queue_frames must be at least 1")
        if not 1 <= self.challenge_frames <= self.window_frames or self.min_hold_frames < 0:
            raise ValueError("need 1 <= challenge_frames <= window_frames, min_hold_frames >= 0")
        if not self.limiter_ceiling_dbfs <= 0.0 < self.limiter_release_db:
            raise ValueError("need limiter_ceiling_dbfs <= 0 < limiter_release_db")
        self.media_settings()  # bitrate, loss and redundancy checks

    def media_settings(self) -> MediaSettings:
        """The fixed settings of every encoder and packetizer of the mixer."""
        return MediaSettings(self.bitrate, self.fec, self.packet_loss_perc, self.redundancy)

    def voice_config(self) -> VoiceConfig:
        """The configuration of each participant's receive leg."""
        return VoiceConfig(
            sample_rate=self.sample_rate,
            frame_samples=self.frame_samples,
            complexity=self.complexity,
            adaptive=False,
            fixed=self.media_settings(),
            jitter_min_delay_ms=self.jitter_min_delay_ms,
            jitter_max_delay_ms=self.jitter_max_delay_ms,
            first_seq=self.first_seq,
        )


@dataclass(frozen=True, slots=True)
class SpeakerStarted:
    """``pid`` entered the set of mixed speakers at ``at``."""

    pid: str
    at: float


@dataclass(frozen=True, slots=True)
class SpeakerStopped:
    """``pid`` left the set of mixed speakers at ``at`` (stopped, outshouted or left)."""

    pid: str
    at: float


SpeakerEvent = SpeakerStarted | SpeakerStopped


@dataclass(frozen=True, slots=True)
class MixTick:
    """What one :meth:`ConferenceMixer.tick` produced."""

    at: float
    datagrams: tuple[tuple[str, bytes], ...]
    """``(pid, datagram)`` to send: each remote participant's media packet and due reports."""
    local: Mapping[str, Pcm]
    """The 20 ms to play for each local participant (the host's speaker)."""
    speakers: tuple[str, ...]
    events: tuple[SpeakerEvent, ...]
    encodes: int
    """Opus encodes this tick: at most ``max_speakers + 1``."""


@dataclass(frozen=True, slots=True)
class ParticipantStats:
    """One participant as the mixer sees it (what the call screen shows per row)."""

    pid: str
    local: bool
    level_dbfs: float
    """Input level over the level window, before gain."""
    speaking: bool
    in_mix: bool
    gain_db: float
    jb_delay_ms: float
    loss: float
    concealed: int
    """Concealed slots; for a local participant, ticks without a microphone frame."""
    packets_received: int
    dropped: dict[str, int]


@dataclass(frozen=True, slots=True)
class ConferenceStats:
    """A snapshot of the whole conference."""

    participants: dict[str, ParticipantStats]
    speakers: tuple[str, ...]
    ticks: int
    encodes_last_tick: int
    encodes_max: int
    encodes_total: int
    dropped: dict[str, int]
    """Mixer-level drops (unknown participant, local queue overflow)."""


def soft_clip(signal: Signal, limit: float = _INT16_MAX, knee: float = _KNEE) -> Signal:
    """``signal`` with every sample bounded strictly inside ``(-limit, limit)``.

    Below ``knee * limit`` samples pass unchanged; above, they follow a tanh
    curve that approaches ``limit`` without reaching it (continuous and
    monotonic, so loud peaks are rounded, never folded over).
    """
    start = knee * limit
    room = limit - start
    magnitude = np.abs(signal)
    over = magnitude > start
    if not over.any():
        return signal
    bent = start + room * np.tanh((magnitude[over] - start) / room)
    out = signal.copy()
    out[over] = np.copysign(bent, signal[over]).astype(np.float32)
    return out


def _db(energy: float) -> float:
    """Mean-square energy (int16 units) in dBFS."""
    if energy <= 0.0:
        return _SILENCE_DB
    return max(_SILENCE_DB, 10.0 * math.log10(energy / (_FULL_SCALE * _FULL_SCALE)))


class _Limiter:
    """A peak limiter with instant attack and slow release, then :func:`soft_clip`."""

    def __init__(self, config: MixerConfig) -> None:
        self._ceiling = _FULL_SCALE * 10.0 ** (config.limiter_ceiling_dbfs / 20.0)
        self._release = 10.0 ** (config.limiter_release_db / 20.0)
        self._attack = max(1, round(config.sample_rate * _ATTACK_MS / 1000))
        self.gain = 1.0

    def process(self, mix: Signal) -> Pcm:
        """The limited frame as int16."""
        peak = float(np.max(np.abs(mix))) if mix.size else 0.0
        wanted = min(1.0, self._ceiling / peak) if peak > 0.0 else 1.0
        previous = self.gain
        self.gain = wanted if wanted < previous else min(wanted, previous * self._release)
        gains = np.full(mix.shape, self.gain, dtype=np.float32)
        ramp = self._attack if self.gain < previous else mix.shape[0]
        gains[:ramp] = np.linspace(previous, self.gain, ramp, dtype=np.float32)
        limited = soft_clip(mix * gains)
        out: Pcm = np.rint(limited).astype(np.int16)
        return out


@dataclass(eq=False)
class _Participant:
    """Everything the mixer keeps about one participant."""

    pid: str
    rx: VoiceStream | None
    """The receive leg (``None`` for a local participant)."""
    packetizer: Packetizer | None
    encoder: OpusEncoder | None
    limiter: _Limiter
    energies: deque[float]
    mic: deque[Pcm] | None
    gain_db: float = 0.0
    speaking: bool = False
    frame: Signal | None = None
    marker: bool = True
    since: int = 0
    """The tick at which it last entered the speaker set."""
    underruns: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def local(self) -> bool:
        """Whether this is a participant on the host itself."""
        return self.rx is None

    @property
    def level_db(self) -> float:
        """Mean energy over the level window, dBFS."""
        if not self.energies:
            return _SILENCE_DB
        return _db(sum(self.energies) / len(self.energies))

    def short_level_db(self, frames: int) -> float:
        """Mean energy over the last ``frames`` frames, dBFS."""
        recent = list(self.energies)[-frames:]
        return _db(sum(recent) / len(recent)) if recent else _SILENCE_DB


class ConferenceMixer:
    """The host's mixer of a conference call, sans-I/O (see the module docs)."""

    def __init__(self, config: MixerConfig | None = None) -> None:
        """An empty conference mixing at ``config`` (defaults: 3 speakers, 32 kbit/s)."""
        self.config = cfg = config or MixerConfig()
        self._participants: dict[str, _Participant] = {}
        self._speakers: list[str] = []
        self._pending: list[str] = []  # speakers removed since the last tick
        self._common_encoder = self._make_encoder()
        self._common_limiter = _Limiter(cfg)
        self._silence: Signal = np.zeros(cfg.frame_samples, dtype=np.float32)
        self.dropped: Counter[str] = Counter()
        self._ticks = 0
        self._encodes_last = 0
        self._encodes_max = 0
        self._encodes_total = 0

    # -- membership -------------------------------------------------------

    def add_participant(self, pid: str, *, local: bool = False) -> None:
        """Add ``pid``; ``local`` for one on the host itself (PCM in and out, no packets)."""
        if not isinstance(pid, str) or not pid:
            raise MixerError("participant id must be a non-empty string")
        if pid in self._participants:
            raise MixerError(f"participant {pid!r} is already in the conference")
        if len(self._participants) >= self.config.max_participants:
            raise ConferenceFullError(f"conference full ({self.config.max_participants})")
        cfg = self.config
        window: deque[float] = deque(maxlen=cfg.window_frames)
        if local:
            mic: deque[Pcm] = deque(maxlen=cfg.local_queue_frames)
            entry = _Participant(pid, None, None, None, _Limiter(cfg), window, mic)
        else:
            encoder = self._make_encoder()
            rx = VoiceStream(cfg.voice_config(), encoder=encoder)
            entry = _Participant(
                pid, rx, self._make_packetizer(), encoder, _Limiter(cfg), window, None
            )
        self._participants[pid] = entry

    def remove_participant(self, pid: str) -> None:
        """Remove ``pid`` and free its codec states; it is no longer mixed from the next tick."""
        entry = self._participants.pop(pid, None)
        if entry is None:
            raise UnknownParticipantError(pid)
        if pid in self._speakers:
            self._speakers.remove(pid)
            self._pending.append(pid)  # at most max_speakers between two ticks
        if entry.rx is not None:
            entry.rx.close()  # also frees the participant's own encoder

    @property
    def participants(self) -> tuple[str, ...]:
        """The participant ids, in the order they joined."""
        return tuple(self._participants)

    @property
    def speakers(self) -> tuple[str, ...]:
        """The participants being mixed right now."""
        return tuple(self._speakers)

    def close(self) -> None:
        """Free every codec state."""
        for pid in list(self._participants):
            self.remove_participant(pid)
        self._common_encoder.close()

    def _make_encoder(self) -> OpusEncoder:
        cfg = self.config
        return OpusEncoder(
            cfg.sample_rate,
            1,
            cfg.bitrate,
            fec=cfg.fec,
            packet_loss_perc=cfg.packet_loss_perc,
            complexity=cfg.complexity,
            signal="voice",  # as the voice stream: speech modes, never CELT at the top
        )

    def _make_packetizer(self) -> Packetizer:
        cfg = self.config
        if cfg.first_seq is None:  # random numbering, as RTP recommends
            first_seq, first_ts = secrets.randbelow(1 << 16), secrets.randbelow(1 << 32)
        else:
            first_seq, first_ts = cfg.first_seq, cfg.first_seq * cfg.frame_samples
        return Packetizer(
            cfg.redundancy,
            first_seq=first_seq,
            first_timestamp=first_ts,
            frame_samples=cfg.frame_samples,
        )

    # -- input ------------------------------------------------------------

    def receive_datagram(self, pid: str, data: bytes, now: float) -> None:
        """A datagram from remote participant ``pid``; never raises for bad data."""
        entry = self._participants.get(pid)
        if entry is None or entry.rx is None:
            self.dropped["unknown-participant" if entry is None else "local-participant"] += 1
            return
        entry.rx.receive_datagram(data, now)

    def push_local_audio(self, pid: str, pcm: Pcm) -> None:
        """One 20 ms int16 microphone frame of local participant ``pid``."""
        entry = self._participants.get(pid)
        if entry is None or entry.mic is None:
            raise UnknownParticipantError(pid)
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            raise MixerError("pcm must be a numpy int16 array")
        if pcm.shape != (self.config.frame_samples,):
            raise MixerError(f"pcm must have shape ({self.config.frame_samples},)")
        if len(entry.mic) == entry.mic.maxlen:
            self.dropped["local-overflow"] += 1
        entry.mic.append(pcm.copy())

    # -- the 20 ms tick ---------------------------------------------------

    def tick(self, now: float) -> MixTick:
        """Take one frame from every participant, mix, limit, encode and pack."""
        for entry in self._participants.values():
            self._take_frame(entry, now)
        events = self._select_speakers(now)
        for entry in self._participants.values():
            self._follow_gain(entry)
        common = self._common_mix()
        datagrams, local, encodes = self._render(common, now)
        self._count(encodes)
        return MixTick(now, tuple(datagrams), local, tuple(self._speakers), events, encodes)

    def _take_frame(self, entry: _Participant, now: float) -> None:
        if entry.rx is not None:
            pcm = entry.rx.playout(now)
        elif entry.mic:
            pcm = entry.mic.popleft()
        else:
            entry.underruns += 1
            pcm = None
        frame = self._silence if pcm is None else pcm.astype(np.float32)
        energy = float(np.dot(frame, frame)) / frame.shape[0]
        entry.energies.append(energy)
        entry.frame = frame
        level = entry.level_db
        if entry.speaking and level < self.config.vad_off_dbfs:
            entry.speaking = False
        elif not entry.speaking and level >= self.config.vad_on_dbfs:
            entry.speaking = True

    def _select_speakers(self, now: float) -> tuple[SpeakerEvent, ...]:
        """Keep speakers that still speak, fill free places, let a much louder one in."""
        cfg, parts = self.config, self._participants
        events: list[SpeakerEvent] = [SpeakerStopped(pid, now) for pid in self._pending]
        self._pending.clear()
        for pid in [p for p in self._speakers if not parts[p].speaking]:
            self._speakers.remove(pid)
            events.append(SpeakerStopped(pid, now))
        short = cfg.challenge_frames
        waiting = sorted(
            (e for e in parts.values() if e.speaking and e.pid not in self._speakers),
            key=lambda e: e.short_level_db(short),
            reverse=True,
        )
        for entry in waiting:
            if len(self._speakers) >= cfg.max_speakers:
                beaten = self._beaten_by(entry)
                if beaten is None:
                    break  # the rest are quieter still
                self._speakers.remove(beaten)
                events.append(SpeakerStopped(beaten, now))
            self._speakers.append(entry.pid)
            entry.since = self._ticks
            events.append(SpeakerStarted(entry.pid, now))
            if entry.encoder is not None:
                entry.encoder.reset()  # a clean own stream, not the end of an old turn
        return tuple(events)

    def _beaten_by(self, challenger: _Participant) -> str | None:
        """The speaker ``challenger`` displaces: the weakest one past its hold, if beaten."""
        cfg = self.config
        short = cfg.challenge_frames
        held = [
            self._participants[pid]
            for pid in self._speakers
            if self._ticks - self._participants[pid].since >= cfg.min_hold_frames
        ]
        if not held:
            return None
        weakest = min(held, key=lambda e: e.short_level_db(short))
        if challenger.short_level_db(short) < weakest.short_level_db(short) + cfg.switch_margin_db:
            return None
        return weakest.pid

    def _follow_gain(self, entry: _Participant) -> None:
        """Slow AGC: move towards the gain that puts the window level at the target."""
        if not entry.speaking:
            return
        cfg = self.config
        wanted = cfg.target_dbfs - entry.level_db
        wanted = min(cfg.max_gain_db, max(cfg.min_gain_db, wanted))
        entry.gain_db += (wanted - entry.gain_db) * cfg.agc_rate

    def _common_mix(self) -> Signal:
        mix = self._silence.copy()
        for pid in self._speakers:
            entry = self._participants[pid]
            assert entry.frame is not None  # every participant has a frame after _take_frame
            entry.frame = entry.frame * np.float32(10.0 ** (entry.gain_db / 20.0))
            mix += entry.frame
        return mix

    def _render(
        self, common: Signal, now: float
    ) -> tuple[list[tuple[str, bytes]], dict[str, Pcm], int]:
        """Limit and encode each distinct mix once; pack one packet per remote participant."""
        out: list[tuple[str, bytes]] = []
        local: dict[str, Pcm] = {}
        encodes = 0
        common_pcm: Pcm | None = None
        common_payload: bytes | None = None
        for entry in self._participants.values():
            if entry.pid in self._speakers:
                assert entry.frame is not None
                pcm = entry.limiter.process(common - entry.frame)
                payload = None if entry.encoder is None else entry.encoder.encode(pcm)
                encodes += entry.encoder is not None
            else:
                if common_pcm is None:
                    common_pcm = self._common_limiter.process(common)
                pcm = common_pcm
                if common_payload is None and not entry.local:
                    common_payload = self._common_encoder.encode(common_pcm)
                    encodes += 1
                payload = None if entry.local else common_payload
            if payload is None:
                local[entry.pid] = pcm
            else:
                out.extend(self._pack(entry, payload, now))
        return out, local, encodes

    def _pack(self, entry: _Participant, payload: bytes, now: float) -> list[tuple[str, bytes]]:
        """This participant's media packet for ``payload``, then its due receiver reports."""
        assert entry.packetizer is not None and entry.rx is not None
        cfg = self.config
        data = entry.packetizer.pack(payload, marker=entry.marker, fec=cfg.fec)
        entry.marker = False
        timer = entry.rx.get_timer()
        if timer is not None and now >= timer:
            entry.rx.handle_timer(now)
        return [(entry.pid, data), *((entry.pid, d) for d in entry.rx.datagrams_to_send())]

    def _count(self, encodes: int) -> None:
        self._ticks += 1
        self._encodes_last = encodes
        self._encodes_max = max(self._encodes_max, encodes)
        self._encodes_total += encodes

    # -- statistics -------------------------------------------------------

    def stats(self, now: float) -> ConferenceStats:
        """A snapshot of every participant and the mixer at ``now``."""
        return ConferenceStats(
            participants={
                pid: self._participant_stats(e, now) for pid, e in self._participants.items()
            },
            speakers=tuple(self._speakers),
            ticks=self._ticks,
            encodes_last_tick=self._encodes_last,
            encodes_max=self._encodes_max,
            encodes_total=self._encodes_total,
            dropped=dict(self.dropped),
        )

    def _participant_stats(self, entry: _Participant, now: float) -> ParticipantStats:
        jb_delay, loss, concealed, received = 0.0, 0.0, entry.underruns, 0
        dropped: dict[str, int] = {}
        if entry.rx is not None:
            voice = entry.rx.stats(now)
            jb_delay, loss, concealed = voice.jb_delay_ms, voice.loss, voice.concealed
            received, dropped = voice.packets_received, voice.dropped
        return ParticipantStats(
            pid=entry.pid,
            local=entry.local,
            level_dbfs=entry.level_db,
            speaking=entry.speaking,
            in_mix=entry.pid in self._speakers,
            gain_db=entry.gain_db,
            jb_delay_ms=jb_delay,
            loss=loss,
            concealed=concealed,
            packets_received=received,
            dropped=dropped,
        )
