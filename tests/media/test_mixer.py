"""ConferenceMixer: real Opus, participants as ordinary VoiceStreams, a simulated clock."""

from __future__ import annotations

import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.media.mixer import (
    ConferenceFullError,
    ConferenceMixer,
    MixerConfig,
    MixerError,
    SpeakerStarted,
    SpeakerStopped,
    UnknownParticipantError,
    soft_clip,
)
from hopline.media.opus import opus_available
from hopline.media.packet import Packetizer
from hopline.media.report import is_report
from hopline.media.stream import VoiceConfig, VoiceStream
from hopline.testing.speech import SpeechUnavailable, make_speech

if opus_available() is not None:
    pytest.skip(f"libopus: {opus_available()}", allow_module_level=True)

Pcm = npt.NDArray[np.int16]
FRAME = 960
RATE = 48000
SLOT = 0.02


def tone(k: int, freq: float, amplitude: float = 6000.0) -> Pcm:
    """Frame ``k`` of a continuous sine tone."""
    t = (np.arange(FRAME) + k * FRAME) / RATE
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def power_at(signal: npt.NDArray[np.generic], freq: float) -> float:
    """Power of ``signal`` at ``freq`` (a single-bin DFT, Goertzel's quantity)."""
    x = signal.astype(np.float64)
    phase = np.exp(-2j * np.pi * freq * np.arange(x.shape[0]) / RATE)
    return float(abs(np.dot(x, phase)) ** 2) / x.shape[0]


def db(ratio: float) -> float:
    return 10 * np.log10(max(ratio, 1e-30))


class Conference:
    """A mixer and remote participants (VoiceStreams) stepped 20 ms at a time.

    Slot ``k`` starts at ``k * SLOT``: each participant sends its frame, the
    datagrams reach the mixer 3 ms later, the mixer ticks at 10 ms, its
    datagrams reach the participants 3 ms later and they play out at 15 ms.
    """

    def __init__(self, pids: list[str], config: MixerConfig | None = None) -> None:
        self.mixer = ConferenceMixer(config or MixerConfig(first_seq=100))
        self.parts: dict[str, VoiceStream] = {}
        self.heard: dict[str, list[Pcm]] = {}
        self.ticks = []
        for n, pid in enumerate(pids):
            self.join(pid, n)
        self.k = 0

    def join(self, pid: str, n: int = 0) -> None:
        self.mixer.add_participant(pid)
        self.parts[pid] = VoiceStream(VoiceConfig(complexity=0, adaptive=False, first_seq=n * 500))
        self.heard[pid] = []

    def leave(self, pid: str) -> None:
        self.mixer.remove_participant(pid)
        self.parts.pop(pid).close()

    def step(self, frames: dict[str, Pcm]) -> None:
        t = self.k * SLOT
        for pid, stream in self.parts.items():
            stream.send_audio(frames.get(pid, np.zeros(FRAME, np.int16)), t)
            timer = stream.get_timer()
            if timer is not None and t >= timer:
                stream.handle_timer(t)
            for data in stream.datagrams_to_send():
                self.mixer.receive_datagram(pid, data, t + 0.003)
        result = self.mixer.tick(t + 0.010)
        self.ticks.append(result)
        for pid, data in result.datagrams:
            self.parts[pid].receive_datagram(data, t + 0.013)
        for pid, stream in self.parts.items():
            self.heard[pid].append(stream.playout(t + 0.015))
        self.k += 1

    def audio(self, pid: str, start: int = 0, end: int | None = None) -> Pcm:
        return np.concatenate(self.heard[pid][start:end])


FREQS = {"p0": 350.0, "p1": 550.0, "p2": 750.0, "p3": 950.0, "p4": 1150.0}


def test_five_in_turns_each_hears_the_others_and_not_itself() -> None:
    conf = Conference(list(FREQS))
    turn = 40  # 0.8 s each
    for k in range(turn * 5 + 20):
        speaker = list(FREQS)[k // turn] if k < turn * 5 else None
        conf.step({} if speaker is None else {speaker: tone(k, FREQS[speaker])})
    for pid, own in FREQS.items():
        heard = conf.audio(pid)
        others = [power_at(heard, f) for p, f in FREQS.items() if p != pid]
        mine = power_at(heard, own)
        assert min(others) > 0, pid
        assert db(mine / min(others)) < -35, (pid, db(mine / min(others)))
        # each other's tone arrives at a sensible level (not attenuated away)
        assert db(min(others) / max(others)) > -6, pid
    stats = conf.mixer.stats(conf.k * SLOT)
    assert stats.encodes_max <= 4


def test_twenty_five_participants_encode_at_most_n_plus_one() -> None:
    pids = [f"q{i}" for i in range(25)]
    conf = Conference(pids, MixerConfig(first_seq=1, max_speakers=3, complexity=0))
    talkers = {pid: 300.0 + 60 * i for i, pid in enumerate(pids[:6])}  # 6 talk at once
    for k in range(40):
        conf.step({pid: tone(k, f, 3000 + 500 * i) for i, (pid, f) in enumerate(talkers.items())})
    encodes = [t.encodes for t in conf.ticks]
    assert max(encodes) == 4  # 3 speakers with their own mix + one common mix
    assert all(len(t.speakers) <= 3 for t in conf.ticks)
    stats = conf.mixer.stats(conf.k * SLOT)
    assert stats.encodes_max == 4
    assert len(stats.speakers) == 3
    assert sum(1 for p in stats.participants.values() if p.speaking) == 6
    # every remote participant gets exactly one media packet per tick
    media = [pid for pid, data in conf.ticks[-1].datagrams if data[0] & 0xF0 == 0x80]
    assert sorted(media) == sorted(pids)


def test_ten_loud_participants_never_wrap() -> None:
    mixer = ConferenceMixer(MixerConfig(max_speakers=10, first_seq=1))
    loud = [f"l{i}" for i in range(10)]
    for pid in [*loud, "host"]:
        mixer.add_participant(pid, local=True)
    worst = 0
    for k in range(60):
        frame = tone(k, 200.0, 32767.0)
        for pid in loud:
            mixer.push_local_audio(pid, frame)
        mixer.push_local_audio("host", np.zeros(FRAME, np.int16))
        out = mixer.tick(k * SLOT).local["host"]
        strong = np.abs(frame) > 2000
        assert np.all(np.sign(out[strong]) == np.sign(frame[strong])), k  # no fold-over
        worst = max(worst, int(np.max(np.abs(out.astype(np.int32)))))
    assert 20000 < worst <= 32767
    assert len(mixer.speakers) == 10


def test_opus_output_of_loud_mix_is_not_wrapped() -> None:
    pids = [f"m{i}" for i in range(4)]
    conf = Conference(pids, MixerConfig(first_seq=1, max_speakers=3))
    for k in range(60):
        conf.step({pid: tone(k, 300.0, 30000.0) for pid in pids[:3]})
    heard = conf.audio("m3", 20)  # the listener: three in-phase full-scale tones
    assert np.max(np.abs(heard.astype(np.int32))) <= 32767
    # a wrapped sum would put energy far from 300 Hz; the limited one stays a tone
    assert db(power_at(heard, 300.0) / (np.mean(heard.astype(np.float64) ** 2) + 1)) > 25


def test_agc_brings_quiet_and_loud_talkers_within_a_few_db() -> None:
    conf = Conference(["quiet", "loud", "ear"], MixerConfig(first_seq=1))
    for k in range(250):  # 5 s
        conf.step({"quiet": tone(k, 500.0, 300.0), "loud": tone(k, 900.0, 16000.0)})
    sent = db(power_at(np.concatenate([tone(k, 900.0, 16000.0) for k in range(50)]), 900.0)) - db(
        power_at(np.concatenate([tone(k, 500.0, 300.0) for k in range(50)]), 500.0)
    )
    heard = conf.audio("ear", 200)
    gap = db(power_at(heard, 900.0) / power_at(heard, 500.0))
    assert sent > 30
    assert abs(gap) < 3, gap
    gains = {p: s.gain_db for p, s in conf.mixer.stats(5.0).participants.items()}
    assert gains["quiet"] > 15 and gains["loud"] < -5 and gains["ear"] == 0.0


def test_speaker_detection_has_hysteresis() -> None:
    cfg = MixerConfig(first_seq=1, max_speakers=1, switch_margin_db=6.0)
    conf = Conference(["a", "b", "ear"], cfg)
    for k in range(30):  # a alone
        conf.step({"a": tone(k, 400.0, 8000.0)})
    assert conf.mixer.speakers == ("a",)
    for k in range(30, 60):  # b joins 3 dB louder: a keeps the place
        conf.step({"a": tone(k, 400.0, 8000.0), "b": tone(k, 700.0, 11300.0)})
    assert conf.mixer.speakers == ("a",)
    for k in range(60, 90):  # b 12 dB louder: b takes over
        conf.step({"a": tone(k, 400.0, 2000.0), "b": tone(k, 700.0, 8000.0)})
    assert conf.mixer.speakers == ("b",)
    for _ in range(90, 95):  # b stops: still the speaker for the window's length
        conf.step({})
    assert conf.mixer.speakers == ("b",)
    for _ in range(95, 120):
        conf.step({})
    assert conf.mixer.speakers == ()
    events = [e for t in conf.ticks for e in t.events]
    assert [(type(e).__name__, e.pid) for e in events] == [
        ("SpeakerStarted", "a"),
        ("SpeakerStopped", "a"),
        ("SpeakerStarted", "b"),
        ("SpeakerStopped", "b"),
    ]
    stopped = next(e for e in events if isinstance(e, SpeakerStopped) and e.pid == "b")
    assert 90 * SLOT + 0.2 <= stopped.at <= 90 * SLOT + 0.3  # the 240 ms window
    assert isinstance(events[0], SpeakerStarted)


def test_removed_participant_stops_being_heard() -> None:
    conf = Conference(["gone", "stay", "ear"], MixerConfig(first_seq=1))
    for k in range(100):
        if k == 50:
            conf.leave("gone")
        frames = {"stay": tone(k, 900.0)}
        if k < 50:
            frames["gone"] = tone(k, 500.0)
        conf.step(frames)
    before, after = conf.audio("ear", 10, 50), conf.audio("ear", 55)
    assert db(power_at(before, 500.0) / power_at(before, 900.0)) > -3
    assert db(power_at(after, 500.0) / power_at(after, 900.0)) < -40
    assert "gone" not in conf.mixer.participants
    stopped = [e for t in conf.ticks for e in t.events if isinstance(e, SpeakerStopped)]
    assert [(e.pid, round(e.at, 2)) for e in stopped] == [("gone", 1.01)]  # at the next tick
    with pytest.raises(UnknownParticipantError):
        conf.mixer.remove_participant("gone")


def test_malformed_and_stray_datagrams_are_counted_not_raised() -> None:
    conf = Conference(["a", "b"], MixerConfig(first_seq=1))
    conf.step({"a": tone(0, 500.0)})
    mixer = conf.mixer
    mixer.receive_datagram("a", b"\x81", 0.05)  # truncated
    mixer.receive_datagram("a", b"\x81\x00\x00\x05\x00\x00\x00\x00", 0.05)  # empty frame
    mixer.receive_datagram("a", b"\x81" + b"\xff" * 2000, 0.05)  # too large
    mixer.receive_datagram("nobody", b"\x81\x00\x00\x05\x00\x00\x00\x00x", 0.05)
    stats = mixer.stats(0.05)
    dropped = stats.participants["a"].dropped
    assert dropped["media:truncated"] == 1
    assert dropped["media:empty-frame"] == 1
    assert dropped["media:packet-too-large"] == 1
    assert stats.dropped == {"unknown-participant": 1}
    conf.step({"a": tone(1, 500.0)})  # still working


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=1500))
def test_any_bytes_are_dropped_or_taken_never_raised(data: bytes) -> None:
    mixer = ConferenceMixer(MixerConfig(first_seq=1))
    mixer.add_participant("x")
    mixer.receive_datagram("x", data, 0.0)
    mixer.tick(0.0)
    row = mixer.stats(0.0).participants["x"]
    if not is_report(data):
        assert row.packets_received + sum(row.dropped.values()) == 1
    mixer.close()


@given(st.lists(st.floats(-1e7, 1e7, allow_nan=False, width=32), max_size=300))
def test_soft_clip_bounds_and_keeps_order(values: list[float]) -> None:
    signal = np.array(values, dtype=np.float32)
    out = soft_clip(signal)
    assert np.all(np.abs(out) < 32767.5)
    assert np.all(np.sign(out) == np.sign(signal))
    order = np.argsort(signal, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)
    small = np.abs(signal) <= 0.8 * 32767
    assert np.array_equal(out[small], signal[small])


def test_memory_is_bounded_under_a_flood() -> None:
    mixer = ConferenceMixer(MixerConfig(first_seq=1, max_participants=3))
    mixer.add_participant("flood")
    mixer.add_participant("host", local=True)
    rng = np.random.default_rng(7)
    packetizer = Packetizer(first_seq=0)

    def flood(n: int, start: float) -> None:
        """Three datagrams every 0.4 ms (7,500 a second), a tick every 20 ms."""
        for i in range(n):
            now = start + i * 4e-4
            seq = int(rng.integers(0, 1 << 16))
            packet = Packetizer(first_seq=seq, first_timestamp=seq * FRAME).pack(b"\xf8\xff\xfe")
            mixer.receive_datagram("flood", packet, now)
            mixer.receive_datagram("flood", packetizer.pack(b"\xf8\xff\xfe"), now)
            mixer.receive_datagram("flood", bytes(rng.integers(0, 256, 40, np.uint8)), now)
            mixer.push_local_audio("host", np.zeros(FRAME, np.int16))
            if i % 50 == 0:
                mixer.tick(now)

    flood(3000, 0.0)  # 1.2 s: past the first receiver report
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    flood(10000, 1.2)  # 30,000 more datagrams: kept, they would take megabytes
    grown = tracemalloc.take_snapshot().compare_to(base, "filename")
    tracemalloc.stop()
    assert sum(d.size_diff for d in grown) < 512 * 1024
    assert mixer.stats(6.0).dropped["local-overflow"] > 12000
    mixer.add_participant("third")
    with pytest.raises(ConferenceFullError):
        mixer.add_participant("fourth")


def test_bad_calls_raise_typed_errors() -> None:
    mixer = ConferenceMixer(MixerConfig(first_seq=1))
    mixer.add_participant("host", local=True)
    with pytest.raises(MixerError):
        mixer.add_participant("host")
    with pytest.raises(MixerError):
        mixer.add_participant("")
    with pytest.raises(MixerError):
        mixer.push_local_audio("host", np.zeros(100, np.int16))
    with pytest.raises(MixerError):
        mixer.push_local_audio("host", np.zeros(FRAME, np.float32))  # type: ignore[arg-type]
    with pytest.raises(UnknownParticipantError):
        mixer.push_local_audio("nobody", np.zeros(FRAME, np.int16))
    with pytest.raises(ValueError, match="max_speakers"):
        MixerConfig(max_speakers=0)
    with pytest.raises(ValueError, match="bitrate"):
        MixerConfig(bitrate=100)


def test_local_host_hears_remote_and_remote_hears_host() -> None:
    conf = Conference(["r"], MixerConfig(first_seq=1))
    conf.mixer.add_participant("host", local=True)
    host_heard = []
    for k in range(60):
        conf.mixer.push_local_audio("host", tone(k, 600.0))
        conf.step({"r": tone(k, 1000.0)})
        host_heard.append(conf.ticks[-1].local["host"])
    mine = np.concatenate(host_heard[20:])
    assert db(power_at(mine, 1000.0) / power_at(mine, 600.0)) > 40
    theirs = conf.audio("r", 20)
    assert db(power_at(theirs, 600.0) / power_at(theirs, 1000.0)) > 35
    assert conf.mixer.stats(1.2).participants["host"].speaking


def test_five_speak_in_turns_with_speech_and_nobody_hears_themselves() -> None:
    try:
        speech = make_speech(seconds=4.0)
    except SpeechUnavailable as err:
        pytest.skip(str(err))
    pids = [f"s{i}" for i in range(5)]
    conf = Conference(pids)
    turn = 40  # 0.8 s each, each from a different part of the speech
    for k in range(turn * 5):
        who = pids[k // turn]
        j = (k % turn + 40 * (k // turn)) % (speech.shape[0] // FRAME)
        conf.step({who: speech[j * FRAME : (j + 1) * FRAME]})
    for n, pid in enumerate(pids):
        own = slice(n * turn + 15, (n + 1) * turn)  # the turn, past the switch and the delay
        others = [slice(m * turn + 15, (m + 1) * turn) for m in range(5) if m != n]
        mine = np.concatenate(conf.heard[pid][own]).astype(np.float64)
        theirs = np.concatenate([np.concatenate(conf.heard[pid][s]) for s in others])
        assert db(np.mean(mine**2) / np.mean(theirs.astype(np.float64) ** 2)) < -40, pid


def test_new_talker_takes_the_place_of_one_in_hangover_at_once() -> None:
    conf = Conference(["a", "b", "ear"], MixerConfig(first_seq=1, max_speakers=1))
    for k in range(40):
        conf.step({"a": tone(k, 400.0, 8000.0)})
    for k in range(40, 60):  # a falls silent as b starts
        conf.step({"b": tone(k, 700.0, 8000.0)})
    entered = next(
        n
        for n, t in enumerate(conf.ticks)
        if any(isinstance(e, SpeakerStarted) and e.pid == "b" for e in t.events)
    )
    # b's first frame reaches the mixer's playout after the jitter buffer (2-3 slots); the
    # 240 ms window of a's hangover would be 12 slots
    assert 40 <= entered <= 46, entered
    assert conf.mixer.speakers == ("b",)
    heard = conf.audio("ear", 48, 60)
    assert db(power_at(heard, 700.0) / (power_at(heard, 400.0) + 1)) > 30
