"""Contacts and chats through the daemon: ``hopline contacts ...`` and ``hopline chat ...``.

Each command is one or two SDK calls (:func:`~hopline.cli.daemon.call_daemon`)
and their rendering: with ``--json`` exactly the API's document on stdout,
otherwise a rich table or one line. Arguments are checked here before the
daemon is contacted (a username of 1 to 64 characters, a message of 1 to 4096,
a group id of 32 hex digits), so bad input exits 2 with one line whether or
not a daemon runs; what only the daemon can judge (an unknown user, a state
change a contact does not allow) comes back as the daemon's one-line error.

``chat history`` marks the messages this user sent with their receipts:
``✓`` some device of the peer has it, ``✓✓`` the peer showed it, ``·`` not
yet confirmed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hopline.api import models as m
from hopline.cli.common import JsonOption, ProfileOption
from hopline.cli.daemon import call_daemon
from hopline.cli.output import UsageError, emit_json, human, stderr
from hopline.sdk import Client

contacts_app = typer.Typer(
    help="Your contacts: requests, authorisation, presence.", no_args_is_help=True
)
chat_app = typer.Typer(help="Chats with users and groups.", no_args_is_help=True)
group_app = typer.Typer(help="Group chats.", no_args_is_help=True)
chat_app.add_typer(group_app, name="group")

MAX_USERNAME = 64
HEX_ID = re.compile(m.HEX_ID_PATTERN)
DELIVERED, READ, PENDING = "✓", "✓✓", "·"
STATE_WORDS = {
    "none": "not a contact",
    "requested_by_me": "request sent",
    "requested_by_them": "asks to be a contact",
    "accepted": "contact",
}

UserArgument = Annotated[str, typer.Argument(help="a username")]
PeerArgument = Annotated[str, typer.Argument(help="a username, or a group id (32 hex digits)")]
GroupArgument = Annotated[str, typer.Argument(help="the group id (32 hex digits)")]
UsersArgument = Annotated[list[str], typer.Argument(help="usernames")]
LimitOption = Annotated[
    int, typer.Option("--limit", min=1, max=m.MAX_LIMIT, help="at most N messages")
]


# ---------------------------------------------------------------- arguments


def checked_user(user: str, what: str = "USER") -> str:
    """``user`` if it can be a username, else a UsageError."""
    if not 0 < len(user) <= MAX_USERNAME or "/" in user:
        raise UsageError(f"{what}: a username of 1 to {MAX_USERNAME} characters, not {user!r}")
    return user


def checked_peer(peer: str) -> str:
    """A username or a group id, else a UsageError."""
    return checked_user(peer, "PEER")


def checked_group(group: str) -> str:
    """A group id (32 hex digits), else a UsageError."""
    if not HEX_ID.fullmatch(group):
        raise UsageError(f"not a group id: {group!r} (32 hex digits, as 'chat group list' shows)")
    return group.lower()


def checked_users(users: list[str]) -> list[str]:
    """1 to 64 usernames, else a UsageError."""
    if not 0 < len(users) <= m.MAX_MEMBERS:
        raise UsageError(f"USER...: 1 to {m.MAX_MEMBERS} usernames")
    return [checked_user(user) for user in users]


def checked_text(text: str) -> str:
    """A message of 1 to 4096 characters, else a UsageError."""
    if not text.strip():
        raise UsageError("TEXT: a message cannot be empty")
    if len(text) > m.MAX_TEXT_CHARS:
        raise UsageError(f"TEXT: at most {m.MAX_TEXT_CHARS} characters")
    return text


def checked_name(name: str) -> str:
    """A group name of 1 to 64 characters, else a UsageError."""
    if not name.strip() or len(name) > m.MAX_NAME_CHARS:
        raise UsageError(f"NAME: a group name of 1 to {m.MAX_NAME_CHARS} characters")
    return name


# ---------------------------------------------------------------- contacts


def state_words(state: str) -> str:
    """A contact state as the tables show it."""
    return STATE_WORDS.get(state, state.replace("_", " "))


def _print_contacts(contacts: list[m.Contact], as_json: bool) -> None:
    if as_json:
        emit_json({"contacts": [contact.model_dump() for contact in contacts]})
        return
    out = human(False)
    if not contacts:
        out.print("no contacts yet: 'hopline contacts add USER'")
        return
    table = Table("user", "state", "presence", "mood", "name", "request", header_style="bold")
    for contact in contacts:
        cells = (
            contact.user,
            state_words(contact.state),
            contact.presence or "-",
            contact.mood or "",
            contact.display_name,
            contact.request_text,
        )
        table.add_row(*(escape(cell) for cell in cells))  # peers' own text
    out.print(table)


def _print_contact(contact: m.Contact, as_json: bool) -> None:
    if as_json:
        emit_json(contact.model_dump())
        return
    human(False).print(escape(f"{contact.user}: {state_words(contact.state)}"), soft_wrap=True)


@contacts_app.command("list")
def contacts_list_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Your contacts, their state and the presence they show you."""
    _print_contacts(call_daemon(profile, lambda client: client.contacts()), as_json)


@contacts_app.command("add")
def contacts_add_command(
    user: UserArgument,
    message: Annotated[
        str, typer.Option("--message", help="a short text the user sees with the request")
    ] = "",
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask a user to become a contact (accepts at once if they asked you)."""
    checked_user(user)
    if len(message) > m.MAX_REQUEST_TEXT:
        raise UsageError(f"--message: at most {m.MAX_REQUEST_TEXT} characters")
    contact = call_daemon(profile, lambda client: client.add_contact(user, message))
    _print_contact(contact, as_json)


def _contact_op(op: str, doc: str) -> Callable[..., None]:
    def command(
        user: UserArgument, profile: ProfileOption = None, as_json: JsonOption = False
    ) -> None:
        checked_user(user)
        _print_contact(call_daemon(profile, lambda client: client.contact_op(user, op)), as_json)

    command.__doc__ = doc
    return command


contacts_app.command("accept")(_contact_op("accept", "Accept a user's contact request."))
contacts_app.command("decline")(_contact_op("decline", "Decline a user's contact request."))
contacts_app.command("remove")(
    _contact_op("remove", "Remove a contact (or withdraw your request).")
)
contacts_app.command("block")(_contact_op("block", "Block a user: nothing they send gets through."))


# ---------------------------------------------------------------- chats


def _delivery_text(delivery: dict[str, int] | None) -> str:
    if not delivery:
        return "nothing to deliver"
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(delivery.items()))


@chat_app.command("send")
def chat_send_command(
    peer: PeerArgument,
    text: Annotated[str, typer.Argument(help="the message")],
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a message to a user or a group."""
    checked_peer(peer)
    checked_text(text)
    sent = call_daemon(profile, lambda client: client.send_message(peer, text))
    if as_json:
        emit_json(sent.model_dump())
        return
    where = escape(sent.peer or peer)
    human(False).print(f"sent to {where}: {escape(_delivery_text(sent.delivery))}", soft_wrap=True)


def _when(ms: int) -> str:
    seconds = ms / 1000
    today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(seconds))
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M", time.localtime(seconds))


def receipt_marks(message: m.ChatMessage, me: str | None) -> str:
    """``✓✓`` read, ``✓`` delivered, ``·`` not yet, for a message ``me`` sent; else ''."""
    if message.sender != me:
        return ""
    if message.read:
        return READ
    return DELIVERED if message.delivered else PENDING


def _messages_table(messages: list[m.ChatMessage], me: str | None, peer_column: bool) -> Table:
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    table.add_column("time", no_wrap=True)
    if peer_column:
        table.add_column("with", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("text")
    table.add_column("", no_wrap=True)
    for message in messages:
        cells = [_when(message.sent_at_ms)]
        if peer_column:
            cells.append(message.peer or message.conversation[:8])
        cells += [message.sender, message.text, receipt_marks(message, me)]
        table.add_row(*(escape(cell) for cell in cells))  # peers' own text
    return table


@chat_app.command("history")
def chat_history_command(
    peer: PeerArgument,
    limit: LimitOption = 50,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """The last messages with a user or a group, oldest first, with receipts."""
    checked_peer(peer)

    async def fetch(client: Client) -> tuple[str | None, list[m.ChatMessage]]:
        return (await client.status()).user, await client.history(peer, limit)

    me, messages = call_daemon(profile, fetch)
    if as_json:
        emit_json({"peer": peer, "messages": [message.model_dump() for message in messages]})
        return
    out = human(False)
    if not messages:
        out.print(escape(f"no messages with {peer} yet"))
        return
    out.print(_messages_table(messages, me, peer_column=False))
    stderr.print(f"{DELIVERED} delivered  {READ} read  {PENDING} not confirmed yet")


@chat_app.command("search")
def chat_search_command(
    text: Annotated[str, typer.Argument(help="words the messages must all contain")],
    limit: LimitOption = 50,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find messages containing every word of TEXT, in every conversation."""
    if not text.strip() or len(text) > m.MAX_QUERY_CHARS:
        raise UsageError(f"TEXT: 1 to {m.MAX_QUERY_CHARS} characters")
    found = call_daemon(profile, lambda client: client.search_messages(text, limit))
    if as_json:
        emit_json({"messages": [message.model_dump() for message in found]})
        return
    out = human(False)
    if not found:
        out.print(escape(f"no message contains {text!r}"))
        return
    out.print(_messages_table(found, None, peer_column=True))


@chat_app.command("read")
def chat_read_command(
    peer: PeerArgument, profile: ProfileOption = None, as_json: JsonOption = False
) -> None:
    """Mark the conversation read (the senders get read receipts)."""
    checked_peer(peer)
    marked = call_daemon(profile, lambda client: client.mark_read(peer))
    if as_json:
        emit_json(marked.model_dump())
        return
    human(False).print(escape(f"{marked.read} message(s) from {peer} marked read"), soft_wrap=True)


# ---------------------------------------------------------------- groups


def _print_group(group: m.Group, as_json: bool, what: str) -> None:
    if as_json:
        emit_json(group.model_dump())
        return
    members = ", ".join(group.members)
    stderr.print(escape(f"{what} {group.name!r}: {members}"))
    human(False).print(group.group_id)


def _run_group(
    profile: ProfileOption, as_json: bool, what: str, call: Callable[[Client], Awaitable[m.Group]]
) -> None:
    _print_group(call_daemon(profile, call), as_json, what)


@group_app.command("create")
def group_create_command(
    name: Annotated[str, typer.Argument(help="the group's name")],
    users: UsersArgument,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a group of you and USERS; prints its id (the PEER of 'chat send')."""
    checked_name(name)
    members = checked_users(users)
    _run_group(profile, as_json, "created", lambda client: client.create_group(name, members))


@group_app.command("list")
def group_list_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """The groups you are (or were) in, with their members."""
    groups = call_daemon(profile, lambda client: client.groups())
    if as_json:
        emit_json({"groups": [group.model_dump() for group in groups]})
        return
    out = human(False)
    if not groups:
        out.print("no groups yet: 'hopline chat group create NAME USER...'")
        return
    table = Table("group", "name", "members", "", header_style="bold")
    for group in groups:
        cells = (
            group.group_id,
            group.name,
            ", ".join(group.members),
            "" if group.joined else "left",
        )
        table.add_row(*(escape(cell) for cell in cells))
    out.print(table)


@group_app.command("invite")
def group_invite_command(
    group: GroupArgument,
    users: UsersArgument,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add USERS to a group."""
    gid, added = checked_group(group), checked_users(users)
    _run_group(profile, as_json, "invited to", lambda client: client.invite(gid, added))


@group_app.command("leave")
def group_leave_command(
    group: GroupArgument, profile: ProfileOption = None, as_json: JsonOption = False
) -> None:
    """Leave a group."""
    gid = checked_group(group)
    _run_group(profile, as_json, "left", lambda client: client.leave_group(gid))


@group_app.command("rename")
def group_rename_command(
    group: GroupArgument,
    name: Annotated[str, typer.Argument(help="the new name")],
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rename a group."""
    gid, new = checked_group(group), checked_name(name)
    _run_group(profile, as_json, "renamed", lambda client: client.rename_group(gid, new))
