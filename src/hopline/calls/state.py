"""The call state machine, as plain data, and a sans-I/O :class:`Call` that runs it.

Shape (after h11's ``_state.py``): the states are an enum, the events are
frozen dataclasses, and every allowed move is one row of a single table,
:data:`TRANSITIONS`, keyed by ``(role, state, event type)``. Nothing else
decides where a call goes: :class:`Call` looks the key up, and a missing key is
a protocol error. Errors form one family, :class:`CallProtocolError`, split by
whose fault the bad event was: :class:`LocalProtocolError` (this program asked
for something the state does not allow, e.g. answering a call that already
ended) and :class:`RemoteProtocolError` (the peer sent a signal that makes no
sense now, e.g. ``Accepted`` for a call we never dialled). The shell around a
call drops and counts remote errors; local errors are bugs in the caller.

Why a move ended a call is plain data too: :data:`END_REASONS` gives the
:class:`EndReason` for every row whose target is :attr:`CallState.ENDED`.

Timers are data as well. :meth:`Call.get_timer` returns the next deadline and
its kind (no ``Ringing`` within the invite timeout, nobody answered within the
ring timeout, no media within the media timeout); the shell sleeps until then
and calls :meth:`Call.handle_timer`. Nothing here reads a clock: every method
takes ``now``.

Multi-device ringing on the caller side is :class:`Fork`: one invite per
device of the callee, the first ``Accepted`` wins and the others are
cancelled; the callee devices that lose hear ``AnsweredElsewhere``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "CALL_TIMEOUTS",
    "END_REASONS",
    "MAX_FORK_DEVICES",
    "TIMER_KINDS",
    "TRANSITIONS",
    "Accepted",
    "Answer",
    "AnsweredElsewhere",
    "Busy",
    "Call",
    "CallProtocolError",
    "CallRole",
    "CallState",
    "CallTimeouts",
    "Cancelled",
    "Dial",
    "EndReason",
    "Event",
    "Fail",
    "Fork",
    "ForkResult",
    "HeldByPeer",
    "Hangup",
    "Hold",
    "HungUp",
    "Invited",
    "LocalEvent",
    "LocalProtocolError",
    "Reject",
    "Rejected",
    "RemoteEvent",
    "RemoteProtocolError",
    "Resume",
    "ResumedByPeer",
    "Ringing",
    "Timeout",
    "TimerKind",
]


class CallState(enum.Enum):
    """Where one call is, seen from one device."""

    IDLE = "idle"
    """Created, nothing sent or received yet."""
    INVITING = "inviting"
    """Caller: invite sent, no device of the callee rings yet."""
    RINGING = "ringing"
    """Caller: at least one device of the callee rings."""
    INCOMING = "incoming"
    """Callee: this device rings."""
    ACTIVE = "active"
    """Both sides talk."""
    HELD = "held"
    """This side put the call on hold."""
    REMOTE_HELD = "remote_held"
    """The peer put the call on hold."""
    BOTH_HELD = "both_held"
    """Both sides put the call on hold."""
    ENDED = "ended"
    """Terminal; :attr:`Call.end_reason` says why."""


class CallRole(enum.Enum):
    """Which side of the call this device is."""

    CALLER = "caller"
    CALLEE = "callee"


class EndReason(enum.Enum):
    """Why a call reached :attr:`CallState.ENDED`."""

    HANGUP = "hangup"
    REJECTED = "rejected"
    BUSY = "busy"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    FAILED = "failed"


TimerKind = Literal["invite", "ring", "media"]


class CallProtocolError(Exception):
    """An event arrived that the call's state does not allow."""

    def __init__(self, state: CallState, event: Event) -> None:
        super().__init__(f"{type(event).__name__} not allowed in state {state.name}")
        self.state = state
        self.event = event


class LocalProtocolError(CallProtocolError):
    """This program asked for a move the state does not allow (a local bug)."""


class RemoteProtocolError(CallProtocolError):
    """The peer sent a signal the state does not allow (drop it and count it)."""


# --- events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all call events."""

    LOCAL: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LocalEvent(Event):
    """Something this device's user or runtime did."""


@dataclass(frozen=True, slots=True)
class RemoteEvent(Event):
    """A signal that arrived from the peer."""

    LOCAL: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Dial(LocalEvent):
    """The user starts a call (caller)."""


@dataclass(frozen=True, slots=True)
class Answer(LocalEvent):
    """The user picks up a ringing call (callee)."""


@dataclass(frozen=True, slots=True)
class Reject(LocalEvent):
    """The user declines a ringing call (callee)."""


@dataclass(frozen=True, slots=True)
class Hangup(LocalEvent):
    """The user ends the call; before an answer this cancels the invite."""


@dataclass(frozen=True, slots=True)
class Hold(LocalEvent):
    """The user puts the call on hold."""


@dataclass(frozen=True, slots=True)
class Resume(LocalEvent):
    """The user takes the call off hold."""


@dataclass(frozen=True, slots=True)
class Fail(LocalEvent):
    """The runtime gives up on the call (no path to the peer, session lost)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class Timeout(LocalEvent):
    """A call timer fired; ``kind`` must be the timer the state runs."""

    kind: TimerKind


@dataclass(frozen=True, slots=True)
class Invited(RemoteEvent):
    """A peer invites this device (callee)."""


@dataclass(frozen=True, slots=True)
class Ringing(RemoteEvent):
    """A device of the callee rings (caller)."""


@dataclass(frozen=True, slots=True)
class Accepted(RemoteEvent):
    """The callee answered (caller)."""


@dataclass(frozen=True, slots=True)
class Rejected(RemoteEvent):
    """The callee declined (caller)."""


@dataclass(frozen=True, slots=True)
class Busy(RemoteEvent):
    """The callee is busy in another call (caller)."""


@dataclass(frozen=True, slots=True)
class Cancelled(RemoteEvent):
    """The caller withdrew the invite before an answer (callee)."""


@dataclass(frozen=True, slots=True)
class HungUp(RemoteEvent):
    """The peer ended an established call."""


@dataclass(frozen=True, slots=True)
class HeldByPeer(RemoteEvent):
    """The peer put the call on hold."""


@dataclass(frozen=True, slots=True)
class ResumedByPeer(RemoteEvent):
    """The peer took the call off hold."""


@dataclass(frozen=True, slots=True)
class AnsweredElsewhere(RemoteEvent):
    """Another device of this user answered first (callee)."""


# --- the table --------------------------------------------------------------

_S = CallState
_CALLER = CallRole.CALLER
_CALLEE = CallRole.CALLEE
_IN_CALL = (_S.ACTIVE, _S.HELD, _S.REMOTE_HELD, _S.BOTH_HELD)

_HOLD_MOVES: dict[tuple[CallState, type[Event]], CallState] = {
    (_S.ACTIVE, Hold): _S.HELD,
    (_S.ACTIVE, HeldByPeer): _S.REMOTE_HELD,
    (_S.HELD, Resume): _S.ACTIVE,
    (_S.HELD, HeldByPeer): _S.BOTH_HELD,
    (_S.REMOTE_HELD, ResumedByPeer): _S.ACTIVE,
    (_S.REMOTE_HELD, Hold): _S.BOTH_HELD,
    (_S.BOTH_HELD, Resume): _S.REMOTE_HELD,
    (_S.BOTH_HELD, ResumedByPeer): _S.HELD,
}

_CALLER_SETUP: dict[tuple[CallState, type[Event]], EndReason | CallState] = {
    (_S.IDLE, Dial): _S.INVITING,
    (_S.INVITING, Ringing): _S.RINGING,
    (_S.INVITING, Accepted): _S.ACTIVE,
    (_S.RINGING, Ringing): _S.RINGING,
    (_S.RINGING, Accepted): _S.ACTIVE,
    **{(s, Rejected): EndReason.REJECTED for s in (_S.INVITING, _S.RINGING)},
    **{(s, Busy): EndReason.BUSY for s in (_S.INVITING, _S.RINGING)},
    **{(s, Hangup): EndReason.CANCELLED for s in (_S.INVITING, _S.RINGING)},
    **{(s, Timeout): EndReason.TIMEOUT for s in (_S.INVITING, _S.RINGING)},
    **{(s, Fail): EndReason.FAILED for s in (_S.INVITING, _S.RINGING)},
}

_CALLEE_SETUP: dict[tuple[CallState, type[Event]], EndReason | CallState] = {
    (_S.IDLE, Invited): _S.INCOMING,
    (_S.INCOMING, Answer): _S.ACTIVE,
    (_S.INCOMING, Reject): EndReason.REJECTED,
    (_S.INCOMING, Cancelled): EndReason.CANCELLED,
    (_S.INCOMING, AnsweredElsewhere): EndReason.ANSWERED_ELSEWHERE,
    (_S.INCOMING, Timeout): EndReason.TIMEOUT,
    (_S.INCOMING, Fail): EndReason.FAILED,
}

_IN_CALL_ENDS: dict[tuple[CallState, type[Event]], EndReason | CallState] = {
    **{(s, Hangup): EndReason.HANGUP for s in _IN_CALL},
    **{(s, HungUp): EndReason.HANGUP for s in _IN_CALL},
    **{(s, Timeout): EndReason.TIMEOUT for s in _IN_CALL},
    **{(s, Fail): EndReason.FAILED for s in _IN_CALL},
}


def _build() -> tuple[
    dict[tuple[CallRole, CallState, type[Event]], CallState],
    dict[tuple[CallRole, CallState, type[Event]], EndReason],
]:
    """Flatten the per-role pieces above into the two public tables."""
    transitions: dict[tuple[CallRole, CallState, type[Event]], CallState] = {}
    reasons: dict[tuple[CallRole, CallState, type[Event]], EndReason] = {}
    for role, setup in ((_CALLER, _CALLER_SETUP), (_CALLEE, _CALLEE_SETUP)):
        for (state, event), target in {**setup, **_HOLD_MOVES, **_IN_CALL_ENDS}.items():
            key = (role, state, event)
            if isinstance(target, EndReason):
                transitions[key] = _S.ENDED
                reasons[key] = target
            else:
                transitions[key] = target
    return transitions, reasons


TRANSITIONS, END_REASONS = _build()
"""``TRANSITIONS[(role, state, event type)]`` is the next state; a missing key is
an error. ``END_REASONS`` has the same keys for every row that ends the call."""


@dataclass(frozen=True, slots=True)
class CallTimeouts:
    """How long each timed state may last, in seconds."""

    invite: float = 10.0
    """Caller: no device rang back within this (peer unreachable)."""
    ring: float = 60.0
    """Ringing with nobody answering (both sides)."""
    media: float = 30.0
    """In a call, nothing heard from the peer (media or keep-alive) within this."""

    def seconds(self, kind: TimerKind) -> float:
        """Return the timeout for one timer kind."""
        return {"invite": self.invite, "ring": self.ring, "media": self.media}[kind]


CALL_TIMEOUTS = CallTimeouts()
"""The defaults."""

TIMER_KINDS: dict[CallState, TimerKind] = {
    _S.INVITING: "invite",
    _S.RINGING: "ring",
    _S.INCOMING: "ring",
    **dict.fromkeys(_IN_CALL, "media"),
}
"""Which timer runs in which state; states not listed run none."""


# --- the machine ------------------------------------------------------------


class Call:
    """One call seen from one device: feed it events, read its state and timer."""

    def __init__(self, role: CallRole, timeouts: CallTimeouts = CALL_TIMEOUTS) -> None:
        """Start in :attr:`CallState.IDLE`; times are seconds on any monotonic clock."""
        self.role = role
        self.state = CallState.IDLE
        self.end_reason: EndReason | None = None
        self.timeouts = timeouts
        self._deadline: float | None = None

    def handle(self, event: Event, now: float) -> CallState:
        """Apply ``event`` at ``now`` and return the new state.

        Raises :class:`LocalProtocolError` or :class:`RemoteProtocolError` (by
        the event's origin) when the table has no row for it; the call is then
        unchanged.
        """
        key = (self.role, self.state, type(event))
        target = TRANSITIONS.get(key)
        if target is None or not self._timer_matches(event):
            error = LocalProtocolError if event.LOCAL else RemoteProtocolError
            raise error(self.state, event)
        previous = self.state
        self.state = target
        if target is CallState.ENDED:
            self.end_reason = END_REASONS[key]
        if target is not previous:
            self._arm(now)
        return target

    def get_timer(self) -> tuple[float, TimerKind] | None:
        """Return the next deadline and its kind, or ``None`` when none runs."""
        kind = TIMER_KINDS.get(self.state)
        if kind is None or self._deadline is None:
            return None
        return self._deadline, kind

    def handle_timer(self, now: float) -> CallState:
        """Fire the running timer if its deadline has passed; return the state."""
        timer = self.get_timer()
        if timer is not None and now >= timer[0]:
            return self.handle(Timeout(timer[1]), now)
        return self.state

    def note_activity(self, now: float) -> None:
        """Record media or a keep-alive from the peer: pushes the media timer out."""
        if TIMER_KINDS.get(self.state) == "media":
            self._arm(now)

    def _timer_matches(self, event: Event) -> bool:
        """A :class:`Timeout` is only valid for the timer the state runs."""
        return not isinstance(event, Timeout) or TIMER_KINDS.get(self.state) == event.kind

    def _arm(self, now: float) -> None:
        """Start the timer of the current state (or stop it)."""
        kind = TIMER_KINDS.get(self.state)
        self._deadline = None if kind is None else now + self.timeouts.seconds(kind)


# --- multi-device ringing ---------------------------------------------------

MAX_FORK_DEVICES = 32
"""Most devices one call rings at once (bounds what a directory record can cost)."""


class _Leg(enum.Enum):
    PENDING = "pending"
    RINGING = "ringing"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    BUSY = "busy"
    CANCELLED = "cancelled"
    ANSWERED_LATE = "answered_late"


_OPEN = (_Leg.PENDING, _Leg.RINGING)
"""Legs still waiting for an answer."""
_OPEN_OR_CANCELLED = (*_OPEN, _Leg.CANCELLED)
"""Legs that may still send a signal (a cancelled one may not have seen our cancel)."""


@dataclass(frozen=True, slots=True)
class ForkResult:
    """What a :class:`Fork` step asks for.

    ``call_event`` (if any) goes to the caller's :class:`Call`; each device in
    ``cancel`` gets a cancel signal (its invite is withdrawn, or, for a late
    answer, the call it picked up is hung up).
    """

    call_event: RemoteEvent | None = None
    cancel: tuple[str, ...] = ()


class Fork:
    """Caller side of ringing every device of one user: one invite leg per device.

    The first ``Accepted`` wins; every other device still in play is cancelled.
    When every device declined, the call ends ``Rejected`` if any device
    rejected (a person said no) and ``Busy`` otherwise. Once the fork is
    decided (a winner, :meth:`cancel_all`, or everyone declined), signals that
    crossed our cancel on the way are expected: a late ring or decline is
    ignored and a late answer is hung up. Unknown devices and signals a leg
    cannot send raise :class:`RemoteProtocolError`.
    """

    def __init__(self, devices: Iterable[str]) -> None:
        """Open one leg per device id (duplicates collapse); at least one device."""
        legs = dict.fromkeys(devices, _Leg.PENDING)
        if not legs or len(legs) > MAX_FORK_DEVICES:
            raise ValueError(f"a fork rings 1..{MAX_FORK_DEVICES} devices, got {len(legs)}")
        self._legs = legs
        self._rang = False
        self.decided = False
        """True once the fork needs no more answers."""
        self.winner: str | None = None
        """The device whose answer won, if any."""

    @property
    def devices(self) -> tuple[str, ...]:
        """Every device this fork rings, in the order given."""
        return tuple(self._legs)

    def ringing(self, device: str) -> ForkResult:
        """A device rings: the first ring anywhere becomes the call's ``Ringing``."""
        leg = self._leg(device, Ringing(), _OPEN_OR_CANCELLED)
        if leg is not _Leg.PENDING:
            return ForkResult()  # a repeat, or it crossed our cancel
        self._legs[device] = _Leg.RINGING
        if self._rang or self.decided:
            return ForkResult()
        self._rang = True
        return ForkResult(Ringing())

    def accepted(self, device: str) -> ForkResult:
        """A device answered: the first one wins, a later one is hung up at once.

        A later answer is normal: the device may have picked up before our
        cancel reached it, so it comes back in ``cancel``.
        """
        if self.decided:
            self._leg(device, Accepted(), _OPEN_OR_CANCELLED)
            self._legs[device] = _Leg.ANSWERED_LATE
            return ForkResult(cancel=(device,))
        self._leg(device, Accepted(), _OPEN)
        self.winner = device
        self._legs[device] = _Leg.ACCEPTED
        return ForkResult(Accepted(), self._close())

    def declined(self, device: str, busy: bool) -> ForkResult:
        """A device rejected (``busy=False``) or was busy; the last one ends the call."""
        event: RemoteEvent = Busy() if busy else Rejected()
        if self._leg(device, event, _OPEN_OR_CANCELLED) is _Leg.CANCELLED:
            return ForkResult()  # it crossed our cancel
        self._legs[device] = _Leg.BUSY if busy else _Leg.REJECTED
        if self.decided or self._open():
            return ForkResult()
        self.decided = True
        return ForkResult(Rejected() if _Leg.REJECTED in self._legs.values() else Busy())

    def cancel_all(self) -> ForkResult:
        """The caller hung up or timed out: withdraw every invite still open."""
        return ForkResult(cancel=self._close())

    def _open(self) -> list[str]:
        return [device for device, leg in self._legs.items() if leg in _OPEN]

    def _close(self) -> tuple[str, ...]:
        """Decide the fork and cancel every leg still open."""
        self.decided = True
        open_devices = self._open()
        for device in open_devices:
            self._legs[device] = _Leg.CANCELLED
        return tuple(open_devices)

    def _leg(self, device: str, event: RemoteEvent, allowed: tuple[_Leg, ...]) -> _Leg:
        """Return the device's leg, or raise :class:`RemoteProtocolError`."""
        leg = self._legs.get(device)
        if leg is None or leg not in allowed:
            state = CallState.ACTIVE if self.winner is not None else CallState.RINGING
            raise RemoteProtocolError(state, event)
        return leg
