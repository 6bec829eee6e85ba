"""Conferences in the TUI's state and renderings: events folded, speakers marked."""

from __future__ import annotations

from typing import Any

from hopline.api import models as m
from hopline.tui.state import TuiState
from hopline.tui.view import (
    SPEAKING_MARK,
    ConferenceRow,
    conference_rows,
    conference_title,
    speakers_line,
)

CONF = "0123456789abcdef0123456789abcdef"


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "conf_id": CONF,
        "state": "active",
        "role": "member",
        "host": "bob",
        "epoch": 4,
        "members": ["alice", "bob", "carol"],
        "invited": [],
        "speakers": [],
        "started_at": 100.0,
    }
    return {**base, **changes}


def event(**changes: Any) -> dict[str, Any]:
    return {"type": "conference", "at": 1.0, "data": doc(**changes)}


def test_a_conference_event_is_folded_in_and_replaced_by_the_next() -> None:
    state = TuiState()
    assert state.apply_event(event(speakers=["carol"])) == {"conferences"}
    assert state.speaking(CONF) == {"carol"}
    assert [c.conf_id for c in state.live_conferences()] == [CONF]
    state.apply_event(event(speakers=["bob", "alice"]))
    assert state.speaking(CONF) == {"alice", "bob"}
    state.apply_event(event(state="ended", end_reason="left", speakers=None))
    assert state.speaking(CONF) == frozenset() and state.live_conferences() == []
    assert not state.dropped


def test_a_bad_conference_event_is_dropped_and_counted() -> None:
    state = TuiState()
    assert state.apply_event(event(state="dancing")) == frozenset()
    assert state.apply_event({"type": "conference", "data": {"host": "bob"}}) == frozenset()
    assert state.dropped["bad:conference"] == 2 and state.conferences == {}
    assert state.speaking("nope") == frozenset()


def test_a_list_reply_merges_and_live_ones_are_ordered_by_start() -> None:
    state = TuiState()
    later = m.Conference.model_validate(doc(conf_id="f" * 32, started_at=200.0))
    ringing = m.Conference.model_validate(
        doc(conf_id="e" * 32, state="invited", speakers=None, started_at=150.0)
    )
    first = m.Conference.model_validate(doc())
    assert state.set_conferences([later, ringing, first]) == {"conferences"}
    assert [c.conf_id for c in state.live_conferences()] == [CONF, "e" * 32, "f" * 32]


def test_the_title_says_who_hosts_and_whether_it_is_you() -> None:
    conf = m.Conference.model_validate(doc())
    assert conference_title(conf, "alice") == "Conference hosted by bob — active, 3 members"
    assert conference_title(conf, "bob").startswith("Conference hosted by you — active")
    over = m.Conference.model_validate(doc(state="handing_over", members=["bob"]))
    assert conference_title(over, None) == "Conference hosted by bob — handing over, 1 member"
    ended = m.Conference.model_validate(doc(state="ended", end_reason="left", host=None))
    assert conference_title(ended, "alice") == "Conference hosted by - — ended (left), 3 members"


def test_rows_put_the_host_first_and_mark_speakers_and_me() -> None:
    conf = m.Conference.model_validate(doc(speakers=["carol"], invited=["dave"]))
    rows = conference_rows(conf, "alice")
    assert rows == [
        ConferenceRow("bob", "host", False, False),
        ConferenceRow("alice", "member", True, False),
        ConferenceRow("carol", "member", False, True),
        ConferenceRow("dave", "invited", False, False),
    ]
    assert rows[1].cells == ("alice (you)", "member", "")
    assert rows[2].cells == ("carol", "member", f"{SPEAKING_MARK} speaking")


def test_the_speakers_line() -> None:
    assert speakers_line(m.Conference.model_validate(doc(speakers=["carol", "bob"]))) == (
        "speaking: carol, bob"
    )
    assert speakers_line(m.Conference.model_validate(doc())) == "speaking: nobody"
    assert speakers_line(m.Conference.model_validate(doc(speakers=None))) == "speaking: -"
