"""The conference state machine, as plain data, and a sans-I/O :class:`Conference`.

Shape (as :mod:`hopline.calls.state`): roles and states are enums, inputs are
frozen dataclass *events*, and every allowed move is one row of a single
table, :data:`TRANSITIONS`, keyed by ``(role, state, event type)`` and giving
the next ``(role, state)``. A role change (a member that takes over the mix,
a host that hands it on) is a row like any other. A missing key is an error
of the family :class:`ConferenceProtocolError`: :class:`LocalProtocolError`
when this program asked for it, :class:`RemoteProtocolError` when a peer sent
it. Remote errors carry a short ``reason`` (``foreign``, ``malformed``,
``state``) for the drop counters of the shell.

**The roster is the truth.** A conference is a star around its host, which
mixes (:mod:`hopline.media.mixer`). The host publishes the roster
(:class:`Roster`: members, each with its last capacity report, open invites,
host) with an ``epoch`` one higher each time. Every participant keeps the
greatest ``(epoch, host)`` it has seen and ignores, counting them in
:attr:`Conference.ignored`, rosters and handovers that are not greater. Who
hosts is whoever that roster names: a host that learns of a greater roster
naming someone else becomes a member, a member named by one becomes the host.

**Host election** (:mod:`hopline.calls.election`) runs on the roster's own
capacity reports, so every participant computes the same winner:

* the host *leaves*: it elects among the others and sends ``conf.handover``
  (cause ``left``); the successor mixes as soon as it arrives;
* the host *falls silent* (nothing heard for ``host_silent`` s, 1.2 s by
  default): each member, on its own timer, marks it lost and elects among the
  rest. The winner claims the mix at once (``conf.handover``, cause ``lost``);
  the others wait ``handover`` s (1 s) for the claim, and if it does not come
  mark the winner lost too and elect again. The gap is ``host_silent`` plus
  one signalling delay (``host_silent + handover`` plus a delay if the first
  successor is dead too), inside the 3 s budget (:attr:`ConferenceTimeouts.gap_budget`).
  A member that heard its host within ``host_silent / 2`` keeps such a claim
  aside (``deferred``) and takes it only when its own timer fires, so a member
  whose path alone failed cannot pull the conference away from a live host;
* a much more capable member is present (``rehost_margin_permille``, 25 % better score, no
  open invite, not within ``rehost_cooldown`` of the last change): the host
  hands the mix over voluntarily (cause ``rebalance``). This is how the mix
  moves off the participant that merely started the conference.

A member that leaves tells *every* member (``conf.leave``), so a host change
in flight loses nothing, and survivors never elect someone who left. The
conference ends when fewer than two participants remain.

**Active speakers.** Only the host's mixer knows who speaks; the runtime
tells the host's machine (:meth:`Conference.set_speakers`) and it tells the
members (``conf.speakers``, stamped with its epoch). Rate-limited as data:
at most one notice per ``speakers_every`` s (0.25 s); a change inside that
window waits for the ``speakers`` timer, which always sends the latest set,
so the last word the members get is the final state. A new roster carries
the current set along (new members learn it at once). A member keeps
(:attr:`Conference.speakers`) only a set from its current host at its
current epoch: another sender is ``foreign``, another epoch is ignored and
counted (``ignored["epoch"]``). A host change or a silent host clears it.

**Inputs and outputs.** Local commands (:meth:`Conference.start`,
:meth:`~Conference.invite`, :meth:`~Conference.remove`,
:meth:`~Conference.accept`, :meth:`~Conference.decline`,
:meth:`~Conference.leave`, :meth:`~Conference.report_capacity`,
:meth:`~Conference.fail`) and decoded messages
(:meth:`Conference.receive`) each return the messages to send as a list of
``(user, message)``. What happened for people comes out as *updates*
(:class:`MemberJoined`, :class:`MemberLeft`, :class:`InviteFailed`,
:class:`HostChanged`, :class:`SpeakersChanged`, :class:`Ended`) from
:meth:`Conference.take_updates`.
Timers are data: :meth:`Conference.get_timer` gives the next deadline and its
kind, :meth:`Conference.handle_timer` fires what is due, and
:meth:`Conference.note_activity` (media or keep-alives from a participant)
pushes the silence timers out. Nothing here reads a clock: every method
takes ``now``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from hopline.calls.election import (
    DEFAULT_POLICY,
    Capacity,
    Election,
    ElectionPolicy,
    PathQuality,
    rank_hosts,
)
from hopline.nat.discovery import NatType
from hopline.wire.conference import (
    CONF_ID_SIZE,
    CONF_MESSAGES,
    MAX_MEMBERS,
    MAX_SPEAKERS,
    UNMEASURED,
    ConfAccept,
    ConfCapacity,
    ConfCapacityReport,
    ConfDecline,
    ConfEnd,
    ConfHandover,
    ConfInvite,
    ConfLeave,
    ConfMember,
    ConfMessage,
    ConfRoster,
    ConfSpeakers,
    HandoverCause,
    check_message,
    check_user,
)
from hopline.wire.errors import DecodeError
from hopline.wire.schema import Message

__all__ = [
    "CONFERENCE_TIMEOUTS",
    "END_REASONS",
    "TIMER_KINDS",
    "TRANSITIONS",
    "Accept",
    "AcceptReceived",
    "CapacityReceived",
    "Claim",
    "ConfEndReason",
    "ConfRole",
    "ConfState",
    "Conference",
    "ConferenceProtocolError",
    "ConferenceTimeouts",
    "CooldownOver",
    "Decline",
    "DeclineReceived",
    "Deserted",
    "EndReceived",
    "Ended",
    "Event",
    "Fail",
    "HandoverOverdue",
    "HostChanged",
    "HostSilent",
    "Invite",
    "InviteExpired",
    "InviteFailed",
    "InviteReceived",
    "JoinExpired",
    "Leave",
    "LeaveReceived",
    "LocalProtocolError",
    "MemberJoined",
    "MemberLeft",
    "MemberSilent",
    "Outbox",
    "Promoted",
    "Rebalance",
    "Remove",
    "RemoteEvent",
    "RemoteProtocolError",
    "ReportCapacity",
    "RingExpired",
    "Roster",
    "RosterReceived",
    "SetSpeakers",
    "SpeakersChanged",
    "SpeakersDue",
    "SpeakersReceived",
    "Start",
    "TimerKind",
    "Update",
    "capacity_from_wire",
    "capacity_to_wire",
]


class ConfRole(enum.Enum):
    """Whether this participant mixes."""

    HOST = "host"
    MEMBER = "member"


class ConfState(enum.Enum):
    """Where one participant is in one conference."""

    IDLE = "idle"
    INVITING = "inviting"
    """Host: invites sent, nobody joined yet."""
    INVITED = "invited"
    """Member: an invite rings here."""
    JOINING = "joining"
    """Member: accepted, no roster yet."""
    ACTIVE = "active"
    """In the conference (host: mixing)."""
    HANDING_OVER = "handing_over"
    """Member: the host fell silent; waiting for the successor's claim."""
    ENDED = "ended"


class ConfEndReason(enum.Enum):
    """Why this participant's conference reached :attr:`ConfState.ENDED`."""

    LEFT = "left"
    DECLINED = "declined"
    TIMEOUT = "timeout"
    ENDED_BY_HOST = "ended_by_host"
    TOO_FEW = "too_few"
    HOST_LOST = "host_lost"
    FAILED = "failed"


TimerKind = Literal["invite", "member", "rehost", "speakers", "ring", "join", "host", "handover"]
Outbox = list[tuple[str, ConfMessage]]


class ConferenceProtocolError(Exception):
    """An input the conference's role and state do not allow."""

    def __init__(self, detail: str, reason: str = "state") -> None:
        super().__init__(detail)
        self.reason = reason


class LocalProtocolError(ConferenceProtocolError):
    """This program asked for something not allowed now (a bug in the caller)."""


class RemoteProtocolError(ConferenceProtocolError):
    """A peer sent something malformed, foreign or not allowed now: drop and count it."""


# --- events (inputs) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all inputs."""

    LOCAL: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Start(Event):
    """Host: open the conference and invite ``users`` (``call_id``: grown from that call)."""

    users: tuple[str, ...]
    call_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class Invite(Event):
    """Host: invite more users into the running conference."""

    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Remove(Event):
    """Host: put a member out, or withdraw an open invite."""

    user: str


@dataclass(frozen=True, slots=True)
class Accept(Event):
    """Invitee: join."""


@dataclass(frozen=True, slots=True)
class Decline(Event):
    """Invitee: do not join."""

    busy: bool = False


@dataclass(frozen=True, slots=True)
class Leave(Event):
    """Leave the conference (a host hands the mix on first)."""


@dataclass(frozen=True, slots=True)
class ReportCapacity(Event):
    """A new measurement of this participant's capacity."""

    capacity: Capacity


@dataclass(frozen=True, slots=True)
class Fail(Event):
    """The runtime gives up on the conference."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class SetSpeakers(Event):
    """Host: the mixer mixes ``speakers`` as speaking now."""

    speakers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpeakersDue(Event):
    """Host timer: a changed speaker set may go out now (the rate limit passed)."""


@dataclass(frozen=True, slots=True)
class InviteExpired(Event):
    """Host timer: ``user`` did not answer its invite."""

    user: str


@dataclass(frozen=True, slots=True)
class MemberSilent(Event):
    """Host timer: nothing heard from ``user`` for ``member_silent`` s."""

    user: str


@dataclass(frozen=True, slots=True)
class CooldownOver(Event):
    """Host timer: the last host change is ``rehost_cooldown`` s old; a rebalance may follow."""


@dataclass(frozen=True, slots=True)
class RingExpired(Event):
    """Invitee timer: nobody answered the invite here."""


@dataclass(frozen=True, slots=True)
class JoinExpired(Event):
    """Member timer: accepted, but no roster came."""


@dataclass(frozen=True, slots=True)
class HostSilent(Event):
    """Member timer: nothing heard from the host for ``host_silent`` s."""


@dataclass(frozen=True, slots=True)
class HandoverOverdue(Event):
    """Member timer: the elected successor did not claim the mix in time."""


@dataclass(frozen=True, slots=True)
class Claim(Event):
    """Derived: this member won the election after the host was lost."""


@dataclass(frozen=True, slots=True)
class Rebalance(Event):
    """Derived: the host hands the mix to a much more capable member."""

    to: str


@dataclass(frozen=True, slots=True)
class Deserted(Event):
    """Derived: fewer than two participants remain."""


@dataclass(frozen=True, slots=True)
class RemoteEvent(Event):
    """An input that came from a peer."""

    LOCAL: ClassVar[bool] = False
    sender: str


@dataclass(frozen=True, slots=True)
class InviteReceived(RemoteEvent):
    """An invite (or a new host's repeat of it)."""

    message: ConfInvite


@dataclass(frozen=True, slots=True)
class AcceptReceived(RemoteEvent):
    """An invitee joins."""

    capacity: Capacity


@dataclass(frozen=True, slots=True)
class DeclineReceived(RemoteEvent):
    """An invitee does not join."""

    busy: bool


@dataclass(frozen=True, slots=True)
class RosterReceived(RemoteEvent):
    """A greater roster (``conf.roster`` or ``conf.handover``) naming another host."""

    roster: Roster
    cause: HandoverCause | None = None


@dataclass(frozen=True, slots=True)
class Promoted(RemoteEvent):
    """A greater roster naming this participant as host."""

    roster: Roster
    cause: HandoverCause | None = None


@dataclass(frozen=True, slots=True)
class LeaveReceived(RemoteEvent):
    """A member leaves."""


@dataclass(frozen=True, slots=True)
class CapacityReceived(RemoteEvent):
    """A member's new capacity report."""

    capacity: Capacity


@dataclass(frozen=True, slots=True)
class SpeakersReceived(RemoteEvent):
    """The host says whom it mixes as speaking now (checked: its epoch, members only)."""

    speakers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EndReceived(RemoteEvent):
    """The host put this participant out."""

    reason: str


# --- updates (outputs) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Update:
    """Base of what :meth:`Conference.take_updates` reports."""


@dataclass(frozen=True, slots=True)
class MemberJoined(Update):
    """``user`` is in the roster now."""

    user: str


@dataclass(frozen=True, slots=True)
class MemberLeft(Update):
    """``user`` is no longer in the roster (``left``, ``removed``, ``silent``, ``lost``)."""

    user: str
    reason: str


@dataclass(frozen=True, slots=True)
class InviteFailed(Update):
    """The invite to ``user`` is closed without a join (``declined``, ``busy``, ...)."""

    user: str
    reason: str


@dataclass(frozen=True, slots=True)
class HostChanged(Update):
    """``host`` mixes from ``epoch`` on (``cause`` None: learnt from a roster)."""

    host: str
    previous: str
    epoch: int
    cause: HandoverCause | None


@dataclass(frozen=True, slots=True)
class SpeakersChanged(Update):
    """The active speakers changed: held by a member, or told to the members by the host."""

    speakers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ended(Update):
    """This participant's conference is over."""

    reason: ConfEndReason
    detail: str = ""


# --- the table ----------------------------------------------------------------

_S = ConfState
_HOST = ConfRole.HOST
_MEMBER = ConfRole.MEMBER
_Key = tuple[ConfRole, ConfState, type[Event]]
_Target = tuple[ConfRole, ConfState] | ConfEndReason
_IN_CONF = (_S.JOINING, _S.ACTIVE, _S.HANDING_OVER)

_HOST_ROWS: dict[tuple[ConfState, type[Event]], _Target] = {
    (_S.IDLE, Start): (_HOST, _S.INVITING),
    **{
        (_S.INVITING, e): (_HOST, _S.INVITING)
        for e in (Invite, Remove, ReportCapacity, SetSpeakers)
    },
    (_S.INVITING, InviteExpired): (_HOST, _S.INVITING),
    (_S.INVITING, DeclineReceived): (_HOST, _S.INVITING),
    (_S.INVITING, AcceptReceived): (_HOST, _S.ACTIVE),
    (_S.INVITING, Leave): ConfEndReason.LEFT,
    (_S.INVITING, Deserted): ConfEndReason.TOO_FEW,
    **{
        (_S.ACTIVE, e): (_HOST, _S.ACTIVE)
        for e in (
            Invite,
            Remove,
            ReportCapacity,
            InviteExpired,
            MemberSilent,
            CooldownOver,
            AcceptReceived,
            DeclineReceived,
            LeaveReceived,
            CapacityReceived,
            Promoted,
            SetSpeakers,
            SpeakersDue,
        )
    },
    (_S.ACTIVE, RosterReceived): (_MEMBER, _S.ACTIVE),
    (_S.ACTIVE, Rebalance): (_MEMBER, _S.ACTIVE),
    (_S.ACTIVE, Leave): ConfEndReason.LEFT,
    (_S.ACTIVE, Deserted): ConfEndReason.TOO_FEW,
    **{(s, Fail): ConfEndReason.FAILED for s in (_S.INVITING, _S.ACTIVE)},
}

_MEMBER_ROWS: dict[tuple[ConfState, type[Event]], _Target] = {
    (_S.IDLE, InviteReceived): (_MEMBER, _S.INVITED),
    (_S.INVITED, InviteReceived): (_MEMBER, _S.INVITED),
    (_S.INVITED, Accept): (_MEMBER, _S.JOINING),
    (_S.INVITED, Decline): ConfEndReason.DECLINED,
    (_S.INVITED, RingExpired): ConfEndReason.TIMEOUT,
    (_S.JOINING, InviteReceived): (_MEMBER, _S.JOINING),
    (_S.JOINING, JoinExpired): ConfEndReason.TIMEOUT,
    **{(s, EndReceived): ConfEndReason.ENDED_BY_HOST for s in (_S.INVITED, _S.JOINING)},
    **{(s, RosterReceived): (_MEMBER, _S.ACTIVE) for s in _IN_CONF},
    **{(s, Promoted): (_HOST, _S.ACTIVE) for s in _IN_CONF},
    **{(s, LeaveReceived): (_MEMBER, s) for s in (_S.ACTIVE, _S.HANDING_OVER)},
    (_S.ACTIVE, SpeakersReceived): (_MEMBER, _S.ACTIVE),
    **{(s, ReportCapacity): (_MEMBER, s) for s in (_S.INVITED, _S.JOINING, _S.ACTIVE)},
    (_S.HANDING_OVER, ReportCapacity): (_MEMBER, _S.HANDING_OVER),
    (_S.ACTIVE, HostSilent): (_MEMBER, _S.HANDING_OVER),
    (_S.ACTIVE, EndReceived): ConfEndReason.ENDED_BY_HOST,
    (_S.HANDING_OVER, HandoverOverdue): (_MEMBER, _S.HANDING_OVER),
    (_S.HANDING_OVER, Claim): (_HOST, _S.ACTIVE),
    (_S.HANDING_OVER, Deserted): ConfEndReason.HOST_LOST,
    **{(s, Leave): ConfEndReason.LEFT for s in (_S.JOINING, _S.ACTIVE, _S.HANDING_OVER)},
    **{(s, Fail): ConfEndReason.FAILED for s in (_S.INVITED, _S.JOINING, _S.ACTIVE)},
    (_S.HANDING_OVER, Fail): ConfEndReason.FAILED,
}


def _build() -> tuple[dict[_Key, tuple[ConfRole, ConfState]], dict[_Key, ConfEndReason]]:
    """Flatten the per-role rows into the two public tables."""
    transitions: dict[_Key, tuple[ConfRole, ConfState]] = {}
    reasons: dict[_Key, ConfEndReason] = {}
    for role, rows in ((_HOST, _HOST_ROWS), (_MEMBER, _MEMBER_ROWS)):
        for (state, event), target in rows.items():
            key = (role, state, event)
            if isinstance(target, ConfEndReason):
                transitions[key] = (role, _S.ENDED)
                reasons[key] = target
            else:
                transitions[key] = target
    return transitions, reasons


TRANSITIONS, END_REASONS = _build()
"""``TRANSITIONS[(role, state, event type)]`` is the next ``(role, state)``; a
missing key is an error. ``END_REASONS`` has the same keys for the rows that end."""


@dataclass(frozen=True, slots=True)
class ConferenceTimeouts:
    """How long each timed wait may last, in seconds."""

    invite: float = 60.0
    """An invite rings at most this long (host and invitee)."""
    join: float = 10.0
    """An invitee that accepted waits this long for its first roster."""
    member_silent: float = 10.0
    """The host drops a member it has not heard from for this long."""
    host_silent: float = 1.2
    """A member declares the host lost after this much silence (media is every 20 ms)."""
    handover: float = 1.0
    """A member waits this long for the elected successor's claim."""
    gap_budget: float = 3.0
    """The most silence a host change may cause."""
    rehost_cooldown: float = 30.0
    """No voluntary handover within this long of the last host change."""
    rehost_margin_permille: int = 250
    """A voluntary handover needs a score this much (per mille) above the host's."""
    speakers_every: float = 0.25
    """The host tells the members the active speakers at most this often."""

    def __post_init__(self) -> None:
        """Refuse timers that cannot keep the gap inside the budget."""
        timeouts = (self.invite, self.join, self.member_silent, self.host_silent, self.handover)
        if min(*timeouts, self.speakers_every) <= 0:
            raise ValueError("every timeout must be positive")
        if self.host_silent + self.handover >= self.gap_budget:
            raise ValueError("host_silent + handover must stay under gap_budget")


CONFERENCE_TIMEOUTS = ConferenceTimeouts()

TIMER_KINDS: dict[tuple[ConfRole, ConfState], tuple[TimerKind, ...]] = {
    (_HOST, _S.INVITING): ("invite",),
    (_HOST, _S.ACTIVE): ("invite", "member", "rehost", "speakers"),
    (_MEMBER, _S.INVITED): ("ring",),
    (_MEMBER, _S.JOINING): ("join",),
    (_MEMBER, _S.ACTIVE): ("host",),
    (_MEMBER, _S.HANDING_OVER): ("handover",),
}
"""Which timers run in which role and state; others run none."""


# --- the roster ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Roster:
    """One version of the conference: members (with capacities), host, open invites."""

    epoch: int
    host: str
    members: tuple[Capacity, ...]
    invited: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[int, str]:
        """The version order: a greater key replaces a smaller one."""
        return (self.epoch, self.host)

    @property
    def users(self) -> tuple[str, ...]:
        """Member names in roster order."""
        return tuple(c.user for c in self.members)

    def capacity_of(self, user: str) -> Capacity | None:
        """The capacity report of a member, or ``None``."""
        return next((c for c in self.members if c.user == user), None)

    def without(self, users: Iterable[str]) -> tuple[Capacity, ...]:
        """The members except ``users``."""
        gone = set(users)
        return tuple(c for c in self.members if c.user not in gone)

    @classmethod
    def from_wire(
        cls, epoch: int, host: str, rows: tuple[ConfMember, ...], invited: tuple[str, ...]
    ) -> Roster:
        """The roster a checked ``conf.roster`` or ``conf.handover`` carries."""
        order = tuple(row.user for row in rows)
        return cls(epoch, host, tuple(_member_from_wire(r, order) for r in rows), invited)

    def to_wire(self) -> tuple[ConfMember, ...]:
        """Roster rows, each member's paths aligned with the roster order."""
        return tuple(_member_to_wire(c, self.users) for c in self.members)


def capacity_to_wire(capacity: Capacity) -> ConfCapacity:
    """A capacity report as it travels in ``conf.accept`` and ``conf.capacity``."""
    paths = sorted(capacity.paths, key=lambda p: p.peer)
    return ConfCapacity(
        nat_class=int(capacity.nat_type),
        upload_bps=capacity.upload_bps,
        encodes_per_s=capacity.encodes_per_s,
        decodes_per_s=capacity.decodes_per_s,
        peers=tuple(p.peer for p in paths),
        rtt_ms=tuple(min(p.rtt_ms, UNMEASURED - 1) for p in paths),
        loss_permille=tuple(p.loss_permille for p in paths),
    )


def capacity_from_wire(user: str, record: ConfCapacity) -> Capacity:
    """The :class:`Capacity` of ``user`` from a checked report."""
    paths = tuple(
        PathQuality(peer, rtt, loss)
        for peer, rtt, loss in zip(record.peers, record.rtt_ms, record.loss_permille, strict=True)
        if peer != user
    )
    return Capacity(
        user,
        NatType(record.nat_class),
        record.upload_bps,
        record.encodes_per_s,
        record.decodes_per_s,
        paths,
    )


def _member_to_wire(capacity: Capacity, order: tuple[str, ...]) -> ConfMember:
    rtt, loss = [], []
    for peer in order:
        path = capacity.path_to(peer) if peer != capacity.user else None
        rtt.append(UNMEASURED if path is None else min(path.rtt_ms, UNMEASURED - 1))
        loss.append(0 if path is None else path.loss_permille)
    measured = any(value != UNMEASURED for value in rtt)
    return ConfMember(
        user=capacity.user,
        nat_class=int(capacity.nat_type),
        upload_bps=capacity.upload_bps,
        encodes_per_s=capacity.encodes_per_s,
        decodes_per_s=capacity.decodes_per_s,
        rtt_ms=tuple(rtt) if measured else (),
        loss_permille=tuple(loss) if measured else (),
    )


def _member_from_wire(row: ConfMember, order: tuple[str, ...]) -> Capacity:
    paths = tuple(
        PathQuality(peer, rtt, loss)
        for peer, rtt, loss in zip(order, row.rtt_ms, row.loss_permille, strict=False)
        if rtt != UNMEASURED and peer != row.user
    )
    return Capacity(
        row.user,
        NatType(row.nat_class),
        row.upload_bps,
        row.encodes_per_s,
        row.decodes_per_s,
        paths,
    )


def _check_names(users: Iterable[str]) -> None:
    """Refuse a name every receiver would refuse (a roster carrying it would be dropped)."""
    for user in users:
        try:
            check_user(user)
        except DecodeError as exc:
            raise LocalProtocolError(str(exc), "name") from exc


# --- the machine --------------------------------------------------------------


class Conference:
    """One conference seen from one participant: feed it inputs, send what it returns."""

    def __init__(
        self,
        me: str,
        role: ConfRole,
        conf_id: bytes,
        capacity: Capacity,
        *,
        timeouts: ConferenceTimeouts = CONFERENCE_TIMEOUTS,
        policy: ElectionPolicy = DEFAULT_POLICY,
    ) -> None:
        """Start in :attr:`ConfState.IDLE`; ``capacity`` is this participant's report."""
        if len(conf_id) != CONF_ID_SIZE:
            raise ValueError(f"conf_id must be {CONF_ID_SIZE} bytes")
        _check_names((me,))
        if capacity.user != me:
            raise ValueError("the capacity report must be this participant's")
        self.me, self.role, self.conf_id = me, role, conf_id
        self.state = ConfState.IDLE
        self.capacity = capacity
        self.timeouts, self.policy = timeouts, policy
        self.roster = Roster(0, "", ())
        self.end_reason: ConfEndReason | None = None
        self.end_detail = ""
        self.ignored: Counter[str] = Counter()
        """Stale or duplicate messages dropped without error, by reason."""
        self.call_id: bytes | None = None
        self._updates: list[Update] = []
        self._invites: dict[str, float] = {}  # host: invitee -> deadline
        self._heard: dict[str, float] = {}  # last signal or media from each peer
        self._lost: set[str] = set()  # hosts and successors given up on
        self._departed: set[str] = set()  # members that said they leave
        self._deadline: float | None = None  # ring, join or handover
        self._host_changed_at: float | None = None
        self._deferred: RosterReceived | Promoted | None = None  # a claim while the host spoke
        self.speakers: tuple[str, ...] = ()
        """Active speakers: a host's as its mixer says, a member's as its host said."""
        self._speakers_sent: tuple[str, ...] = ()  # host: the set the members were told
        self._speakers_next = float("-inf")  # host: the earliest time for the next notice

    # -- reading

    @property
    def host(self) -> str:
        """The participant that mixes, as far as this one knows."""
        return self.roster.host

    @property
    def epoch(self) -> int:
        """The epoch of the roster held."""
        return self.roster.epoch

    @property
    def members(self) -> tuple[str, ...]:
        """Members of the roster held, host included."""
        return self.roster.users

    @property
    def invited(self) -> tuple[str, ...]:
        """Invites still open."""
        return self.roster.invited

    def election(self) -> Election:
        """The election over the roster held: why the host hosts (for ``hopline calls``)."""
        return rank_hosts(self.roster.members or (self.capacity,), self.policy)

    def successor(self) -> str | None:
        """Who takes the mix if the host vanishes now (keep a path to it warm)."""
        rest = self.roster.without({self.host, *self._departed})
        return rank_hosts(rest, self.policy).winner if len(rest) >= 2 else None

    def take_updates(self) -> list[Update]:
        """Return and forget the updates since the last call."""
        updates, self._updates = self._updates, []
        return updates

    # -- local commands

    def start(self, users: Iterable[str], now: float, call_id: bytes | None = None) -> Outbox:
        """Host: open the conference and invite ``users`` (``call_id``: grown from that call)."""
        return self._apply(Start(tuple(dict.fromkeys(users)), call_id), now)

    def invite(self, users: Iterable[str], now: float) -> Outbox:
        """Host: invite more users."""
        return self._apply(Invite(tuple(dict.fromkeys(users))), now)

    def remove(self, user: str, now: float) -> Outbox:
        """Host: put a member out or withdraw an invite."""
        return self._apply(Remove(user), now)

    def accept(self, now: float) -> Outbox:
        """Invitee: join."""
        return self._apply(Accept(), now)

    def decline(self, now: float, busy: bool = False) -> Outbox:
        """Invitee: do not join."""
        return self._apply(Decline(busy), now)

    def leave(self, now: float) -> Outbox:
        """Leave; a host hands the mix on to the elected successor first."""
        return self._apply(Leave(), now)

    def report_capacity(self, capacity: Capacity, now: float) -> Outbox:
        """A new measurement of this participant's capacity."""
        if capacity.user != self.me:
            raise LocalProtocolError("a capacity report must be this participant's")
        return self._apply(ReportCapacity(capacity), now)

    def fail(self, now: float, detail: str = "") -> Outbox:
        """The runtime gives up (no path to anyone, secure session lost)."""
        return self._apply(Fail(detail), now)

    def set_speakers(self, speakers: Iterable[str], now: float) -> Outbox:
        """Host: the mixer mixes ``speakers`` now; the members hear of it (rate-limited).

        Names no longer in the roster are left out (the roster may have
        dropped one an instant before the mixer did); more than
        :data:`~hopline.wire.conference.MAX_SPEAKERS` is a :class:`LocalProtocolError`.
        """
        names = tuple(dict.fromkeys(speakers))
        if len(names) > MAX_SPEAKERS:
            raise LocalProtocolError(f"at most {MAX_SPEAKERS} speakers", "full")
        return self._apply(SetSpeakers(names), now)

    # -- remote input

    def receive(self, sender: str, message: ConfMessage | Message, now: float) -> Outbox:
        """Apply a decoded message from ``sender`` (authenticated by the secure session).

        Raises only :class:`RemoteProtocolError` for a malformed message, one
        from a stranger or for another conference, or one the state does not
        allow; stale rosters and repeats are ignored and counted in
        :attr:`ignored`.
        """
        if not isinstance(message, CONF_MESSAGES) or message.conf_id != self.conf_id:
            raise RemoteProtocolError("message for another conference", "foreign")
        try:
            check_message(message)
        except DecodeError as exc:
            raise RemoteProtocolError(str(exc), "malformed") from exc
        event = self._remote_event(sender, message, now)
        if event is None:
            return []
        self._heard[sender] = now
        return self._apply(event, now)

    def note_activity(self, user: str, now: float) -> None:
        """Media or a keep-alive came from ``user``: push its silence timer out."""
        if user in self.roster.users:
            self._heard[user] = now

    # -- timers

    def get_timer(self) -> tuple[float, TimerKind] | None:
        """The next deadline and its kind, or ``None`` when no timer runs."""
        timers = self._timers()
        return min(((t[0], t[1]) for t in timers), default=None)

    def handle_timer(self, now: float) -> Outbox:
        """Fire every timer whose deadline has passed; return what to send."""
        out: Outbox = []
        for _ in range(4 * MAX_MEMBERS + 8):  # each firing clears its own timer
            due = [t for t in self._timers() if t[0] <= now]
            if not due:
                break
            out += self._apply(min(due, key=lambda t: t[0])[2], now)
        return out

    def _timers(self) -> list[tuple[float, TimerKind, Event]]:
        kinds = TIMER_KINDS.get((self.role, self.state), ())
        timers: list[tuple[float, TimerKind, Event]] = []
        if "invite" in kinds:
            timers += [(d, "invite", InviteExpired(u)) for u, d in self._invites.items()]
        if "member" in kinds:
            silent = self.timeouts.member_silent
            timers += [
                (self._heard.get(u, 0.0) + silent, "member", MemberSilent(u))
                for u in self.roster.users
                if u != self.me
            ]
        if "speakers" in kinds and self.speakers != self._speakers_sent:
            timers.append((self._speakers_next, "speakers", SpeakersDue()))
        if "rehost" in kinds and self._host_changed_at is not None:
            cooldown_over = self._host_changed_at + self.timeouts.rehost_cooldown
            timers.append((cooldown_over, "rehost", CooldownOver()))
        if "host" in kinds:
            last = self._heard.get(self.host, 0.0)
            timers.append((last + self.timeouts.host_silent, "host", HostSilent()))
        single: dict[TimerKind, Event] = {
            "ring": RingExpired(),
            "join": JoinExpired(),
            "handover": HandoverOverdue(),
        }
        for kind in kinds:
            if kind in single and self._deadline is not None:
                timers.append((self._deadline, kind, single[kind]))
        return timers

    # -- the engine

    def _apply(self, event: Event, now: float) -> Outbox:
        """Look the move up, run its effect, move, then settle derived moves."""
        key = (self.role, self.state, type(event))
        target = TRANSITIONS.get(key)
        if target is None:
            error = LocalProtocolError if event.LOCAL else RemoteProtocolError
            detail = f"{type(event).__name__} not allowed for a {self.role.value} in {self.state}"
            raise error(detail)
        out = self._effect(event, now)
        self.role, self.state = target
        if target[1] is ConfState.ENDED:
            self._end(END_REASONS[key])
        return out + self._settle(now)

    def _end(self, reason: ConfEndReason) -> None:
        self.end_reason = reason
        self._invites.clear()
        self._deadline = None
        self.speakers = self._speakers_sent = ()
        self._updates.append(Ended(reason, self.end_detail))

    def _settle(self, now: float) -> Outbox:
        """Apply the moves that follow from the data: too few, a claim, a rebalance."""
        if self.state is ConfState.ENDED:
            return []
        if self._deserted():
            return self._apply(Deserted(), now)
        if self.state is ConfState.HANDING_OVER and self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            if deferred.roster.key > self.roster.key:
                return self._apply(deferred, now)
        if self.state is ConfState.HANDING_OVER and self._expected_successor() == self.me:
            return self._apply(Claim(), now)
        if self.role is ConfRole.HOST and self.state is ConfState.ACTIVE:
            target = self._rebalance_target(now)
            if target is not None:
                return self._apply(Rebalance(target), now)
        return []

    def _deserted(self) -> bool:
        if self.role is ConfRole.HOST and self.state is ConfState.INVITING:
            return not self._invites
        if self.role is ConfRole.HOST and self.state is ConfState.ACTIVE:
            return len(self.roster.members) < 2
        if self.state is ConfState.HANDING_OVER:
            return len(self._survivors()) < 2
        return False

    def _survivors(self) -> tuple[Capacity, ...]:
        return self.roster.without(self._lost | self._departed)

    def _expected_successor(self) -> str | None:
        survivors = self._survivors()
        return rank_hosts(survivors, self.policy).winner if len(survivors) >= 2 else None

    def _rebalance_target(self, now: float) -> str | None:
        if self._invites or len(self.roster.members) < 2:
            return None
        since = self._host_changed_at
        if since is not None and now - since < self.timeouts.rehost_cooldown:
            return None
        election = rank_hosts(self.roster.members, self.policy)
        best, mine = election.candidates[0], election.candidate(self.me)
        if best.user == self.me or not best.eligible:
            return None
        margin = 1000 + self.timeouts.rehost_margin_permille
        if not mine.eligible or best.score * 1000 >= mine.score * margin:
            return best.user
        return None

    def _effect(self, event: Event, now: float) -> Outbox:
        handler = _EFFECTS[type(event)]
        return handler(self, event, now)

    # -- effects: host

    def _on_start(self, event: Start, now: float) -> Outbox:
        users = tuple(u for u in event.users if u != self.me)
        if not users:
            raise LocalProtocolError("a conference needs someone to invite")
        if len(users) >= MAX_MEMBERS:
            raise LocalProtocolError(f"a conference holds at most {MAX_MEMBERS}", "full")
        _check_names(users)
        self.roster = Roster(0, self.me, (self.capacity,))
        self.call_id = event.call_id
        return self._on_invite(Invite(users), now)

    def _on_invite(self, event: Invite, now: float) -> Outbox:
        _check_names(event.users)
        known = set(self.roster.users) | set(self._invites)
        new = [u for u in event.users if u not in known]
        if len(known) + len(new) > MAX_MEMBERS:
            raise LocalProtocolError(f"a conference holds at most {MAX_MEMBERS}", "full")
        if not new:
            return []
        for user in new:
            self._invites[user] = now + self.timeouts.invite
        out = self._publish(now)
        return out + [(u, self._invite_message()) for u in new]

    def _invite_message(self) -> ConfInvite:
        return ConfInvite(
            conf_id=self.conf_id,
            epoch=self.epoch,
            host=self.me,
            members=self.roster.users,
            call_id=self.call_id,
        )

    def _on_remove(self, event: Remove, now: float) -> Outbox:
        user = event.user
        if user in self._invites:
            del self._invites[user]
            self._updates.append(InviteFailed(user, "cancelled"))
            return [(user, self._end_message("cancelled")), *self._publish(now)]
        if user == self.me or user not in self.roster.users:
            raise LocalProtocolError(f"{user} is not a member to remove")
        return [(user, self._end_message("removed")), *self._drop_member(user, "removed", now)]

    def _drop_member(self, user: str, reason: str, now: float) -> Outbox:
        self.roster = replace(self.roster, members=self.roster.without({user}))
        self._heard.pop(user, None)
        self._updates.append(MemberLeft(user, reason))
        return self._publish(now)

    def _on_invite_expired(self, event: InviteExpired, now: float) -> Outbox:
        self._invites.pop(event.user, None)
        self._updates.append(InviteFailed(event.user, "timeout"))
        return [(event.user, self._end_message("timeout")), *self._publish(now)]

    def _on_member_silent(self, event: MemberSilent, now: float) -> Outbox:
        return [
            (event.user, self._end_message("silent")),
            *self._drop_member(event.user, "silent", now),
        ]

    def _on_cooldown_over(self, event: CooldownOver, now: float) -> Outbox:
        self._host_changed_at = None  # the settle step that follows may rebalance
        return []

    def _on_accept_received(self, event: AcceptReceived, now: float) -> Outbox:
        del self._invites[event.sender]
        self.roster = replace(self.roster, members=(*self.roster.members, event.capacity))
        self._heard[event.sender] = now
        self._updates.append(MemberJoined(event.sender))
        return self._publish(now)

    def _on_decline_received(self, event: DeclineReceived, now: float) -> Outbox:
        del self._invites[event.sender]
        self._updates.append(InviteFailed(event.sender, "busy" if event.busy else "declined"))
        return self._publish(now)

    def _on_capacity_received(self, event: CapacityReceived, now: float) -> Outbox:
        return self._set_capacity(event.capacity, now)

    def _set_capacity(self, capacity: Capacity, now: float) -> Outbox:
        members = tuple(capacity if c.user == capacity.user else c for c in self.roster.members)
        self.roster = replace(self.roster, members=members)
        return self._publish(now)

    def _publish(self, now: float) -> Outbox:
        """The host's roster changed: bump the epoch and tell every member."""
        self.roster = replace(self.roster, epoch=self.epoch + 1, invited=tuple(self._invites))
        message = ConfRoster(
            conf_id=self.conf_id,
            epoch=self.epoch,
            host=self.me,
            members=self.roster.to_wire(),
            invited=self.roster.invited,
        )
        out: Outbox = [(u, message) for u in self.roster.users if u != self.me]
        self.speakers = tuple(u for u in self.speakers if u in self.roster.users)
        if self.speakers or self._speakers_sent:  # new members learn it, at the new epoch
            out += self._send_speakers(now)
        return out

    def _on_set_speakers(self, event: SetSpeakers, now: float) -> Outbox:
        self.speakers = tuple(u for u in event.speakers if u in self.roster.users)
        if self.speakers == self._speakers_sent or now < self._speakers_next:
            return []  # unchanged, or the ``speakers`` timer sends it when the limit allows
        return self._send_speakers(now)

    def _on_speakers_due(self, event: SpeakersDue, now: float) -> Outbox:
        return self._send_speakers(now)

    def _send_speakers(self, now: float) -> Outbox:
        """Tell every member the current set (at the current epoch); the limit starts again."""
        if self.speakers != self._speakers_sent:
            self._updates.append(SpeakersChanged(self.speakers))
        self._speakers_sent = self.speakers
        self._speakers_next = now + self.timeouts.speakers_every
        message = ConfSpeakers(conf_id=self.conf_id, epoch=self.epoch, speakers=self.speakers)
        return [(u, message) for u in self.roster.users if u != self.me]

    def _end_message(self, reason: str) -> ConfEnd:
        return ConfEnd(conf_id=self.conf_id, epoch=self.epoch, reason=reason)

    def _host_leave(self, now: float) -> Outbox:
        others = self.roster.without({self.me})
        invitees = list(self._invites)
        if len(others) < 2:
            targets = [*(c.user for c in others), *invitees]
            return [(u, self._end_message("ended")) for u in targets]
        winner = rank_hosts(others, self.policy).winner
        roster = Roster(self.epoch + 1, winner, others, tuple(invitees))
        return self._handover(roster, HandoverCause.LEFT, self.me)

    def _handover(self, roster: Roster, cause: HandoverCause, previous: str) -> Outbox:
        message = ConfHandover(
            conf_id=self.conf_id,
            epoch=roster.epoch,
            host=roster.host,
            previous_host=previous,
            cause=int(cause),
            members=roster.to_wire(),
            invited=roster.invited,
        )
        return [(u, message) for u in roster.users if u != self.me]

    def _on_rebalance(self, event: Rebalance, now: float) -> Outbox:
        roster = replace(self.roster, epoch=self.epoch + 1, host=event.to)
        out = self._handover(roster, HandoverCause.REBALANCE, self.me)
        self._adopt(roster, HandoverCause.REBALANCE, now)
        return out

    def _on_deserted(self, event: Deserted, now: float) -> Outbox:
        if self.role is not ConfRole.HOST:
            return []
        targets = [*(u for u in self.roster.users if u != self.me), *self._invites]
        return [(u, self._end_message("ended")) for u in targets]

    # -- effects: member

    def _on_invite_received(self, event: InviteReceived, now: float) -> Outbox:
        message = event.message
        self.roster = Roster(message.epoch, message.host, ())
        self.call_id = message.call_id
        if self.state is ConfState.JOINING:  # a new host repeats the invite
            return [(message.host, self._accept_message())]
        self._deadline = now + self.timeouts.invite
        return []

    def _accept_message(self) -> ConfAccept:
        return ConfAccept(conf_id=self.conf_id, capacity=capacity_to_wire(self.capacity))

    def _on_accept(self, event: Accept, now: float) -> Outbox:
        self._deadline = now + self.timeouts.join
        return [(self.host, self._accept_message())]

    def _on_decline(self, event: Decline, now: float) -> Outbox:
        busy = int(event.busy)
        return [(self.host, ConfDecline(conf_id=self.conf_id, busy=busy, reason="declined"))]

    def _on_ring_expired(self, event: RingExpired, now: float) -> Outbox:
        return [(self.host, ConfDecline(conf_id=self.conf_id, reason="timeout"))]

    def _on_join_expired(self, event: JoinExpired, now: float) -> Outbox:
        return [(self.host, ConfLeave(conf_id=self.conf_id, reason="timeout"))]

    def _on_roster(self, event: RosterReceived | Promoted, now: float) -> Outbox:
        self._adopt(event.roster, event.cause, now)
        return []

    def _on_promoted(self, event: Promoted, now: float) -> Outbox:
        self._adopt(event.roster, event.cause, now)
        return self._take_over(now)

    def _take_over(self, now: float) -> Outbox:
        """Now hosting: hear everyone afresh and repeat the open invites as host."""
        for user in self.roster.users:
            self._heard[user] = now
        self._invites = dict.fromkeys(self.roster.invited, now + self.timeouts.invite)
        invite = self._invite_message()
        return [(u, invite) for u in self._invites]

    def _adopt(self, roster: Roster, cause: HandoverCause | None, now: float) -> None:
        """Hold ``roster`` from now on; report who came, who went and a new host."""
        before, previous = set(self.roster.users), self.host
        self.roster = roster
        self._deferred = None
        self._lost.clear()
        self._departed &= set(roster.users)
        self._deadline = None
        self._heard[roster.host] = now
        if roster.host != self.me:
            self._invites.clear()
        if before:
            for user in roster.users:
                if user not in before:
                    self._updates.append(MemberJoined(user))
            for user in sorted(before - set(roster.users)):
                lost = user == previous and cause is HandoverCause.LOST
                self._updates.append(MemberLeft(user, "lost" if lost else "left"))
        if previous and previous != roster.host:
            self._host_changed_at = now
            self._updates.append(HostChanged(roster.host, previous, roster.epoch, cause))
            self._speakers_sent, self._speakers_next = (), float("-inf")
            self._hold_speakers(())  # that host's speakers are not the new one's
        else:
            self._hold_speakers(tuple(u for u in self.speakers if u in roster.users))

    def _hold_speakers(self, speakers: tuple[str, ...]) -> None:
        """Keep ``speakers`` as the active set; an update when it changed."""
        if speakers != self.speakers:
            self.speakers = speakers
            self._updates.append(SpeakersChanged(speakers))

    def _on_speakers_received(self, event: SpeakersReceived, now: float) -> Outbox:
        self._hold_speakers(event.speakers)
        return []

    def _on_leave_received(self, event: LeaveReceived, now: float) -> Outbox:
        if self.role is ConfRole.HOST:
            return self._drop_member(event.sender, "left", now)
        self._departed.add(event.sender)
        return []

    def _on_host_silent(self, event: HostSilent, now: float) -> Outbox:
        self._hold_speakers(())  # nobody is heard through a silent host
        self._lost.add(self.host)
        self._deadline = now + self.timeouts.handover
        return []

    def _on_handover_overdue(self, event: HandoverOverdue, now: float) -> Outbox:
        expected = self._expected_successor()
        if expected is not None:
            self._lost.add(expected)
        self._deadline = now + self.timeouts.handover
        return []

    def _on_claim(self, event: Claim, now: float) -> Outbox:
        previous = self.host
        roster = Roster(self.epoch + 1, self.me, self._survivors(), self.roster.invited)
        out = self._handover(roster, HandoverCause.LOST, previous)
        self._adopt(roster, HandoverCause.LOST, now)
        return out + self._take_over(now)

    # -- effects: both

    def _on_leave(self, event: Leave, now: float) -> Outbox:
        if self.role is ConfRole.HOST:
            return self._host_leave(now)
        message = ConfLeave(conf_id=self.conf_id, epoch=self.epoch, reason="left")
        if self.state is ConfState.JOINING:
            return [(self.host, message)]
        return [(u, message) for u in self.roster.users if u != self.me]

    def _on_report_capacity(self, event: ReportCapacity, now: float) -> Outbox:
        self.capacity = event.capacity
        if self.role is ConfRole.HOST:
            return self._set_capacity(event.capacity, now)
        if self.state is not ConfState.ACTIVE:
            return []
        report = ConfCapacityReport(conf_id=self.conf_id, capacity=capacity_to_wire(self.capacity))
        return [(self.host, report)]

    def _on_end_received(self, event: EndReceived, now: float) -> Outbox:
        self.end_detail = event.reason
        return []

    def _on_fail(self, event: Fail, now: float) -> Outbox:
        self.end_detail = event.detail
        return []

    # -- remote messages to events

    def _remote_event(self, sender: str, message: ConfMessage, now: float) -> Event | None:
        """Turn a checked message into its event; ``None`` when it is to be ignored."""
        if isinstance(message, ConfInvite):
            return self._invite_event(sender, message)
        if isinstance(message, ConfRoster | ConfHandover):
            return self._roster_event(sender, message, now)
        if isinstance(message, ConfAccept | ConfDecline):
            return self._answer_event(sender, message)
        if isinstance(message, ConfLeave):
            if sender not in self.roster.users or sender == self.host:
                raise RemoteProtocolError(f"{sender} is not a member that can leave", "foreign")
            return LeaveReceived(sender)
        if isinstance(message, ConfCapacityReport):
            if sender not in self.roster.users:
                raise RemoteProtocolError(f"{sender} is not a member", "foreign")
            return CapacityReceived(sender, capacity_from_wire(sender, message.capacity))
        return self._host_event(sender, message)

    def _host_event(self, sender: str, message: ConfEnd | ConfSpeakers) -> Event | None:
        """What only the host may send: ``conf.end`` and ``conf.speakers``."""
        if sender != self.host:
            raise RemoteProtocolError(f"{sender} is not the host", "foreign")
        if isinstance(message, ConfSpeakers):
            return self._speakers_event(sender, message)
        return EndReceived(sender, message.reason)

    def _speakers_event(self, sender: str, message: ConfSpeakers) -> Event | None:
        """A speaker set from our host: kept only at our epoch and naming members only."""
        if message.epoch != self.epoch:
            self.ignored["epoch"] += 1
            return None
        if not set(message.speakers) <= set(self.roster.users):
            raise RemoteProtocolError("a speaker that is not a member", "malformed")
        return SpeakersReceived(sender, message.speakers)

    def _invite_event(self, sender: str, message: ConfInvite) -> Event | None:
        if sender != message.host or self.me in message.members:
            raise RemoteProtocolError("an invite must come from its host to a non-member")
        if (message.epoch, message.host) <= self.roster.key:
            self.ignored["stale"] += 1
            return None
        return InviteReceived(sender, message)

    def _roster_event(
        self, sender: str, message: ConfRoster | ConfHandover, now: float
    ) -> Event | None:
        senders = {message.host}
        cause, previous = None, ""
        if isinstance(message, ConfHandover):
            senders.add(message.previous_host)
            cause, previous = HandoverCause(message.cause), message.previous_host
        if sender not in senders:
            raise RemoteProtocolError(f"{sender} may not send this roster", "foreign")
        roster = Roster.from_wire(message.epoch, message.host, message.members, message.invited)
        if roster.key <= self.roster.key:
            self.ignored["stale"] += 1
            return None
        if self.me not in roster.users:
            raise RemoteProtocolError("a roster without its receiver", "foreign")
        event = (Promoted if roster.host == self.me else RosterReceived)(sender, roster, cause)
        if cause is HandoverCause.LOST and self._hears_host(previous, now):
            self._deferred = event  # only the claimant lost the host: wait for ours to go
            self.ignored["deferred"] += 1
            return None
        return event

    def _hears_host(self, host: str, now: float) -> bool:
        """True when ``host`` is ours and spoke within half the silence timeout."""
        if self.role is not ConfRole.MEMBER or self.state is not ConfState.ACTIVE:
            return False
        heard = self._heard.get(host)
        return (
            host == self.host and heard is not None and now - heard < self.timeouts.host_silent / 2
        )

    def _answer_event(self, sender: str, message: ConfAccept | ConfDecline) -> Event | None:
        if self.role is ConfRole.HOST and sender in self.roster.users:
            self.ignored["repeat"] += 1  # an accept repeated to a new host
            return None
        if self.role is not ConfRole.HOST or sender not in self._invites:
            raise RemoteProtocolError(f"{sender} has no open invite here", "foreign")
        if isinstance(message, ConfDecline):
            return DeclineReceived(sender, bool(message.busy))
        capacity = capacity_from_wire(sender, message.capacity)
        return AcceptReceived(sender, capacity)


_EFFECTS: dict[type[Event], Callable[[Conference, Any, float], Outbox]] = {
    Start: Conference._on_start,
    Invite: Conference._on_invite,
    Remove: Conference._on_remove,
    Accept: Conference._on_accept,
    Decline: Conference._on_decline,
    Leave: Conference._on_leave,
    ReportCapacity: Conference._on_report_capacity,
    Fail: Conference._on_fail,
    InviteExpired: Conference._on_invite_expired,
    MemberSilent: Conference._on_member_silent,
    CooldownOver: Conference._on_cooldown_over,
    RingExpired: Conference._on_ring_expired,
    JoinExpired: Conference._on_join_expired,
    HostSilent: Conference._on_host_silent,
    HandoverOverdue: Conference._on_handover_overdue,
    Claim: Conference._on_claim,
    Rebalance: Conference._on_rebalance,
    Deserted: Conference._on_deserted,
    InviteReceived: Conference._on_invite_received,
    AcceptReceived: Conference._on_accept_received,
    DeclineReceived: Conference._on_decline_received,
    RosterReceived: Conference._on_roster,
    Promoted: Conference._on_promoted,
    LeaveReceived: Conference._on_leave_received,
    CapacityReceived: Conference._on_capacity_received,
    EndReceived: Conference._on_end_received,
    SetSpeakers: Conference._on_set_speakers,
    SpeakersDue: Conference._on_speakers_due,
    SpeakersReceived: Conference._on_speakers_received,
}
