"""Conference signalling on the wire: round trips, bounds, fuzzing, the documented vectors."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.calls.conference import Roster
from hopline.calls.election import Capacity, PathQuality
from hopline.identity.names import _PATTERN as USERNAME_PATTERN
from hopline.nat.discovery import NatType
from hopline.testing.wire_strategies import records
from hopline.wire import (
    COMMANDS,
    DecodeError,
    Kind,
    WireError,
    decode,
    encode,
    message_from_json,
    message_to_json,
)
from hopline.wire.conference import (
    _USERNAME,
    CONF_MESSAGES,
    MAX_MEMBERS,
    MAX_SPEAKERS,
    ConfAccept,
    ConfCapacity,
    ConfHandover,
    ConfInvite,
    ConfMember,
    ConfRoster,
    ConfSpeakers,
    check_message,
)
from hopline.wire.errors import BadValue, LimitExceeded

DOC = Path(__file__).resolve().parents[2] / "docs" / "conference.md"
TEXT = DOC.read_text(encoding="utf-8")
VECTORS = re.findall(
    r"#### vector (\S+)\n.*?```hex\n(.*?)\n```\n\n```json\n(.*?)\n```", TEXT, flags=re.S
)
CID = bytes(16)
conf_messages = st.sampled_from(CONF_MESSAGES).flatmap(records)


def test_the_commands_are_registered_in_their_range() -> None:
    ids = {cls.COMMAND for cls in CONF_MESSAGES}
    assert ids == set(range(0x0067, 0x0070))
    for cls in CONF_MESSAGES:
        assert COMMANDS[(cls.COMMAND, Kind.NOTICE)] is cls
    others = {cls for (cid, _), cls in COMMANDS.items() if cid in ids}
    assert others == set(CONF_MESSAGES)  # no other message shares an id of the range


def test_the_username_rule_is_the_identity_rule() -> None:
    assert _USERNAME.pattern == USERNAME_PATTERN.pattern


@given(conf_messages)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_every_conference_message_round_trips(message: ConfInvite) -> None:
    assert decode(encode(message)) == message
    assert message_from_json(message_to_json(message)) == message


@given(st.binary(max_size=400).map(lambda b: bytes([0x13, 0x67 + b[0] % 9, 0]) + b[1:] if b else b))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_raise_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(WireError):
        message = decode(data)
        if isinstance(message, CONF_MESSAGES):
            check_message(message)


@given(conf_messages, st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_conference_messages_raise_only_wire_errors(
    message: ConfInvite, data: st.DataObject
) -> None:
    raw = bytearray(encode(replace(message, conf_id=CID)))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(WireError):
        decoded = decode(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
        if isinstance(decoded, CONF_MESSAGES):
            check_message(decoded)


def full_roster(count: int) -> ConfRoster:
    users = [f"user{i:03d}" for i in range(count)]
    caps = tuple(
        Capacity(u, NatType.FULL_CONE, 10**7, 5000, 40000,
                 tuple(PathQuality(v, 250, 1000) for v in users if v != u))
        for u in users
    )  # fmt: skip
    members = Roster(1, users[0], caps).to_wire()
    return ConfRoster(conf_id=CID, epoch=2**40, host=users[0], members=members)


def test_a_full_roster_fits_the_decoder_limits() -> None:
    data = encode(full_roster(MAX_MEMBERS))
    assert len(data) < 20_000
    decoded = decode(data)
    assert isinstance(decoded, ConfRoster)
    check_message(decoded)
    assert all(len(m.rtt_ms) == MAX_MEMBERS for m in decoded.members)


def test_a_roster_above_the_bound_is_refused() -> None:
    with pytest.raises(LimitExceeded):
        check_message(full_roster(MAX_MEMBERS + 1))
    roster = full_roster(MAX_MEMBERS - 1)
    with pytest.raises(LimitExceeded):
        check_message(replace(roster, invited=("late1", "late2")))


def bad(**changes: object) -> ConfRoster:
    rows = (ConfMember(user="alice"), ConfMember(user="bob"))
    base = ConfRoster(conf_id=CID, epoch=1, host="alice", members=rows)
    return replace(base, **changes)


@pytest.mark.parametrize(
    "message",
    [
        bad(conf_id=b"short"),
        bad(host="carol"),
        bad(host="Alice"),
        bad(members=()),
        bad(members=(ConfMember(user="alice"), ConfMember(user="alice"))),
        bad(invited=("bob",)),
        bad(members=(ConfMember(user="alice", rtt_ms=(1,)), ConfMember(user="bob"))),
        bad(members=(ConfMember(user="alice", nat_class=7), ConfMember(user="bob"))),
        bad(members=(ConfMember(user="alice", loss_permille=(0, 1001)), ConfMember(user="bob"))),
        ConfHandover(conf_id=CID, epoch=2, host="bob", previous_host="alice", cause=4,
                     members=(ConfMember(user="bob"),)),
        ConfHandover(conf_id=CID, epoch=2, host="bob", previous_host="bob", cause=1,
                     members=(ConfMember(user="bob"),)),
        ConfAccept(conf_id=CID, capacity=ConfCapacity(peers=("bob",), rtt_ms=(), loss_permille=())),
        ConfAccept(conf_id=CID, capacity=ConfCapacity(rtt_ms=(70000,), peers=("bob",),
                                                      loss_permille=(0,))),
        ConfInvite(conf_id=CID, epoch=1, host="alice", members=("bob",)),
    ],
)  # fmt: skip
def test_bounds_the_object_list_cannot_express_are_checked(message: ConfRoster) -> None:
    with pytest.raises((BadValue, LimitExceeded)):
        check_message(message)
    assert issubclass(BadValue, DecodeError) and issubclass(LimitExceeded, DecodeError)


def test_a_speaker_set_round_trips_and_is_checked() -> None:
    message = ConfSpeakers(conf_id=CID, epoch=7, speakers=("carol", "alice"))
    decoded = decode(encode(message))
    assert decoded == message and isinstance(decoded, ConfSpeakers)
    check_message(decoded)
    silence = decode(encode(ConfSpeakers(conf_id=CID, epoch=7)))
    assert isinstance(silence, ConfSpeakers) and silence.speakers == ()
    check_message(silence)


def speakers(names: tuple[str, ...], conf_id: bytes = CID) -> ConfSpeakers:
    return ConfSpeakers(conf_id=conf_id, epoch=3, speakers=names)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (speakers(tuple(f"user{i}" for i in range(MAX_SPEAKERS + 1))), LimitExceeded),
        (speakers(("alice", "alice")), BadValue),
        (speakers(("Alice",)), BadValue),
        (speakers(("al",)), BadValue),
        (speakers(("alice",), conf_id=b"short"), BadValue),
    ],
)
def test_a_bad_speaker_set_is_refused_after_decoding(
    message: ConfSpeakers, error: type[DecodeError]
) -> None:
    decoded = decode(encode(message))  # the object list itself is well formed
    assert isinstance(decoded, ConfSpeakers)
    with pytest.raises(error):
        check_message(decoded)


def test_a_full_speaker_set_passes() -> None:
    check_message(speakers(tuple(f"user{i}" for i in range(MAX_SPEAKERS))))


def test_the_spec_has_vectors() -> None:
    names = {name for name, _, _ in VECTORS}
    wanted = {"conf-invite", "conf-accept", "conf-roster", "conf-handover", "conf-speakers"}
    assert wanted <= names


@pytest.mark.parametrize(("name", "hex_text", "json_text"), VECTORS, ids=[v[0] for v in VECTORS])
def test_documented_vector(name: str, hex_text: str, json_text: str) -> None:
    data = bytes.fromhex(hex_text.replace(" ", ""))
    document = json.loads(json_text)
    message = decode(data)
    assert message_to_json(message) == document
    assert encode(message_from_json(document)) == data
    assert isinstance(message, CONF_MESSAGES)
    check_message(message)
