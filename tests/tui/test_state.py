"""The terminal UI's model layer: API documents and daemon events folded into a TuiState."""

from __future__ import annotations

from typing import Any

from hopline.api import models as m
from hopline.tui.state import TuiState
from hopline.tui.view import (
    call_stats,
    chat_title,
    contact_label,
    found_line,
    hit_label,
    message_line,
    roster_label,
    status_line,
)

CALL_ID = "ab" * 16


def status(user: str | None = "alice", state: str = "online") -> m.Status:
    return m.Status.model_validate(
        {
            "user": user,
            "state": state,
            "profile": "/tmp/alice",
            "device_id": "d1",
            "supernode": {
                "name": "sn0",
                "address": "127.0.0.1:4000",
                "transport": "udp",
                "rtt_ms": 0.4,
                "since": 1.0,
            },
            "public_address": None,
            "nat": "unknown",
            "presence": {"status": "online", "mood": None},
            "certificate_expires": None,
            "rehomes": 0,
            "host_cache": 3,
            "uptime_s": 1.0,
            "last_error": None,
        }
    )


def message(
    text: str, sender: str = "bob", clock: int = 1, ident: str = "01", peer: str = "bob"
) -> dict[str, Any]:
    return {
        "message_id": ident * 16,
        "conversation": "cc" * 16,
        "peer": peer,
        "sender": sender,
        "sender_device": "dd" * 8 if sender == "bob" else "ee" * 8,
        "clock": clock,
        "sent_at_ms": 1_700_000_000_000 + clock,
        "text": text,
    }


def call_doc(state: str = "ringing", direction: str = "incoming", **stats: Any) -> dict[str, Any]:
    return {"call_id": CALL_ID, "peer": "bob", "direction": direction, "state": state, **stats}


def event(kind: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"id": 1, "type": kind, "at": 1_700_000_000.5, "data": data, **extra}


def logged_in_state() -> TuiState:
    state = TuiState()
    state.set_status(status())
    state.set_contacts([m.Contact(user="bob", state="accepted", presence="online")])
    return state


def test_messages_arriving_out_of_order_show_in_clock_order_once() -> None:
    state = logged_in_state()
    state.open_chat("bob")
    assert state.apply_event(event("message", message("second", clock=2, ident="02"))) == {"chat"}
    state.apply_event(event("message", message("first", clock=1, ident="01")))
    state.apply_event(event("message", message("first", clock=1, ident="01")))  # a duplicate
    assert [msg.text for msg in state.messages()] == ["first", "second"]
    assert state.unread["bob"] == 0


def test_a_message_in_a_closed_chat_counts_unread_until_it_is_opened() -> None:
    state = logged_in_state()
    topics = state.apply_event(event("message", message("hi", sender="carol", peer="carol")))
    assert topics == {"chat", "contacts"}
    assert state.unread["carol"] == 1
    state.open_chat("carol")
    assert state.unread["carol"] == 0
    assert [msg.text for msg in state.messages("carol")] == ["hi"]


def test_history_and_our_own_sent_message_merge_without_duplicates() -> None:
    state = logged_in_state()
    state.open_chat("bob")
    history = [m.ChatMessage.model_validate(message("old", clock=1))]
    state.set_history("bob", history)
    sent = m.ChatMessage.model_validate(message("mine", sender="alice", clock=2, ident="02"))
    state.add_message(sent)
    state.set_history("bob", [*history, sent])
    assert [(msg.sender, msg.text) for msg in state.messages()] == [
        ("bob", "old"),
        ("alice", "mine"),
    ]
    assert not state.unread


def test_a_read_receipt_marks_our_message_read() -> None:
    state = logged_in_state()
    state.open_chat("bob")
    state.add_message(m.ChatMessage.model_validate(message("ping", sender="alice", ident="05")))
    receipt = {
        "message_id": "05" * 16,
        "conversation": "cc" * 16,
        "user": "bob",
        "device": "dd" * 8,
        "receipt": "read",
    }
    assert state.apply_event(event("receipt", receipt)) == {"chat"}
    (shown,) = state.messages()
    assert shown.read and shown.delivered
    assert shown.receipts is not None and shown.receipts[0].read_at_ms == 1_700_000_000_500
    assert message_line(shown, "alice").endswith("✓✓")
    unknown = {**receipt, "message_id": "99" * 16}
    assert state.apply_event(event("receipt", unknown)) == frozenset()


def test_presence_of_a_contact_and_of_this_user() -> None:
    state = logged_in_state()
    topics = state.apply_event(
        event("presence", {"user": "bob", "status": "away", "mood": "lunch"})
    )
    assert topics == {"contacts"}
    assert contact_label(state.contacts["bob"]) == "◐ bob  away — lunch"
    state.apply_event(event("presence", {"user": "alice", "status": "dnd", "mood": "busy"}))
    assert state.status is not None and state.status.presence.status == "dnd"
    assert status_line(state.status).endswith("dnd “busy”")
    stranger = event("presence", {"user": "zed", "status": "online"})
    assert state.apply_event(stranger) == frozenset()


def test_a_contact_event_adds_or_replaces_a_contact() -> None:
    state = logged_in_state()
    request = {"user": "carol", "state": "requested_by_them", "request_text": "hi"}
    assert state.apply_event(event("contact", request)) == {"contacts"}
    assert [c.user for c in state.contact_list()] == ["bob", "carol"]  # accepted first
    assert contact_label(state.contacts["carol"]) == "… carol  requested by them"


def test_an_incoming_call_rings_once_and_stops_ringing_when_answered() -> None:
    state = logged_in_state()
    assert state.apply_event(event("call", call_doc())) == {"calls", "ring"}
    assert state.apply_event(event("call", call_doc())) == {"calls"}  # still the same ring
    assert [call.peer for call in state.ringing()] == ["bob"]
    state.apply_event(event("call", call_doc("active", bitrate=24000.0, loss=0.02)))
    assert state.ringing() == []
    assert [call.state for call in state.live_calls()] == ["active"]
    state.apply_event(event("call", call_doc("ended", end_reason="hangup")))
    assert state.live_calls() == []


def test_call_statistics_rows_show_units_and_unmeasured_values() -> None:
    call = m.Call.model_validate(
        call_doc("active", "outgoing", bitrate=24000.0, loss=0.025, jitter_ms=3.25, rtt_ms=1.0)
    )
    rows = dict(call_stats(call))
    assert rows["bitrate"] == "24.0 kbit/s"
    assert rows["loss"] == "2.5 %"
    assert rows["jitter"] == "3.2 ms"
    assert rows["RTT"] == "1.0 ms"
    assert rows["MOS"] == "-"  # not measured yet
    assert rows["packets sent"] == "0"


def test_daemon_state_login_and_logout_events() -> None:
    state = TuiState()
    assert state.apply_event(event("state", {"state": "online"})) == {"resync"}  # no status yet
    state.set_status(status(user=None, state="logged-out"))
    assert not state.logged_in
    assert state.apply_event(event("state", {"state": "connecting"})) == {"status", "login"}
    assert state.apply_event(event("login", {"user": "alice"})) >= {"login", "resync"}
    assert state.me == "alice" and state.logged_in
    state.set_contacts([m.Contact(user="bob", state="accepted")])
    state.open_chat("bob")
    assert "login" in state.apply_event(event("logout", {"user": "alice"}))
    assert not state.logged_in and not state.contacts and state.open_peer is None


def test_home_and_nat_events_update_the_status_bar() -> None:
    state = logged_in_state()
    home = {"name": "sn2", "address": "127.0.0.1:4002", "transport": "tcp", "rtt_ms": 2.0}
    assert state.apply_event(event("home", {**home, "since": 5.0})) == {"status"}
    state.apply_event(event("nat", {"nat_type": "open", "udp": True}))
    line = status_line(state.status)
    assert "sn2 (127.0.0.1:4002)" in line and "NAT open" in line and "alice" in line


def test_bad_events_are_dropped_and_counted_not_raised() -> None:
    state = logged_in_state()
    assert state.apply_event({"type": "message"}) == frozenset()  # no data
    assert state.apply_event(event("message", {"text": "no ids"})) == frozenset()
    assert state.apply_event(event("call", call_doc(state="exploded"))) == frozenset()
    assert state.apply_event(event("state", {"state": "dancing"})) == frozenset()
    assert state.apply_event(event("teleport", {})) == frozenset()
    assert state.dropped == {
        "malformed": 1,
        "bad:message": 1,
        "bad:call": 1,
        "bad:state": 1,
        "unknown:teleport": 1,
    }
    assert state.events_seen == 5


def test_missed_events_ask_for_a_resync() -> None:
    state = logged_in_state()
    topics = state.apply_event(event("contact", {"user": "dan", "state": "none"}, missed=3))
    assert topics == {"contacts", "resync"}


def test_the_roster_lists_contacts_groups_and_other_chats_with_unread_counts() -> None:
    state = logged_in_state()
    group = {"group": "ab" * 16, "name": "lunch club", "members": ["alice", "bob"]}
    assert state.apply_event(event("group", {**group, "version": 1, "joined": True})) == {
        "contacts"
    }
    in_group = message("soup?", ident="07", peer="") | {"peer": None, "conversation": "ab" * 16}
    state.apply_event(event("message", in_group))
    state.apply_event(event("message", message("psst", sender="zed", peer="zed", ident="08")))
    labels = [roster_label(entry) for entry in state.roster()]
    assert labels == ["● bob  online", "# lunch club  (1)", "✉ zed  (1)"]
    assert chat_title("ab" * 16, None, state.groups["ab" * 16]) == "# lunch club — alice, bob"
    state.open_chat("ab" * 16)
    assert [msg.text for msg in state.messages()] == ["soup?"]
    left = {**group, "version": 2, "joined": False, "members": ["bob"]}
    state.apply_event(event("group", left))
    assert "ab" * 16 not in state.groups


def test_a_call_ending_is_reported_once() -> None:
    state = logged_in_state()
    state.apply_event(event("call", call_doc("active")))
    assert state.apply_event(event("call", call_doc("ended"))) == {"calls", "ended"}
    assert state.apply_event(event("call", call_doc("ended"))) == {"calls"}


def test_texts_of_a_search_hit_a_found_message_and_a_status_without_home() -> None:
    hit = m.UserHit(username="bob", full_name="Bob Builder", city="Leeds", country="GB")
    assert hit_label(hit) == "bob — Bob Builder — Leeds, GB"
    assert hit_label(m.UserHit(username="zed", state="offline")) == "zed — offline"
    found = m.ChatMessage.model_validate(message("soup?", peer="bob"))
    assert found_line(found) == "[bob] bob: soup?"
    assert status_line(None) == "connecting to the daemon…"
    away = status(user=None, state="logged-out").model_copy(update={"supernode": None})
    assert status_line(away).startswith("nobody logged in │ logged-out │ supernode - │")
