"""The supernode's STUN responder: what it answers, from which port, and what it drops."""

from __future__ import annotations

import struct
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.identity import Role
from hopline.nat.service import (
    Drop,
    NotStun,
    Port,
    Reflect,
    Reply,
    StunConfig,
    StunResponder,
    StunService,
    partners_after,
)
from hopline.nat.stun import (
    BINDING,
    AttributeType,
    ChangeRequest,
    MessageClass,
    StunMessage,
    decode,
    encode,
)
from hopline.wire import Address
from hopline.wire import decode as wire_decode
from hopline.wire import encode as wire_encode
from hopline.wire.nat import NatReflect

PRIMARY, ALTERNATE = ("203.0.113.10", 33033), ("203.0.113.10", 33034)
PARTNER, PARTNER6 = ("203.0.113.20", 33033), ("2001:db8::20", 33033)
CLIENT, CLIENT6 = ("198.51.100.7", 40001), ("2001:db8:5::7", 40001)
TXID = bytes(range(12))


def request(change: ChangeRequest | None = None, **fields: object) -> bytes:
    message = StunMessage(
        BINDING, MessageClass.REQUEST, TXID, change_request=change, fingerprint=True, **fields
    )
    return encode(message)


def responder(**config: float) -> StunResponder:
    core = StunResponder(PRIMARY, ALTERNATE, StunConfig(**config))  # type: ignore[arg-type]
    core.partners = [PARTNER6, PARTNER]
    return core


def reply_of(decision: object) -> tuple[Reply, StunMessage]:
    assert isinstance(decision, Reply), decision
    return decision, decode(decision.datagram)


def test_binding_request_gets_the_source_address_back() -> None:
    reply, message = reply_of(responder().request(request(), CLIENT, Port.PRIMARY, 0.0))
    assert (reply.to, reply.via) == (CLIENT, Port.PRIMARY)
    assert message.message_class is MessageClass.SUCCESS
    assert message.transaction_id == TXID
    assert message.xor_mapped_address == message.mapped_address == CLIENT
    assert message.response_origin == PRIMARY
    assert message.other_address == PARTNER  # the partner of the client's family
    assert message.software == "hopline"
    assert message.fingerprint


def test_request_on_the_alternate_port_is_answered_from_it() -> None:
    reply, message = reply_of(responder().request(request(), CLIENT, Port.ALTERNATE, 0.0))
    assert reply.via is Port.ALTERNATE
    assert message.response_origin == ALTERNATE


def test_change_port_answers_from_the_other_port() -> None:
    core = responder()
    reply, message = reply_of(core.request(request(ChangeRequest.PORT), CLIENT, Port.PRIMARY, 0))
    assert reply.via is Port.ALTERNATE
    assert message.response_origin == ALTERNATE
    reply, _ = reply_of(core.request(request(ChangeRequest.PORT), CLIENT, Port.ALTERNATE, 0))
    assert reply.via is Port.PRIMARY


@pytest.mark.parametrize("change", [ChangeRequest.IP, ChangeRequest.IP | ChangeRequest.PORT])
def test_change_ip_goes_to_the_partner_of_the_clients_family(change: ChangeRequest) -> None:
    core = responder()
    assert core.request(request(change), CLIENT, Port.PRIMARY, 0.0) == Reflect(
        PARTNER, CLIENT, TXID
    )
    assert core.request(request(change), CLIENT6, Port.PRIMARY, 0.0) == Reflect(
        PARTNER6, CLIENT6, TXID
    )


def test_partner_answers_a_reflect_from_its_primary_port() -> None:
    partner = StunResponder(PARTNER, None)
    reply, message = reply_of(partner.reflect(CLIENT, TXID, 0.0))
    assert (reply.to, reply.via) == (CLIENT, Port.PRIMARY)
    assert message.xor_mapped_address == CLIENT
    assert message.response_origin == PARTNER
    assert message.transaction_id == TXID
    assert partner.reflect(CLIENT, b"short", 0.0) == Drop("bad-reflect")


def test_changes_that_cannot_be_honoured_get_420() -> None:
    lonely = StunResponder(PRIMARY, None)
    for change in (ChangeRequest.IP, ChangeRequest.PORT):
        reply, message = reply_of(lonely.request(request(change), CLIENT, Port.PRIMARY, 0.0))
        assert reply.via is Port.PRIMARY
        assert message.message_class is MessageClass.ERROR
        assert message.error_code is not None and message.error_code[0] == 420
        assert message.unknown_attributes == (AttributeType.CHANGE_REQUEST,)
    _, plain = reply_of(lonely.request(request(), CLIENT, Port.PRIMARY, 0.0))
    assert plain.other_address is None  # neither a partner nor an alternate port


def test_other_address_is_the_alternate_port_without_a_partner() -> None:
    core = StunResponder(PRIMARY, ALTERNATE)
    _, message = reply_of(core.request(request(), CLIENT, Port.PRIMARY, 0.0))
    assert message.other_address == ALTERNATE


def test_response_port_is_not_honoured() -> None:
    reply, _ = reply_of(responder().request(request(response_port=53), CLIENT, Port.PRIMARY, 0))
    assert reply.to == CLIENT


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    data = bytearray(request())[:-8]  # without FINGERPRINT
    data += struct.pack("!HH", 0x0024, 4) + b"\0\0\0\1"  # PRIORITY: an ICE attribute
    struct.pack_into("!H", data, 2, len(data) - 20)
    reply, message = reply_of(responder().request(bytes(data), CLIENT, Port.PRIMARY, 0.0))
    assert message.message_class is MessageClass.ERROR
    assert message.unknown_attributes == (0x0024,)
    assert reply.to == CLIENT


def test_only_binding_requests_are_answered() -> None:
    core = responder()
    success = encode(StunMessage(BINDING, MessageClass.SUCCESS, TXID, xor_mapped_address=CLIENT))
    indication = encode(StunMessage(BINDING, MessageClass.INDICATION, TXID))
    allocate = encode(StunMessage(0x003, MessageClass.REQUEST, TXID))
    for data in (success, indication, allocate):
        assert core.request(data, CLIENT, Port.PRIMARY, 0.0) == Drop("not-binding-request")
    assert core.dropped["not-binding-request"] == 3
    assert core.answered.total() == 0


def test_malformed_stun_is_dropped_and_counted() -> None:
    data = bytearray(request())
    data[-1] ^= 1  # break the fingerprint
    core = responder()
    assert core.request(bytes(data), CLIENT, Port.PRIMARY, 0.0) == Drop("bad-fingerprint")
    assert core.dropped["bad-fingerprint"] == 1


def test_hopline_datagrams_are_not_stun() -> None:
    core = responder()
    assert isinstance(core.request(b"\xe1" + bytes(40), CLIENT, Port.PRIMARY, 0.0), NotStun)
    assert isinstance(core.request(b"", CLIENT, Port.PRIMARY, 0.0), NotStun)
    assert not core.dropped


def test_answers_are_rate_limited_per_source_ip() -> None:
    core = responder(rate=1.0, burst=3.0)
    decisions = [core.request(request(), CLIENT, Port.PRIMARY, 0.0) for _ in range(5)]
    assert [isinstance(d, Reply) for d in decisions] == [True, True, True, False, False]
    assert core.dropped["rate-limited"] == 2
    other = ("198.51.100.8", 1)
    assert isinstance(core.request(request(), other, Port.PRIMARY, 0.0), Reply)
    assert isinstance(core.request(request(), CLIENT, Port.PRIMARY, 1.0), Reply)  # refilled


def test_rate_limit_table_is_bounded() -> None:
    core = responder(max_sources=16)
    for i in range(1000):
        core.request(request(), (f"10.0.{i // 256}.{i % 256}", 1), Port.PRIMARY, 0.0)
    assert core.sources == 16


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_nor_get_answers_unless_binding(data: bytes) -> None:
    decision = responder().request(data, CLIENT, Port.PRIMARY, 0.0)
    assert isinstance(decision, NotStun | Drop | Reply)
    if isinstance(decision, Reply):
        assert decode(data).is_binding_request


def test_partner_order_is_the_next_members_by_node_id_alive_first() -> None:
    members = [
        ("a", ("10.0.0.1", 1), True),
        ("c", ("10.0.0.3", 1), False),
        ("d", ("10.0.0.4", 1), True),
        ("e", ("10.0.0.5", 1), True),
    ]
    order = partners_after("b", members)
    assert order == [("10.0.0.4", 1), ("10.0.0.5", 1), ("10.0.0.1", 1), ("10.0.0.3", 1)]
    assert partners_after("e", members)[0] == ("10.0.0.1", 1)


def test_reflect_notice_round_trips() -> None:
    notice = NatReflect(target=Address.of(*CLIENT), transaction_id=TXID)
    assert wire_decode(wire_encode(notice)) == notice


def test_rfc3489_requests_are_answered_the_classic_way() -> None:
    txid16 = bytes(range(16))
    data = b"\x00\x01\x00\x08" + txid16 + b"\x00\x03\x00\x04\x00\x00\x00\x00"
    reply = responder().request(data, CLIENT, Port.PRIMARY, 0.0)
    assert isinstance(reply, Reply)
    assert reply.datagram[:2] == b"\x01\x01" and reply.datagram[4:20] == txid16
    assert reply.to == CLIENT and reply.via is Port.PRIMARY
    # MAPPED-ADDRESS, first: family 1, port, then the IPv4 address
    assert reply.datagram[20:32] == b"\x00\x01\x00\x08\x00\x01" + (40001).to_bytes(2, "big") + (
        bytes([198, 51, 100, 7])
    )
    changed = data[:-1] + b"\x04"  # change-IP: to the partner, with the 16-byte id
    assert responder().request(changed, CLIENT, Port.PRIMARY, 0.0) == Reflect(
        PARTNER, CLIENT, txid16
    )
    partner_reply = StunResponder(PARTNER).reflect(CLIENT, txid16, 0.0)
    assert isinstance(partner_reply, Reply)
    assert partner_reply.datagram[4:20] == txid16
    assert isinstance(responder().request(data[:-2], CLIENT, Port.PRIMARY, 0.0), NotStun)


# ------------------------------------------------------------ the shell's plumbing


class _Endpoint:
    """What StunService uses of an Endpoint: handlers, send_raw, connections."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.raw_seen: list[bytes] = []
        self.datagrams_seen: list[bytes] = []
        self.raw_handler = self._raw
        self.datagram_handler = self._datagram
        self.connections: dict[object, object] = {}

    def _raw(self, data: bytes, addr: tuple[str, int]) -> bool:
        self.raw_seen.append(data)
        return True

    def _datagram(self, pc: object, data: bytes) -> None:
        self.datagrams_seen.append(data)

    def send_raw(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((datagram, addr))


class _Peer:
    def __init__(self, role: int) -> None:
        self.certificate = types.SimpleNamespace(role=role)


def _pc(role: int) -> object:
    return types.SimpleNamespace(peer=_Peer(role))


def test_service_answers_stun_and_chains_everything_else() -> None:
    endpoint = _Endpoint()
    service = StunService(endpoint, StunResponder(PRIMARY))  # type: ignore[arg-type]
    assert endpoint.raw_handler == service.on_raw
    assert service.on_raw(request(), CLIENT)
    assert [addr for _, addr in endpoint.sent] == [CLIENT]
    assert decode(endpoint.sent[0][0]).xor_mapped_address == CLIENT
    assert service.on_raw(b"\x99 not stun", CLIENT)  # passed on: the old handler took it
    assert endpoint.raw_seen == [b"\x99 not stun"]
    service.on_datagram(_pc(Role.SUPERNODE), b"\x10 membership")
    assert endpoint.datagrams_seen == [b"\x10 membership"]
    assert service.answered == 1


def test_reflect_notices_only_from_supernodes() -> None:
    endpoint = _Endpoint()
    service = StunService(endpoint, StunResponder(PARTNER))  # type: ignore[arg-type]
    notice = wire_encode(NatReflect(target=Address.of(*CLIENT), transaction_id=TXID))
    service.on_datagram(_pc(Role.USER), notice)
    assert endpoint.sent == []
    assert service.drop_counts()["stun:reflect-not-a-supernode"] == 1
    service.on_datagram(_pc(Role.SUPERNODE), notice)
    (datagram, to) = endpoint.sent[0]
    assert to == CLIENT
    message = decode(datagram)
    assert message.transaction_id == TXID and message.response_origin == PARTNER
