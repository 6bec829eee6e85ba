"""Conference mixer: host CPU per 20 ms tick, per participant, and the real-time capacity.

    python benchmarks/conference.py [--quick] [--seconds S] [--sizes 3,5,10] [--json PATH]

For each conference size N (3, 5, 10, 15, 20, 25, 30, 40) one
:class:`hopline.media.mixer.ConferenceMixer` with real Opus (libopus
through ``hopline.media.opus``) mixes N remote participants, each an
ordinary :class:`hopline.media.stream.VoiceStream` encoding espeak-ng
speech (``hopline.testing.speech``), on a simulated clock: nothing sleeps.
Three participants talk at a time, a different three every second; the
others send their microphone's faint noise (about -70 dBFS), so every
stream is decoded every tick as in a real call. Every 20 ms each
participant sends its frame, the mixer takes the datagrams, ticks (one frame
from each jitter buffer, decode/FEC/concealment, levels, speaker selection,
AGC, mix-minus, limiter, at most ``max_speakers + 1`` Opus encodes, one
packet per participant) and each participant takes and plays its packet.

CPU is ``time.process_time()`` (this process's CPU, ns resolution) measured
separately around:

* the mixer's work only: ``receive_datagram`` for every datagram of the
  slot plus ``tick`` — what the host spends on mixing;
* the participants' side: their ``send_audio``, ``receive_datagram`` and
  ``playout`` — what each participant's own machine would spend, reported
  per participant.

The first second (jitter buffers filling) is not counted. The process is
pinned to one core with ``os.sched_setaffinity`` when allowed, so "one core"
is literal. Real-time capacity is the largest N whose mixer CPU per tick has
p99 under 20 ms (no tick would miss its slot) and a mean under 10 ms (half a
core, leaving room for sockets, sealing and the event loop of a live call);
a least-squares line through the mean per tick also gives the N where the
mean would reach 10 ms. The aim of issue 9 is 25 participants on one core;
the classic network's host mixed 5. Results go to
benchmarks/results/conference.json (or ``--json PATH``); docs/benchmarks.md
("Conference mixer") holds the measured table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.media.mixer import ConferenceMixer, MixerConfig
from hopline.media.opus import opus_available, opus_version
from hopline.media.ratecontrol import MediaSettings
from hopline.media.stream import VoiceConfig, VoiceStream
from hopline.testing.speech import make_speech

Pcm = npt.NDArray[np.int16]
SIZES = (3, 5, 10, 15, 20, 25, 30, 40)
FRAME = 960
SLOT = 0.02
TALKERS = 3
TURN_SLOTS = 50  # a new set of talkers every second
WARMUP_SLOTS = 50
BUDGET_MS = 20.0
MEAN_LIMIT_MS = 10.0
AIM, CLASSIC = 25, 5


@dataclass(frozen=True)
class SizeResult:
    """The figures of one conference size."""

    participants: int
    ticks: int
    mixer_mean_ms: float
    mixer_p50_ms: float
    mixer_p99_ms: float
    mixer_max_ms: float
    mixer_core_pct: float
    mixer_per_participant_us: float
    participant_mean_ms: float
    """One participant's own CPU per 20 ms (encode, jitter buffer, decode)."""
    encodes_max: int
    encodes_mean: float
    realtime: bool


def pin_one_core() -> str:
    """Pin this process to one CPU when allowed; say what happened."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpus = sorted(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, {cpus[-1]})
    except OSError as err:
        return f"not pinned ({err})"
    return f"pinned to CPU {cpus[-1]}"


def microphones(n: int, slots: int, speech: Pcm, seed: int) -> list[list[Pcm]]:
    """Frames per participant: speech in its turns, faint noise otherwise."""
    rng = np.random.default_rng(seed)
    frames_in_speech = speech.shape[0] // FRAME
    out: list[list[Pcm]] = []
    for i in range(n):
        offset = (i * 37) % frames_in_speech
        frames = []
        for k in range(slots):
            block = k // TURN_SLOTS
            talking = (i - block * TALKERS) % n < TALKERS
            if talking:
                j = (offset + k) % frames_in_speech
                frames.append(speech[j * FRAME : (j + 1) * FRAME])
            else:
                frames.append(rng.normal(0, 10, FRAME).astype(np.int16))
        out.append(frames)
    return out


def run_size(n: int, slots: int, speech: Pcm, complexity: int) -> SizeResult:
    """Run an ``n``-participant conference for ``slots`` ticks; time both sides."""
    limit = max(n, MixerConfig().max_participants)
    mixer = ConferenceMixer(MixerConfig(first_seq=1, complexity=complexity, max_participants=limit))
    settings = MediaSettings(32000, fec=True, packet_loss_perc=5, redundancy=0)
    pids = [f"p{i}" for i in range(n)]
    parts = {
        pid: VoiceStream(VoiceConfig(adaptive=False, fixed=settings, first_seq=7 * i))
        for i, pid in enumerate(pids)
    }
    for pid in pids:
        mixer.add_participant(pid)
    mics = microphones(n, slots, speech, seed=n)
    mixer_ms: list[float] = []
    part_ms: list[float] = []
    encodes: list[int] = []
    for k in range(slots):
        t = k * SLOT
        c0 = time.process_time()
        sent: list[tuple[str, list[bytes]]] = []
        for i, pid in enumerate(pids):
            stream = parts[pid]
            stream.send_audio(mics[i][k], t)
            timer = stream.get_timer()
            if timer is not None and t >= timer:
                stream.handle_timer(t)
            sent.append((pid, stream.datagrams_to_send()))
        c1 = time.process_time()
        for pid, datagrams in sent:
            for data in datagrams:
                mixer.receive_datagram(pid, data, t + 0.003)
        result = mixer.tick(t + 0.010)
        c2 = time.process_time()
        for pid, data in result.datagrams:
            parts[pid].receive_datagram(data, t + 0.013)
        for stream in parts.values():
            stream.playout(t + 0.015)
        c3 = time.process_time()
        if k >= WARMUP_SLOTS:
            mixer_ms.append(1000 * (c2 - c1))
            part_ms.append(1000 * ((c1 - c0) + (c3 - c2)))
            encodes.append(result.encodes)
    mixer.close()
    for stream in parts.values():
        stream.close()
    return summarise(n, mixer_ms, part_ms, encodes)


def summarise(
    n: int, mixer_ms: list[float], part_ms: list[float], encodes: list[int]
) -> SizeResult:
    """Mean, percentiles and the real-time verdict of one size."""
    ordered = sorted(mixer_ms)
    mean = statistics.fmean(mixer_ms)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return SizeResult(
        participants=n,
        ticks=len(mixer_ms),
        mixer_mean_ms=round(mean, 3),
        mixer_p50_ms=round(ordered[len(ordered) // 2], 3),
        mixer_p99_ms=round(p99, 3),
        mixer_max_ms=round(ordered[-1], 3),
        mixer_core_pct=round(100 * mean / BUDGET_MS, 1),
        mixer_per_participant_us=round(1000 * mean / n, 1),
        participant_mean_ms=round(statistics.fmean(part_ms) / n, 3),
        encodes_max=max(encodes),
        encodes_mean=round(statistics.fmean(encodes), 2),
        realtime=p99 < BUDGET_MS and mean < MEAN_LIMIT_MS,
    )


def fit_capacity(results: list[SizeResult]) -> dict[str, float]:
    """Least-squares ``mean = fixed + per * N`` and the N where the mean reaches 10 ms."""
    xs = np.array([r.participants for r in results], dtype=np.float64)
    ys = np.array([r.mixer_mean_ms for r in results], dtype=np.float64)
    per, fixed = np.polyfit(xs, ys, 1)
    return {
        "fixed_ms": round(float(fixed), 3),
        "per_participant_ms": round(float(per), 4),
        "n_at_mean_limit": float(np.floor((MEAN_LIMIT_MS - fixed) / per)) if per > 0 else 0.0,
    }


def report(results: list[SizeResult], fit: dict[str, float]) -> int:
    """Print the table and the verdict; the measured capacity."""
    rows = [
        [
            r.participants,
            f"{r.mixer_mean_ms:.2f}",
            f"{r.mixer_p99_ms:.2f}",
            f"{r.mixer_max_ms:.2f}",
            f"{r.mixer_core_pct:.1f}",
            f"{r.mixer_per_participant_us:.0f}",
            f"{r.participant_mean_ms:.2f}",
            f"{r.encodes_max} / {r.encodes_mean:.2f}",
            "yes" if r.realtime else "NO",
        ]
        for r in results
    ]
    headers = [
        "N",
        "mixer ms/tick mean",
        "p99",
        "max",
        "% core",
        "µs/participant",
        "participant ms/tick",
        "encodes max/mean",
        "real time",
    ]
    print_table("Conference mixer, host CPU per 20 ms tick (one core)", headers, rows)
    passing = [r.participants for r in results if r.realtime]
    capacity = max(passing, default=0)
    print(
        f"\nreal-time capacity: {capacity} participants measured "
        f"(mean {fit['fixed_ms']:.2f} ms + {fit['per_participant_ms']:.3f} ms x N; "
        f"mean reaches {MEAN_LIMIT_MS:.0f} ms at N = {fit['n_at_mean_limit']:.0f}); "
        f"aim {AIM} on one core, classic host {CLASSIC}"
    )
    return capacity


def main(argv: list[str] | None = None) -> int:
    """Run every size, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per size instead of 10 s")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--complexity", type=int, default=MixerConfig().complexity)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if (reason := opus_available()) is not None:
        print(f"libopus unavailable: {reason}")
        return 1
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    slots = WARMUP_SLOTS + round(seconds / SLOT)
    sizes = [int(s) for s in args.sizes.split(",")]
    pinned = pin_one_core()
    print(
        f"{pinned}; libopus {opus_version()}; {seconds:.0f} s per size; mixer complexity "
        f"{args.complexity}"
    )
    speech = make_speech(seconds=20.0)
    results = []
    for n in sizes:
        results.append(run_size(n, slots, speech, args.complexity))
        print(f"  N={n}: mixer {results[-1].mixer_mean_ms:.2f} ms/tick", flush=True)
    fit = fit_capacity(results)
    capacity = report(results, fit)
    doc: dict[str, Any] = {
        "benchmark": "conference",
        "pinning": pinned,
        "libopus": opus_version(),
        "seconds_per_size": seconds,
        "talkers_at_once": TALKERS,
        "mixer": asdict(MixerConfig(first_seq=1, complexity=args.complexity)),
        "criteria": {"p99_ms_below": BUDGET_MS, "mean_ms_below": MEAN_LIMIT_MS},
        "aim": AIM,
        "classic": CLASSIC,
        "capacity_measured": capacity,
        "fit": fit,
        "load_average": os.getloadavg(),
        "sizes": [asdict(r) for r in results],
    }
    if args.json:
        path = Path(args.json)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
    else:
        write_json("conference", doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
