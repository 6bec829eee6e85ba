"""The aiortc side of ``benchmarks/voice.py``: a real aiortc call through an impaired path.

Two ``RTCPeerConnection`` objects in one process call each other over
loopback (ICE host candidates on 127.0.0.1 only, DTLS-SRTP, one ``sendrecv``
audio transceiver each). Each side sends a :class:`SpeechTrack`, an
``AudioStreamTrack`` that hands aiortc the benchmark's speech in 20 ms
frames of 48 kHz mono, paced by the event loop's clock. Each side consumes
the remote track as fast as aiortc delivers it and records every decoded
frame with its arrival time.

Impairment. aiortc has no hook for a lossy network and ``tc netem`` is not
available, so each connection's ICE transport ``_send`` is wrapped
(:class:`ImpairedSend`): every outgoing SRTP packet carrying RTP goes through
a :class:`hopline.testing.impair.ImpairedChannel` -- the same seeded
Gilbert-Elliott loss and jitter model the Hopline side uses -- and is handed
to the real socket when the channel delivers it. STUN, DTLS and RTCP pass
untouched, so the call always sets up and the loss pattern applies to the
media alone.

What a listener hears. aiortc has no playout clock: its receiver releases a
frame when four later ones are buffered (capacity 16) and decodes it at
once, without concealment or FEC; a lost packet holds the output back until
the buffer fills, and is then skipped together with the four frames that were
waiting before it. :meth:`Leg.heard` models a sound card
fed from the remote track: starting two 20 ms periods after the first frame
arrives (a start-up buffer that also absorbs this process's own scheduling
and garbage-collection pauses), it plays one frame every 20 ms from a FIFO of
decoded frames, and silence when the FIFO is empty (an underrun).
:meth:`Leg.by_timestamp` places each decoded frame at its own media time
instead: an upper bound no real-time player reaches, reported beside it.
:meth:`Leg.at_arrival` places each frame at the instant aiortc handed it out,
for the mouth-to-ear delay without any sound card.

CPU: ``time.process_time()`` of the whole process (every thread: aiortc
encodes and decodes in worker threads) from the first speech frame to the
end of the call, so it includes DTLS-SRTP, ICE consent checks, RTCP and
asyncio; the benchmark divides it by two parties. :func:`media_cpu` measures
aiortc's media components alone on a simulated clock (its ``OpusEncoder`` and
``OpusDecoder``, RTP packets and ``JitterBuffer``), the work that matches
what the Hopline figure covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aioice.ice
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from av import AudioFrame

from hopline.testing.impair import ImpairedChannel

RATE = 48000
FRAME = 960
PTIME = FRAME / RATE
TIME_BASE = fractions.Fraction(1, RATE)
CONNECT_TIMEOUT = 15.0
CARD_PERIODS = 2  # the modelled sound card's start-up buffer, in 20 ms periods
RTCP_TYPES = range(192, 224)  # RFC 5761: RTCP packet types when RTP and RTCP share a port

for _name in ("aiortc", "aioice"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class SpeechTrack(AudioStreamTrack):
    """An audio track that hands aiortc ``pcm`` (48 kHz mono int16) in paced 20 ms frames.

    It waits for ``go`` before the first frame, then frame ``k`` is returned
    at ``start + k * 20 ms`` on the loop's clock; after the speech it sends
    silence until the call ends.
    """

    def __init__(self, pcm: np.ndarray, go: asyncio.Event) -> None:
        """Send ``pcm`` once ``go`` is set."""
        super().__init__()
        self._pcm = pcm
        self._go = go
        self._index = 0
        self.start: float | None = None

    async def recv(self) -> AudioFrame:
        """The next 20 ms frame, at its due time."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self.start is None:
            await self._go.wait()
            self.start = loop.time()
        else:
            await asyncio.sleep(max(0.0, self.start + self._index * PTIME - loop.time()))
        frame = speech_frame(self._pcm, self._index)
        self._index += 1
        return frame


def speech_frame(pcm: np.ndarray, index: int) -> AudioFrame:
    """Frame ``index`` (20 ms) of ``pcm`` as an aiortc audio frame; silence past the end."""
    chunk = np.zeros(FRAME, dtype=np.int16)
    part = pcm[index * FRAME : (index + 1) * FRAME]
    chunk[: part.size] = part
    frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = index * FRAME
    frame.time_base = TIME_BASE
    return frame


def is_rtp(data: bytes) -> bool:
    """True for an (S)RTP packet: version 2 and not an RTCP packet type."""
    return len(data) >= 12 and data[0] >> 6 == 2 and data[1] not in RTCP_TYPES


class ImpairedSend:
    """Replaces an ICE transport's ``_send``: RTP goes through ``channel``, the rest as is."""

    def __init__(self, ice_transport: object, channel: ImpairedChannel) -> None:
        """Wrap ``ice_transport._send`` (an ``RTCIceTransport``)."""
        self._send: Callable[[bytes], Awaitable[None]] = ice_transport._send  # type: ignore[attr-defined]
        self._channel = channel
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self.offered = 0
        self.delivered = 0
        ice_transport._send = self.send  # type: ignore[attr-defined]

    async def send(self, data: bytes) -> None:
        """Send ``data``; RTP is delayed or dropped by the channel."""
        if not is_rtp(data):
            await self._send(data)
            return
        self.offered += 1
        self._channel.send(data, self._loop.time())
        self._arm()

    async def _deliver(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):  # the call ended while it travelled
            await self._send(data)

    def _arm(self) -> None:
        arrival = self._channel.next_arrival()
        if arrival is not None:
            self._loop.call_at(arrival, self._pump)

    def _pump(self) -> None:
        for data in self._channel.deliver(self._loop.time()):
            self.delivered += 1
            task = self._loop.create_task(self._deliver(data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._arm()


@dataclass
class Leg:
    """One direction of the call: when speech started and what arrived, when."""

    start: float
    arrivals: list[tuple[float, int, np.ndarray]] = field(default_factory=list)
    """(loop time, media time in samples, mono int16 samples) per decoded frame."""
    offered: int = 0
    delivered: int = 0

    def heard(self, length: int) -> np.ndarray:
        """``length`` samples a sound card would play, aligned to the sender's clock.

        Sample 0 is the instant the first speech frame was handed to aiortc.
        The card starts :data:`CARD_PERIODS` periods after the first frame
        arrived and plays one queued frame per 20 ms period, silence when
        nothing is queued; a frame plays in the first free period at or after
        its arrival.
        """
        out = np.zeros(length, dtype=np.int16)
        if not self.arrivals:
            return out
        card_start = self.arrivals[0][0] + CARD_PERIODS * PTIME
        next_slot = 0
        for arrival, _, pcm in self.arrivals:
            slot = max(next_slot, math.ceil((arrival - card_start) / PTIME - 1e-9))
            _place(out, round((card_start + slot * PTIME - self.start) * RATE), pcm)
            next_slot = slot + 1
        return out

    def at_arrival(self, length: int) -> np.ndarray:
        """Each decoded frame at the instant aiortc handed it out (for the delay, no card)."""
        out = np.zeros(length, dtype=np.int16)
        for arrival, _, pcm in self.arrivals:
            _place(out, round((arrival - self.start) * RATE), pcm)
        return out

    def by_timestamp(self, length: int) -> np.ndarray:
        """Each decoded frame at its own media time: an upper bound, no real-time limit."""
        out = np.zeros(length, dtype=np.int16)
        if not self.arrivals:
            return out
        base = self.arrivals[0][1]
        for _, pts, pcm in self.arrivals:
            _place(out, pts - base, pcm)
        return out


def _place(out: np.ndarray, at: int, pcm: np.ndarray) -> None:
    end = min(out.size, at + pcm.size)
    if 0 <= at < end:
        out[at:end] = pcm[: end - at]


@dataclass
class CallResult:
    """Both legs, the process CPU seconds and the wall seconds of the call."""

    legs: tuple[Leg, Leg]
    cpu_seconds: float
    wall_seconds: float


async def _consume(track: MediaStreamTrack, leg: Leg) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if isinstance(frame, AudioFrame):
                leg.arrivals.append((loop.time(), int(frame.pts or 0), _mono(frame)))


def _mono(frame: AudioFrame) -> np.ndarray:
    """The first channel of a packed s16 frame."""
    channels = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, channels)[:, 0].astype(np.int16)


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


async def _connect(pc_a: RTCPeerConnection, pc_b: RTCPeerConnection) -> None:
    offer = await pc_a.createOffer()
    await pc_a.setLocalDescription(offer)
    await pc_b.setRemoteDescription(pc_a.localDescription)
    answer = await pc_b.createAnswer()
    await pc_b.setLocalDescription(answer)
    await pc_a.setRemoteDescription(pc_b.localDescription)
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while {pc_a.connectionState, pc_b.connectionState} != {"connected"}:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"aiortc call did not connect: {pc_a.connectionState}/{pc_b.connectionState}"
            )
        await asyncio.sleep(0.01)


def _ice_transport(pc: RTCPeerConnection) -> object:
    return pc.getTransceivers()[0].sender.transport.transport


async def run_call(
    speech: tuple[np.ndarray, np.ndarray],
    channels: tuple[ImpairedChannel, ImpairedChannel],
    seconds: float,
) -> CallResult:
    """Call for ``seconds``: side A sends ``speech[0]`` through ``channels[0]``, B the others."""
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_only
    go = asyncio.Event()
    pcs = (RTCPeerConnection(), RTCPeerConnection())
    tracks = (SpeechTrack(speech[0], go), SpeechTrack(speech[1], go))
    legs = (Leg(0.0), Leg(0.0))  # legs[0]: A -> B, heard at B
    consumers: list[asyncio.Task[None]] = []
    for pc, track, leg in ((pcs[0], tracks[0], legs[1]), (pcs[1], tracks[1], legs[0])):
        pc.addTrack(track)
        pc.on("track", lambda remote, leg=leg: consumers.append(_start(remote, leg)))
    try:
        await _connect(*pcs)
        senders = [
            ImpairedSend(_ice_transport(pc), ch) for pc, ch in zip(pcs, channels, strict=True)
        ]
        loop = asyncio.get_running_loop()
        cpu, wall = time.process_time(), loop.time()
        go.set()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu, loop.time() - wall
    finally:
        for pc in pcs:
            await pc.close()
        aioice.ice.get_host_addresses = original
    for consumer in consumers:
        consumer.cancel()
    for leg, track, sender in zip(legs, tracks, senders, strict=True):
        leg.start = track.start if track.start is not None else wall
        leg.offered, leg.delivered = sender.offered, sender.delivered
    return CallResult(legs, cpu, wall)


def _start(track: MediaStreamTrack, leg: Leg) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(_consume(track, leg))


def media_cpu(speech: np.ndarray, seconds: float) -> float:
    """CPU seconds one party spends in aiortc's media components for ``seconds`` of call.

    Per 20 ms: build the ``AudioFrame``, encode it with aiortc's
    ``OpusEncoder`` (PyAV, 96 kbit/s stereo as aiortc sends), serialise the
    RTP packet; then parse it, pass it through aiortc's audio
    ``JitterBuffer`` (capacity 16, prefetch 4) and decode what it releases
    with aiortc's ``OpusDecoder`` -- one party's sending and receiving
    halves, no network and no encryption.
    """
    encoder, decoder = OpusEncoder(), OpusDecoder()
    buffer = JitterBuffer(capacity=16, prefetch=4)
    frames = math.ceil(seconds / PTIME)
    start = time.process_time()
    for index in range(frames):
        payloads, timestamp = encoder.encode(speech_frame(speech, index))
        for payload in payloads:
            packet = RtpPacket(payload_type=111, sequence_number=index & 0xFFFF)
            packet.timestamp, packet.payload = timestamp, payload
            received = RtpPacket.parse(packet.serialize())
            # aiortc's receiver stores the depayloaded Opus frame (the payload itself) here
            received._data = received.payload  # type: ignore[attr-defined]
            _, encoded = buffer.add(received)
            if encoded is not None:
                for out in decoder.decode(encoded):
                    if isinstance(out, AudioFrame):
                        _mono(out)
    return time.process_time() - start


def codec_alone(pcm: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """``pcm`` through aiortc's Opus encoder and decoder alone, no network.

    Returns what the decoder gives back (the first channel, as a listener's
    track is read here) and the size of every Opus packet, so the benchmark
    can put aiortc's codec beside Hopline's settings at the bitrate each
    really spends.
    """
    encoder, decoder = OpusEncoder(), OpusDecoder()
    out, sizes = [], []
    for index in range(math.ceil(pcm.size / FRAME)):
        payloads, timestamp = encoder.encode(speech_frame(pcm, index))
        for payload in payloads:
            sizes.append(len(payload))
            for frame in decoder.decode(JitterFrame(data=payload, timestamp=timestamp)):
                if isinstance(frame, AudioFrame):
                    out.append(_mono(frame))
    return np.concatenate(out), sizes
