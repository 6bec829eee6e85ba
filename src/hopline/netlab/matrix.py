"""The path matrix: every client class against every other, on real kernel NATs.

For each ordered pair of :class:`~hopline.netlab.NatClass` values (caller,
callee), a client of the caller's class opens a path to a client of the
callee's class (``{"op": "path"}`` of :mod:`hopline.netlab.agent`, which
round-trips a ping over it), then the callee pings back over the path it
accepted. A pair passes when both round trips work and both sides report
the path kind :func:`expected_path` predicts.

Which pairs can go direct follows from the classes' behaviour
(:data:`BEHAVIOUR`, RFC 4787 terms), not from a table of answers:

* a side without UDP forces a relay reached over TCP (``tcp-relay``);
* two sides with global IPv6 addresses reach each other directly;
* otherwise a direct path exists when either side accepts unsolicited
  inbound datagrams on its mapping (no NAT, or a full cone), or both map
  endpoint-independently (simultaneous probes open both NATs' filters);
* anything else — a symmetric NAT against a port-restricted or symmetric
  one — needs a relay.

Each client host takes part twice per class pair at most: the caller of
(A, B) is ``A``'s first host and the callee is ``B``'s second, so the two
directions of a pair are different hosts and same-class pairs have two
clients. :func:`rounds` schedules the 49 pairs in 7 rounds where every host
calls or answers at most once, so a round runs all its pairs at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hopline.netlab.nat import NatClass
from hopline.netlab.network import LabNetwork
from hopline.netlab.system import NetlabError

__all__ = [
    "BEHAVIOUR",
    "CLASSES",
    "Behaviour",
    "PairResult",
    "expected_path",
    "host_name",
    "markdown_table",
    "rounds",
    "run_round",
]

CLASSES = (
    NatClass.PUBLIC,
    NatClass.MASQUERADE,
    NatClass.FULL_CONE,
    NatClass.SYMMETRIC,
    NatClass.DOUBLE_NAT,
    NatClass.UDP_BLOCKED,
    NatClass.IPV6,
)
_SHORT = {
    NatClass.PUBLIC: "pub",
    NatClass.MASQUERADE: "masq",
    NatClass.FULL_CONE: "cone",
    NatClass.SYMMETRIC: "sym",
    NatClass.DOUBLE_NAT: "dbl",
    NatClass.UDP_BLOCKED: "blk",
    NatClass.IPV6: "six",
}


@dataclass(frozen=True)
class Behaviour:
    """What a class's path to the public segment does to UDP."""

    udp: bool  # UDP passes at all
    eim: bool  # endpoint-independent mapping (or no NAT)
    open: bool  # unsolicited inbound datagrams reach the client (no NAT, full cone)
    ipv6: bool  # a global IPv6 address, neither translated nor filtered


BEHAVIOUR = {
    NatClass.PUBLIC: Behaviour(udp=True, eim=True, open=True, ipv6=False),
    NatClass.MASQUERADE: Behaviour(udp=True, eim=True, open=False, ipv6=False),
    NatClass.FULL_CONE: Behaviour(udp=True, eim=True, open=True, ipv6=False),
    NatClass.SYMMETRIC: Behaviour(udp=True, eim=False, open=False, ipv6=False),
    NatClass.DOUBLE_NAT: Behaviour(udp=True, eim=True, open=False, ipv6=False),
    NatClass.UDP_BLOCKED: Behaviour(udp=False, eim=True, open=False, ipv6=False),
    NatClass.IPV6: Behaviour(udp=True, eim=False, open=False, ipv6=True),
}


def expected_path(a: NatClass, b: NatClass) -> str:
    """The path kind a pair of classes must get: direct, relay or tcp-relay."""
    x, y = BEHAVIOUR[a], BEHAVIOUR[b]
    if not (x.udp and y.udp):
        return "tcp-relay"
    if (x.ipv6 and y.ipv6) or x.open or y.open or (x.eim and y.eim):
        return "direct"
    return "relay"


def host_name(nat: NatClass, n: int) -> str:
    """The lab host (and user) name of the ``n``-th client of class ``nat``."""
    return f"{_SHORT[nat]}{n}"


def rounds(classes: Sequence[NatClass] = CLASSES) -> list[list[tuple[NatClass, NatClass]]]:
    """Every ordered pair once, in rounds where each caller and callee host is busy once."""
    n = len(classes)
    return [[(classes[i], classes[(i + r) % n]) for i in range(n)] for r in range(n)]


@dataclass
class PairResult:
    """One path between a caller and a callee, as both saw it."""

    caller: str  # class names
    callee: str
    expected: str
    ok: bool
    kind: str | None = None  # what the caller saw
    callee_kind: str | None = None
    family: str | None = None
    first_packet_ms: float | None = None
    established_ms: float | None = None
    rtt_ms: float | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Both round trips worked and both sides saw the expected kind."""
        return self.ok and self.kind == self.expected == self.callee_kind

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return {**asdict(self), "passed": self.passed}


def run_round(
    network: LabNetwork, pairs: Sequence[tuple[NatClass, NatClass]], timeout: float = 20.0
) -> list[PairResult]:
    """Open every pair's path at once, then ping back from every callee."""
    calls = [(a, b, network.clients[host_name(a, 1)], host_name(b, 2)) for a, b in pairs]
    for _, _, caller, callee in calls:
        caller.agent.send({"op": "path", "user": callee, "timeout": timeout, "fresh": True})
    results = []
    for a, b, caller, _ in calls:
        try:
            answer = caller.agent.read_json(timeout + 15)
        except NetlabError as exc:
            answer = {"ok": False, "error": str(exc)}
        results.append(_result(a, b, answer))
    for (_, _, caller, callee), result in zip(calls, results, strict=True):
        if result.ok:
            _ping_back(network, callee, caller.user, result)
    return results


def _result(a: NatClass, b: NatClass, answer: dict[str, Any]) -> PairResult:
    result = PairResult(str(a), str(b), expected_path(a, b), bool(answer.get("ok")))
    if not result.ok:
        result.error = str(answer.get("error"))
        return result
    path = answer["path"]
    result.kind, result.family = path.get("kind"), path.get("family")
    result.first_packet_ms = path.get("first_packet_ms")
    result.established_ms = path.get("established_ms")
    result.rtt_ms = answer.get("rtt_ms")
    return result


def _ping_back(network: LabNetwork, callee: str, caller: str, result: PairResult) -> None:
    answer = network.clients[callee].agent.request({"op": "path_ping", "user": caller}, 30)
    if not answer.get("ok"):
        result.ok, result.error = False, f"ping back: {answer.get('error')}"
        return
    result.callee_kind = answer["path"].get("kind")


def markdown_table(results: Sequence[PairResult], value: str = "kind") -> str:
    """A classes x classes table (rows: caller, columns: callee) of ``value``."""
    names = [str(c) for c in CLASSES]
    cells: dict[tuple[str, str], list[PairResult]] = {}
    for r in results:
        cells.setdefault((r.caller, r.callee), []).append(r)
    lines = ["| caller \\ callee | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for a in names:
        row = [_cell(cells.get((a, b), []), value) for b in names]
        lines.append(f"| **{a}** | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _cell(results: list[PairResult], value: str) -> str:
    if not results:
        return ""
    if value == "kind":
        kinds = {r.kind if r.passed else f"FAIL ({r.kind})" for r in results}
        return ", ".join(sorted(k or "?" for k in kinds))
    times = [getattr(r, value) for r in results if r.passed and getattr(r, value) is not None]
    if not times:
        return "-"
    return f"{results[0].expected} {statistics.median(times):.0f} ms"
