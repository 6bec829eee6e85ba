"""The sans-I/O Connection: handshake, certificates, sealing, requests (deterministic)."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hopline.connection import (
    ChannelDataReceived,
    Closed,
    ConnectionConfig,
    Established,
    Expectation,
    MediaReceived,
    MessageReceived,
    ReplyReceived,
    RequestFailed,
)
from hopline.connection.handshake import INIT_SIZE
from hopline.crypto.noise import DHKeyPair
from hopline.crypto.session import CHANNEL_OVERHEAD
from hopline.identity import CertificateBody, CertificateVerifier, Role, issue_certificate
from hopline.identity.certificate import public_bytes
from hopline.testing.connections import ConnectionPair, Side
from hopline.testing.lossy import ImpairmentConfig
from hopline.transport import SendQueueFull
from hopline.wire.commands import Echo, EchoReply, Ping

NOW = 1_000_000  # ConnectionPair's clock starts here; certificates are valid around it
LS = Ed25519PrivateKey.generate()


def certificate(
    static: DHKeyPair, role: Role, subject: str, changes: dict[str, object] | None = None
) -> bytes:
    body = CertificateBody(
        version=1,
        role=role,
        subject=subject,
        device_id=b"\x07" * 16,
        static_key=static.public,
        issued_at=NOW,
        expires_at=NOW + 86400,
        serial=1,
        issuer=public_bytes(LS.public_key()),
    )
    return issue_certificate(LS, dataclasses.replace(body, **(changes or {})))


def side(
    role: Role,
    subject: str,
    expect: Expectation,
    *,
    anonymous: bool = False,
    cert: dict[str, object] | None = None,
) -> Side:
    static = DHKeyPair.generate()
    own = None if anonymous else certificate(static, role, subject, cert)
    return Side(static, own, CertificateVerifier(LS.public_key()), expect)


def user_and_supernode(**server_cert: object) -> tuple[Side, Side]:
    client = side(Role.USER, "alice", Expectation(role=Role.SUPERNODE))
    server = side(Role.SUPERNODE, "sn-1", Expectation(role=Role.USER), cert=server_cert)
    return client, server


def established(pair: ConnectionPair) -> bool:
    return pair.client.established and pair.server is not None and pair.server.established


def test_handshake_establishes_both_sides_with_verified_names() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    assert pair.run_until(lambda: established(pair), timeout=5)
    assert isinstance(pair.client_events[0], Established)
    assert pair.client_events[0].peer.name == "sn-1"
    assert pair.server is not None and pair.server.peer is not None
    assert pair.server.peer.name == "alice"
    assert pair.client.peer is not None
    assert pair.client.peer.static_key == pair.server_side.static.public


def test_init_is_padded_against_amplification() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    init = pair.client.datagrams_to_send(NOW)[0]
    assert len(init) == INIT_SIZE
    pair.to_server.submit(init, NOW)
    pair.step()
    assert pair.server is not None
    response = pair.to_client.pop_due(NOW)
    assert len(response) == 1 and 0 < len(response[0]) <= len(init)


def test_a_spoofed_init_never_gets_more_bytes_back_than_it_cost() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    init = pair.client.datagrams_to_send(NOW)[0]
    pair.to_server.submit(init, NOW)
    pair.step()
    server = pair.server
    assert server is not None
    sent = sum(len(d) for d in pair.to_client.pop_due(NOW))
    now = float(NOW)
    while (timer := server.get_timer()) is not None:  # the initiator never answers
        now = timer
        server.handle_timer(now)
        sent += sum(len(d) for d in server.datagrams_to_send(now))
    assert server.close_reason == "handshake-timeout"
    assert 0 < sent <= len(init)
    assert server.dropped["handshake-amplification"] >= 1


def test_a_repeated_init_buys_another_response() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    init = pair.client.datagrams_to_send(NOW)[0]
    pair.to_server.submit(init, NOW)
    pair.step()
    server = pair.server
    assert server is not None
    first = pair.to_client.pop_due(NOW)
    later = NOW + 5.0
    for _ in range(3):  # the initiator resends: each repeat may be answered again
        later += 1.0
        server.receive_datagram(init, later)
        assert server.datagrams_to_send(later) == first


def test_short_init_is_refused() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    init = pair.client.datagrams_to_send(NOW)[0]
    pair.to_server.submit(init[:600], NOW)
    pair.step()
    assert pair.server is None and pair.refused_inits == 1


@pytest.mark.parametrize("seed", range(5))
def test_handshake_survives_heavy_loss(seed: int) -> None:
    path = ImpairmentConfig(drop=0.4, duplicate=0.1, reorder=0.1, delay=0.02)
    pair = ConnectionPair.create(*user_and_supernode(), path=path, seed=seed)
    assert pair.run_until(lambda: established(pair), timeout=10)


def test_handshake_times_out_when_nothing_arrives() -> None:
    pair = ConnectionPair.create(*user_and_supernode(), path=ImpairmentConfig(drop=1.0))
    assert pair.run_until(lambda: any(isinstance(e, Closed) for e in pair.client_events), 20)
    assert pair.client.close_reason == "handshake-timeout"


@pytest.mark.parametrize(
    ("server_cert", "client_expect", "reason"),
    [
        ({"expires_at": NOW - 1, "issued_at": NOW - 100}, {}, "certificate:expired"),
        ({"role": Role.USER}, {}, "certificate:wrong-role"),
        ({}, {"subject": "sn-2"}, "certificate:wrong-name"),
        ({"static_key": bytes(32)}, {}, "certificate:wrong-key"),
    ],
)
def test_client_refuses_a_bad_server_certificate(
    server_cert: dict[str, object], client_expect: dict[str, object], reason: str
) -> None:
    client, server = user_and_supernode(**server_cert)
    client.expect = dataclasses.replace(client.expect, **client_expect)  # type: ignore[arg-type]
    pair = ConnectionPair.create(client, server)
    pair.run_until(lambda: pair.client.close_reason is not None, timeout=5)
    assert pair.client.close_reason == reason
    assert pair.client.dropped[reason] == 1
    assert not pair.client.established


def test_server_refuses_anonymous_client_unless_allowed() -> None:
    client = side(Role.USER, "x", Expectation(role=Role.LOGIN_SERVER), anonymous=True)
    server = side(Role.LOGIN_SERVER, "ls", Expectation())
    pair = ConnectionPair.create(client, server)
    pair.run_until(lambda: pair.server is not None and pair.server.close_reason is not None, 5)
    assert pair.server is not None and pair.server.close_reason == "certificate:missing"

    server.expect = Expectation(anonymous_ok=True)
    pair = ConnectionPair.create(client, server)
    assert pair.run_until(lambda: established(pair), timeout=5)
    assert pair.server is not None and pair.server.peer is not None
    assert pair.server.peer.name is None


def test_certificate_from_another_login_server_is_refused() -> None:
    client, server = user_and_supernode()
    client.verifier = CertificateVerifier(Ed25519PrivateKey.generate().public_key())
    pair = ConnectionPair.create(client, server)
    pair.run_until(lambda: pair.client.close_reason is not None, timeout=5)
    assert pair.client.close_reason == "certificate:wrong-issuer"


def test_requests_and_replies_over_a_lossy_path() -> None:
    path = ImpairmentConfig(drop=0.2, duplicate=0.05, reorder=0.05, delay=0.01)
    pair = ConnectionPair.create(*user_and_supernode(), path=path, seed=3)
    assert pair.run_until(lambda: established(pair), timeout=10)
    now = pair.clock.now()
    ids = [pair.client.request(Echo(data=i.to_bytes(2, "big")), now) for i in range(200)]

    def serve() -> bool:
        assert pair.server is not None
        for event in pair.server_events:
            if isinstance(event, MessageReceived) and isinstance(event.message, Echo):
                reply = EchoReply(data=event.message.data)
                pair.server.reply(event.message, reply, pair.clock.now())
        pair.server_events.clear()
        return sum(isinstance(e, ReplyReceived) for e in pair.client_events) == len(ids)

    assert pair.run_until(serve, timeout=60)
    replies = {e.request_id: e.message for e in pair.client_events if isinstance(e, ReplyReceived)}
    assert sorted(replies) == sorted(ids)
    for n, request_id in enumerate(ids):
        assert replies[request_id] == EchoReply(data=n.to_bytes(2, "big"), request_id=request_id)


def test_unanswered_request_times_out() -> None:
    config = ConnectionConfig(request_timeout=2.0)
    pair = ConnectionPair.create(*user_and_supernode(), config=config)
    assert pair.run_until(lambda: established(pair), timeout=5)
    request_id = pair.client.request(Ping(nonce=1), pair.clock.now())
    assert pair.run_until(lambda: any(isinstance(e, RequestFailed) for e in pair.client_events))
    failed = [e for e in pair.client_events if isinstance(e, RequestFailed)]
    assert failed == [RequestFailed(request_id, "timeout")]


def test_tampered_sealed_datagrams_are_dropped_and_counted() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    assert pair.run_until(lambda: established(pair), timeout=5)
    flipped = {"count": 0}

    def tamper(data: bytes) -> bytes:
        if flipped["count"] < 2 and len(data) > 30:
            flipped["count"] += 1
            return data[:20] + bytes([data[20] ^ 0x01]) + data[21:]
        return data

    pair.tamper = tamper
    pair.client.request(Echo(data=b"x" * 100), pair.clock.now())
    assert pair.run_until(
        lambda: any(isinstance(e, MessageReceived) for e in pair.server_events), timeout=20
    )
    assert pair.server is not None
    crypto_drops = sum(n for k, n in pair.server.dropped.items() if k.startswith("crypto:"))
    assert crypto_drops == 2
    received = [e for e in pair.server_events if isinstance(e, MessageReceived)]
    assert len(received) == 1  # delivered once, intact, after retransmission


def test_replayed_datagrams_are_dropped_and_counted() -> None:
    pair = ConnectionPair.create(*user_and_supernode())
    assert pair.run_until(lambda: established(pair), timeout=5)
    sent: list[bytes] = []
    pair.tamper = lambda d: (sent.append(d), d)[1]
    pair.client.send(Ping(nonce=9), pair.clock.now())
    assert pair.run_until(lambda: bool(pair.server_events[1:]), timeout=5)
    assert pair.server is not None
    before = len(pair.server_events)
    for data in sent[-3:]:
        pair.server.receive_datagram(data, pair.clock.now())
    assert sum(v for k, v in pair.server.dropped.items() if "replay" in k) >= 1
    pair._collect()
    assert len(pair.server_events) == before  # nothing delivered twice


def test_refused_initiator_is_told_by_a_sealed_close() -> None:
    client = side(Role.USER, "mallory", Expectation(role=Role.SUPERNODE))
    client.certificate = certificate(DHKeyPair.generate(), Role.USER, "mallory")  # not its key
    server = side(Role.SUPERNODE, "sn-1", Expectation(role=Role.USER))
    pair = ConnectionPair.create(client, server)
    assert pair.run_until(lambda: pair.client.close_reason is not None, timeout=5)
    assert pair.client.close_reason == "refused"
    assert pair.server is not None and pair.server.close_reason == "certificate:wrong-key"


def test_no_byte_position_is_constant_after_the_init_header() -> None:
    """Across many flows, only the init's header bytes repeat; everything else varies."""
    flows: list[list[bytes]] = []
    for seed in range(12):
        pair = ConnectionPair.create(*user_and_supernode(), seed=seed)
        seen: list[bytes] = []
        original = pair._deliver_to_server

        def record(data: bytes, now: float, keep: list[bytes] = seen, go=original) -> None:
            keep.append(data)
            go(data, now)

        pair._deliver_to_server = record  # type: ignore[method-assign]
        assert pair.run_until(lambda p=pair: established(p), timeout=5)
        pair.client.send(Ping(nonce=1), pair.clock.now())
        assert pair.run_until(lambda p=pair: bool(p.server_events[1:]), timeout=5)
        flows.append(seen)
    inits = [flow[0] for flow in flows]
    assert all(init[:1] == b"\xe1" for init in inits)
    later = [flow[1:] for flow in flows]  # the finish, then sealed packets
    for index in range(min(len(f) for f in later)):
        datagrams = [flow[index] for flow in later]
        width = min(len(d) for d in datagrams)
        for position in range(width):
            assert len({d[position] for d in datagrams}) > 1, (index, position)


# -- channel datagrams (a relay's owner and its supernode) ------------------------------


def _channel_pair() -> ConnectionPair:
    pair = ConnectionPair.create(*user_and_supernode())
    assert pair.run_until(lambda: established(pair), timeout=5)
    return pair


def _media(events: list[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, MediaReceived)]


def _channel_data(events: list[object]) -> list[tuple[int, bytes]]:
    return [(e.channel, e.payload) for e in events if isinstance(e, ChannelDataReceived)]


def test_a_channel_datagram_is_one_datagram_outside_the_link() -> None:
    pair = _channel_pair()
    payload = bytes(range(256)) * 4
    pair.client.send_channel(0x4001, payload, pair.clock.now())
    datagrams = pair.client.datagrams_to_send(pair.clock.now())
    assert [len(d) for d in datagrams] == [CHANNEL_OVERHEAD + len(payload)]
    assert datagrams[0].endswith(payload)  # sealed end to end already: not encrypted again
    assert pair.server is not None
    assert pair.server.receive_datagram(datagrams[0], pair.clock.now())
    pair._collect()
    assert _channel_data(pair.server_events) == [(0x4001, payload)]
    assert pair.server.receive_datagram(datagrams[0], pair.clock.now()) is False  # a replay
    assert pair.server.dropped["crypto:replayed"] == 1


def test_a_tampered_channel_datagram_is_dropped_and_counted() -> None:
    pair = _channel_pair()
    pair.client.send_channel(0x4000, b"relayed bytes" * 80, pair.clock.now())
    datagram = pair.client.datagrams_to_send(pair.clock.now())[0]
    assert pair.server is not None
    for position in (0, 9, len(datagram) - 1):  # header, encrypted channel, payload
        tampered = bytearray(datagram)
        tampered[position] ^= 0x01
        assert pair.server.receive_datagram(bytes(tampered), pair.clock.now()) is False
    assert pair.server.dropped["crypto:auth_failed"] >= 2
    pair._collect()
    assert _channel_data(pair.server_events) == [] and _media(pair.server_events) == []


def test_channel_frames_fall_back_to_the_unreliable_channel() -> None:
    """Before the handshake ends, when a frame would not fit one datagram, and for
    small frames (which share datagrams), the frame goes through the link instead;
    the peer sees the same frame."""
    pair = ConnectionPair.create(*user_and_supernode())
    pair.client.send_channel(0x4002, b"E" * 600, pair.clock.now())
    assert pair.run_until(lambda: established(pair), timeout=5)
    large, small = b"L" * 1500, b"voice frame"
    pair.client.send_channel(0x4003, large, pair.clock.now())
    for _ in range(5):
        pair.client.send_channel(0x4004, small, pair.clock.now())
    sent_before = pair.client.link.stats.datagrams_sent
    assert pair.run_until(lambda: len(_media(pair.server_events)) == 7, timeout=5)
    assert pair.client.link.stats.datagrams_sent - sent_before <= 3  # the small ones share
    assert sorted(_media(pair.server_events)) == sorted(
        [b"\x40\x02" + b"E" * 600, b"\x40\x03" + large] + [b"\x40\x04" + small] * 5
    )


def test_unsent_channel_datagrams_are_bounded() -> None:
    pair = _channel_pair()
    budget = pair.client.config.link.max_send_queue_bytes
    payload = b"x" * 1000
    now = pair.clock.now()
    with pytest.raises(SendQueueFull):
        for _ in range(budget // (CHANNEL_OVERHEAD + len(payload)) + 1):
            pair.client.send_channel(0x4000, payload, now)
    assert len(pair.client.datagrams_to_send(now)) == budget // (CHANNEL_OVERHEAD + len(payload))
    pair.client.send_channel(0x4000, payload, now)  # handed out: room again
    with pytest.raises(ValueError):
        pair.client.send_channel(0x10000, payload, now)
