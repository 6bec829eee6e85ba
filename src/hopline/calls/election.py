"""Conference host election from measured capacity.

A Hopline conference is mixed on one machine, the host (see
:mod:`hopline.media.mixer`): it receives every participant's stream and sends
each one a mix of the others. Which participant hosts is decided here, from
what each participant *measured* about itself, never from a guess:

* **reachability** — its NAT class (:class:`~hopline.nat.discovery.NatType`):
  a public address (``OPEN``) takes inbound streams from anyone; behind a
  symmetric NAT every leg needs hole punching or a relay;
* **upload bandwidth** — its upload estimate in bit/s; the host sends one
  stream to each of the ``n - 1`` others;
* **CPU headroom** — how many Opus encodes and decodes of a 20 ms frame it
  completes per second (:func:`measure_cpu_headroom` times the real codec for
  about 50 ms); the host decodes ``n - 1`` streams and encodes at most
  ``max_speakers + 1`` mixes every 20 ms;
* **path quality** — the RTT and loss of its paths to each other participant.

Eligibility comes first. A participant is *not eligible* when UDP is blocked
for it, when its upload cannot carry ``(n - 1) x stream_bps``, or when mixing
``n`` participants would take more than ``max_mix_load_permille`` of one core.
Among eligible participants the highest score wins; if nobody is eligible the
highest score wins anyway (a conference needs a mixer) and the election says so.

The score is an integer, so every participant computes exactly the same
number from the same reports (no floating point, no dictionary order). Each
part is worth 0-1000 points, then weighted::

    score = 4 x reach + 2 x upload + 2 x cpu + 2 x path        (0 .. 10000)

    reach   OPEN 1000, FULL_CONE 700, RESTRICTED 500, PORT_RESTRICTED 400,
            UNKNOWN 200, SYMMETRIC 100, UDP_BLOCKED 0
    upload  250 x (upload - needed) / needed, at most 1000 (5x the need = 1000)
    cpu     1000 - mix load in per mille of one core (at least 0)
    path    mean over the others of max(0, 1000 - 2 x RTT ms - 10 x loss per mille);
            a path not measured counts as ``unmeasured_rtt_ms`` / ``unmeasured_loss_permille``

Ties are broken by the user name (the smallest wins), so the order in which
reports arrive never matters. :func:`rank_hosts` returns every candidate with
its points and one-line reasons for people (``hopline calls`` shows why this
host); :func:`elect_host` returns only the winner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from hopline.media.mixer import MixerConfig
from hopline.media.opus import OpusDecoder, OpusEncoder
from hopline.nat.discovery import NatType

__all__ = [
    "DEFAULT_POLICY",
    "REACH_POINTS",
    "Candidate",
    "Capacity",
    "CpuHeadroom",
    "Election",
    "ElectionPolicy",
    "PathQuality",
    "elect_host",
    "measure_cpu_headroom",
    "mix_load_permille",
    "rank_hosts",
    "required_upload_bps",
]

_MIXER = MixerConfig()
_FRAMES_PER_S = _MIXER.sample_rate // _MIXER.frame_samples  # 50 frames of 20 ms
_HEADER_BYTES = 64  # IP, UDP, transport and AEAD overhead of one media packet
_UNUSABLE = 1_000_000  # the load of a machine that reported no CPU at all

REACH_POINTS: dict[NatType, int] = {
    NatType.OPEN: 1000,
    NatType.FULL_CONE: 700,
    NatType.RESTRICTED: 500,
    NatType.PORT_RESTRICTED: 400,
    NatType.UNKNOWN: 200,
    NatType.SYMMETRIC: 100,
    NatType.UDP_BLOCKED: 0,
}
"""Points for reachability, by NAT class: a public address is worth the most."""


@dataclass(frozen=True, slots=True)
class PathQuality:
    """A measured path from one participant to ``peer``."""

    peer: str
    rtt_ms: int
    loss_permille: int

    def __post_init__(self) -> None:
        """Refuse negative RTT and loss outside 0-1000 per mille."""
        if self.rtt_ms < 0 or not 0 <= self.loss_permille <= 1000:
            raise ValueError(f"bad path to {self.peer}: {self.rtt_ms} ms, {self.loss_permille}")


@dataclass(frozen=True, slots=True)
class CpuHeadroom:
    """What :func:`measure_cpu_headroom` measured: 20 ms Opus frames per second."""

    encodes_per_s: int
    decodes_per_s: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """One participant's measured capacity report."""

    user: str
    nat_type: NatType
    upload_bps: int
    encodes_per_s: int
    decodes_per_s: int
    paths: tuple[PathQuality, ...] = ()

    def __post_init__(self) -> None:
        """Refuse negative figures and two paths to the same peer."""
        if min(self.upload_bps, self.encodes_per_s, self.decodes_per_s) < 0:
            raise ValueError(f"capacity of {self.user} has a negative figure")
        peers = [p.peer for p in self.paths]
        if len(set(peers)) != len(peers):
            raise ValueError(f"capacity of {self.user} lists a peer twice")

    @property
    def public(self) -> bool:
        """True when the participant has a public address (no NAT)."""
        return self.nat_type is NatType.OPEN

    def path_to(self, peer: str) -> PathQuality | None:
        """The measured path to ``peer``, if any."""
        return next((p for p in self.paths if p.peer == peer), None)


@dataclass(frozen=True, slots=True)
class ElectionPolicy:
    """The constants of the election (every participant must use the same)."""

    stream_bps: int = _MIXER.bitrate + _FRAMES_PER_S * _HEADER_BYTES * 8
    """Upload one mixed stream takes: Opus bitrate plus per-packet overhead."""
    max_speakers: int = _MIXER.max_speakers
    frames_per_s: int = _FRAMES_PER_S
    max_mix_load_permille: int = 500
    """A host may spend at most this share of one core on mixing."""
    unmeasured_rtt_ms: int = 300
    unmeasured_loss_permille: int = 50


DEFAULT_POLICY = ElectionPolicy()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One participant as the election saw it."""

    user: str
    eligible: bool
    score: int
    reach: int
    upload: int
    cpu: int
    path: int
    reasons: tuple[str, ...]
    """One line per part, for people: why it scores what it scores, or why it cannot host."""


@dataclass(frozen=True, slots=True)
class Election:
    """The ranking: ``candidates[0]`` is the winner."""

    candidates: tuple[Candidate, ...]
    fallback: bool = False
    """True when nobody was eligible and the best score won anyway."""

    @property
    def winner(self) -> str:
        """The elected host."""
        return self.candidates[0].user

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the winner hosts."""
        return self.candidates[0].reasons

    def candidate(self, user: str) -> Candidate:
        """The entry of ``user`` (:class:`KeyError` if it was not a candidate)."""
        for entry in self.candidates:
            if entry.user == user:
                return entry
        raise KeyError(user)


def required_upload_bps(participants: int, policy: ElectionPolicy = DEFAULT_POLICY) -> int:
    """Upload the host needs: one mixed stream to each of the others."""
    return max(0, participants - 1) * policy.stream_bps


def mix_load_permille(
    capacity: Capacity, participants: int, policy: ElectionPolicy = DEFAULT_POLICY
) -> int:
    """Share of one core (per mille) mixing ``participants`` would take on this machine."""
    if participants < 2:
        return 0
    if capacity.encodes_per_s <= 0 or capacity.decodes_per_s <= 0:
        return _UNUSABLE
    encodes = min(participants, policy.max_speakers + 1) * policy.frames_per_s
    decodes = (participants - 1) * policy.frames_per_s
    return _ceil_div(1000 * encodes, capacity.encodes_per_s) + _ceil_div(
        1000 * decodes, capacity.decodes_per_s
    )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _upload_points(capacity: Capacity, needed: int) -> tuple[int, str]:
    have = f"upload {capacity.upload_bps / 1e6:.2f} Mbit/s"
    if needed == 0:
        return 1000, f"{have}, none needed"
    if capacity.upload_bps < needed:
        return 0, f"{have} < {needed / 1e6:.2f} Mbit/s needed"
    points = min(1000, 250 * (capacity.upload_bps - needed) // needed)
    return points, f"{have} for {needed / 1e6:.2f} Mbit/s needed"


def _path_points(capacity: Capacity, others: list[str], policy: ElectionPolicy) -> tuple[int, str]:
    if not others:
        return 1000, "no other participant"
    total = measured = rtt_sum = loss_sum = 0
    paths = {p.peer: p for p in capacity.paths}
    for peer in others:
        path = paths.get(peer)
        rtt = policy.unmeasured_rtt_ms if path is None else path.rtt_ms
        loss = policy.unmeasured_loss_permille if path is None else path.loss_permille
        if path is not None:
            measured += 1
            rtt_sum += rtt
            loss_sum += loss
        total += max(0, 1000 - 2 * rtt - 10 * loss)
    if measured == 0:
        return total // len(others), f"no path measured to the {len(others)} others"
    text = (
        f"mean RTT {rtt_sum // measured} ms, loss {loss_sum / measured / 10:.1f}% "
        f"to {measured} of {len(others)} others"
    )
    return total // len(others), text


def _candidate(capacity: Capacity, users: list[str], policy: ElectionPolicy) -> Candidate:
    n = len(users)
    reach = REACH_POINTS[capacity.nat_type]
    reach_text = "public address" if capacity.public else f"NAT {capacity.nat_type.name}"
    needed = required_upload_bps(n, policy)
    upload, upload_text = _upload_points(capacity, needed)
    load = mix_load_permille(capacity, n, policy)
    cpu = max(0, 1000 - load)
    cpu_text = f"mixing {n} takes {load / 10:.1f}% of a core"
    others = [u for u in users if u != capacity.user]
    path, path_text = _path_points(capacity, others, policy)
    problems = []
    if capacity.nat_type is NatType.UDP_BLOCKED:
        problems.append("not eligible: UDP is blocked")
    if capacity.upload_bps < needed:
        problems.append("not eligible: upload too small")
    if load > policy.max_mix_load_permille:
        limit = policy.max_mix_load_permille / 10
        problems.append(f"not eligible: CPU too weak (limit {limit:.0f}%)")
    score = 4 * reach + 2 * upload + 2 * cpu + 2 * path
    reasons = (*problems, reach_text, upload_text, cpu_text, path_text)
    return Candidate(capacity.user, not problems, score, reach, upload, cpu, path, reasons)


def rank_hosts(capacities: Iterable[Capacity], policy: ElectionPolicy = DEFAULT_POLICY) -> Election:
    """Rank every participant as a host; the result does not depend on input order.

    ``capacities`` holds one report per participant of the conference (the
    host-to-be included). Raises :class:`ValueError` when it is empty or
    names a user twice.
    """
    reports = sorted(capacities, key=lambda c: c.user)
    users = [c.user for c in reports]
    if not users or len(set(users)) != len(users):
        raise ValueError("an election needs one capacity report per participant")
    candidates = [_candidate(c, users, policy) for c in reports]
    candidates.sort(key=lambda c: (not c.eligible, -c.score, c.user))
    fallback = not candidates[0].eligible
    return Election(tuple(candidates), fallback)


def elect_host(capacities: Iterable[Capacity], policy: ElectionPolicy = DEFAULT_POLICY) -> str:
    """The participant that should host (see :func:`rank_hosts`)."""
    return rank_hosts(capacities, policy).winner


def measure_cpu_headroom(
    duration_s: float = 0.05,
    *,
    config: MixerConfig = _MIXER,
    clock: Callable[[], float] = time.perf_counter,
) -> CpuHeadroom:
    """Time the real Opus codec for about ``duration_s`` and return frames per second.

    Four fifths of the time encode 20 ms frames of noise (the hardest input)
    at the mixer's bitrate and complexity; the rest decodes those packets.
    Run it when the machine is as busy as it will be in the call: what it
    measures is what is left for mixing.
    """
    rng = np.random.default_rng(0)
    frame = rng.integers(-8000, 8000, config.frame_samples, dtype=np.int16)
    with (
        OpusEncoder(
            config.sample_rate, 1, config.bitrate, complexity=config.complexity, signal="voice"
        ) as enc,
        OpusDecoder(config.sample_rate, 1) as dec,
    ):
        packets, encode_s = _run_for(lambda: enc.encode(frame), duration_s * 0.8, clock)
        decodes, decode_s = _decode_for(dec, packets, duration_s * 0.2, clock)
    return CpuHeadroom(int(len(packets) / encode_s), int(decodes / decode_s))


def _run_for(
    work: Callable[[], bytes], seconds: float, clock: Callable[[], float]
) -> tuple[list[bytes], float]:
    """Call ``work`` until ``seconds`` passed (at least once); return results and time."""
    results: list[bytes] = []
    start = clock()
    while True:
        results.append(work())
        elapsed = clock() - start
        if elapsed >= seconds:
            return results, max(elapsed, 1e-9)


def _decode_for(
    dec: OpusDecoder, packets: list[bytes], seconds: float, clock: Callable[[], float]
) -> tuple[int, float]:
    count = 0
    start = clock()
    while True:
        dec.decode(packets[count % len(packets)])
        count += 1
        elapsed = clock() - start
        if elapsed >= seconds:
            return count, max(elapsed, 1e-9)
