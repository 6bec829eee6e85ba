"""One PathChecker driven by hand: authentication, answers, learning, nomination, fuzzing."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.nat.stun import (
    BINDING,
    COOKIE_BYTES,
    FINGERPRINT_XOR,
    MessageClass,
    StunMessage,
    decode,
    encode,
    integrity_ok,
)
from hopline.path.candidates import CandidateKind, from_endpoint, gather, to_endpoint
from hopline.path.checks import (
    MAX_PAIRS,
    MAX_REMOTE,
    CheckConfig,
    PairState,
    PairSucceeded,
    PathChecker,
    PathSelected,
)
from hopline.wire.types import Address

KEY = b"shared-key-from-x25519-000000000"
LOCAL = Address.of("203.0.113.1", 5000)
PEER = Address.of("203.0.113.2", 6000)
STRANGER = Address.of("203.0.113.66", 7777)


def checker(*, controlling: bool = False, remote: bool = False) -> PathChecker:
    """Checker "ua" facing "ub"; with ``remote``, it knows PEER as a host candidate."""
    peer = gather([PEER], None) if remote else []
    return PathChecker(
        controlling=controlling,
        local_ufrag="ua",
        remote_ufrag="ub",
        key=KEY,
        local=gather([LOCAL], None),
        remote=peer,
        now=0.0,
    )


def request(
    *,
    username: str = "ua:ub",
    key: bytes | None = KEY,
    use_candidate: bool = False,
    fingerprint: bool = True,
    txid: bytes | None = None,
) -> bytes:
    message = StunMessage(
        BINDING,
        MessageClass.REQUEST,
        txid or os.urandom(12),
        username=username,
        use_candidate=True if use_candidate else None,
        fingerprint=fingerprint,
    )
    return encode(message, integrity_key=key)


def answer_to(data: bytes, *, seen: Address, key: bytes = KEY) -> bytes:
    asked = decode(data)
    reply = StunMessage(
        BINDING,
        MessageClass.SUCCESS,
        asked.transaction_id,
        xor_mapped_address=seen.as_tuple(),
        fingerprint=True,
    )
    return encode(reply, integrity_key=key)


def drain(c: PathChecker, now: float) -> list[tuple[str, Address, bytes]]:
    return c.datagrams_to_send(now)


def events(c: PathChecker) -> list[object]:
    out = []
    while (event := c.next_event()) is not None:
        out.append(event)
    return out


# ---------------------------------------------------------------- answering


def test_a_valid_check_is_answered_with_the_source_as_seen() -> None:
    c = checker()
    assert c.receive(request(), "udp", STRANGER, 0.5)
    out = drain(c, 0.5)
    answers = [
        (b, d, decode(x)) for b, d, x in out if decode(x).message_class is not MessageClass.REQUEST
    ]
    assert len(answers) == 1
    base, dest, message = answers[0]
    assert (base, dest) == ("udp", STRANGER)
    assert message.message_class is MessageClass.SUCCESS
    assert message.xor_mapped_address == STRANGER.as_tuple()
    assert message.fingerprint and integrity_ok(message, KEY)
    assert not c.dropped


def test_a_check_from_an_unknown_source_learns_prflx_and_triggers_a_check_back() -> None:
    c = checker()
    c.receive(request(), "udp", STRANGER, 0.5)
    assert c.remote_candidates[STRANGER].kind is CandidateKind.PRFLX
    assert c.pair_states()[("udp", STRANGER)] is PairState.IN_PROGRESS
    checks = [
        (base, dest, decode(x))
        for base, dest, x in drain(c, 0.5)
        if decode(x).message_class is MessageClass.REQUEST
    ]
    assert [(b, d) for b, d, _ in checks] == [("udp", STRANGER)]
    assert checks[0][2].username == "ub:ua"
    assert integrity_ok(checks[0][2], KEY)


def test_bad_integrity_is_counted_and_never_answered() -> None:
    c = checker()
    assert c.receive(request(key=b"wrong-key"), "udp", STRANGER, 0.5)
    assert c.receive(request(key=None), "udp", STRANGER, 0.5)
    assert c.dropped["bad-integrity"] == 2
    assert drain(c, 0.5) == []
    assert STRANGER not in c.remote_candidates


def test_foreign_username_is_not_ours_and_not_answered() -> None:
    c = checker()
    assert not c.receive(request(username="ub:ua"), "udp", STRANGER, 0.5)
    assert not c.receive(request(username="ua:someone"), "udp", STRANGER, 0.5)
    assert c.dropped["unknown-ufrag"] == 2
    assert drain(c, 0.5) == []


def test_missing_fingerprint_is_dropped() -> None:
    c = checker()
    assert c.receive(request(fingerprint=False), "udp", STRANGER, 0.5)
    assert c.dropped["no-fingerprint"] == 1
    assert drain(c, 0.5) == []


def _with_unknown_required_attribute() -> bytes:
    plain = encode(StunMessage(BINDING, MessageClass.REQUEST, os.urandom(12), username="ua:ub"))
    body = plain[20:] + struct.pack("!HHI", 0x0024, 4, 12345)  # PRIORITY, not understood
    head = bytearray(plain[:20])
    struct.pack_into("!H", head, 2, len(body) + 24)
    mac = hmac.new(KEY, bytes(head) + body, hashlib.sha1).digest()
    data = bytearray(head + body + struct.pack("!HH", 0x0008, 20) + mac)
    struct.pack_into("!H", data, 2, len(data) - 20 + 8)
    crc = zlib.crc32(bytes(data)) ^ FINGERPRINT_XOR
    return bytes(data + struct.pack("!HHI", 0x8028, 4, crc))


def test_unknown_required_attribute_is_dropped() -> None:
    c = checker()
    data = _with_unknown_required_attribute()
    assert integrity_ok(decode(data), KEY)
    assert c.receive(data, "udp", STRANGER, 0.5)
    assert c.dropped["unknown-attribute"] == 1
    assert drain(c, 0.5) == []


def test_non_stun_is_not_ours_and_not_counted() -> None:
    c = checker()
    assert not c.receive(b"\xe1hopline handshake", "udp", STRANGER, 0.5)
    assert not c.dropped


def test_unknown_transaction_response_is_not_ours() -> None:
    c = checker()
    stray = answer_to(request(), seen=LOCAL)
    assert not c.receive(stray, "udp", PEER, 0.5)
    assert drain(c, 0.5) == []


# ---------------------------------------------------------------- responses


def _first_check(c: PathChecker, now: float) -> bytes:
    out = drain(c, now)
    assert out, "no check was sent"
    base, dest, data = out[0]
    assert (base, dest) == ("udp", PEER)
    return data


def test_response_must_come_from_where_the_check_went() -> None:
    c = checker(controlling=True, remote=True)
    check = _first_check(c, 0.0)
    reply = answer_to(check, seen=LOCAL)
    assert c.receive(reply, "udp", STRANGER, 0.01)
    assert c.receive(reply, "relay:1", PEER, 0.01)
    assert c.dropped["wrong-source"] == 2
    assert c.pair_states()[("udp", PEER)] is PairState.IN_PROGRESS
    assert c.receive(reply, "udp", PEER, 0.02)
    assert c.pair_states()[("udp", PEER)] is PairState.SUCCEEDED
    [succeeded, selected] = events(c)
    assert isinstance(succeeded, PairSucceeded) and succeeded.rtt == 0.02
    assert isinstance(selected, PathSelected) and selected.direct
    assert c.selected is not None and c.selected[1].address == PEER


def test_response_with_bad_integrity_is_counted_and_ignored() -> None:
    c = checker(controlling=True, remote=True)
    check = _first_check(c, 0.0)
    assert c.receive(answer_to(check, seen=LOCAL, key=b"nope"), "udp", PEER, 0.01)
    assert c.dropped["bad-integrity"] == 1
    assert c.pair_states()[("udp", PEER)] is PairState.IN_PROGRESS
    assert c.receive(answer_to(check, seen=LOCAL), "udp", PEER, 0.02)
    assert c.pair_states()[("udp", PEER)] is PairState.SUCCEEDED


def test_a_mapped_address_we_do_not_know_becomes_a_local_prflx() -> None:
    c = checker(controlling=True, remote=True)
    check = _first_check(c, 0.0)
    outside = Address.of("198.51.100.200", 31337)
    c.receive(answer_to(check, seen=outside), "udp", PEER, 0.01)
    [succeeded, _selected] = events(c)
    assert isinstance(succeeded, PairSucceeded)
    assert succeeded.local.address == outside
    assert succeeded.local.kind is CandidateKind.PRFLX
    assert succeeded.local.base == "udp"
    assert outside in {cand.address for cand in c.local_candidates}


def test_checks_are_retransmitted_then_the_pair_fails() -> None:
    config = CheckConfig(max_tries=3, timeout_s=100.0)
    c = PathChecker(
        controlling=True,
        local_ufrag="ua",
        remote_ufrag="ub",
        key=KEY,
        local=gather([LOCAL], None),
        remote=gather([PEER], None),
        now=0.0,
        config=config,
    )
    sent = []
    now = 0.0
    while now < 5.0:
        sent += [now for _ in drain(c, now)]
        timer = c.get_timer()
        assert timer is not None
        now = max(timer, now)
        if c.pair_states()[("udp", PEER)] is PairState.FAILED:
            break
        c.handle_timer(now)
    assert len(sent) == 3
    assert c.pair_states()[("udp", PEER)] is PairState.FAILED


# ---------------------------------------------------------------- nomination (controlled)


def test_controlled_side_selects_only_a_nominated_pair_that_succeeded() -> None:
    c = checker(controlling=False, remote=True)
    check = _first_check(c, 0.0)
    c.receive(answer_to(check, seen=LOCAL), "udp", PEER, 0.01)
    assert [type(e) for e in events(c)] == [PairSucceeded]
    c.receive(request(), "udp", PEER, 0.02)  # a check without nomination
    assert events(c) == []
    c.receive(request(use_candidate=True), "udp", PEER, 0.03)
    [selected] = events(c)
    assert isinstance(selected, PathSelected) and selected.direct
    assert selected.remote.address == PEER


def test_nomination_before_success_selects_when_the_check_succeeds() -> None:
    c = checker(controlling=False)
    assert c.receive(request(use_candidate=True), "udp", PEER, 0.0)
    out = drain(c, 0.0)
    triggered = [x for _, d, x in out if decode(x).message_class is MessageClass.REQUEST]
    assert len(triggered) == 1
    assert events(c) == []
    c.receive(answer_to(triggered[0], seen=LOCAL), "udp", PEER, 0.01)
    kinds = [type(e) for e in events(c)]
    assert kinds == [PairSucceeded, PathSelected]


def test_controlling_side_ignores_use_candidate() -> None:
    c = checker(controlling=True)
    c.receive(request(use_candidate=True), "udp", PEER, 0.0)
    assert not any(isinstance(e, PathSelected) for e in events(c))


# ---------------------------------------------------------------- bounds


def test_a_flood_of_sources_is_bounded() -> None:
    c = checker()
    for i in range(3 * MAX_REMOTE):
        assert c.receive(request(), "udp", Address.of(f"203.0.113.{i % 250}", 1000 + i), 0.0)
    assert len(c.remote_candidates) == MAX_REMOTE
    assert len(c.pair_states()) <= MAX_PAIRS
    assert c.dropped["too-many-candidates"] == 2 * MAX_REMOTE


def test_a_request_on_a_family_we_have_no_base_for_is_answered_but_not_paired() -> None:
    c = checker()
    v6 = Address.of("2001:db8::5", 4000)
    assert c.receive(request(), "udp", v6, 0.0)
    assert c.dropped["no-local-base"] == 1
    out = drain(c, 0.0)
    assert [(b, d) for b, d, _ in out] == [("udp", v6)]
    assert decode(out[0][2]).message_class is MessageClass.SUCCESS


# ---------------------------------------------------------------- fuzzing


@given(st.binary(max_size=600), st.sampled_from(["udp", "relay:1", "tcp-relay:2"]))
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise_and_are_never_answered(data: bytes, base: str) -> None:
    c = checker()
    c.receive(data, base, STRANGER, 0.0)
    assert drain(c, 0.0) == []
    assert c.remote_candidates == {}


@st.composite
def stun_shaped(draw: st.DrawFn) -> bytes:
    """A well-formed header, our cookie, and random attributes: past the cheap classifier."""
    body = b""
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from([0x0006, 0x0008, 0x0020, 0x0025, 0x8028, 0x0024, 0x8022]))
        value = draw(st.binary(max_size=32))
        body += struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
    method_class = draw(st.sampled_from([0x0001, 0x0011, 0x0101, 0x0111, 0x0002]))
    txid = draw(st.binary(min_size=12, max_size=12))
    return struct.pack("!HH", method_class, len(body)) + COOKIE_BYTES + txid + body


@given(stun_shaped())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_stun_shaped_garbage_never_raises_and_is_never_answered(data: bytes) -> None:
    c = checker()
    c.receive(data, "udp", STRANGER, 0.0)
    assert drain(c, 0.0) == []


@given(st.data())
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
def test_any_changed_byte_of_a_valid_check_stops_the_answer(data: st.DataObject) -> None:
    valid = bytearray(request(use_candidate=data.draw(st.booleans())))
    at = data.draw(st.integers(0, len(valid) - 1))
    valid[at] ^= data.draw(st.integers(1, 255))
    c = checker()
    c.receive(bytes(valid), "udp", STRANGER, 0.0)
    assert drain(c, 0.0) == []


def test_a_deadline_passed_while_receiving_still_fires() -> None:
    """The direct-wait deadline must not vanish when a datagram moves the clock past it."""
    relay = Address.of("198.51.100.9", 50000)
    peer_relay = gather([], None, [(Address.of("198.51.100.10", 50001), "relay:9")])
    c = PathChecker(
        controlling=True,
        local_ufrag="ua",
        remote_ufrag="ub",
        key=KEY,
        local=gather([LOCAL], None, [(relay, "relay:1")]),
        remote=[from_endpoint(to_endpoint(x)) for x in peer_relay],
        now=0.0,
    )
    target = peer_relay[0].address
    now = 0.0
    while len(c.pair_states()) != sum(s is PairState.SUCCEEDED for s in c.pair_states().values()):
        for base, dest, data in drain(c, now):
            seen = relay if base == "relay:1" else LOCAL
            assert c.receive(answer_to(data, seen=seen), base, dest, now + 0.01)
        now += 0.02
    assert not any(isinstance(e, PathSelected) for e in events(c))
    assert c.get_timer() == 2.0  # the direct-wait deadline
    assert c.receive(request(), "udp", target, 2.5)  # a known pair: nothing triggered
    assert c.get_timer() == 2.0
    c.handle_timer(2.5)
    [selected] = [e for e in events(c) if isinstance(e, PathSelected)]
    assert not selected.direct and selected.at == 2.5


def test_a_peer_check_triggers_an_immediate_check_back_even_while_one_is_in_flight() -> None:
    c = checker(controlling=True, remote=True)
    _first_check(c, 0.0)  # in flight; its retransmission is due at 0.1
    assert c.receive(request(), "udp", PEER, 0.05)
    out = drain(c, 0.05)
    classes = sorted(decode(x).message_class.name for _, d, x in out if d == PEER)
    assert classes == ["REQUEST", "SUCCESS"]
    # a second request in the same instant does not double the checks
    assert c.receive(request(), "udp", PEER, 0.05)
    out = drain(c, 0.05)
    assert [decode(x).message_class for _, _, x in out] == [MessageClass.SUCCESS]


def test_a_late_answer_to_an_old_check_does_not_end_the_nomination() -> None:
    c = checker(controlling=True, remote=True)
    first = _first_check(c, 0.0)
    c.handle_timer(0.1)
    [(_, _, retransmitted)] = drain(c, 0.1)
    assert c.receive(answer_to(first, seen=LOCAL), "udp", PEER, 0.15)
    [(_, _, nomination)] = drain(c, 0.15)
    assert decode(nomination).use_candidate is True
    assert c.receive(answer_to(retransmitted, seen=LOCAL), "udp", PEER, 0.16)
    timer = c.get_timer()
    assert timer is not None and timer < 1.0
    c.handle_timer(timer)
    again = [decode(x) for _, _, x in drain(c, timer)]
    assert [m.use_candidate for m in again] == [True]
    assert c.receive(answer_to(nomination, seen=LOCAL), "udp", PEER, timer)
    c.handle_timer(timer + 1.0)
    assert drain(c, timer + 1.0) == []  # confirmed: quiet until the keep-alive


def test_keepalive_is_due_every_keepalive_s_after_selection() -> None:
    c = checker(controlling=False, remote=True)
    check = _first_check(c, 0.0)
    assert not c.keepalive_due(100.0)  # nothing selected yet
    c.receive(answer_to(check, seen=LOCAL), "udp", PEER, 0.01)
    c.receive(request(use_candidate=True), "udp", PEER, 0.02)
    drain(c, 0.02)
    assert not c.keepalive_due(10.0)
    assert c.keepalive_due(15.02)
    c.handle_timer(15.02)
    [(base, dest, data)] = drain(c, 15.02)
    assert (base, dest) == ("udp", PEER)
    message = decode(data)
    assert message.message_class is MessageClass.REQUEST and message.use_candidate is None
    assert not c.keepalive_due(15.03)
