"""In-process simulation of the distributed user directory at scale.

:func:`run_simulation` builds the overlay that :mod:`hopline.overlay.slots`
describes (N supernode ids, an :class:`~hopline.overlay.slots.OwnershipMap`
with replication R), gives every supernode a real
:class:`~hopline.overlay.directory.DirectoryStore` limited to the slots it
owns, publishes every user's presence record to the R owners of its slot,
then crashes a few supernodes (after placement and before the membership
noticed, the worst moment) and looks every user up from a random live
supernode.

A lookup is one overlay hop: the requester computes the owners itself and
asks the nearest one; a crashed owner costs a request, a timeout and a retry
with the next nearest owner. A requester that owns the slot answers from its
own store (0 hops, 0 messages). Latency is simulated: supernodes get seeded
random coordinates on a 150 x 150 ms plane and the RTT between two is their
distance plus 1 ms; a timeout costs ``timeout_ms``.

**Certificates are not what this simulation measures.** By default it uses
:class:`SimulationVerifier`, a stub that looks the certificate bytes up in a
table of unsigned :class:`~hopline.identity.CertificateBody` s and applies
the same role, subject and static-key checks as the real verifier, but skips
the Ed25519 signature (100,000 users times 3 replicas of real verification
would only measure Ed25519). ``signed=True`` issues and verifies real
certificates with a :class:`~hopline.testing.pki.TestAuthority` instead.
The stub lives only here; nothing outside tests and benchmarks uses it.

This simulation places records with a global ownership map and no network;
:mod:`hopline.testing.network_sim` runs the same stores under real membership
and a simulated network, and shares :class:`Certifier`, :func:`make_record`
and :func:`percentile` with it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hopline.identity.certificate import (
    Certificate,
    CertificateBody,
    CertificateError,
    Role,
    issue_certificate,
)
from hopline.overlay.directory import DirectoryStore, StoreLimits, Verifier
from hopline.overlay.slots import DEFAULT_SLOTS, OwnershipMap
from hopline.testing.pki import TestAuthority
from hopline.wire.commands import DeviceRecord, Endpoint, PresenceRecord
from hopline.wire.directory import LookupState
from hopline.wire.types import Address

SIM_NOW = 1_763_800_000


class SimulationVerifier:
    """A certificate-verifier stub for the simulation only (no signatures; see module doc)."""

    def __init__(self) -> None:
        self.bodies: dict[bytes, CertificateBody] = {}

    def add(self, body: CertificateBody) -> bytes:
        """Register ``body``; return the (unsigned) certificate bytes that name it."""
        data = b"simcert:" + body.subject.encode() + b":" + body.serial.to_bytes(8, "big")
        self.bodies[data] = body
        return data

    def verify(
        self,
        data: bytes,
        now: float,
        *,
        role: Role | None = None,
        subject: str | None = None,
        static_key: bytes | None = None,
    ) -> Certificate:
        """Apply the real verifier's field checks, without the signature."""
        body = self.bodies.get(data)
        if body is None:
            raise CertificateError("malformed", "unknown simulated certificate")
        if now >= body.expires_at:
            raise CertificateError("expired")
        if role is not None and body.role != role:
            raise CertificateError("wrong-role")
        if subject is not None and body.subject != subject:
            raise CertificateError("wrong-name")
        if static_key is not None and body.static_key != static_key:
            raise CertificateError("wrong-key")
        return Certificate(body, data)


@dataclass(frozen=True)
class SimConfig:
    """Size and failure model of one run."""

    supernodes: int = 1000
    users: int = 100_000
    replication: int = 3
    slots: int = DEFAULT_SLOTS
    crashed: int = 10
    seed: int = 1
    timeout_ms: float = 500.0
    processing_ms: float = 0.2
    signed: bool = False


@dataclass
class SimReport:
    """What a run measured."""

    config: SimConfig
    lookups: int = 0
    answered: int = 0
    hops: int = 0
    messages: int = 0
    retries: int = 0
    local: int = 0
    placed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    records_per_node: tuple[int, int, float] = (0, 0, 0.0)
    seconds: dict[str, float] = field(default_factory=dict)

    def percentile(self, fraction: float) -> float:
        """The ``fraction`` quantile of simulated lookup latency, in ms."""
        return percentile(self.latencies_ms, fraction)

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready."""
        n = max(1, self.lookups)
        low, high, mean = self.records_per_node
        return {
            "supernodes": self.config.supernodes,
            "users": self.config.users,
            "replication": self.config.replication,
            "slots": self.config.slots,
            "crashed": self.config.crashed,
            "signed_certificates": self.config.signed,
            "lookups": self.lookups,
            "answered_pct": round(100.0 * self.answered / n, 3),
            "hops_per_lookup": round(self.hops / n, 4),
            "hops_per_remote_lookup": round(self.hops / max(1, self.lookups - self.local), 4),
            "messages_per_lookup": round(self.messages / n, 4),
            "retries": self.retries,
            "answered_locally": self.local,
            "p50_ms": round(self.percentile(0.50), 2),
            "p99_ms": round(self.percentile(0.99), 2),
            "records_per_node": {"min": low, "max": high, "mean": round(mean, 1)},
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank; 0.0 when empty)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def user_name(index: int) -> str:
    """The simulated username of user ``index``."""
    return f"user{index:06d}"


class Certifier:
    """Makes device certificates: stub-registered or really signed (see the module doc)."""

    def __init__(self, signed: bool) -> None:
        """A real :class:`TestAuthority` when ``signed``, else the :class:`SimulationVerifier`."""
        self.authority = TestAuthority() if signed else None
        self.stub = SimulationVerifier()
        self.verifier: Verifier = self.authority.verifier() if self.authority else self.stub

    def certificate(self, body: CertificateBody) -> bytes:
        """The certificate bytes for ``body``."""
        if self.authority is None:
            return self.stub.add(body)
        return issue_certificate(self.authority.key, body)

    def issuer(self) -> bytes:
        """The issuer key the bodies name."""
        return self.authority.public if self.authority else bytes(32)


def make_record(index: int, certifier: Certifier, now: int, ttl: int = 600) -> PresenceRecord:
    """User ``index``'s presence record with one certified device, online for ``ttl`` s."""
    name = user_name(index)
    device_id = index.to_bytes(16, "big")
    key = (index + 1).to_bytes(32, "big")
    body = CertificateBody(
        version=1,
        role=Role.USER,
        subject=name,
        device_id=device_id,
        static_key=key,
        issued_at=now - 60,
        expires_at=now + 86400,
        serial=index + 1,
        issuer=certifier.issuer(),
    )
    endpoint = Endpoint(
        address=Address.parse(f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}:40000")
    )
    device = DeviceRecord(
        device_id=device_id,
        identity_key=key,
        certificate=certifier.certificate(body),
        endpoints=(endpoint,),
    )
    return PresenceRecord(
        user=name, status=1, devices=(device,), last_seen=now, expires=now + ttl, sequence=1
    )


class _Overlay:
    """The simulated supernodes: ownership, stores, coordinates, crashes."""

    def __init__(self, config: SimConfig, rng: random.Random) -> None:
        self.config = config
        self.ids = [f"sn-{n:05d}" for n in range(config.supernodes)]
        self.map = OwnershipMap(self.ids, config.replication, config.slots)
        limits = StoreLimits(max_records=max(1000, 4 * config.users))
        self.stores = {
            node: DirectoryStore(
                limits, slots=config.slots, owned_slots=self.map.slots_owned_by(node)
            )
            for node in self.ids
        }
        self.where = {node: (rng.uniform(0, 150), rng.uniform(0, 150)) for node in self.ids}
        self.down: frozenset[str] = frozenset()

    def rtt(self, a: str, b: str) -> float:
        (ax, ay), (bx, by) = self.where[a], self.where[b]
        return math.hypot(ax - bx, ay - by) + 1.0


def _place(overlay: _Overlay, certifier: Certifier, report: SimReport) -> list[str]:
    names = []
    for index in range(overlay.config.users):
        record = make_record(index, certifier, SIM_NOW)
        for node in overlay.map.owners_of_user(record.user):
            overlay.stores[node].publish(record, SIM_NOW, certifier.verifier)
            report.placed += 1
        names.append(record.user)
    return names


def _lookup(overlay: _Overlay, requester: str, name: str, report: SimReport) -> None:
    config = overlay.config
    holders = overlay.map.owners_of_user(name)
    report.lookups += 1
    if requester in holders:
        report.local += 1
        _record_answer(overlay.stores[requester], name, config.processing_ms, report)
        return
    latency = 0.0
    for node in sorted(holders, key=lambda h: overlay.rtt(requester, h)):
        report.messages += 1
        if node in overlay.down:
            latency += config.timeout_ms
            report.retries += 1
            continue
        report.messages += 1
        report.hops += 1
        latency += overlay.rtt(requester, node) + config.processing_ms
        _record_answer(overlay.stores[node], name, latency, report)
        return
    report.latencies_ms.append(latency)


def _record_answer(store: DirectoryStore, name: str, latency: float, report: SimReport) -> None:
    result = store.lookup(name, SIM_NOW + 1)
    if result.state is LookupState.ONLINE and result.record and result.record.user == name:
        report.answered += 1
    report.latencies_ms.append(latency)


def run_simulation(config: SimConfig | None = None) -> SimReport:
    """Build, place, crash, look up; return the measurements."""
    config = config or SimConfig()
    rng = random.Random(config.seed)
    report = SimReport(config)
    start = time.perf_counter()
    overlay = _Overlay(config, rng)
    certifier = Certifier(config.signed)
    report.seconds["ownership"] = time.perf_counter() - start
    start = time.perf_counter()
    names = _place(overlay, certifier, report)
    report.seconds["placement"] = time.perf_counter() - start
    sizes = [len(store) for store in overlay.stores.values()]
    report.records_per_node = (min(sizes), max(sizes), sum(sizes) / len(sizes))
    overlay.down = frozenset(rng.sample(overlay.ids, config.crashed))
    live = [node for node in overlay.ids if node not in overlay.down]
    start = time.perf_counter()
    rng.shuffle(names)
    for name in names:
        _lookup(overlay, rng.choice(live), name, report)
    report.seconds["lookups"] = time.perf_counter() - start
    return report


__all__ = [
    "SIM_NOW",
    "Certifier",
    "SimConfig",
    "SimReport",
    "SimulationVerifier",
    "make_record",
    "percentile",
    "run_simulation",
    "user_name",
]
