"""Active speakers in the conference core: the host tells, members keep, with a rate limit.

Three cores (alice hosts, bob and carol join) exchange real encoded
``conf.*`` notices through a tiny synchronous router; the clock is a number.
"""

from __future__ import annotations

import pytest

from hopline.calls.conference import (
    Capacity,
    Conference,
    ConferenceTimeouts,
    ConfRole,
    ConfState,
    LocalProtocolError,
    Outbox,
    RemoteProtocolError,
    SpeakersChanged,
)
from hopline.calls.conference_service import ConferenceConfig
from hopline.media.mixer import MixerConfig
from hopline.nat.discovery import NatType
from hopline.wire import decode, encode
from hopline.wire.conference import MAX_SPEAKERS, ConfHandover, ConfInvite, ConfSpeakers

CONF_ID = bytes(range(16))
UPLOADS = {"alice": 40_000_000, "bob": 20_000_000, "carol": 10_000_000, "dave": 5_000_000}


def cap(user: str) -> Capacity:
    return Capacity(user, NatType.OPEN, UPLOADS[user], 5000, 40000, ())


class Router:
    """Delivers every message at once, through the real codec; keeps what each sent."""

    def __init__(self) -> None:
        self.confs: dict[str, Conference] = {}
        self.speaker_notices: list[tuple[str, ConfSpeakers]] = []

    def send(self, sender: str, out: Outbox, now: float) -> None:
        for user, message in out:
            decoded = decode(encode(message))
            if isinstance(decoded, ConfSpeakers):
                self.speaker_notices.append((user, decoded))
            conf = self.confs.get(user)
            if conf is None:
                conf = self.confs[user] = Conference(user, ConfRole.MEMBER, CONF_ID, cap(user))
            self.send(user, conf.receive(sender, decoded, now), now)  # type: ignore[arg-type]
            if conf.state is ConfState.INVITED:
                self.send(user, conf.accept(now), now)

    def start(self, users: tuple[str, ...], now: float = 0.0) -> Conference:
        host = self.confs["alice"] = Conference("alice", ConfRole.HOST, CONF_ID, cap("alice"))
        self.send("alice", host.start(users, now), now)
        return host

    def take(self) -> list[tuple[str, ConfSpeakers]]:
        notices, self.speaker_notices = self.speaker_notices, []
        return notices


@pytest.fixture
def net() -> Router:
    router = Router()
    host = router.start(("bob", "carol"))
    assert host.state is ConfState.ACTIVE and set(host.members) == {"alice", "bob", "carol"}
    assert all(router.confs[u].state is ConfState.ACTIVE for u in ("bob", "carol"))
    router.take()
    for conf in router.confs.values():
        conf.take_updates()
    return router


def test_the_host_tells_every_member_and_they_keep_it(net: Router) -> None:
    host = net.confs["alice"]
    net.send("alice", host.set_speakers(["carol"], 1.0), 1.0)
    notices = net.take()
    assert sorted(user for user, _ in notices) == ["bob", "carol"]
    assert all(n.speakers == ("carol",) and n.epoch == host.epoch for _, n in notices)
    assert host.take_updates() == [SpeakersChanged(("carol",))]
    for user in ("bob", "carol"):
        assert net.confs[user].speakers == ("carol",)
        assert net.confs[user].take_updates() == [SpeakersChanged(("carol",))]
    net.send("alice", host.set_speakers(["carol"], 2.0), 2.0)  # unchanged: nothing goes out
    assert net.take() == [] and host.take_updates() == []


def test_changes_inside_the_window_wait_and_the_latest_goes_out(net: Router) -> None:
    host = net.confs["alice"]
    every = host.timeouts.speakers_every
    net.send("alice", host.set_speakers(["bob"], 1.0), 1.0)
    assert len(net.take()) == 2
    for at, names in ((1.05, ["bob", "carol"]), (1.1, ["alice"]), (1.15, ["carol"])):
        net.send("alice", host.set_speakers(names, at), at)
        assert net.take() == []  # rate-limited
    assert host.get_timer() == (1.0 + every, "speakers")
    assert net.confs["bob"].speakers == ("bob",)  # not yet
    net.send("alice", host.handle_timer(1.0 + every), 1.0 + every)
    notices = net.take()
    assert [n.speakers for _, n in notices] == [("carol",), ("carol",)]  # only the latest
    assert net.confs["bob"].speakers == net.confs["carol"].speakers == ("carol",)
    timer = host.get_timer()
    assert timer is None or timer[1] != "speakers"


def test_a_change_undone_inside_the_window_sends_nothing(net: Router) -> None:
    host = net.confs["alice"]
    net.send("alice", host.set_speakers(["bob"], 1.0), 1.0)
    net.take()
    net.send("alice", host.set_speakers([], 1.1), 1.1)
    assert host.get_timer() is not None and host.get_timer() == (1.25, "speakers")
    net.send("alice", host.set_speakers(["bob"], 1.2), 1.2)
    timer = host.get_timer()
    assert timer is None or timer[1] != "speakers"
    net.send("alice", host.handle_timer(1.3), 1.3)
    assert net.take() == []


def test_the_final_silence_always_reaches_the_members(net: Router) -> None:
    host = net.confs["alice"]
    net.send("alice", host.set_speakers(["carol"], 1.0), 1.0)
    net.send("alice", host.set_speakers([], 1.01), 1.01)  # she stopped at once
    net.take()
    assert net.confs["bob"].speakers == ("carol",)
    net.send("alice", host.handle_timer(5.0), 5.0)
    assert net.confs["bob"].speakers == () and net.confs["carol"].speakers == ()


def test_a_new_member_learns_the_current_set_with_its_roster() -> None:
    router = Router()
    host = router.start(("bob",))
    router.send("alice", host.set_speakers(["bob"], 1.0), 1.0)
    router.take()
    router.send("alice", host.invite(["dave"], 2.0), 2.0)
    dave = router.confs["dave"]
    assert dave.state is ConfState.ACTIVE and dave.speakers == ("bob",)
    assert {user for user, _ in router.take()} >= {"bob", "dave"}


def test_a_member_that_leaves_is_no_longer_a_speaker(net: Router) -> None:
    host = net.confs["alice"]
    net.send("alice", host.set_speakers(["carol", "bob"], 1.0), 1.0)
    out = net.confs["carol"].leave(2.0)
    net.send("carol", [(user, msg) for user, msg in out if user == "alice"], 2.0)
    assert host.speakers == ("bob",)
    assert net.confs["bob"].speakers == ("bob",) and "carol" not in net.confs["bob"].members


def test_only_the_current_host_at_the_current_epoch_is_believed(net: Router) -> None:
    bob, host = net.confs["bob"], net.confs["alice"]
    good = ConfSpeakers(conf_id=CONF_ID, epoch=host.epoch, speakers=("carol",))
    with pytest.raises(RemoteProtocolError) as foreign:
        bob.receive("carol", good, 1.0)
    assert foreign.value.reason == "foreign"
    old = ConfSpeakers(conf_id=CONF_ID, epoch=host.epoch - 1, speakers=("carol",))
    assert bob.receive("alice", old, 1.0) == []
    ahead = ConfSpeakers(conf_id=CONF_ID, epoch=host.epoch + 1, speakers=("carol",))
    assert bob.receive("alice", ahead, 1.0) == []
    assert bob.ignored["epoch"] == 2 and bob.speakers == ()
    stranger = ConfSpeakers(conf_id=CONF_ID, epoch=host.epoch, speakers=("dave",))
    with pytest.raises(RemoteProtocolError) as bad:
        bob.receive("alice", stranger, 1.0)
    assert bad.value.reason == "malformed"
    too_many = ConfSpeakers(
        conf_id=CONF_ID, epoch=host.epoch, speakers=tuple(f"u{i:03d}" for i in range(9))
    )
    with pytest.raises(RemoteProtocolError) as oversized:
        bob.receive("alice", too_many, 1.0)
    assert oversized.value.reason == "malformed" and bob.speakers == ()
    with pytest.raises(RemoteProtocolError):  # the host itself never takes one
        host.receive("bob", good, 1.0)
    assert bob.receive("alice", good, 1.0) == [] and bob.speakers == ("carol",)


def test_a_host_change_clears_the_speakers(net: Router) -> None:
    host, bob = net.confs["alice"], net.confs["bob"]
    net.send("alice", host.set_speakers(["carol"], 1.0), 1.0)
    bob.take_updates()
    handover = ConfHandover(
        conf_id=CONF_ID,
        epoch=host.epoch + 1,
        host="carol",
        previous_host="alice",
        cause=3,
        members=host.roster.to_wire(),
        invited=(),
    )
    bob.receive("carol", handover, 2.0)
    assert bob.host == "carol" and bob.speakers == ()
    assert SpeakersChanged(()) in bob.take_updates()
    late = ConfSpeakers(conf_id=CONF_ID, epoch=host.epoch, speakers=("carol",))
    with pytest.raises(RemoteProtocolError):  # the old host is no longer believed
        bob.receive("alice", late, 2.1)


def test_a_silent_host_clears_the_speakers(net: Router) -> None:
    host, bob, carol = net.confs["alice"], net.confs["bob"], net.confs["carol"]
    net.send("alice", host.set_speakers(["alice"], 1.0), 1.0)
    assert bob.speakers == carol.speakers == ("alice",)
    silent = 1.0 + ConferenceTimeouts().host_silent + 0.01
    carol.handle_timer(silent)  # carol waits for the successor's claim
    assert carol.state is ConfState.HANDING_OVER and carol.speakers == ()
    bob.handle_timer(silent)  # bob is the successor: he claims the mix at once
    assert bob.role is ConfRole.HOST and bob.speakers == ()


def test_the_new_host_sends_its_own_set_at_its_epoch(net: Router) -> None:
    host, bob, carol = net.confs["alice"], net.confs["bob"], net.confs["carol"]
    net.send("alice", host.set_speakers(["carol"], 1.0), 1.0)
    net.send("alice", host.leave(2.0), 2.0)  # alice hands the mix on
    new_host = net.confs[bob.host]
    assert new_host.role is ConfRole.HOST and new_host.speakers == ()
    net.take()
    net.send(new_host.me, new_host.set_speakers(["carol"], 2.1), 2.1)
    notices = net.take()
    assert notices and all(n.epoch == new_host.epoch for _, n in notices)
    assert bob.speakers == carol.speakers == ("carol",)


def test_bad_local_and_out_of_state_inputs_are_refused(net: Router) -> None:
    host = net.confs["alice"]
    with pytest.raises(LocalProtocolError):
        host.set_speakers([f"u{i:03d}" for i in range(MAX_SPEAKERS + 1)], 1.0)
    with pytest.raises(LocalProtocolError):
        net.confs["bob"].set_speakers(["bob"], 1.0)  # only the host mixes
    ringing = Conference("dave", ConfRole.MEMBER, CONF_ID, cap("dave"))
    invite = ConfInvite(conf_id=CONF_ID, epoch=4, host="alice", members=("alice", "bob"))
    ringing.receive("alice", invite, 1.0)
    assert ringing.state is ConfState.INVITED
    with pytest.raises(RemoteProtocolError) as state:  # not in the conference yet
        ringing.receive("alice", ConfSpeakers(conf_id=CONF_ID, epoch=4, speakers=()), 1.0)
    assert state.value.reason == "state" and ringing.speakers == ()


def test_the_rate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ConferenceTimeouts(speakers_every=0.0)


def test_the_service_refuses_a_mixer_whose_speakers_would_not_fit_the_notice() -> None:
    with pytest.raises(ValueError, match="at most 8 speakers"):
        ConferenceConfig(mixer=MixerConfig(max_speakers=MAX_SPEAKERS + 1))
    assert ConferenceConfig(mixer=MixerConfig(max_speakers=MAX_SPEAKERS)).mixer.max_speakers == 8
