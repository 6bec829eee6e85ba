"""NAT discovery against real responder cores behind simulated NATs, one test per class."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.nat.discovery import DiscoveryConfig, NatDiscovery, NatReport, NatType
from hopline.nat.service import Drop, NotStun, Port, Reflect, Reply, StunResponder
from hopline.nat.stun import Addr
from hopline.testing.fakenat import FakeNat

A, A_ALT = ("203.0.113.10", 3478), ("203.0.113.10", 3479)
B, B_ALT = ("203.0.113.20", 3478), ("203.0.113.20", 3479)
V6 = ("2001:db8::10", 3478)
CLIENT = ("192.168.1.2", 5000)


@dataclass
class SimNet:
    """Client behind ``nats`` (nearest first); servers A and B (partners), optional v6."""

    nats: list[FakeNat] = field(default_factory=list)
    client: Addr = CLIENT
    client6: Addr = ("2001:db8:1::2", 6000)
    blocked: bool = False
    partners: bool = True
    alternates: bool = True
    lose_first: int = 0  # drop this many client datagrams first
    dead: set[Addr] = field(default_factory=set)
    sent: int = 0

    def __post_init__(self) -> None:
        self.servers: dict[Addr, tuple[StunResponder, Port]] = {}
        for primary, alt, partner in ((A, A_ALT, B), (B, B_ALT, A), (V6, None, None)):
            responder = StunResponder(primary, alt if self.alternates else None)
            if self.partners and partner is not None:
                responder.partners = [partner]
            self.servers[primary] = (responder, Port.PRIMARY)
            if alt is not None and self.alternates:
                self.servers[alt] = (responder, Port.ALTERNATE)

    def run(
        self, servers: list[Addr], local: list[Addr] | None = None, until: float = 30.0
    ) -> tuple[NatReport, float]:
        """Run discovery to the end; return the report and the (fake) time it took."""
        counter = iter(range(1, 10**6))
        core = NatDiscovery(
            servers,
            now=0.0,
            local_addresses=[self.client] if local is None else local,
            config=DiscoveryConfig(),
            txid=lambda: next(counter).to_bytes(12, "big"),
        )
        now = 0.0
        while not core.done and now < until:
            for data, dst, sock in core.datagrams_to_send(now):
                self._route(core, data, dst, now, sock)
            timer = core.get_timer()
            if timer is None:
                break
            now = max(now, timer)
            core.handle_timer(now)
        assert core.result is not None
        return core.result, now

    def local(self, sock: int, v6: bool = False) -> Addr:
        """The client's address for socket ``sock`` (socket 1: the next port)."""
        host, port = self.client6 if v6 else self.client
        return (host, port + sock)

    def _route(self, core: NatDiscovery, data: bytes, dst: Addr, now: float, sock: int) -> None:
        self.sent += 1
        if self.sent <= self.lose_first or (self.blocked and ":" not in dst[0]):
            return
        src = self.local(sock, ":" in dst[0])
        if ":" not in dst[0]:
            for nat in self.nats:
                src = nat.outbound(src, dst)
        if dst not in self.servers or dst in self.dead:
            return
        responder, port = self.servers[dst]
        decision = responder.request(data, src, port, now)
        assert not isinstance(decision, NotStun)
        if isinstance(decision, Reflect):
            partner = self.servers[decision.partner][0]
            decision = partner.reflect(decision.target, decision.transaction_id, now)
            origin = decision_origin(partner, Port.PRIMARY)
        else:
            origin = decision_origin(responder, getattr(decision, "via", Port.PRIMARY))
        if isinstance(decision, Drop):
            return
        assert isinstance(decision, Reply)
        assert decision.to == src  # answers only ever go to the request's source
        self._deliver(core, decision.datagram, origin, decision.to, now)

    def _deliver(self, core: NatDiscovery, data: bytes, origin: Addr, to: Addr, now: float) -> None:
        if self.blocked and ":" not in origin[0]:
            return
        dst: Addr | None = to
        if ":" not in origin[0]:
            for nat in reversed(self.nats):
                assert dst is not None
                dst = nat.inbound(origin, dst)
                if dst is None:
                    return
        assert dst is not None
        sock = dst[1] - (self.client6 if ":" in origin[0] else self.client)[1]
        assert dst == self.local(sock, ":" in origin[0])
        assert core.receive(data, origin, now, sock)


def decision_origin(responder: StunResponder, via: Port) -> Addr:
    """The address a reply leaves from."""
    origin = responder.primary if via is Port.PRIMARY else responder.alternate
    assert origin is not None
    return origin


EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"
PUBLIC_IP = "198.51.100.7"


def nat(mapping: str, filtering: str, ip: str = PUBLIC_IP, mode: str = "preserve") -> FakeNat:
    return FakeNat(mapping, filtering, ip, mode, seed=1)


def test_open_internet_host() -> None:
    net = SimNet(client=("203.0.113.55", 5000))
    report, _ = net.run([A, B])
    assert report.udp
    assert report.nat_type is NatType.OPEN
    assert report.public_address == ("203.0.113.55", 5000)
    assert (report.mapping, report.filtering) == (EIM, EIM)
    assert report.port_preserving is True


@pytest.mark.parametrize(
    ("filtering", "expected"),
    [(EIM, NatType.FULL_CONE), (ADM, NatType.RESTRICTED), (APDM, NatType.PORT_RESTRICTED)],
)
def test_endpoint_independent_mapping_by_filtering(filtering: str, expected: NatType) -> None:
    report, _ = SimNet(nats=[nat(EIM, filtering)]).run([A, B])
    assert report.udp
    assert report.public_address == (PUBLIC_IP, 5000)
    assert report.mapping == EIM
    assert report.filtering == filtering
    assert report.nat_type is expected
    assert report.port_preserving is True
    assert set(report.rtts) >= {"203.0.113.10:3478", "203.0.113.10:3479", "203.0.113.20:3478"}


@pytest.mark.parametrize("mapping", [ADM, APDM])
@pytest.mark.parametrize("filtering", [ADM, APDM])
def test_symmetric_nats(mapping: str, filtering: str) -> None:
    report, _ = SimNet(nats=[nat(mapping, filtering, mode="random")]).run([A, B])
    assert report.mapping == mapping
    assert report.filtering == filtering
    assert report.nat_type is NatType.SYMMETRIC
    assert report.port_preserving is False


def test_double_nat_is_port_restricted() -> None:
    home = nat(EIM, APDM, ip="10.0.0.2")
    cgn = nat(EIM, APDM, ip=PUBLIC_IP, mode="sequential")
    report, _ = SimNet(nats=[home, cgn]).run([A, B])
    assert report.public_address == (PUBLIC_IP, 40000)
    assert report.nat_type is NatType.PORT_RESTRICTED
    assert report.port_preserving is False


def test_udp_blocked_ends_quickly() -> None:
    report, took = SimNet(nats=[nat(EIM, APDM)], blocked=True).run([A, B])
    assert not report.udp
    assert report.nat_type is NatType.UDP_BLOCKED
    assert report.public_address is None
    assert (report.mapping, report.filtering) == ("unknown", "unknown")
    assert took <= 3.0  # two servers tried, 1.5 s (fake time) each


def test_a_silent_first_server_falls_back_to_the_second() -> None:
    net = SimNet(nats=[nat(EIM, APDM)], dead={A})
    report, _ = net.run([A, B])
    assert report.udp
    assert report.public_address == (PUBLIC_IP, 5000)
    assert "203.0.113.20:3478" in report.rtts


def test_lost_requests_are_retransmitted() -> None:
    report, _ = SimNet(nats=[nat(EIM, EIM)], lose_first=2).run([A, B])
    assert report.nat_type is NatType.FULL_CONE


def test_one_server_learns_its_partner_from_other_address() -> None:
    report, _ = SimNet(nats=[nat(EIM, ADM)]).run([A])
    assert report.nat_type is NatType.RESTRICTED
    assert report.tests["other-address"] == f"{PUBLIC_IP}:5000"


def test_without_partners_change_ip_is_refused_and_filtering_is_partly_known() -> None:
    cone = SimNet(nats=[nat(EIM, EIM)], partners=False).run([A])[0]
    assert cone.filtering == "unknown"  # 420 to change-IP: EIF cannot be told from ADF
    assert cone.mapping == "unknown"  # no second IP to compare with
    strict = SimNet(nats=[nat(EIM, APDM)], partners=False).run([A])[0]
    assert strict.filtering == APDM  # the alternate port's answer was filtered


def test_without_an_alternate_port_mapping_still_tells_symmetric() -> None:
    report, _ = SimNet(nats=[nat(APDM, APDM, mode="random")], alternates=False).run([A, B])
    assert report.nat_type is NatType.SYMMETRIC
    assert report.filtering == "unknown"


def test_ipv6_server_gives_the_public_ipv6_address() -> None:
    net = SimNet(nats=[nat(EIM, APDM)])
    report, _ = net.run([A, B, V6], local=[CLIENT, net.client6])
    assert report.ipv6
    assert report.public_address6 == net.client6  # routed without NAT
    assert report.rtts["[2001:db8::10]:3478"] >= 0
    assert report.nat_type is NatType.PORT_RESTRICTED


def test_report_json_is_plain() -> None:
    report, _ = SimNet(nats=[nat(EIM, APDM)]).run([A, B])
    doc = report.to_json()
    assert doc["nat_type"] == "port-restricted"
    assert doc["nat_class"] == 4
    assert doc["public_address"] == f"{PUBLIC_IP}:5000"
    assert doc["local_addresses"] == ["192.168.1.2:5000"]


def test_non_stun_and_stray_responses_are_not_results() -> None:
    core = NatDiscovery([A], now=0.0, txid=lambda: bytes(12))
    assert not core.receive(b"\xe1hopline", A, 0.0)
    assert core.receive(b"\x01\x01\x00\x00\x21\x12\xa4\x42" + b"\x07" * 12, A, 0.0)
    assert core.dropped["unexpected"] == 1
    assert not core.done


# ------------------------------------------------------------ the fake NAT itself


def test_fake_nat_mapping_behaviours() -> None:
    src, d1, d2, d3 = ("10.0.0.2", 5000), ("1.1.1.1", 1), ("1.1.1.1", 2), ("2.2.2.2", 1)
    eim = FakeNat(EIM, EIM, "9.9.9.9")
    assert eim.outbound(src, d1) == eim.outbound(src, d3) == ("9.9.9.9", 5000)
    adm = FakeNat(ADM, EIM, "9.9.9.9", "sequential")
    assert adm.outbound(src, d1) == adm.outbound(src, d2) != adm.outbound(src, d3)
    apdm = FakeNat(APDM, EIM, "9.9.9.9", "sequential")
    assert len({apdm.outbound(src, d) for d in (d1, d2, d3)}) == 3


def test_fake_nat_filtering_behaviours() -> None:
    src, d1 = ("10.0.0.2", 5000), ("1.1.1.1", 1)
    for filtering, same_ip, other_ip in (
        (EIM, True, True),
        (ADM, True, False),
        (APDM, False, False),
    ):
        box = FakeNat(EIM, filtering, "9.9.9.9")
        public = box.outbound(src, d1)
        assert box.inbound(d1, public) == src
        assert (box.inbound(("1.1.1.1", 9), public) == src) is same_ip
        assert (box.inbound(("3.3.3.3", 1), public) == src) is other_ip
        assert box.inbound(d1, ("9.9.9.9", 1234)) is None  # no mapping there


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 1))
def test_arbitrary_datagrams_never_break_discovery(data: bytes, sock: int) -> None:
    core = NatDiscovery([A, B], now=0.0)
    core.datagrams_to_send(0.0)
    core.receive(data, A, 0.0, sock)
    assert not core.done  # nothing forged from random bytes completes the run
