"""Candidates: the addresses a peer may use to reach us, and how they rank.

A *candidate* is one address a peer should send to, with the *base* it
arrives on locally: ``"udp"`` is our one UDP socket (host, server-reflexive,
predicted and peer-reflexive candidates all share it), ``"relay:<id>"`` and
``"tcp-relay:<id>"`` are relay allocations on our supernode (the first
reached over UDP, the second over the TCP link when UDP is blocked).
Candidates learned from the peer carry the base ``"remote"``.

Priorities follow RFC 8445 section 5.1.2 (``type << 24 | local << 8 |
(256 - component)``, one component): the *type preference* ranks kinds::

    HOST 126 > PRFLX 110 > SRFLX 100 > PREDICTED 90 > RELAYED (udp) 2 > RELAYED (tcp) 1

and the *local preference* puts IPv6 above IPv4 for the direct kinds, so a
dual-stack pair of peers talks IPv6 (design.md, "IPv6 is preferred when both
ends have it"). :func:`pair_priority` is the RFC 8445 section 6.1.2.3
formula, which both peers compute alike from the controlling side's view.

:func:`gather` turns what the client knows about itself (interface
addresses, the server-reflexive address its supernode reported, relay
allocations, its NAT class) into the list it signals: loopback and
link-local addresses are left out unless nothing else is there (tests on one
machine use 127.0.0.1), a server-reflexive address equal to a host address
(no NAT) is left out, and for NATs that map predictably it adds *predicted*
candidates: a port-preserving NAT maps our host port to the same public
port, a sequential NAT hands out the next ports after the one it gave our
supernode. Duplicates (same address) keep the best-ranked entry.

Candidates travel in signalling as :class:`hopline.wire.commands.Endpoint`
records (:func:`to_endpoint`, :func:`from_endpoint`); the priority is not on
the wire, each side recomputes it from the kind.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from hopline.wire.commands import Endpoint
from hopline.wire.types import Address

__all__ = [
    "MAX_PORT",
    "REMOTE_BASE",
    "UDP_BASE",
    "Candidate",
    "CandidateError",
    "CandidateKind",
    "candidate_priority",
    "from_endpoint",
    "gather",
    "is_relay_base",
    "pair_priority",
    "to_endpoint",
]

UDP_BASE = "udp"
REMOTE_BASE = "remote"
MAX_PORT = 0xFFFF
_COMPONENT = 1
_TCP_RELAY_PREFIX = "tcp-relay:"
_RELAY_PREFIX = "relay:"
_TRANSPORT_UDP, _TRANSPORT_TCP = 0, 1


class CandidateError(ValueError):
    """A candidate record we cannot use (unknown kind or transport)."""


class CandidateKind(IntEnum):
    """How a candidate was found; the values are the ``kind`` of an ``Endpoint``."""

    HOST = 0
    SRFLX = 1
    RELAYED = 2
    PRFLX = 3
    PREDICTED = 4


_TYPE_PREFERENCE = {
    CandidateKind.HOST: 126,
    CandidateKind.PRFLX: 110,
    CandidateKind.SRFLX: 100,
    CandidateKind.PREDICTED: 90,
    CandidateKind.RELAYED: 2,
}
_TCP_RELAY_PREFERENCE = 1
_LOCAL_PREFERENCE_V6 = 65535
_LOCAL_PREFERENCE_V4 = 32767


@dataclass(frozen=True)
class Candidate:
    """One address a peer may send to, and the local base it arrives on."""

    address: Address
    kind: CandidateKind
    base: str
    priority: int
    foundation: str = ""


def is_relay_base(base: str) -> bool:
    """Whether ``base`` is a relay allocation (over UDP or over TCP)."""
    return base.startswith((_RELAY_PREFIX, _TCP_RELAY_PREFIX))


def candidate_priority(kind: CandidateKind, address: Address, base: str) -> int:
    """The RFC 8445 priority of a candidate (higher is better).

    Kinds rank HOST > PRFLX > SRFLX > PREDICTED > RELAYED over UDP > RELAYED
    over TCP (``base`` starting ``tcp-relay:``); within a direct kind IPv6
    ranks above IPv4.
    """
    if kind is CandidateKind.RELAYED and base.startswith(_TCP_RELAY_PREFIX):
        type_pref = _TCP_RELAY_PREFERENCE
    else:
        type_pref = _TYPE_PREFERENCE[kind]
    direct = kind is not CandidateKind.RELAYED
    local_pref = _LOCAL_PREFERENCE_V6 if direct and address.family == 6 else _LOCAL_PREFERENCE_V4
    return (type_pref << 24) | (local_pref << 8) | (256 - _COMPONENT)


def pair_priority(controlling: Candidate, controlled: Candidate) -> int:
    """RFC 8445 section 6.1.2.3: ``2^32*min(G,D) + 2*max(G,D) + (G > D)``."""
    g, d = controlling.priority, controlled.priority
    return (min(g, d) << 32) + 2 * max(g, d) + (1 if g > d else 0)


def _make(kind: CandidateKind, address: Address, base: str) -> Candidate:
    foundation = f"{kind.name.lower()}/{base}/{address.host}"
    return Candidate(address, kind, base, candidate_priority(kind, address, base), foundation)


def _usable_hosts(host: Sequence[Address]) -> list[Address]:
    routable = [a for a in host if _routable(a.host)]
    if routable:
        return routable
    return [a for a in host if a.host.is_loopback]


def _routable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def _predicted(
    hosts: Sequence[Address],
    srflx: Address,
    *,
    port_preserving: bool,
    sequential: bool,
    predict: int,
) -> Iterable[Address]:
    if port_preserving:
        for host in hosts:
            if host.family == srflx.family:
                yield Address(srflx.host, host.port)
    if sequential:
        for step in range(1, max(predict, 0) + 1):
            if srflx.port + step <= MAX_PORT:
                yield Address(srflx.host, srflx.port + step)


def gather(
    host: Sequence[Address],
    srflx: Address | None,
    relayed: Sequence[tuple[Address, str]] = (),
    *,
    port_preserving: bool = False,
    sequential: bool = False,
    predict: int = 0,
) -> list[Candidate]:
    """The candidates to signal, best first (see the module docstring).

    ``relayed`` holds ``(relay address, base)`` pairs, the base being
    ``"relay:<id>"`` or ``"tcp-relay:<id>"``. ``predict`` bounds how many
    ports after ``srflx`` a ``sequential`` NAT is guessed to hand out.
    """
    hosts = _usable_hosts(host)
    found = [_make(CandidateKind.HOST, a, UDP_BASE) for a in hosts]
    if srflx is not None and srflx not in hosts:
        found.append(_make(CandidateKind.SRFLX, srflx, UDP_BASE))
        guesses = _predicted(
            hosts, srflx, port_preserving=port_preserving, sequential=sequential, predict=predict
        )
        found.extend(_make(CandidateKind.PREDICTED, a, UDP_BASE) for a in guesses)
    found.extend(_make(CandidateKind.RELAYED, a, base) for a, base in relayed)
    return _best_per_address(found)


def _best_per_address(found: Iterable[Candidate]) -> list[Candidate]:
    best: dict[Address, Candidate] = {}
    for candidate in found:
        kept = best.get(candidate.address)
        if kept is None or candidate.priority > kept.priority:
            best[candidate.address] = candidate
    return sorted(best.values(), key=lambda c: c.priority, reverse=True)


def to_endpoint(candidate: Candidate) -> Endpoint:
    """The signalling record for ``candidate`` (transport 1 for a relay reached over TCP)."""
    tcp = candidate.base.startswith(_TCP_RELAY_PREFIX)
    return Endpoint(
        address=candidate.address,
        transport=_TRANSPORT_TCP if tcp else _TRANSPORT_UDP,
        kind=int(candidate.kind),
    )


def from_endpoint(endpoint: Endpoint) -> Candidate:
    """A remote candidate (base ``"remote"``) from a signalling record.

    Raises :class:`CandidateError` on an unknown kind or transport.
    """
    try:
        kind = CandidateKind(endpoint.kind)
    except ValueError as exc:
        raise CandidateError(f"unknown candidate kind {endpoint.kind}") from exc
    if endpoint.transport not in (_TRANSPORT_UDP, _TRANSPORT_TCP):
        raise CandidateError(f"unknown transport {endpoint.transport}")
    rank_base = _TCP_RELAY_PREFIX if endpoint.transport == _TRANSPORT_TCP else REMOTE_BASE
    priority = candidate_priority(kind, endpoint.address, rank_base)
    foundation = f"{kind.name.lower()}/{REMOTE_BASE}/{endpoint.address.host}"
    return Candidate(endpoint.address, kind, REMOTE_BASE, priority, foundation)
