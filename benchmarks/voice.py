"""Voice quality under impairment: Hopline's voice stream and an aiortc call, side by side.

    python benchmarks/voice.py [--quick] [--seconds S] [--seed N] [--tries N] [--json PATH]
                               [--no-aiortc]

The same espeak-ng speech (``hopline.testing.speech``) goes through the same
seeded impairment model (``hopline.testing.impair``: random or
Gilbert-Elliott loss, uniform jitter; one channel per direction, the same
seeds for both stacks) under each condition:

* random loss 0, 5, 10 and 20 %;
* bursty loss 10 % (Gilbert-Elliott, mean burst 3 packets);
* jitter 30 and 80 ms (uniform extra delay in [0, jitter)) at 0 % loss.

**Hopline**: two :class:`hopline.media.stream.VoiceStream` objects, one per
party, run on a simulated clock (nothing sleeps): every 20 ms each party
plays out one frame, then hands the stream its next speech frame (B's audio
clock runs half a frame after A's, as two sound cards are never in step,
so no arrival coincides with a playout slot by construction); datagrams
pass through an :class:`~hopline.testing.impair.ImpairedChannel` each way
and are handed to the far stream at their exact arrival time; stream timers
fire when due. Receiver reports travel on a second pair of channels with the
same impairment and their own seeds, so feedback is lost and delayed too
while the media loss pattern stays the one aiortc's RTP gets. Rate control
is on, as in a real call. CPU is ``time.process_time()`` around the calls
into each party's stream (encode, packetise, jitter buffer, FEC/concealment,
decode); sealing, sockets and the event loop of a live call are not in it.

**aiortc** (``benchmarks/_aiortc_call.py``): a real aiortc call between two
peer connections in this process over loopback, DTLS-SRTP and all, its RTP
passing through the same channels in user space (RTCP is not impaired). It
runs in real time, so it takes as long as the speech; the process runs at
nice -15 when allowed, so other work on the machine does not show as
underruns. What a listener hears is modelled by a sound card fed from the
remote track with a 40 ms start-up buffer (see that module). Each aiortc
call is made twice (``--tries``) and the better one kept, so a pause of this
machine does not count against aiortc. aiortc's own
receiver has no playout clock, FEC or concealment. Its CPU is the process's
CPU over the call divided by two parties, and includes DTLS-SRTP, ICE,
RTCP and asyncio. Both real calls run on the event loop the Hopline daemon
uses (``hopline.runtime.loop.run``: uvloop when installed), so the loop is
not what differs. For the work the Hopline figure covers, aiortc's media
parts alone (its Opus encoder and decoder, RTP packets and jitter buffer)
are also timed on a simulated clock. ``--no-aiortc`` skips aiortc.

**Codecs alone**: the speech through one Opus encoder and decoder with no
network, at the top of Hopline's range (64 kbit/s mono) with Hopline's
settings and three others (no signal hint, unconstrained VBR, audio cut at
8 kHz), and through aiortc's own encoder. Each row gives PESQ-WB and the
bitrate the packets really used, which is what the clean condition's scores
come down to.

Scores: wideband PESQ (``hopline.media.score.pesq_wb``, aligned) of what
each party heard against the speech sent, averaged over both directions.
Mouth-to-ear delay at the clean condition is the lag
(``hopline.media.score.delay_ms``) between the speech as handed to the
stack and the audio as the stack hands it out (Hopline: ``playout()``, so
the jitter buffer and the wait for the receiver's next slot, half a frame
here, are in it; aiortc: frames as its remote track returns them, no sound
card). Results go to benchmarks/results/voice.json (or ``--json PATH``);
docs/benchmarks.md ("Voice") holds the measured table.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.media.opus import OpusDecoder, OpusEncoder
from hopline.media.report import is_report
from hopline.media.score import delay_ms, pesq_wb
from hopline.media.stream import VoiceConfig, VoiceStream
from hopline.runtime.loop import run as run_loop
from hopline.testing.impair import ImpairedChannel, Impairment
from hopline.testing.speech import make_speech

RATE = 48000
FRAME = 960
PTIME = FRAME / RATE
TAIL_SECONDS = 1.0  # the call goes on this long after the speech, so late audio is heard
GOAL_MOS_AT_10 = 3.5
MIN_SPEECH_SECONDS = 4.0
GOAL_CPU_RATIO = 0.5
NICE = -15
REPORT_SEED = 50  # the report channels' seeds, away from every media channel's
FIRST_SEQ = 1000  # the streams' first media sequence numbers (random in a real call)


@dataclass(frozen=True)
class Condition:
    """One impairment, applied the same way to both directions and both stacks."""

    name: str
    loss: float = 0.0
    burst: float = 1.0
    jitter_ms: float = 0.0

    def impairment(self, seed: int) -> Impairment:
        """This condition's impairment with ``seed``."""
        return Impairment(loss=self.loss, burst=self.burst, jitter_ms=self.jitter_ms, seed=seed)

    def impairments(self, seed: int) -> tuple[Impairment, Impairment]:
        """The A->B and B->A impairments (same parameters, seeds ``seed`` and ``seed + 1``)."""
        return self.impairment(seed), self.impairment(seed + 1)


CONDITIONS = (
    Condition("clean"),
    Condition("random 5 %", loss=0.05),
    Condition("random 10 %", loss=0.10),
    Condition("random 20 %", loss=0.20),
    Condition("bursty 10 % (burst 3)", loss=0.10, burst=3.0),
    Condition("jitter 30 ms", jitter_ms=30.0),
    Condition("jitter 80 ms", jitter_ms=80.0),
)


CODEC_SETTINGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("voice hint, constrained VBR (Hopline's calls)", {"signal": "voice"}),
    ("no hint (CELT), constrained VBR", {}),
    ("no hint (CELT), unconstrained VBR", {"vbr": "unconstrained"}),
    ("voice hint, cut at 8 kHz (wideband)", {"signal": "voice", "max_bandwidth": "wide"}),
)
"""Opus settings tried on the codec alone at the top of Hopline's range (64 kbit/s mono)."""


@dataclass
class StackRun:
    """One stack under one condition: the two heard signals and its costs."""

    heard: tuple[np.ndarray, np.ndarray]  # heard[0]: A's speech as B heard it
    cpu_per_party_min: float  # CPU seconds per minute of call per party
    loss_seen: float  # fraction of media datagrams the channels dropped
    delay_signals: tuple[np.ndarray, np.ndarray]  # audio as the stack hands it out
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- Hopline (simulated clock)


class Party:
    """One Hopline party: its stream, the speech it says, what it hears, its CPU.

    The party's 20 ms audio clock ticks at ``phase + k * 20 ms``: the two
    parties' sound cards are not in step, as in a real call. Media packets
    go into ``media``, the channel whose loss pattern matches aiortc's RTP;
    receiver reports into ``reports``, a channel with the same impairment
    and its own seed, so feedback is lost and delayed too without shifting
    the media loss pattern.
    """

    def __init__(
        self,
        config: VoiceConfig,
        speech: np.ndarray,
        phase: float,
        channels: tuple[ImpairedChannel, ImpairedChannel],
    ) -> None:
        """Say ``speech`` on a clock offset by ``phase`` s; send into ``channels``.

        ``channels`` is (media, reports); :attr:`inbound` is set to the far
        party's pair.
        """
        self.stream = VoiceStream(config)
        self.speech = speech
        self.phase = phase
        self.media, self.reports = channels
        self.inbound: tuple[ImpairedChannel, ...] = ()
        self.ticks = 0
        self.heard: list[np.ndarray] = []
        self.cpu = 0.0

    @property
    def due(self) -> float:
        """When this party's next 20 ms tick is."""
        return self.phase + self.ticks * PTIME

    def timed(self, work: Callable[[], Any]) -> Any:
        """Run ``work``, adding its CPU time to this party's."""
        start = time.process_time()
        result = work()
        self.cpu += time.process_time() - start
        return result

    def step(self, now: float) -> None:
        """Everything due at ``now``: arrivals, the timer, then the audio tick."""
        for channel in self.inbound:
            for data in channel.deliver(now):
                self.timed(functools.partial(self.stream.receive_datagram, data, now))
        timer = self.stream.get_timer()
        if timer is not None and timer <= now:
            self.timed(lambda: self.stream.handle_timer(now))
        if self.due <= now:
            self.tick(now)
        for data in self.timed(self.stream.datagrams_to_send):
            (self.reports if is_report(data) else self.media).send(data, now)

    def tick(self, now: float) -> None:
        """Play one frame, then hand the stream the next speech frame."""
        self.heard.append(self.timed(lambda: self.stream.playout(now)))
        frame = np.zeros(FRAME, dtype=np.int16)
        part = self.speech[self.ticks * FRAME : (self.ticks + 1) * FRAME]
        frame[: part.size] = part
        self.timed(lambda: self.stream.send_audio(frame, now))
        self.ticks += 1

    def next_event(self) -> float:
        """The earliest of this party's next tick, timer and inbound arrival."""
        times = [self.due]
        times += [t for ch in self.inbound if (t := ch.next_arrival()) is not None]
        if (timer := self.stream.get_timer()) is not None:
            times.append(timer)
        return min(times)

    def heard_from(self, sender: Party) -> np.ndarray:
        """What this party played, on ``sender``'s clock (sample 0: its first frame sent)."""
        played = np.concatenate(self.heard)
        shift = round((self.phase - sender.phase) * RATE)
        if shift >= 0:
            return np.concatenate([np.zeros(shift, dtype=np.int16), played])
        return played[-shift:]


def hopline_call(speech: np.ndarray, condition: Condition, seed: int, seconds: float) -> StackRun:
    """A simulated Hopline call: both parties say ``speech`` for ``seconds``.

    B's audio clock runs half a frame after A's. The first sequence numbers
    are fixed, so a run is fixed by ``seed``.
    """
    media = [ImpairedChannel(i) for i in condition.impairments(seed)]
    reports = [ImpairedChannel(i) for i in condition.impairments(seed + REPORT_SEED)]
    a = Party(VoiceConfig(first_seq=FIRST_SEQ), speech, 0.0, (media[0], reports[0]))
    b = Party(VoiceConfig(first_seq=FIRST_SEQ + 1), speech, PTIME / 2, (media[1], reports[1]))
    a.inbound, b.inbound = (media[1], reports[1]), (media[0], reports[0])
    ticks = math.ceil(seconds / PTIME)
    while a.ticks < ticks or b.ticks < ticks:
        now = min(a.next_event(), b.next_event())
        a.step(now)
        b.step(now)
    stats = {"a": a.stream.stats(now).to_json(), "b": b.stream.stats(now).to_json()}
    a.stream.close()
    b.stream.close()
    length = round(seconds * RATE)
    heard = (b.heard_from(a)[:length], a.heard_from(b)[:length])
    sent = sum(ch.sent for ch in media)
    return StackRun(
        heard=heard,
        cpu_per_party_min=(a.cpu + b.cpu) / 2 / (seconds / 60),
        loss_seen=sum(ch.dropped for ch in media) / max(1, sent),
        delay_signals=heard,
        extra={"media_datagrams": sent, "stats": stats},
    )


# ---------------------------------------------------------------- aiortc (real time)


def aiortc_call(speech: np.ndarray, condition: Condition, seed: int, seconds: float) -> StackRun:
    """A real aiortc call through the same impairment, for ``seconds`` of wall time."""
    from _aiortc_call import run_call  # noqa: PLC0415 -- aiortc is optional (--no-aiortc)

    imp_ab, imp_ba = condition.impairments(seed)
    channels = (ImpairedChannel(imp_ab), ImpairedChannel(imp_ba))
    result = run_loop(run_call((speech, speech), channels, seconds))  # the loop Hopline's call has
    length = round(seconds * RATE)
    legs = result.legs
    offered = sum(leg.offered for leg in legs)
    dropped = sum(ch.dropped for ch in channels)
    return StackRun(
        heard=(legs[0].heard(length), legs[1].heard(length)),
        cpu_per_party_min=result.cpu_seconds / 2 / (result.wall_seconds / 60),
        loss_seen=dropped / max(1, offered),
        delay_signals=(legs[0].at_arrival(length), legs[1].at_arrival(length)),
        extra={
            "by_timestamp": (legs[0].by_timestamp(length), legs[1].by_timestamp(length)),
            "frames_decoded": sum(len(leg.arrivals) for leg in legs),
            "rtp_sent": offered,
            "wall_seconds": result.wall_seconds,
        },
    )


# ---------------------------------------------------------------- the codecs alone


def codec_alone(speech: np.ndarray, with_aiortc: bool) -> list[dict[str, Any]]:
    """Each of :data:`CODEC_SETTINGS`, and aiortc's own encoder, with no network.

    The speech (and a second of silence, so the codec's delay does not cut
    its end off) goes through one encoder and one decoder. Each row has the
    PESQ-WB of what came out and the bitrate the packets really used over
    the speech, which is what the clean condition's scores come down to.
    """
    frames = math.ceil((speech.size + TAIL_SECONDS * RATE) / FRAME)
    padded = np.zeros(frames * FRAME, dtype=np.int16)
    padded[: speech.size] = speech
    config = VoiceConfig()
    rows = []
    for name, settings in CODEC_SETTINGS:
        encoder = OpusEncoder(
            RATE, 1, config.max_bitrate, fec=False, complexity=config.complexity, **settings
        )
        decoder = OpusDecoder(RATE, 1)
        packets = [encoder.encode(padded[i : i + FRAME]) for i in range(0, padded.size, FRAME)]
        heard = np.concatenate([decoder.decode(packet) for packet in packets])
        label = f"Hopline, {config.max_bitrate // 1000} kbit/s mono, {name}"
        rows.append(_codec_row(label, speech, heard, [len(p) for p in packets]))
    if with_aiortc:
        from _aiortc_call import codec_alone as aiortc_codec  # noqa: PLC0415 -- optional

        heard, sizes = aiortc_codec(padded)
        label = "aiortc (PyAV), 96 kbit/s stereo, unconstrained VBR"
        rows.append(_codec_row(label, speech, heard, sizes))
    print_table(
        "Codecs alone (no network), PESQ-WB and the bitrate really sent",
        ["encoder and settings", "kbit/s", "PESQ-WB"],
        [[row["name"], f"{row['kbit_s']:.0f}", fmt(row["mos"])] for row in rows],
    )
    return rows


def _codec_row(
    name: str, speech: np.ndarray, heard: np.ndarray, sizes: list[int]
) -> dict[str, Any]:
    spoken = math.ceil(speech.size / FRAME)  # packets that carry the speech
    kbit_s = sum(sizes[:spoken]) * 8 / (spoken * PTIME) / 1000
    return {"name": name, "kbit_s": kbit_s, "mos": pesq_wb(speech, heard, RATE)}


# ---------------------------------------------------------------- scoring and report


def score(speech: np.ndarray, heard: tuple[np.ndarray, np.ndarray]) -> tuple[float, list[float]]:
    """Mean PESQ-WB over both directions, and each direction's."""
    scores = [pesq_wb(speech, h, RATE) for h in heard]
    return statistics.fmean(scores), scores


def measure(
    speech: np.ndarray, condition: Condition, seed: int, seconds: float, tries: int
) -> dict[str, Any]:
    """Both stacks under ``condition``: scores, losses, CPU and delay.

    The aiortc call is made ``tries`` times (0: not at all) with the same
    seeds and the best-scoring one is kept: the network is the same every
    time, so what differs is this machine's scheduling pauses, which the
    comparison should not count against aiortc.
    """
    row: dict[str, Any] = {"condition": asdict(condition), "seed": seed}
    row["hopline"] = evaluate(speech, hopline_call(speech, condition, seed, seconds))
    calls = [aiortc_call(speech, condition, seed, seconds) for _ in range(tries)]
    if calls:
        entries = [evaluate(speech, call) for call in calls]
        best = max(range(tries), key=lambda i: entries[i]["mos"])
        ideal = score(speech, calls[best].extra["by_timestamp"])[0]
        row["aiortc"] = {
            **entries[best],
            "mos_frames_at_timestamps": ideal,
            "mos_tries": [entry["mos"] for entry in entries],
        }
    return row


def evaluate(speech: np.ndarray, run: StackRun) -> dict[str, Any]:
    """Scores, delays and costs of one call."""
    mos, each = score(speech, run.heard)
    entry: dict[str, Any] = {
        "mos": mos,
        "mos_each_direction": each,
        "loss_seen": run.loss_seen,
        "cpu_s_per_min_per_party": run.cpu_per_party_min,
        "delay_ms": [delay_ms(speech, h, RATE) for h in run.delay_signals],
        "delay_heard_ms": [delay_ms(speech, h, RATE) for h in run.heard],
    }
    entry.update((k, v) for k, v in run.extra.items() if k != "by_timestamp")
    return entry


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table, or a dash."""
    return "-" if value is None else f"{value:.{digits}f}"


def report(
    rows: list[dict[str, Any]], media_only: float | None, real_call: float | None
) -> dict[str, Any]:
    """Print the tables and return the summary with the goal checks."""
    print_table(
        "PESQ-WB (MOS-LQO), mean of both directions",
        [
            "condition",
            "loss H / A",
            "Hopline",
            "aiortc",
            "delta",
            "aiortc ideal*",
            "higher MOS",
        ],
        [_row(row) for row in rows],
    )
    print("  * aiortc's decoded frames placed at their own timestamps: no real-time player can")
    return goals(rows, media_only, real_call)


def _row(row: dict[str, Any]) -> list[str]:
    """One line of the MOS table."""
    hop, aio = row["hopline"], row.get("aiortc")
    loss = f"{100 * hop['loss_seen']:.1f} %"
    if aio is None:
        return [row["condition"]["name"], loss, fmt(hop["mos"]), "-", "-", "-", "-"]
    delta = hop["mos"] - aio["mos"]
    return [
        row["condition"]["name"],
        f"{loss} / {100 * aio['loss_seen']:.1f} %",
        fmt(hop["mos"]),
        fmt(aio["mos"]),
        f"{delta:+.2f}",
        fmt(aio["mos_frames_at_timestamps"]),
        "pass" if delta > 0 else "FAIL",
    ]


def goals(
    rows: list[dict[str, Any]], media_only: float | None, real_call: float | None
) -> dict[str, Any]:
    """CPU and delay summary, the goal checks, printed.

    ``media_only``: aiortc's media parts alone; ``real_call``: a whole Hopline
    call on loopback (sealing, sockets, asyncio), the figure that compares
    with the aiortc call's.
    """
    stacks = [name for name in ("hopline", "aiortc") if name in rows[0]]
    cpu = {s: statistics.fmean(r[s]["cpu_s_per_min_per_party"] for r in rows) for s in stacks}
    clean = next(row for row in rows if row["condition"]["name"] == "clean")
    delay = {s: statistics.fmean(clean[s]["delay_ms"]) for s in stacks}
    labels = {
        "hopline": "Hopline VoiceStream (simulated clock)",
        "aiortc": "aiortc call (real time, with DTLS-SRTP, ICE, asyncio)",
    }
    lines = [[labels[s], f"{cpu[s]:.2f}", f"{delay[s]:.0f}"] for s in stacks]
    if media_only is not None:
        lines.append(["aiortc media parts only (simulated clock)", f"{media_only:.2f}", "-"])
    if real_call is not None:
        label = "Hopline call (real time, sealing, sockets, asyncio)"
        lines.append([label, f"{real_call:.2f}", "-"])
    print_table("Cost and delay", ["stack", "CPU s / min / party", "mouth-to-ear ms"], lines)
    mos10 = next(r for r in rows if r["condition"]["name"] == "random 10 %")["hopline"]["mos"]
    checks: dict[str, Any] = {
        "PESQ-WB >= 3.5 at 10 % loss": {"value": mos10, "pass": mos10 >= GOAL_MOS_AT_10},
    }
    if "aiortc" in cpu:
        ratio = cpu["hopline"] / cpu["aiortc"]
        checks["higher MOS than aiortc everywhere"] = {
            "value": min(r["hopline"]["mos"] - r["aiortc"]["mos"] for r in rows),
            "pass": all(r["hopline"]["mos"] > r["aiortc"]["mos"] for r in rows),
        }
        checks["CPU <= 0.5 x aiortc call (stream alone)"] = {
            "value": ratio,
            "pass": ratio <= GOAL_CPU_RATIO,
        }
        if real_call is not None:
            whole = real_call / cpu["aiortc"]
            checks["CPU <= 0.5 x aiortc call (both whole calls)"] = {
                "value": whole,
                "pass": whole <= GOAL_CPU_RATIO,
            }
    if media_only is not None:
        ratio = cpu["hopline"] / media_only
        checks["CPU <= 0.5 x aiortc media parts"] = {
            "value": ratio,
            "pass": ratio <= GOAL_CPU_RATIO,
        }
    print_table(
        "Goals",
        ["goal", "measured", "result"],
        [[name, fmt(c["value"]), "pass" if c["pass"] else "FAIL"] for name, c in checks.items()],
    )
    if "aiortc" in cpu:
        print("  (higher MOS: the smallest Hopline - aiortc difference over all conditions)")
    return {
        "cpu_s_per_min_per_party": cpu,
        "aiortc_media_parts_cpu_s_per_min_per_party": media_only,
        "hopline_real_call_cpu_s_per_min_per_party": real_call,
        "mouth_to_ear_ms": delay,
        "checks": checks,
    }


def prioritise() -> None:
    """Run this process (and its scheduler autogroup) at nice -15 when allowed.

    aiortc runs in real time: on a shared machine, other work would show as
    underruns that the network did not cause.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
        Path("/proc/self/autogroup").write_text(f"{NICE}\n")
    except OSError as exc:
        print(f"  running at normal priority ({exc.strerror})")


def aiortc_media_cpu(speech: np.ndarray, seconds: float) -> float:
    """aiortc's media parts alone: CPU seconds per minute per party, median of three."""
    from _aiortc_call import media_cpu  # noqa: PLC0415 -- aiortc is optional (--no-aiortc)

    return statistics.median(media_cpu(speech, seconds) / (seconds / 60) for _ in range(3))


def hopline_call_cpu(speech: np.ndarray, seconds: float) -> tuple[float, float]:
    """A real Hopline call on loopback: CPU s per minute per party, and its length."""
    from _hopline_call import call_cpu  # noqa: PLC0415 -- starts processes; only here

    return call_cpu(speech, seconds)


def main() -> None:
    """Run every condition for both stacks, print the tables, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s of speech instead of 12")
    parser.add_argument("--seconds", type=float, help="speech length in seconds")
    parser.add_argument("--seed", type=int, default=1, help="impairment seed (default 1)")
    parser.add_argument("--json", type=Path, help="write results here instead of results/")
    parser.add_argument("--no-aiortc", action="store_true", help="skip the aiortc comparison")
    parser.add_argument(
        "--tries", type=int, help="aiortc calls per condition, best kept (default 2, quick 1)"
    )
    args = parser.parse_args()
    speech_s = args.seconds or (8.0 if args.quick else 12.0)
    if speech_s < MIN_SPEECH_SECONDS:
        parser.error(f"--seconds must be at least {MIN_SPEECH_SECONDS} (PESQ needs sentences)")
    if not args.no_aiortc and importlib.util.find_spec("aiortc") is None:
        parser.error("aiortc is not installed (pip install aiortc), or pass --no-aiortc")
    if args.tries is not None and args.tries < 1:
        parser.error("--tries must be at least 1")
    tries = 0 if args.no_aiortc else (args.tries or (1 if args.quick else 2))
    speech = make_speech(seconds=speech_s)
    seconds = speech_s + TAIL_SECONDS
    prioritise()
    started = time.perf_counter()
    rows = []
    for n, condition in enumerate(CONDITIONS):
        rows.append(measure(speech, condition, args.seed * 100 + 2 * n, seconds, tries))
        print(f"  {condition.name}: done at {time.perf_counter() - started:.0f} s", flush=True)
    media_only = None if args.no_aiortc else aiortc_media_cpu(speech, seconds)
    real_call, _ = hopline_call_cpu(speech, seconds)
    summary = report(rows, media_only, real_call)
    codecs = codec_alone(speech, with_aiortc=not args.no_aiortc)
    result = {
        "speech_seconds": speech_s,
        "aiortc_tries": tries,
        "rows": rows,
        "codecs_alone": codecs,
        **summary,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    else:
        write_json("voice", result)


if __name__ == "__main__":
    main()
