"""Plain-text renderings of API documents for the terminal UI's widgets.

Pure functions from the API's models (:mod:`hopline.api.models`) to short
strings: the status bar, a contact's line, a chat line, a search hit, the
rows of a call's statistics, and a conference's title and participants (the
active speakers marked). Kept apart from the widgets so they are tested
without a terminal, and so every screen shows a value the same way (``-``
for a statistic not measured yet).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hopline.api import models as m
from hopline.tui.state import RosterEntry

PRESENCE_MARK = {
    "online": "●",
    "away": "◐",
    "dnd": "⊘",
    "invisible": "○",
    "offline": "○",
}
NO_VALUE = "-"


def status_line(status: m.Status | None) -> str:
    """Who, the daemon's state, the home supernode, NAT class and presence."""
    if status is None:
        return "connecting to the daemon…"
    who = status.user or "nobody logged in"
    where = _home(status.supernode)
    presence = status.presence.status
    mood = f" “{status.presence.mood}”" if status.presence.mood else ""
    return f"{who} │ {status.state} │ supernode {where} │ NAT {status.nat} │ {presence}{mood}"


def _home(home: m.Home | None) -> str:
    if home is None or not (home.name or home.address):
        return NO_VALUE
    if home.name and home.address:
        return f"{home.name} ({home.address})"
    return home.name or home.address or NO_VALUE


def contact_label(contact: m.Contact, unread: int = 0) -> str:
    """``● bob  online — mood  (2)``, or the state of a pending request."""
    if contact.state == "accepted":
        presence = contact.presence or "offline"
        mark = PRESENCE_MARK.get(presence, "?")
        text = f"{mark} {contact.user}  {presence}"
        if contact.mood:
            text += f" — {contact.mood}"
    else:
        text = f"… {contact.user}  {contact.state.replace('_', ' ')}"
    return f"{text}  ({unread})" if unread else text


def roster_label(entry: RosterEntry) -> str:
    """A line of the left pane: a contact, ``# group``, or ``✉ user`` for another chat."""
    if entry.contact is not None:
        return contact_label(entry.contact, entry.unread)
    mark = "✉" if entry.title == entry.key else "#"
    text = f"{mark} {entry.title}"
    return f"{text}  ({entry.unread})" if entry.unread else text


def chat_title(peer: str, contact: m.Contact | None, group: m.Group | None) -> str:
    """The chat pane's title: the contact's line, or a group's name and members."""
    if contact is not None:
        return contact_label(contact)
    if group is not None:
        return f"# {group.name} — {', '.join(group.members)}"
    return f"chat with {peer}"


def message_line(message: m.ChatMessage, me: str | None) -> str:
    """``12:03 alice: hi ✓✓`` (ticks on our own messages: delivered, read)."""
    stamp = time.strftime("%H:%M", time.localtime(message.sent_at_ms / 1000))
    line = f"{stamp} {message.sender}: {message.text}"
    if message.sender == me:
        line += " ✓✓" if message.read else " ✓" if message.delivered else " ·"
    return line


def hit_label(hit: m.UserHit) -> str:
    """A white-pages result: handle, full name, city and country, presence if known."""
    parts = [hit.username]
    if hit.full_name:
        parts.append(hit.full_name)
    place = ", ".join(p for p in (hit.city, hit.country) if p)
    if place:
        parts.append(place)
    if hit.state:
        parts.append(hit.state)
    return " — ".join(parts)


def found_line(message: m.ChatMessage) -> str:
    """A message-search result: the chat it is in, then the line."""
    return f"[{message.peer or message.conversation[:8]}] {message.sender}: {message.text}"


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}{unit}"


def _bitrate(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value / 1000:.1f} kbit/s"


def _loss(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.1f} %"


def call_title(call: m.Call) -> str:
    """``Call with bob — active (outgoing)``."""
    state = call.state + (f" ({call.end_reason})" if call.end_reason else "")
    return f"Call with {call.peer} — {state}, {call.direction}"


def call_stats(call: m.Call) -> list[tuple[str, str]]:
    """The statistics rows of the call view, in display order."""
    return [
        ("duration", _number(call.duration_s, " s")),
        ("path", call.path or NO_VALUE),
        ("codec", call.codec or NO_VALUE),
        ("bitrate", _bitrate(call.bitrate)),
        ("loss", _loss(call.loss)),
        ("jitter", _number(call.jitter_ms, " ms")),
        ("RTT", _number(call.rtt_ms, " ms")),
        ("MOS", _number(call.mos_estimate, "", 2)),
        ("packets sent", str(call.packets_sent)),
        ("packets received", str(call.packets_received)),
        ("jitter buffer", _number(call.jb_delay_ms, " ms")),
        ("hold", _hold(call)),
    ]


def _hold(call: m.Call) -> str:
    if call.held and call.remote_held:
        return "both sides"
    if call.held:
        return "on hold"
    return "peer holds" if call.remote_held else "no"


SPEAKING_MARK = "🔊"


@dataclass(frozen=True)
class ConferenceRow:
    """One participant line of the conference view."""

    user: str
    role: str  # host, member or invited
    me: bool
    speaking: bool

    @property
    def cells(self) -> tuple[str, str, str]:
        """``(participant, role, speaking)`` as the table shows them."""
        name = f"{self.user} (you)" if self.me else self.user
        return name, self.role, f"{SPEAKING_MARK} speaking" if self.speaking else ""


def conference_title(conference: m.Conference, me: str | None) -> str:
    """``Conference hosted by you — active, 3 members`` (or by the host's name)."""
    host = conference.host or NO_VALUE
    who = "you" if me is not None and host == me else host
    state = conference.state.replace("_", " ")
    if conference.state == "ended" and conference.end_reason:
        state += f" ({conference.end_reason})"
    count = len(conference.members)
    return f"Conference hosted by {who} — {state}, {count} member{'s' * (count != 1)}"


def conference_rows(conference: m.Conference, me: str | None) -> list[ConferenceRow]:
    """The host first, then the other members, then open invites; speakers marked."""
    speaking = set(conference.speakers or ())
    host = conference.host
    members = sorted(conference.members, key=lambda user: (user != host, user))
    rows = [
        ConferenceRow(user, "host" if user == host else "member", user == me, user in speaking)
        for user in members
    ]
    rows += [ConferenceRow(user, "invited", user == me, False) for user in conference.invited]
    return rows


def speakers_line(conference: m.Conference) -> str:
    """``speaking: carol, bob``, ``speaking: nobody``, or ``-`` while not in the conference."""
    if conference.speakers is None:
        return f"speaking: {NO_VALUE}"
    return f"speaking: {', '.join(conference.speakers) or 'nobody'}"
