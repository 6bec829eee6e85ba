"""The call state machine: every row of the table, every forbidden pair, timers, forks."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.calls.diagram import main, render_mermaid, render_table
from hopline.calls.state import (
    END_REASONS,
    TIMER_KINDS,
    TRANSITIONS,
    Accepted,
    Answer,
    AnsweredElsewhere,
    Busy,
    Call,
    CallProtocolError,
    CallRole,
    CallState,
    CallTimeouts,
    Cancelled,
    Dial,
    EndReason,
    Event,
    Fail,
    Fork,
    ForkResult,
    Hangup,
    HeldByPeer,
    Hold,
    HungUp,
    Invited,
    LocalProtocolError,
    Reject,
    Rejected,
    RemoteEvent,
    RemoteProtocolError,
    Resume,
    ResumedByPeer,
    Ringing,
    Timeout,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "calls.md"

ALL_EVENTS: list[Event] = [
    Dial(),
    Answer(),
    Reject(),
    Hangup(),
    Hold(),
    Resume(),
    Fail("no path"),
    Timeout("invite"),
    Timeout("ring"),
    Timeout("media"),
    Invited(),
    Ringing(),
    Accepted(),
    Rejected(),
    Busy(),
    Cancelled(),
    HungUp(),
    HeldByPeer(),
    ResumedByPeer(),
    AnsweredElsewhere(),
]
EVENT_TYPES = {type(e) for e in ALL_EVENTS}


def _instance(event_type: type[Event], state: CallState) -> Event:
    """An instance of ``event_type`` valid for ``state`` (the right timer kind)."""
    if event_type is Timeout:
        return Timeout(TIMER_KINDS[state])
    return next(e for e in ALL_EVENTS if type(e) is event_type)


def _paths(role: CallRole) -> dict[CallState, list[Event]]:
    """Shortest event path from IDLE to each reachable state, found through the table."""
    paths: dict[CallState, list[Event]] = {CallState.IDLE: []}
    queue = deque([CallState.IDLE])
    while queue:
        state = queue.popleft()
        for (r, s, event_type), target in TRANSITIONS.items():
            if r is role and s is state and target not in paths:
                paths[target] = [*paths[state], _instance(event_type, state)]
                queue.append(target)
    return paths


def _call_in(role: CallRole, state: CallState) -> Call:
    call = Call(role)
    for event in _paths(role)[state]:
        call.handle(event, now=0.0)
    assert call.state is state
    return call


@pytest.mark.parametrize("role", list(CallRole))
def test_every_state_is_reachable(role: CallRole) -> None:
    other_side = (
        {CallState.INCOMING} if role is CallRole.CALLER else {CallState.INVITING, CallState.RINGING}
    )
    assert set(_paths(role)) == set(CallState) - other_side
    assert set(_paths(CallRole.CALLER)) | set(_paths(CallRole.CALLEE)) == set(CallState)


def test_ended_is_terminal_and_every_end_has_a_reason() -> None:
    assert not [key for key in TRANSITIONS if key[1] is CallState.ENDED]
    ending = {key for key, target in TRANSITIONS.items() if target is CallState.ENDED}
    assert ending == set(END_REASONS)
    assert set(END_REASONS.values()) == set(EndReason)


@pytest.mark.parametrize(
    ("key", "target"), list(TRANSITIONS.items()), ids=lambda v: getattr(v, "name", str(v))
)
def test_every_transition(key: tuple[CallRole, CallState, type[Event]], target: CallState) -> None:
    role, state, event_type = key
    call = _call_in(role, state)
    assert call.handle(_instance(event_type, state), now=1.0) is target
    assert call.state is target
    assert call.end_reason is END_REASONS.get(key)


def _forbidden() -> list[tuple[CallRole, CallState, Event]]:
    cases = []
    for role in CallRole:
        for state in _paths(role):
            for event in ALL_EVENTS:
                key = (role, state, type(event))
                wrong_timer = isinstance(event, Timeout) and TIMER_KINDS.get(state) != event.kind
                if key not in TRANSITIONS or wrong_timer:
                    cases.append((role, state, event))
    return cases


@pytest.mark.parametrize(("role", "state", "event"), _forbidden(), ids=str)
def test_forbidden_pairs_raise_the_right_error(
    role: CallRole, state: CallState, event: Event
) -> None:
    call = _call_in(role, state)
    expected = RemoteProtocolError if isinstance(event, RemoteEvent) else LocalProtocolError
    with pytest.raises(expected) as info:
        call.handle(event, now=1.0)
    assert info.value.state is state and info.value.event is event
    assert call.state is state  # unchanged


def test_forbidden_cases_cover_both_error_kinds() -> None:
    kinds = {isinstance(event, RemoteEvent) for _, _, event in _forbidden()}
    assert kinds == {True, False}


def test_hangup_before_answer_is_a_cancel_and_after_is_a_hangup() -> None:
    call = Call(CallRole.CALLER)
    call.handle(Dial(), 0.0)
    call.handle(Hangup(), 1.0)
    assert call.end_reason is EndReason.CANCELLED
    call = _call_in(CallRole.CALLEE, CallState.BOTH_HELD)
    call.handle(HungUp(), 1.0)
    assert call.end_reason is EndReason.HANGUP


# --- timers -----------------------------------------------------------------


def test_invite_timeout_fires_without_ringing() -> None:
    call = Call(CallRole.CALLER)
    assert call.get_timer() is None
    call.handle(Dial(), now=100.0)
    assert call.get_timer() == (110.0, "invite")
    assert call.handle_timer(109.9) is CallState.INVITING
    assert call.handle_timer(110.0) is CallState.ENDED
    assert call.end_reason is EndReason.TIMEOUT
    assert call.get_timer() is None


def test_ringing_switches_to_the_ring_timer_and_repeats_do_not_extend_it() -> None:
    call = Call(CallRole.CALLER, CallTimeouts(invite=5.0, ring=30.0))
    call.handle(Dial(), now=0.0)
    call.handle(Ringing(), now=2.0)
    assert call.get_timer() == (32.0, "ring")
    call.handle(Ringing(), now=20.0)
    assert call.get_timer() == (32.0, "ring")
    assert call.handle_timer(32.0) is CallState.ENDED
    assert call.end_reason is EndReason.TIMEOUT


def test_incoming_ring_timeout_on_the_callee() -> None:
    call = Call(CallRole.CALLEE)
    call.handle(Invited(), now=0.0)
    assert call.get_timer() == (60.0, "ring")
    call.handle_timer(60.0)
    assert (call.state, call.end_reason) == (CallState.ENDED, EndReason.TIMEOUT)


def test_media_timer_is_pushed_out_by_activity() -> None:
    call = Call(CallRole.CALLEE, CallTimeouts(media=10.0))
    call.handle(Invited(), 0.0)
    call.handle(Answer(), 1.0)
    assert call.get_timer() == (11.0, "media")
    call.note_activity(8.0)
    assert call.handle_timer(11.0) is CallState.ACTIVE
    call.handle(Hold(), 12.0)
    assert call.get_timer() == (22.0, "media")
    assert call.handle_timer(22.0) is CallState.ENDED


def test_note_activity_outside_a_call_sets_no_timer() -> None:
    call = Call(CallRole.CALLER)
    call.note_activity(5.0)
    assert call.get_timer() is None


def test_timeout_of_the_wrong_kind_is_a_local_error() -> None:
    call = Call(CallRole.CALLER)
    call.handle(Dial(), 0.0)
    with pytest.raises(LocalProtocolError):
        call.handle(Timeout("media"), 50.0)
    assert call.state is CallState.INVITING


# --- forks ------------------------------------------------------------------


def test_fork_first_answer_wins_and_the_others_are_cancelled() -> None:
    fork = Fork(["phone", "laptop", "tablet"])
    call = Call(CallRole.CALLER)
    call.handle(Dial(), 0.0)
    first = fork.ringing("laptop")
    assert first.call_event == Ringing()
    assert fork.ringing("phone").call_event is None
    result = fork.accepted("phone")
    assert result.call_event == Accepted()
    assert result.cancel == ("laptop", "tablet")
    assert fork.winner == "phone"
    for event in (first.call_event, result.call_event):
        assert event is not None
        call.handle(event, 1.0)
    assert call.state is CallState.ACTIVE


def test_fork_late_answer_is_hung_up() -> None:
    fork = Fork(["a", "b"])
    fork.ringing("a")
    fork.ringing("b")
    assert fork.accepted("a").cancel == ("b",)
    late = fork.accepted("b")  # b picked up before our cancel reached it
    assert late.call_event is None and late.cancel == ("b",)
    with pytest.raises(RemoteProtocolError):
        fork.accepted("b")
    with pytest.raises(RemoteProtocolError):
        fork.declined("b", busy=True)
    assert fork.winner == "a"


@pytest.mark.parametrize(
    ("busy_flags", "expected"),
    [((True, True), Busy()), ((False, False), Rejected()), ((True, False), Rejected())],
)
def test_fork_all_declined_ends_the_call(busy_flags: tuple[bool, bool], expected: Event) -> None:
    fork = Fork(["a", "b"])
    fork.ringing("a")
    assert fork.declined("a", busy=busy_flags[0]).call_event is None
    assert fork.declined("b", busy=busy_flags[1]).call_event == expected


def test_fork_signals_that_crossed_the_cancel() -> None:
    fork = Fork(["a", "b", "c"])
    assert fork.ringing("a").call_event == Ringing()
    assert fork.ringing("a").call_event is None  # a repeat
    assert fork.cancel_all().cancel == ("a", "b", "c")
    assert fork.decided and fork.winner is None
    assert fork.ringing("b") == ForkResult()
    assert fork.declined("a", busy=False) == ForkResult()  # no Rejected after our cancel
    assert fork.accepted("c") == ForkResult(cancel=("c",))  # picked up too late: hang up
    with pytest.raises(RemoteProtocolError):
        fork.ringing("c")


def test_fork_decided_by_declines_hangs_up_a_late_answer() -> None:
    fork = Fork(["a"])
    assert fork.declined("a", busy=True).call_event == Busy()
    with pytest.raises(RemoteProtocolError):
        fork.accepted("a")


def test_fork_one_decline_keeps_the_others_ringing() -> None:
    fork = Fork(["a", "b"])
    assert fork.declined("a", busy=True).call_event is None
    assert fork.accepted("b").call_event == Accepted()


def test_fork_cancel_all_withdraws_open_invites_only() -> None:
    fork = Fork(["a", "b", "c"])
    fork.declined("b", busy=False)
    assert fork.cancel_all().cancel == ("a", "c")
    assert fork.cancel_all().cancel == ()


def test_fork_rejects_unknown_devices_and_bad_sizes() -> None:
    fork = Fork(["a", "a"])
    assert fork.devices == ("a",)
    with pytest.raises(RemoteProtocolError):
        fork.ringing("stranger")
    with pytest.raises(ValueError, match=r"1\.\.32"):
        Fork([])
    with pytest.raises(ValueError, match=r"1\.\.32"):
        Fork(str(i) for i in range(33))


def test_callee_device_that_lost_ends_answered_elsewhere() -> None:
    call = Call(CallRole.CALLEE)
    call.handle(Invited(), 0.0)
    call.handle(AnsweredElsewhere(), 3.0)
    assert (call.state, call.end_reason) == (CallState.ENDED, EndReason.ANSWERED_ELSEWHERE)
    with pytest.raises(LocalProtocolError):
        call.handle(Answer(), 4.0)


# --- random sequences -------------------------------------------------------


@given(
    role=st.sampled_from(list(CallRole)),
    steps=st.lists(
        st.one_of(
            st.sampled_from(ALL_EVENTS),
            st.floats(min_value=0.0, max_value=120.0),
        ),
        max_size=40,
    ),
)
def test_random_sequences_stay_in_known_states(role: CallRole, steps: list[Event | float]) -> None:
    call = Call(role)
    now = 0.0
    for step in steps:
        if isinstance(step, float):
            now += step
            state = call.handle_timer(now)
        else:
            before = call.state
            try:
                state = call.handle(step, now)
            except CallProtocolError:
                assert call.state is before
                state = before
        assert state in CallState and state is call.state
        assert (call.end_reason is not None) == (call.state is CallState.ENDED)
        timer = call.get_timer()
        assert (timer is None) == (call.state not in TIMER_KINDS)
        if timer is not None:
            assert timer[0] > now


DEVICES = ["a", "b", "c"]
FORK_ACTIONS = st.one_of(
    st.tuples(
        st.sampled_from(["ringing", "accepted", "rejected", "busy"]), st.sampled_from(DEVICES)
    ),
    st.tuples(st.sampled_from(["hangup", "timer"]), st.just("")),
)


@given(actions=st.lists(FORK_ACTIONS, max_size=30))
def test_fork_and_call_agree_on_random_signals(actions: list[tuple[str, str]]) -> None:
    """What a fork hands to the caller's call never puts the call in a wrong state."""
    fork, call, now = Fork(DEVICES), Call(CallRole.CALLER), 0.0
    call.handle(Dial(), now)
    answered: list[str] = []
    for action, device in actions:
        now += 1.0
        try:
            result = _fork_step(fork, call, action, device, now)
        except RemoteProtocolError:
            continue
        if result.call_event is not None:
            call.handle(result.call_event, now)  # must never raise
        if result.call_event == Accepted():
            answered.append(device)
    assert len(answered) <= 1 and fork.winner == (answered[0] if answered else None)
    if call.state is CallState.ACTIVE:
        assert fork.decided and fork.winner is not None


def _fork_step(fork: Fork, call: Call, action: str, device: str, now: float) -> ForkResult:
    """One signal, or the caller hanging up or timing out (which cancels the fork)."""
    if action in {"hangup", "timer"}:
        if call.state in {CallState.INVITING, CallState.RINGING}:
            if action == "hangup":
                call.handle(Hangup(), now)
            else:
                call.handle_timer(now + 3600.0)
        return fork.cancel_all() if call.state is CallState.ENDED else ForkResult()
    if action == "ringing":
        return fork.ringing(device)
    if action == "accepted":
        return fork.accepted(device)
    return fork.declined(device, busy=action == "busy")


# --- the document -----------------------------------------------------------


def _between(text: str, name: str) -> str:
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    return text.split(begin, 1)[1].split(end, 1)[0]


def test_docs_calls_md_is_current() -> None:
    text = DOCS.read_text()
    hint = "run: python -m hopline.calls.diagram [--table] and paste into docs/calls.md"
    assert _between(text, "call-diagram") == f"```mermaid\n{render_mermaid()}```\n", hint
    assert _between(text, "call-table") == render_table(), hint


def test_diagram_covers_every_state_and_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("stateDiagram-v2\n")
    for state in CallState:
        assert f" {state.name} " in mermaid
    for event_type in EVENT_TYPES:
        assert event_type.__name__ in mermaid
    assert main(["--table"]) == 0
    assert capsys.readouterr().out.count("\n") == len(TRANSITIONS) + 2
