"""What the terminal UI shows, folded from API documents and daemon events.

The TUI is a client of the daemon's local API and nothing else. Everything
it displays lives in one :class:`TuiState`: the daemon's status, the
contacts with their presence, the conversations (messages ordered the way
every device orders them: clock, sender device, message id), the calls with
their statistics, the conferences (host, members, active speakers), and the
last white-pages and message searches.

Two kinds of input change it. Replies of the SDK (``set_status``,
``set_contacts``, ``set_history``, ``set_call``, ...) replace what they
describe; events from the daemon's stream are folded in by
:meth:`TuiState.apply_event`, which returns the *topics* that changed
(``status``, ``contacts``, ``chat``, ``calls``, ``ring``, ``ended``,
``conferences``, ``login``, ``files``, ``resync``) so the widgets redraw only what they must.
An event the state cannot read is dropped and counted in
:attr:`TuiState.dropped`, never raised: a newer daemon may send more than
this UI knows. No I/O and no clock here, so the whole layer is tested with
plain documents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from hopline.api import models as m

Topics = frozenset[str]
NOTHING: Topics = frozenset()
LIVE_CALL_STATES = frozenset({"calling", "ringing", "active", "held"})
LIVE_CONFERENCE_STATES = frozenset({"inviting", "invited", "joining", "active", "handing_over"})


def chat_key(message: m.ChatMessage) -> str:
    """The conversation a message belongs to: the peer's name, or the group id."""
    return message.peer or message.conversation


def _order(message: m.ChatMessage) -> tuple[int, str, str]:
    return (message.clock, message.sender_device, message.message_id)


@dataclass
class Conversation:
    """The messages of one chat, without duplicates, in display order."""

    messages: dict[str, m.ChatMessage] = field(default_factory=dict)

    def add(self, message: m.ChatMessage) -> bool:
        """Keep ``message``; False when it was already here (receipts are merged)."""
        known = self.messages.get(message.message_id)
        if known is not None:
            if message.receipts is not None:
                known.receipts = message.receipts
            return False
        self.messages[message.message_id] = message
        return True

    def ordered(self) -> list[m.ChatMessage]:
        """Oldest first, as every device shows the conversation."""
        return sorted(self.messages.values(), key=_order)

    def receipt(self, message_id: str, user: str, device: str, kind: str, at_ms: int) -> bool:
        """Record a delivered/read receipt for one of our messages; False if unknown."""
        message = self.messages.get(message_id)
        if message is None:
            return False
        receipts = list(message.receipts or [])
        found = next((r for r in receipts if r.user == user and r.device == device), None)
        if found is None:
            found = m.Receipt(user=user, device=device)
            receipts.append(found)
        if kind == "read":
            found.read_at_ms = at_ms
            found.delivered_at_ms = found.delivered_at_ms or at_ms
        else:
            found.delivered_at_ms = at_ms
        message.receipts = receipts
        return True


@dataclass(frozen=True)
class RosterEntry:
    """One line of the left pane: a contact, a group or another chat."""

    key: str  # what opens the chat: a username or a group id
    title: str
    unread: int = 0
    contact: m.Contact | None = None


@dataclass
class TuiState:
    """Everything the TUI shows (see the module docstring)."""

    status: m.Status | None = None
    contacts: dict[str, m.Contact] = field(default_factory=dict)
    chats: dict[str, Conversation] = field(default_factory=dict)
    unread: Counter[str] = field(default_factory=Counter)
    calls: dict[str, m.Call] = field(default_factory=dict)
    conferences: dict[str, m.Conference] = field(default_factory=dict)
    groups: dict[str, m.Group] = field(default_factory=dict)
    search_results: list[m.UserHit] = field(default_factory=list)
    message_results: list[m.ChatMessage] = field(default_factory=list)
    open_peer: str | None = None
    events_seen: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    _event_ms: int = 0  # when the event being folded happened (Unix milliseconds)

    # ------------------------------------------------------------ who am I

    @property
    def me(self) -> str | None:
        """The logged-in user (None when logged out or not known yet)."""
        return self.status.user if self.status is not None else None

    @property
    def logged_in(self) -> bool:
        """True when the daemon has a user (online or still connecting)."""
        return self.status is not None and self.status.state not in ("logged-out", "stopped")

    def set_status(self, status: m.Status) -> Topics:
        """Replace the daemon's status."""
        self.status = status
        return frozenset({"status"})

    # ------------------------------------------------------------ contacts

    def set_contacts(self, contacts: list[m.Contact]) -> Topics:
        """Replace the contact list."""
        self.contacts = {contact.user: contact for contact in contacts}
        return frozenset({"contacts"})

    def contact_list(self) -> list[m.Contact]:
        """Contacts: accepted ones first, then by name."""
        return sorted(self.contacts.values(), key=lambda c: (c.state != "accepted", c.user))

    def set_groups(self, groups: list[m.Group]) -> Topics:
        """Replace the groups (the ones this user left are not shown)."""
        self.groups = {group.group_id: group for group in groups if group.joined}
        return frozenset({"contacts"})

    def roster(self) -> list[RosterEntry]:
        """The left pane: contacts, then groups, then other chats with messages."""
        entries = [RosterEntry(c.user, c.user, self.unread[c.user], c) for c in self.contact_list()]
        groups = sorted(self.groups.values(), key=lambda group: group.name)
        entries += [RosterEntry(g.group_id, g.name, self.unread[g.group_id]) for g in groups]
        listed = {entry.key for entry in entries}
        others = sorted(
            key for key, chat in self.chats.items() if key not in listed and chat.messages
        )
        entries += [RosterEntry(key, key, self.unread[key]) for key in others]
        return entries

    # ------------------------------------------------------------ chats

    def open_chat(self, peer: str) -> Topics:
        """Show the conversation with ``peer``; its unread count is cleared."""
        self.open_peer = peer
        self.chats.setdefault(peer, Conversation())
        self.unread.pop(peer, None)
        return frozenset({"chat", "contacts"})

    def set_history(self, peer: str, messages: list[m.ChatMessage]) -> Topics:
        """Merge a history reply for ``peer`` (messages already shown are kept)."""
        conversation = self.chats.setdefault(peer, Conversation())
        for message in messages:
            conversation.add(message)
        return frozenset({"chat"})

    def add_message(self, message: m.ChatMessage) -> Topics:
        """A message sent or received; counted unread unless its chat is open or ours."""
        key = chat_key(message)
        if not self.chats.setdefault(key, Conversation()).add(message):
            return frozenset({"chat"})
        if key != self.open_peer and message.sender != self.me:
            self.unread[key] += 1
            return frozenset({"chat", "contacts"})
        return frozenset({"chat"})

    def messages(self, peer: str | None = None) -> list[m.ChatMessage]:
        """The conversation with ``peer`` (default: the open one), oldest first."""
        key = peer if peer is not None else self.open_peer
        conversation = self.chats.get(key) if key is not None else None
        return conversation.ordered() if conversation is not None else []

    # ------------------------------------------------------------ calls

    def set_call(self, call: m.Call) -> Topics:
        """Replace one call's document (from a reply, a poll or an event)."""
        known = self.calls.get(call.call_id)
        self.calls[call.call_id] = call
        before = known.state if known is not None else None
        ringing = call.direction == "incoming" and call.state == "ringing"
        if ringing and before != "ringing":
            return frozenset({"calls", "ring"})
        if call.state == "ended" and before not in (None, "ended"):
            return frozenset({"calls", "ended"})
        return frozenset({"calls"})

    def set_calls(self, calls: list[m.Call]) -> Topics:
        """Merge a call list (``GET /v1/calls``)."""
        topics: set[str] = set()
        for call in calls:
            topics |= self.set_call(call)
        return frozenset(topics or {"calls"})

    def live_calls(self) -> list[m.Call]:
        """Calls not ended yet, oldest first."""
        live = [call for call in self.calls.values() if call.state in LIVE_CALL_STATES]
        return sorted(live, key=lambda call: call.started_at or 0.0)

    def ringing(self) -> list[m.Call]:
        """Incoming calls waiting for an answer, oldest first."""
        return [c for c in self.live_calls() if c.direction == "incoming" and c.state == "ringing"]

    # ------------------------------------------------------------ conferences

    def set_conference(self, conference: m.Conference) -> Topics:
        """Replace one conference's document (from a reply, a poll or an event)."""
        self.conferences[conference.conf_id] = conference
        return frozenset({"conferences"})

    def set_conferences(self, conferences: list[m.Conference]) -> Topics:
        """Merge a conference list (``GET /v1/conferences``)."""
        for conference in conferences:
            self.set_conference(conference)
        return frozenset({"conferences"})

    def live_conferences(self) -> list[m.Conference]:
        """Conferences not ended yet (ringing ones included), oldest first."""
        live = [c for c in self.conferences.values() if c.state in LIVE_CONFERENCE_STATES]
        return sorted(live, key=lambda conference: conference.started_at or 0.0)

    def speaking(self, conf_id: str) -> frozenset[str]:
        """Who speaks now in ``conf_id`` (empty when unknown or nobody)."""
        conference = self.conferences.get(conf_id)
        if conference is None or conference.speakers is None:
            return frozenset()
        return frozenset(conference.speakers)

    # ------------------------------------------------------------ searches

    def set_search(self, results: list[m.UserHit]) -> Topics:
        """The white-pages results to show."""
        self.search_results = list(results)
        return frozenset({"search"})

    def set_message_search(self, results: list[m.ChatMessage]) -> Topics:
        """The message-search results to show."""
        self.message_results = list(results)
        return frozenset({"search"})

    # ------------------------------------------------------------ events

    def apply_event(self, event: dict[str, Any]) -> Topics:
        """Fold one event of the daemon's stream in; the topics that changed."""
        self.events_seen += 1
        kind, data = event.get("type"), event.get("data")
        if not isinstance(kind, str) or not isinstance(data, dict):
            self.dropped["malformed"] += 1
            return NOTHING
        at = event.get("at")
        self._event_ms = int(at * 1000) if isinstance(at, int | float) else 0
        fold = _FOLDS.get(kind)
        if fold is None:
            self.dropped[f"unknown:{kind}"] += 1
            return NOTHING
        try:
            topics = fold(self, data)
        except (ValidationError, KeyError, TypeError, ValueError):
            self.dropped[f"bad:{kind}"] += 1
            return NOTHING
        if event.get("missed"):
            topics = topics | {"resync"}
        return topics

    def _on_state(self, data: dict[str, Any]) -> Topics:
        if self.status is None:
            return frozenset({"resync"})
        state = data["state"]
        previous = self.status.state
        self.status = self.status.model_copy(update={"state": _daemon_state(state)})
        if (previous == "logged-out") != (state == "logged-out"):
            return frozenset({"status", "login"})
        return frozenset({"status"})

    def _on_home(self, data: dict[str, Any]) -> Topics:
        if self.status is None:
            return frozenset({"resync"})
        home = m.Home.model_validate(data)
        self.status = self.status.model_copy(update={"supernode": home})
        return frozenset({"status"})

    def _on_login(self, data: dict[str, Any]) -> Topics:
        if self.status is not None:
            self.status = self.status.model_copy(update={"user": str(data["user"])})
        return frozenset({"status", "login", "resync"})

    def _on_logout(self, data: dict[str, Any]) -> Topics:
        if self.status is not None:
            self.status = self.status.model_copy(update={"state": "logged-out"})
        self.contacts.clear()
        self.groups.clear()
        self.chats.clear()
        self.unread.clear()
        self.open_peer = None
        return frozenset({"status", "login", "contacts", "chat"})

    def _on_presence(self, data: dict[str, Any]) -> Topics:
        user, status, mood = str(data["user"]), str(data["status"]), data.get("mood")
        presence = m.Presence(status=status, mood=mood or None)  # type: ignore[arg-type]
        if user == self.me and self.status is not None:
            self.status = self.status.model_copy(update={"presence": presence})
            return frozenset({"status"})
        contact = self.contacts.get(user)
        if contact is None:
            return NOTHING
        contact.presence, contact.mood = presence.status, presence.mood
        return frozenset({"contacts"})

    def _on_contact(self, data: dict[str, Any]) -> Topics:
        contact = m.Contact.model_validate(data)
        self.contacts[contact.user] = contact
        return frozenset({"contacts"})

    def _on_message(self, data: dict[str, Any]) -> Topics:
        return self.add_message(m.ChatMessage.model_validate(data))

    def _on_receipt(self, data: dict[str, Any]) -> Topics:
        message_id, user, device = str(data["message_id"]), str(data["user"]), str(data["device"])
        kind = str(data["receipt"])
        for conversation in self.chats.values():
            if conversation.receipt(message_id, user, device, kind, self._event_ms):
                return frozenset({"chat"})
        return NOTHING

    def _on_call(self, data: dict[str, Any]) -> Topics:
        return self.set_call(m.Call.model_validate(data))

    def _on_conference(self, data: dict[str, Any]) -> Topics:
        return self.set_conference(m.Conference.model_validate(data))

    def _on_group(self, data: dict[str, Any]) -> Topics:
        group = m.Group.model_validate({"group_id": data.get("group"), **data})
        others = [known for known in self.groups.values() if known.group_id != group.group_id]
        return self.set_groups([*others, group])

    def _on_nat(self, data: dict[str, Any]) -> Topics:
        if self.status is None:
            return frozenset({"resync"})
        self.status = self.status.model_copy(update={"nat": str(data["nat_type"])})
        return frozenset({"status"})

    def _on_file(self, data: dict[str, Any]) -> Topics:
        m.Transfer.model_validate(data)
        return frozenset({"files"})


def _daemon_state(state: Any) -> m.DaemonStateName:
    names = ("logged-out", "connecting", "online", "re-homing", "stopped")
    if state not in names:
        raise ValueError(f"unknown daemon state {state!r}")
    return state  # type: ignore[no-any-return]


_FOLDS: dict[str, Callable[[TuiState, dict[str, Any]], Topics]] = {
    "state": TuiState._on_state,
    "home": TuiState._on_home,
    "login": TuiState._on_login,
    "logout": TuiState._on_logout,
    "presence": TuiState._on_presence,
    "contact": TuiState._on_contact,
    "message": TuiState._on_message,
    "receipt": TuiState._on_receipt,
    "call": TuiState._on_call,
    "conference": TuiState._on_conference,
    "group": TuiState._on_group,
    "nat": TuiState._on_nat,
    "file": TuiState._on_file,
}
