"""The upload packet train against the real STUN responder, over a simulated uplink.

The link is simulated here (a serialisation delay of ``wire bits / rate`` per
request, queued back to back, then a fixed one-way delay); the server is
the supernode's own :class:`~hopline.nat.service.StunResponder`, so what the
probe parses is exactly what a supernode sends.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.nat.service import Port, Reply, StunConfig, StunResponder
from hopline.nat.stun import BINDING, MessageClass, StunMessage, decode, encode
from hopline.nat.upload import UploadConfig, UploadEstimate, UploadProbe

SERVER, SERVER6 = ("203.0.113.10", 33033), ("2001:db8::10", 33033)
CLIENT = ("198.51.100.7", 40001)
ONE_WAY_S = 0.02


def run_train(
    rate_bps: float,
    *,
    config: UploadConfig | None = None,
    server: tuple[str, int] = SERVER,
    lose: Iterable[int] = (),
    stun: StunConfig | None = None,
) -> UploadProbe:
    """One train over an uplink of ``rate_bps``; requests at positions ``lose`` vanish."""
    probe = UploadProbe(server, config or UploadConfig())
    responder = StunResponder(server, None, stun)
    lost, t = set(lose), 0.0
    overhead = 48 if ":" in server[0] else 28
    answers: list[tuple[float, bytes]] = []
    for position, (datagram, to) in enumerate(probe.datagrams_to_send(0.0)):
        assert to == server
        t += (len(datagram) + overhead) * 8 / rate_bps  # serialised one after another
        if position in lost:
            continue
        decision = responder.request(datagram, CLIENT, Port.PRIMARY, t + ONE_WAY_S)
        if isinstance(decision, Reply):
            answers.append((t + 2 * ONE_WAY_S, decision.datagram))
    for arrival, datagram in answers:
        probe.receive(datagram, server, arrival)
    timer = probe.get_timer()
    if probe.result is None:
        assert timer is not None
        probe.handle_timer(timer)
    assert probe.get_timer() is None
    return probe


def estimate(probe: UploadProbe) -> UploadEstimate:
    assert probe.result is not None
    return probe.result


@pytest.mark.parametrize("rate", [1e6, 8e6, 40e6, 300e6])
def test_the_train_measures_the_uplink_rate(rate: float) -> None:
    result = estimate(run_train(rate))
    assert (result.sent, result.answered, result.capped) == (16, 16, False)
    assert result.bps is not None
    assert abs(result.bps - rate) / rate < 0.001, (result.bps, rate)


def test_ipv6_counts_its_bigger_headers() -> None:
    result = estimate(run_train(5e6, server=SERVER6))
    assert result.bps is not None and abs(result.bps - 5e6) < 5e3


def test_requests_are_padded_to_the_size_and_answers_are_not() -> None:
    probe = UploadProbe(SERVER)
    train = probe.datagrams_to_send(0.0)
    assert len(train) == 16 and probe.datagrams_to_send(0.1) == []  # the train goes once
    assert {len(datagram) for datagram, _ in train} == {1200} == {probe.request_size}
    assert len({decode(datagram).transaction_id for datagram, _ in train}) == 16
    message = decode(train[0][0])
    assert message.is_binding_request and message.padding == 1176 and not message.unknown_required
    reply = StunResponder(SERVER).request(train[0][0], CLIENT, Port.PRIMARY, 0.0)
    assert isinstance(reply, Reply) and len(reply.datagram) < 200  # no amplification


def test_requests_lost_in_the_middle_still_count_as_sent() -> None:
    result = estimate(run_train(2e6, lose=(3, 4, 9)))
    assert result.answered == 13 and result.bps is not None
    assert abs(result.bps - 2e6) / 2e6 < 0.001


def test_too_few_answers_give_no_estimate() -> None:
    result = estimate(run_train(2e6, lose=range(3, 16)))
    assert (result.answered, result.bps) == (3, None)
    assert result.to_json()["bps"] is None


def test_a_rate_limited_server_answers_part_and_the_rest_still_measures() -> None:
    result = estimate(run_train(2e6, stun=StunConfig(rate=1.0, burst=8.0)))
    assert result.answered == 8
    assert result.bps is not None and abs(result.bps - 2e6) / 2e6 < 0.001


def test_a_train_faster_than_the_clock_is_capped() -> None:
    probe = UploadProbe(SERVER, UploadConfig(max_bps=1_000_000))
    responder = StunResponder(SERVER)
    for datagram, _ in probe.datagrams_to_send(0.0):
        reply = responder.request(datagram, CLIENT, Port.PRIMARY, 0.0)
        assert isinstance(reply, Reply)
        probe.receive(reply.datagram, SERVER, 0.001)  # all read in one go
    result = estimate(probe)
    assert (result.bps, result.capped, result.spread_s) == (1_000_000, True, 0.0)


def test_answers_arriving_out_of_order_still_measure() -> None:
    probe = UploadProbe(SERVER, UploadConfig(count=4, min_answers=2))
    responder = StunResponder(SERVER)
    replies = []
    for datagram, _ in probe.datagrams_to_send(0.0):
        reply = responder.request(datagram, CLIENT, Port.PRIMARY, 0.0)
        assert isinstance(reply, Reply)
        replies.append(reply.datagram)
    for arrival, index in ((0.010, 1), (0.011, 0), (0.012, 3), (0.013, 2)):
        probe.receive(replies[index], SERVER, arrival)
    result = estimate(probe)
    wire_bits = (probe.request_size + 28) * 8
    assert result.bps == int(3 * wire_bits / 0.003)  # first arrival #1, last #2: 3 answers apart


def test_foreign_duplicate_and_malformed_answers_are_dropped_and_counted() -> None:
    probe = UploadProbe(SERVER, UploadConfig(count=4, min_answers=2))
    train = probe.datagrams_to_send(0.0)
    reply = StunResponder(SERVER).request(train[0][0], CLIENT, Port.PRIMARY, 0.0)
    assert isinstance(reply, Reply)
    probe.receive(reply.datagram, ("192.0.2.99", 33033), 0.01)
    probe.receive(b"\x00\x01garbage", SERVER, 0.01)
    probe.receive(reply.datagram, SERVER, 0.01)
    probe.receive(reply.datagram, SERVER, 0.02)
    stranger = StunMessage(BINDING, MessageClass.SUCCESS, bytes(12), xor_mapped_address=CLIENT)
    probe.receive(encode(stranger), SERVER, 0.02)
    probe.receive(train[1][0], SERVER, 0.02)  # a request, not an answer
    assert probe.dropped == {
        "foreign-source": 1,
        "too-short": 1,
        "duplicate": 1,
        "unknown-transaction": 1,
        "not-binding-success": 1,
    }
    probe.handle_timer(0.5)
    assert probe.result is None  # not yet: the deadline is 1 s after sending
    probe.handle_timer(1.0)
    assert estimate(probe).answered == 1 and estimate(probe).bps is None
    probe.receive(reply.datagram, SERVER, 1.1)
    assert probe.dropped["late"] == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    probe = UploadProbe(SERVER)
    probe.datagrams_to_send(0.0)
    probe.receive(data, SERVER, 0.01)
    assert sum(probe.dropped.values()) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"count": 1},
        {"count": 65},
        {"size": 10},
        {"size": 1400},
        {"min_answers": 17},
        {"timeout_s": 0},
    ],
)
def test_bad_configs_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        UploadConfig(**fields)  # type: ignore[arg-type]


def test_the_estimate_has_a_json_form() -> None:
    result = estimate(run_train(8e6))
    doc = result.to_json()
    assert doc["server"] == "203.0.113.10:33033" and doc["answered"] == 16
    assert doc["bps"] == result.bps and doc["capped"] is False and doc["spread_ms"] > 0
