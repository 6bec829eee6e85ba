"""The conference state machine: five participants over an in-memory router.

The router is a fake network for the sans-I/O core: every message is encoded
and decoded with the real wire codec and arrives ``DELAY`` seconds later;
media is modelled as one tick every 20 ms from each host to every member
that agrees it is the host (and back), so a media gap is exactly the time
during which a member and its host disagree or the host is gone.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.calls.conference import _EFFECTS as EFFECTS
from hopline.calls.conference import (
    END_REASONS,
    TIMER_KINDS,
    TRANSITIONS,
    Capacity,
    ConfEndReason,
    Conference,
    ConferenceProtocolError,
    ConferenceTimeouts,
    ConfRole,
    ConfState,
    Ended,
    HostChanged,
    InviteFailed,
    LocalProtocolError,
    MemberJoined,
    MemberLeft,
    Outbox,
    RemoteProtocolError,
    Roster,
    capacity_from_wire,
    capacity_to_wire,
)
from hopline.calls.conference_diagram import main, render_mermaid, render_table
from hopline.calls.election import PathQuality, elect_host
from hopline.nat.discovery import NatType
from hopline.testing.wire_strategies import records
from hopline.wire import decode, encode
from hopline.wire.commands import Echo
from hopline.wire.conference import (
    CONF_MESSAGES,
    MAX_MEMBERS,
    ConfAccept,
    ConfCapacity,
    ConfEnd,
    ConfHandover,
    ConfInvite,
    ConfLeave,
    ConfMember,
    ConfRoster,
)

CONF_ID = bytes(range(16))
DELAY = 0.03
TICK = 0.02
USERS = ("alice", "bob", "carol", "dave", "erin")


def cap(
    user: str, nat: NatType, upload: int, encodes: int = 5000, decodes: int = 40000
) -> Capacity:
    """A capacity with a 40 ms, 1 % path to every one of USERS."""
    paths = tuple(PathQuality(u, 40, 10) for u in (*USERS, "frank") if u != user)
    return Capacity(user, nat, upload, encodes, decodes, paths)


CAPS = {
    "alice": cap("alice", NatType.SYMMETRIC, 2_000_000),
    "bob": cap("bob", NatType.OPEN, 50_000_000),
    "carol": cap("carol", NatType.FULL_CONE, 20_000_000),
    "dave": cap("dave", NatType.PORT_RESTRICTED, 5_000_000),
    "erin": cap("erin", NatType.RESTRICTED, 1_000_000),
    "frank": cap("frank", NatType.UNKNOWN, 3_000_000),
}


class Net:
    """In-memory router and clock for a set of :class:`Conference` objects."""

    def __init__(self, caps: dict[str, Capacity], answer: bool = True) -> None:
        self.caps = caps
        self.now = 0.0
        self.confs: dict[str, Conference] = {}
        self.queue: list[tuple[float, int, str, str, bytes]] = []
        self.seq = itertools.count()
        self.down: set[str] = set()
        self.cut: set[frozenset[str]] = set()  # links that carry nothing
        self.answer = answer
        self.dropped: list[tuple[str, str, ConferenceProtocolError]] = []
        self.sent: list[tuple[str, str, bytes]] = []
        self.last_media: dict[str, float] = {}
        self.max_gap: dict[str, float] = {}

    # -- sending and delivering

    def send(self, sender: str, out: Outbox) -> None:
        for user, message in out:
            data = encode(message)
            self.sent.append((sender, user, data))
            heapq.heappush(self.queue, (self.now + DELAY, next(self.seq), sender, user, data))

    def deliver(self, sender: str, user: str, data: bytes) -> None:
        if sender in self.down or user in self.down or frozenset((sender, user)) in self.cut:
            return
        message = decode(data)
        conf = self.confs.get(user)
        if conf is None or conf.state is ConfState.ENDED:
            if not isinstance(message, ConfInvite):
                return
            conf = Conference(user, ConfRole.MEMBER, message.conf_id, self.caps[user])
            self.confs[user] = conf
        try:
            out = conf.receive(sender, message, self.now)  # type: ignore[arg-type]
        except ConferenceProtocolError as exc:
            self.dropped.append((sender, user, exc))
            return
        self.send(user, out)
        if self.answer and conf.state is ConfState.INVITED:
            self.send(user, conf.accept(self.now))

    # -- the clock

    def alive(self) -> list[Conference]:
        return [c for u, c in self.confs.items() if u not in self.down]

    def next_time(self, end: float) -> float:
        times = [end, (int(self.now / TICK + 1e-9) + 1) * TICK]
        if self.queue:
            times.append(self.queue[0][0])
        for conf in self.alive():
            timer = conf.get_timer()
            if timer is not None:
                times.append(timer[0])
        return max(self.now, min(times))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = self.next_time(end)
            while self.queue and self.queue[0][0] <= self.now:
                _, _, sender, user, data = heapq.heappop(self.queue)
                self.deliver(sender, user, data)
            for user, conf in list(self.confs.items()):
                if user not in self.down:
                    self.send(user, conf.handle_timer(self.now))
            if abs(self.now / TICK - round(self.now / TICK)) < 1e-9:
                self.media()

    def media(self) -> None:
        """One 20 ms frame each way between every host and the members that agree."""
        for host in self.alive():
            if host.role is not ConfRole.HOST or host.state is not ConfState.ACTIVE:
                continue
            for user in host.members:
                member = self.confs.get(user)
                if user == host.me or user in self.down or member is None:
                    continue
                if frozenset((user, host.me)) in self.cut:
                    continue
                if member.state is ConfState.ACTIVE and member.host == host.me:
                    member.note_activity(host.me, self.now)
                    host.note_activity(user, self.now)
                    self.heard_media(user)

    def heard_media(self, user: str) -> None:
        last = self.last_media.get(user)
        if last is not None:
            self.max_gap[user] = max(self.max_gap.get(user, 0.0), self.now - last)
        self.last_media[user] = self.now

    # -- set-up and views

    def start(self, host: str, users: tuple[str, ...]) -> Conference:
        conf = Conference(host, ConfRole.HOST, CONF_ID, self.caps[host])
        self.confs[host] = conf
        self.send(host, conf.start(users, self.now))
        return conf

    def crash(self, user: str) -> None:
        self.down.add(user)

    def host(self) -> Conference:
        hosts = [c for c in self.alive() if c.role is ConfRole.HOST and c.state is ConfState.ACTIVE]
        assert len(hosts) == 1, [c.me for c in hosts]
        return hosts[0]

    def active(self) -> list[Conference]:
        return [c for c in self.alive() if c.state is ConfState.ACTIVE]

    def agreed(self) -> tuple[str, int, tuple[str, ...]]:
        """Every active participant holds the same roster: return host, epoch, members."""
        views = {(c.host, c.epoch, tuple(sorted(c.members))) for c in self.active()}
        assert len(views) == 1, views
        return views.pop()


def formed(answer: bool = True) -> Net:
    net = Net(CAPS, answer)
    net.start("alice", USERS[1:])
    net.run(2.0)
    return net


# --- forming, adding, removing, leaving ------------------------------------------


def test_five_participants_form_one_conference_and_the_mix_moves_to_the_best() -> None:
    net = formed()
    host, epoch, members = net.agreed()
    assert members == tuple(sorted(USERS)) and epoch > 1
    assert len(net.active()) == 5
    # alice started it behind a symmetric NAT; bob is public with the most upload
    assert host == "bob" == elect_host(CAPS[u] for u in USERS)
    assert net.confs["alice"].role is ConfRole.MEMBER
    changes = [u for u in net.confs["carol"].take_updates() if isinstance(u, HostChanged)]
    assert [(c.host, c.previous, c.cause) for c in changes] == [("bob", "alice", 3)]
    assert net.dropped == []
    assert net.confs["bob"].election().winner == "bob"


def test_a_participant_is_added_and_removed_while_the_conference_runs() -> None:
    net = formed()
    host = net.host()
    net.send(host.me, host.invite(["frank"], net.now))
    net.run(1.0)
    _, _, members = net.agreed()
    assert "frank" in members and len(members) == 6
    assert MemberJoined("frank") in net.confs["dave"].take_updates()
    net.send(host.me, host.remove("frank", net.now))
    net.run(1.0)
    frank = net.confs["frank"]
    assert frank.state is ConfState.ENDED
    assert frank.end_reason is ConfEndReason.ENDED_BY_HOST and frank.end_detail == "removed"
    _, _, members = net.agreed()
    assert members == tuple(sorted(USERS))
    assert MemberLeft("frank", "left") in net.confs["dave"].take_updates()


def test_a_host_that_becomes_unfit_hands_over_after_the_cooldown() -> None:
    net = formed()
    bob = net.confs["bob"]
    thin = replace(CAPS["bob"], upload_bps=100_000)  # below the 4 streams it must send
    net.send("bob", bob.report_capacity(thin, net.now))
    net.run(20.0)
    assert net.agreed()[0] == "bob"  # within 30 s of the last change: no new move
    net.run(15.0)
    host, _, members = net.agreed()
    assert host == "carol" and "bob" in members
    assert net.max_gap and max(net.max_gap.values()) < 0.1


def test_a_member_leaving_updates_everyone_and_the_conference_goes_on() -> None:
    net = formed()
    dave = net.confs["dave"]
    net.send("dave", dave.leave(net.now))
    net.run(1.0)
    assert dave.state is ConfState.ENDED and dave.end_reason is ConfEndReason.LEFT
    host, _, members = net.agreed()
    assert members == ("alice", "bob", "carol", "erin") and host == "bob"
    assert MemberLeft("dave", "left") in net.host().take_updates()


def test_the_conference_ends_when_fewer_than_two_remain() -> None:
    net = Net(CAPS)
    net.start("alice", ("bob", "carol"))
    net.run(2.0)
    for user in ("carol", "alice"):
        conf = net.confs[user]
        net.send(user, conf.leave(net.now))
        net.run(1.0)
    bob = net.confs["bob"]
    assert bob.state is ConfState.ENDED
    assert bob.end_reason in {ConfEndReason.TOO_FEW, ConfEndReason.ENDED_BY_HOST}
    assert all(c.state is ConfState.ENDED for c in net.confs.values())


def test_invites_that_fail_end_a_conference_nobody_joined() -> None:
    net = Net(CAPS, answer=False)
    alice = net.start("alice", ("bob", "carol"))
    net.run(0.5)
    net.send("bob", net.confs["bob"].decline(net.now, busy=True))
    net.run(61.0)  # carol never answers: her invite expires
    assert alice.state is ConfState.ENDED and alice.end_reason is ConfEndReason.TOO_FEW
    updates = alice.take_updates()
    assert InviteFailed("bob", "busy") in updates and InviteFailed("carol", "timeout") in updates
    carol = net.confs["carol"]  # the host's invite timer runs out first and tells her
    assert carol.end_reason is ConfEndReason.ENDED_BY_HOST and carol.end_detail == "timeout"


def test_an_invite_nobody_answers_stops_ringing_on_its_own_timer() -> None:
    invite = ConfInvite(conf_id=CONF_ID, epoch=1, host="alice", members=("alice",))
    bob = Conference("bob", ConfRole.MEMBER, CONF_ID, CAPS["bob"])
    assert bob.receive("alice", invite, 0.0) == []
    assert bob.get_timer() == (60.0, "ring")
    assert bob.handle_timer(59.9) == []
    (to, decline), *_ = bob.handle_timer(60.0)
    assert to == "alice" and decline.reason == "timeout"  # type: ignore[union-attr]
    assert bob.end_reason is ConfEndReason.TIMEOUT


# --- the host goes ----------------------------------------------------------------


def survivors_elect(net: Net, gone: set[str]) -> str:
    roster = net.confs["carol"].roster if "carol" not in gone else net.confs["dave"].roster
    return elect_host(roster.without(gone))


def test_the_host_leaving_hands_the_mix_to_the_elected_successor() -> None:
    net = formed()
    expected = survivors_elect(net, {"bob"})
    net.run(1.0)
    net.max_gap.clear()
    bob = net.confs["bob"]
    net.send("bob", bob.leave(net.now))
    net.run(3.0)
    host, _, members = net.agreed()
    assert host == expected == "carol" and "bob" not in members
    assert bob.end_reason is ConfEndReason.LEFT
    assert max(net.max_gap.values()) < 0.2  # one signalling delay, no timeout
    assert net.dropped == []


def test_the_host_crashing_everyone_agrees_within_the_gap_budget() -> None:
    net = formed()
    expected = survivors_elect(net, {"bob"})
    before = net.agreed()[1]
    net.max_gap.clear()
    net.crash("bob")
    net.run(5.0)
    host, epoch, members = net.agreed()
    assert epoch == before + 1  # one claim, no competing versions
    assert host == expected and "bob" not in members and len(net.active()) == 4
    assert 1.2 <= max(net.max_gap.values()) < 3.0
    changed = [u for u in net.confs["dave"].take_updates() if isinstance(u, HostChanged)]
    assert changed[-1].cause == 2 and changed[-1].previous == "bob"
    assert net.confs["dave"].successor() is not None


def test_host_and_successor_crashing_still_fit_the_gap_budget() -> None:
    net = formed()
    first = survivors_elect(net, {"bob"})
    second = survivors_elect(net, {"bob", first})
    net.max_gap.clear()
    net.crash("bob")
    net.crash(first)
    net.run(6.0)
    host, _, members = net.agreed()
    assert host == second and len(members) == 3
    assert max(net.max_gap.values()) < 3.0


def test_a_host_that_was_only_cut_off_ends_and_the_claim_stands() -> None:
    net = formed()
    net.crash("bob")
    net.run(3.0)
    net.down.discard("bob")  # bob is back, still holding the old roster
    net.run(12.0)
    host, _, members = net.agreed()
    assert host == net.host().me != "bob" and "bob" not in members
    bob = net.confs["bob"]  # its members fell silent for it: it put them out and ended
    assert bob.state is ConfState.ENDED and bob.end_reason is ConfEndReason.TOO_FEW
    assert all(exc.reason == "foreign" for _, _, exc in net.dropped)  # its conf.end notes


def test_a_member_cut_off_from_a_live_host_does_not_take_the_conference() -> None:
    net = formed()
    net.max_gap.clear()
    net.cut.add(frozenset(("dave", "bob")))
    net.run(15.0)
    dave = net.confs["dave"]
    others = [net.confs[u] for u in ("alice", "bob", "carol", "erin")]
    assert {(c.host, c.state) for c in others} == {("bob", ConfState.ACTIVE)}
    assert "dave" not in net.confs["bob"].members  # put out as silent after 10 s
    assert dave.state is ConfState.ENDED  # its claim found no followers
    assert max(net.max_gap[u] for u in ("alice", "carol", "erin")) < 0.05
    assert sum(c.ignored["deferred"] for c in others) >= 1


def test_a_claim_that_arrives_early_is_taken_when_the_host_goes_quiet() -> None:
    net = formed()
    carol = net.confs["carol"]
    claim = ConfHandover(
        conf_id=CONF_ID,
        epoch=carol.epoch + 1,
        host="dave",
        previous_host="bob",
        cause=2,
        members=Roster(0, "dave", carol.roster.without({"bob"})).to_wire(),
    )
    assert carol.receive("dave", claim, net.now) == []  # bob spoke 20 ms ago
    assert carol.host == "bob" and carol.ignored["deferred"] == 1
    carol.handle_timer(net.now + 1.3)  # now bob is silent for carol too
    assert carol.host == "dave" and carol.state is ConfState.ACTIVE


# --- epochs, bad input, bounds ----------------------------------------------------


def test_stale_rosters_and_handovers_are_ignored_and_counted() -> None:
    net = formed()
    carol = net.confs["carol"]
    old = [
        (s, d)
        for s, u, d in net.sent
        if u == "carol" and isinstance(decode(d), ConfRoster | ConfHandover)
    ]
    assert len(old) >= 2
    before = (carol.epoch, carol.host, carol.members)
    for sender, data in old[:-1]:
        assert carol.receive(sender, decode(data), net.now) == []  # type: ignore[arg-type]
    assert (carol.epoch, carol.host, carol.members) == before
    assert carol.ignored["stale"] == len(old) - 1


def bad_messages(net: Net) -> list[tuple[str, object]]:
    """Messages a member must refuse, each with its sender."""
    carol = net.confs["carol"]
    host = carol.host
    rows = net.confs[host].roster.to_wire()
    big = tuple(ConfMember(user=f"user{i:03d}") for i in range(MAX_MEMBERS + 1))
    return [
        (host, ConfEnd(conf_id=bytes(16), reason="x")),  # another conference
        (host, ConfEnd(conf_id=CONF_ID[:15], reason="x")),
        ("dave", ConfEnd(conf_id=CONF_ID, reason="x")),  # not the host
        ("zed", ConfRoster(conf_id=CONF_ID, epoch=99, host="zed", members=rows)),
        (host, ConfRoster(conf_id=CONF_ID, epoch=99, host=host, members=big)),
        (host, ConfRoster(conf_id=CONF_ID, epoch=99, host="Bob", members=rows)),
        (host, ConfRoster(conf_id=CONF_ID, epoch=99, host=host, members=rows[:1])),
        (host, ConfHandover(conf_id=CONF_ID, epoch=99, host=host, previous_host="alice",
                            cause=9, members=rows)),
        (host, ConfAccept(conf_id=CONF_ID, capacity=ConfCapacity())),  # not a host
        (host, ConfLeave(conf_id=CONF_ID)),  # the host leaves by handover
        ("zed", ConfLeave(conf_id=CONF_ID)),
        (host, ConfInvite(conf_id=CONF_ID, epoch=99, host=host, members=(host,))),
    ]  # fmt: skip


def test_malformed_and_foreign_messages_raise_only_remote_protocol_errors() -> None:
    net = formed()
    carol = net.confs["carol"]
    before = (carol.epoch, carol.host, carol.members, carol.state)
    for sender, message in bad_messages(net):
        with pytest.raises(RemoteProtocolError):
            carol.receive(sender, message, net.now)  # type: ignore[arg-type]
    assert (carol.epoch, carol.host, carol.members, carol.state) == before


@given(st.sampled_from(CONF_MESSAGES).flatmap(records), st.sampled_from([*USERS, "zed"]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_decodable_message_is_handled_or_refused_as_remote(
    message: object, sender: str
) -> None:
    for role in ConfRole:
        conf = Conference("carol", role, CONF_ID, CAPS["carol"])
        if role is ConfRole.HOST:
            conf.start(["bob", "dave"], 0.0)
        wire = decode(encode(replace(message, conf_id=CONF_ID)))  # type: ignore[type-var]
        try:
            conf.receive(sender, wire, 1.0)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            assert exc.reason in {"foreign", "malformed", "state"}


def test_a_message_of_another_kind_is_foreign() -> None:
    carol = Conference("carol", ConfRole.MEMBER, CONF_ID, CAPS["carol"])
    with pytest.raises(RemoteProtocolError) as caught:
        carol.receive("bob", Echo(data=b"x"), 0.0)
    assert caught.value.reason == "foreign"


def test_a_conference_grown_from_a_call_names_it_in_the_invite() -> None:
    alice = Conference("alice", ConfRole.HOST, CONF_ID, CAPS["alice"])
    out = alice.start(["bob", "carol"], 0.0, call_id=b"c" * 16)
    invites = [m for _, m in out if isinstance(m, ConfInvite)]
    assert len(invites) == 2 and all(m.call_id == b"c" * 16 for m in invites)
    bob = Conference("bob", ConfRole.MEMBER, CONF_ID, CAPS["bob"])
    bob.receive("alice", invites[0], 0.03)
    assert bob.call_id == b"c" * 16 and bob.state is ConfState.INVITED


def test_the_roster_is_bounded() -> None:
    host = Conference("alice", ConfRole.HOST, CONF_ID, CAPS["alice"])
    out = host.start([f"user{i:03d}" for i in range(MAX_MEMBERS - 1)], 0.0)
    assert len([m for _, m in out if isinstance(m, ConfInvite)]) == MAX_MEMBERS - 1
    with pytest.raises(LocalProtocolError) as caught:
        host.invite(["one-too-many"], 1.0)
    assert caught.value.reason == "full"
    assert len(host.invited) == MAX_MEMBERS - 1
    assert host.invite(["user001"], 2.0) == []  # already invited: nothing to say
    crowded = Conference("alice", ConfRole.HOST, CONF_ID, CAPS["alice"])
    with pytest.raises(LocalProtocolError):
        crowded.start([f"user{i:03d}" for i in range(MAX_MEMBERS)], 0.0)
    assert crowded.state is ConfState.IDLE and crowded.members == ()


def test_local_commands_not_allowed_in_the_state_are_local_errors() -> None:
    host = Conference("alice", ConfRole.HOST, CONF_ID, CAPS["alice"])
    member = Conference("bob", ConfRole.MEMBER, CONF_ID, CAPS["bob"])
    for call in (lambda: host.accept(0.0), lambda: member.invite(["x"], 0.0)):
        with pytest.raises(LocalProtocolError):
            call()
    with pytest.raises(LocalProtocolError):
        host.start(["alice"], 0.0)  # nobody to invite
    with pytest.raises(LocalProtocolError) as caught:
        host.start(["Bob"], 0.0)  # every roster naming it would be refused
    assert caught.value.reason == "name" and host.state is ConfState.IDLE
    host.start(["bob"], 0.0)
    with pytest.raises(LocalProtocolError):
        host.remove("nobody", 0.0)
    with pytest.raises(LocalProtocolError):
        host.report_capacity(CAPS["bob"], 0.0)


# --- plain data -------------------------------------------------------------------


def test_every_row_has_an_effect_and_every_end_a_reason() -> None:
    assert {event for _, _, event in TRANSITIONS} <= set(EFFECTS)
    for key, (_, state) in TRANSITIONS.items():
        assert (state is ConfState.ENDED) == (key in END_REASONS)
    for role, state in TIMER_KINDS:
        assert any(k[0] is role and k[1] is state for k in TRANSITIONS)


DOC = Path(__file__).resolve().parents[2] / "docs" / "conference.md"


def test_the_documented_state_machine_is_current() -> None:
    for marker, render in (("diagram", render_mermaid), ("table", render_table)):
        begin, end = f"<!-- conference-{marker}:begin -->\n", f"<!-- conference-{marker}:end -->"
        documented = DOC.read_text(encoding="utf-8").split(begin, 1)[1].split(end, 1)[0]
        expected = render() if marker == "table" else f"```mermaid\n{render_mermaid()}```\n"
        assert documented == expected, "run: python -m hopline.calls.conference_diagram"
    assert main(["--table"]) == 0


def test_timeouts_must_keep_the_gap_inside_the_budget() -> None:
    with pytest.raises(ValueError, match="gap_budget"):
        ConferenceTimeouts(host_silent=2.0, handover=1.0)
    with pytest.raises(ValueError, match="positive"):
        ConferenceTimeouts(join=0.0)


def test_capacity_and_roster_survive_the_wire() -> None:
    original = CAPS["dave"]
    assert capacity_from_wire("dave", capacity_to_wire(original)) == original
    roster = Roster(7, "bob", tuple(CAPS[u] for u in USERS))
    net_roster = ConfRoster(conf_id=CONF_ID, epoch=7, host="bob", members=roster.to_wire())
    decoded = decode(encode(net_roster))
    assert isinstance(decoded, ConfRoster)
    rebuilt = [c.paths for c in roster.members]
    back = Roster.from_wire(decoded.epoch, decoded.host, decoded.members, ())
    # paths to users outside the roster (frank) are not carried
    assert [c.paths for c in back.members] == [
        tuple(p for p in paths if p.peer in USERS) for paths in rebuilt
    ]


nat_types = st.sampled_from([n for n in NatType if n is not NatType.UDP_BLOCKED])


@st.composite
def capacities(draw: st.DrawFn) -> dict[str, Capacity]:
    result = {}
    for user in USERS:
        paths = tuple(
            PathQuality(u, draw(st.integers(1, 400)), draw(st.integers(0, 200)))
            for u in USERS
            if u != user and draw(st.booleans())
        )
        upload = draw(st.integers(100_000, 100_000_000))
        result[user] = Capacity(user, draw(nat_types), upload, 5000, 40000, paths)
    return result


@given(capacities())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_after_a_host_crash_all_survivors_agree_on_the_elected_one(
    caps: dict[str, Capacity],
) -> None:
    net = Net({**CAPS, **caps})
    net.start("alice", USERS[1:])
    net.run(2.0)
    old = net.host().me
    roster = net.confs[next(u for u in USERS if u != old)].roster
    net.max_gap.clear()
    net.crash(old)
    net.run(4.0)
    host, _, members = net.agreed()
    assert host == elect_host(roster.without({old}))
    assert len(members) == 4 and max(net.max_gap.values()) < 3.0
    assert all(not isinstance(u, Ended) for c in net.active() for u in c.take_updates())
