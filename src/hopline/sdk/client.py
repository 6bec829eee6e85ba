"""A typed async client for a Hopline daemon's local API.

::

    from hopline.sdk import Client

    async with Client.for_profile("~/.hopline/default") as hopline:
        status = await hopline.status()
        async for user in hopline.search_all("ada", by="name"):
            print(user.username, user.city)
        call = await hopline.place_call("ada", play="/tmp/hello.wav", seconds=10)
        call = await hopline.wait_call(call.call_id, timeout_s=60)
        print(call.state, call.duration_s, call.mos_estimate)
        await hopline.send_message("ada", "hello")
        sent = await hopline.send_file("ada", "notes.pdf")
        sent = await hopline.wait_file(sent.transfer_id, timeout_s=600)

Replies are the API's own pydantic models (:mod:`hopline.api.models`), so a
field the daemon adds shows up here typed; lists come back as plain lists of
those models. Request bodies are checked here with the same models before
they are sent. Every failure is a
:class:`HoplineError` carrying the API's stable ``code``;
:class:`DaemonNotRunning` says no daemon serves the profile.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from hopline.api import models as m
from hopline.daemon.files import DaemonFileError, read_daemon_info

M = TypeVar("M", bound=BaseModel)
DEFAULT_TIMEOUT_S = 30.0
NETCHECK_WAIT_S = 15.0  # a NAT check takes up to 10 s in the daemon
LONG_POLL_MARGIN_S = 10.0  # a long-polling request may take its own wait plus this
CONTACT_OPS = ("accept", "decline", "remove", "block")
OPS_TEXT = ", ".join(CONTACT_OPS)
MAX_NAME_CHARS = 64  # a username, or a group's 32 hex digits


class HoplineError(Exception):
    """The daemon refused or failed a request; ``code`` is the API's error code."""

    def __init__(
        self, code: str, message: str, status: int = 0, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.status, self.retry_after_ms = code, status, retry_after_ms


class DaemonNotRunning(HoplineError):
    """No daemon serves this profile (start one with ``hopline up``)."""

    def __init__(self, profile: Path, detail: str = "") -> None:
        super().__init__("not-running", f"no hopline daemon is running for {profile}{detail}")
        self.profile = profile


class Client:
    """One connection to a daemon's API (an ``httpx.AsyncClient`` underneath)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """A client of the API at ``base_url``; ``transport`` (e.g. an ASGI one) is optional."""
        self.base_url, self._token = base_url, token
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def for_profile(cls, profile: str | Path, timeout: float = DEFAULT_TIMEOUT_S) -> Client:
        """A client for the daemon running on ``profile`` (raises DaemonNotRunning)."""
        path = Path(profile).expanduser()
        try:
            found = read_daemon_info(path)
        except DaemonFileError as exc:
            raise DaemonNotRunning(path, f" ({exc})") from None
        if found is None:
            raise DaemonNotRunning(path)
        info, token = found
        return cls(info.api, token, timeout)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    # ------------------------------------------------------------ plumbing

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
        wait_s: float = 0.0,
    ) -> M:
        content = body.model_dump_json(exclude_unset=True) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        timeout = self._http.timeout
        if wait_s > 0:  # the daemon holds the request open that long before it answers
            timeout = httpx.Timeout(wait_s + max(LONG_POLL_MARGIN_S, timeout.read or 0.0))
        try:
            response = await self._http.request(
                method, path, content=content, params=params, headers=headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise HoplineError("unreachable", f"the daemon does not answer: {exc}") from None
        if response.status_code >= 400:
            raise _error_of(response)
        return model.model_validate(response.json())

    # ------------------------------------------------------------ account

    async def status(self) -> m.Status:
        """Who, which supernode, public address, NAT class, presence."""
        return await self._call("GET", "/v1/status", m.Status)

    async def netcheck(self, fresh: bool = False) -> m.Netcheck:
        """The daemon's NAT check of this network; ``fresh`` runs one now."""
        method = "POST" if fresh else "GET"  # the first check may still be running
        return await self._call(method, "/v1/netcheck", m.Netcheck, wait_s=NETCHECK_WAIT_S)

    async def register(self, username: str, password: str, **fields: str) -> m.Registered:
        """Create an account (``full_name``, ``city``, ``country``, ``language``)."""
        body = m.RegisterRequest(username=username, password=password, **fields)
        return await self._call("POST", "/v1/register", m.Registered, body=body)

    async def login(self, username: str, password: str) -> m.LoggedIn:
        """Log this device in; the daemon goes online."""
        body = m.LoginRequest(username=username, password=password)
        return await self._call("POST", "/v1/login", m.LoggedIn, body=body)

    async def logout(self) -> m.LoggedOut:
        """Go offline and revoke this device's certificate."""
        return await self._call("POST", "/v1/logout", m.LoggedOut)

    async def shutdown(self) -> m.Stopping:
        """Stop the daemon."""
        return await self._call("POST", "/v1/shutdown", m.Stopping)

    # ------------------------------------------------------------ directory

    async def search(
        self, query: str, by: str = "any", limit: int = 20, cursor: str | None = None
    ) -> m.SearchResults:
        """One page of white-pages results (``by``: any, handle, name, city, country, language)."""
        params: dict[str, Any] = {"q": query, "by": by, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call("GET", "/v1/search", m.SearchResults, params=params)

    async def search_all(
        self, query: str, by: str = "any", page: int = 50, max_results: int = 1000
    ) -> AsyncIterator[m.UserHit]:
        """Every result, page after page (at most ``max_results``)."""
        cursor: str | None = None
        given = 0
        while given < max_results:
            results = await self.search(query, by, page, cursor)
            for hit in results.results[: max_results - given]:
                given += 1
                yield hit
            cursor = results.next_cursor
            if cursor is None:
                return

    async def lookup(self, username: str) -> m.UserHit:
        """Presence of one user: online, offline (last seen) or unknown."""
        return await self._call("GET", f"/v1/users/{username}", m.UserHit)

    # ------------------------------------------------------------ me

    async def profile(self) -> m.PublicProfile:
        """This user's white-pages fields."""
        return await self._call("GET", "/v1/profile", m.PublicProfile)

    async def set_profile(self, **fields: str | None) -> m.PublicProfile:
        """Change white-pages fields ("" clears one)."""
        body = m.ProfileUpdate(**fields)
        return await self._call("PATCH", "/v1/profile", m.PublicProfile, body=body)

    async def set_presence(self, status: str, mood: str | None = None) -> m.PresenceSet:
        """online, away, dnd or invisible, with an optional mood text."""
        body = m.PresenceUpdate(status=status, mood=mood)  # type: ignore[arg-type]
        return await self._call("PUT", "/v1/presence", m.PresenceSet, body=body)

    # ------------------------------------------------------------ calls

    async def place_call(
        self,
        user: str,
        *,
        play: str | Path | None = None,
        record: str | Path | None = None,
        seconds: float | None = None,
    ) -> m.Call:
        """Call ``user``; returns at once (state ``calling``).

        ``play``: a WAV file sent as voice; ``record``: where the peer's voice
        is written; ``seconds``: hang up after that long of talk. Paths are
        made absolute here: the daemon resolves nothing relative.
        """
        body = m.CallRequest(user=user, **_media(play, record, seconds))
        return await self._call("POST", "/v1/calls", m.Call, body=body)

    async def answer_call(
        self,
        call_id: str | None = None,
        *,
        play: str | Path | None = None,
        record: str | Path | None = None,
        seconds: float | None = None,
        wait_s: float = 0.0,
    ) -> m.Call:
        """Answer ``call_id``, or (``None``) the oldest ringing call.

        With ``call_id`` None and ``wait_s`` > 0, waits that long for a call to
        ring. Nothing to answer raises :class:`HoplineError` ``no-such-call``.
        """
        media = _media(play, record, seconds)
        if call_id is None:
            body: BaseModel = m.AnswerNextRequest(**media, wait_s=wait_s)
            return await self._call("POST", "/v1/calls/answer", m.Call, body=body, wait_s=wait_s)
        body = m.AnswerRequest(**media)
        return await self._call("POST", f"/v1/calls/{_call_id(call_id)}/answer", m.Call, body=body)

    async def hangup(self, call_id: str | None = None) -> m.Call:
        """Hang up ``call_id`` (or the only/most recent live call); its final document."""
        if call_id is None:
            return await self._call("POST", "/v1/calls/hangup", m.Call)
        return await self._call("POST", f"/v1/calls/{_call_id(call_id)}/hangup", m.Call)

    async def hold(self, call_id: str, on: bool = True) -> m.Call:
        """Put a call on hold (``on``) or resume it."""
        body = m.HoldRequest(on=on)
        return await self._call("POST", f"/v1/calls/{_call_id(call_id)}/hold", m.Call, body=body)

    async def calls(self) -> list[m.Call]:
        """Live calls, and the ones that ended in the last minute."""
        return (await self._call("GET", "/v1/calls", m.Calls)).calls

    async def call(self, call_id: str) -> m.Call:
        """One call's state and statistics."""
        return await self._call("GET", f"/v1/calls/{_call_id(call_id)}", m.Call)

    async def wait_call(self, call_id: str, timeout_s: float = 30.0) -> m.Call:
        """Wait until the call ends or ``timeout_s`` passes; its document then."""
        params = {"timeout_s": timeout_s}
        path = f"/v1/calls/{_call_id(call_id)}/wait"
        return await self._call("GET", path, m.Call, params=params, wait_s=timeout_s)

    # ------------------------------------------------------------ conferences

    async def start_conference(
        self,
        users: list[str],
        *,
        play: str | Path | None = None,
        record: str | Path | None = None,
        seconds: float | None = None,
    ) -> m.Conference:
        """Start a conference hosted here with ``users``; returns at once (state ``inviting``).

        ``play``/``record``/``seconds`` as for :meth:`place_call`; ``seconds``
        leaves the conference after that long.
        """
        body = _body(m.ConferenceRequest, users=users, **_media(play, record, seconds))
        return await self._call("POST", "/v1/conferences", m.Conference, body=body)

    async def answer_conference(
        self,
        conf_id: str | None = None,
        *,
        play: str | Path | None = None,
        record: str | Path | None = None,
        seconds: float | None = None,
        wait_s: float = 0.0,
    ) -> m.Conference:
        """Join ``conf_id``, or (``None``) the oldest ringing conference invite.

        With ``conf_id`` None and ``wait_s`` > 0, waits that long for an invite.
        Nothing ringing raises :class:`HoplineError` ``not-found``.
        """
        media = _media(play, record, seconds)
        if conf_id is None:
            body: BaseModel = _body(m.ConferenceAnswerNext, **media, wait_s=wait_s)
            path = "/v1/conferences/answer"
            return await self._call("POST", path, m.Conference, body=body, wait_s=wait_s)
        body = _body(m.ConferenceAnswer, **media)
        path = f"/v1/conferences/{_hex_id(conf_id, 'conference')}/accept"
        return await self._call("POST", path, m.Conference, body=body)

    async def decline_conference(self, conf_id: str) -> m.Conference:
        """Do not join a ringing conference."""
        return await self._conference_op(conf_id, "decline")

    async def leave_conference(self, conf_id: str) -> m.Conference:
        """Leave a conference (a host hands the mix on first)."""
        return await self._conference_op(conf_id, "leave")

    async def invite_to_conference(self, conf_id: str, user: str) -> m.Conference:
        """Host: invite one more user."""
        return await self._conference_op(conf_id, "invite", _body(m.ConferenceUser, user=user))

    async def remove_from_conference(self, conf_id: str, user: str) -> m.Conference:
        """Host: put a member out, or withdraw an invite."""
        return await self._conference_op(conf_id, "remove", _body(m.ConferenceUser, user=user))

    async def _conference_op(
        self, conf_id: str, op: str, body: BaseModel | None = None
    ) -> m.Conference:
        path = f"/v1/conferences/{_hex_id(conf_id, 'conference')}/{op}"
        return await self._call("POST", path, m.Conference, body=body)

    async def conferences(self) -> list[m.Conference]:
        """Conferences running here, ringing invites, and those that ended lately."""
        return (await self._call("GET", "/v1/conferences", m.Conferences)).conferences

    async def conference(self, conf_id: str) -> m.Conference:
        """One conference: host and why, members, speakers, per-participant statistics."""
        path = f"/v1/conferences/{_hex_id(conf_id, 'conference')}"
        return await self._call("GET", path, m.Conference)

    async def wait_conference(self, conf_id: str, timeout_s: float = 30.0) -> m.Conference:
        """Wait until the conference ends here or ``timeout_s`` passes; its document then."""
        params = {"timeout_s": timeout_s}
        path = f"/v1/conferences/{_hex_id(conf_id, 'conference')}/wait"
        return await self._call("GET", path, m.Conference, params=params, wait_s=timeout_s)

    # ------------------------------------------------------------ contacts

    async def contacts(self) -> list[m.Contact]:
        """Every contact with its state and the presence last seen."""
        return (await self._call("GET", "/v1/contacts", m.Contacts)).contacts

    async def add_contact(self, user: str, message: str = "") -> m.Contact:
        """Ask ``user`` to become a contact (with a ``message`` they see)."""
        body = _body(m.ContactRequest, user=user, message=message)
        return await self._call("POST", "/v1/contacts", m.Contact, body=body)

    async def contact_op(self, user: str, op: str) -> m.Contact:
        """``accept``, ``decline``, ``remove`` or ``block`` the contact ``user``."""
        if op not in CONTACT_OPS:
            raise HoplineError("bad-input", f"unknown contact operation {op!r}: use {OPS_TEXT}")
        return await self._call("POST", f"/v1/contacts/{_segment(user)}/{op}", m.Contact)

    # ------------------------------------------------------------ chats

    async def send_message(self, peer: str, text: str) -> m.ChatMessage:
        """Send ``text`` to a user or a group (its hex id); the message as sent."""
        body = _body(m.SendMessage, text=text)
        path = f"/v1/chats/{_segment(peer)}/messages"
        return await self._call("POST", path, m.ChatMessage, body=body)

    async def history(self, peer: str, limit: int = 50) -> list[m.ChatMessage]:
        """The last ``limit`` messages with ``peer``, oldest first, with their receipts."""
        path = f"/v1/chats/{_segment(peer)}/messages"
        params = {"limit": limit}
        return (await self._call("GET", path, m.History, params=params)).messages

    async def search_messages(self, q: str, limit: int = 50) -> list[m.ChatMessage]:
        """Messages containing every word of ``q``, in every conversation."""
        params: dict[str, Any] = {"q": q, "limit": limit}
        return (await self._call("GET", "/v1/messages/search", m.Messages, params=params)).messages

    async def mark_read(self, peer: str) -> m.ReadMarked:
        """Mark the conversation with ``peer`` read (read receipts go to the senders)."""
        return await self._call("POST", f"/v1/chats/{_segment(peer)}/read", m.ReadMarked)

    async def messaging_status(self) -> m.MessagingStatus:
        """The messaging service's queues and counters."""
        return await self._call("GET", "/v1/messaging", m.MessagingStatus)

    # ------------------------------------------------------------ groups

    async def groups(self) -> list[m.Group]:
        """Every group this device knows, with its members."""
        return (await self._call("GET", "/v1/groups", m.Groups)).groups

    async def create_group(self, name: str, members: list[str]) -> m.Group:
        """A new group of this user and ``members``; its ``group_id`` is the chat peer."""
        body = _body(m.GroupCreate, name=name, members=list(members))
        return await self._call("POST", "/v1/groups", m.Group, body=body)

    async def invite(self, group: str, users: list[str]) -> m.Group:
        """Add ``users`` to ``group``."""
        body = _body(m.GroupInvite, users=list(users))
        path = f"/v1/groups/{_hex_id(group, 'group')}/invite"
        return await self._call("POST", path, m.Group, body=body)

    async def leave_group(self, group: str) -> m.Group:
        """Leave ``group``."""
        return await self._call("POST", f"/v1/groups/{_hex_id(group, 'group')}/leave", m.Group)

    async def rename_group(self, group: str, name: str) -> m.Group:
        """Rename ``group``."""
        body = _body(m.GroupRename, name=name)
        return await self._call(
            "PATCH", f"/v1/groups/{_hex_id(group, 'group')}", m.Group, body=body
        )

    # ------------------------------------------------------------ files

    async def send_file(self, peer: str, path: str | Path) -> m.Transfer:
        """Offer the file at ``path`` to ``peer``; returns at once (state ``waiting``).

        The path is made absolute here: the daemon resolves nothing relative.
        """
        body = _body(m.FileOffer, peer=peer, path=_absolute(path))
        return await self._call("POST", "/v1/files", m.Transfer, body=body)

    async def transfers(self) -> list[m.Transfer]:
        """Live transfers, files offered to us, and recently finished ones."""
        return (await self._call("GET", "/v1/files", m.Transfers)).transfers

    async def transfer(self, transfer_id: str) -> m.Transfer:
        """One transfer's state and progress."""
        return await self._call("GET", f"/v1/files/{_hex_id(transfer_id)}", m.Transfer)

    async def accept_file(self, transfer_id: str, to_dir: str | Path | None = None) -> m.Transfer:
        """Take an offered file into ``to_dir`` (default: the profile's downloads)."""
        body = _body(m.FileAccept, to_dir=_absolute(to_dir))
        path = f"/v1/files/{_hex_id(transfer_id)}/accept"
        return await self._call("POST", path, m.Transfer, body=body)

    async def decline_file(self, transfer_id: str) -> m.Transfer:
        """Refuse an offered file."""
        return await self._call("POST", f"/v1/files/{_hex_id(transfer_id)}/decline", m.Transfer)

    async def cancel_file(self, transfer_id: str) -> m.Transfer:
        """Stop a transfer in either direction."""
        return await self._call("POST", f"/v1/files/{_hex_id(transfer_id)}/cancel", m.Transfer)

    async def wait_file(self, transfer_id: str, timeout_s: float = 30.0) -> m.Transfer:
        """Wait until the transfer ends or ``timeout_s`` passes; its document then."""
        params = {"timeout_s": timeout_s}
        path = f"/v1/files/{_hex_id(transfer_id)}/wait"
        return await self._call("GET", path, m.Transfer, params=params, wait_s=timeout_s)

    # ------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Daemon events as they happen (state, presence, login, logout, ...)."""
        async with self.subscribe() as stream:
            async for event in stream:
                yield event

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """The event stream, already subscribed: every event of the daemon after this
        ``async with`` is entered is in it (``events()`` gives no such moment)."""
        import websockets  # only event readers need it

        url = self.base_url.replace("http", "ws", 1) + "/v1/events"
        headers = {"Authorization": f"Bearer {self._token}"}
        async with websockets.connect(url, additional_headers=headers) as socket:
            first = json.loads(await socket.recv())
            if first.get("type") != "subscribed":
                raise HoplineError("bad-stream", f"the event stream began with {first!r}")
            yield _frames(socket)


async def _frames(socket: Any) -> AsyncIterator[dict[str, Any]]:
    async for frame in socket:
        yield json.loads(frame)


def _media(
    play: str | Path | None, record: str | Path | None, seconds: float | None
) -> dict[str, Any]:
    media: dict[str, Any] = {"play": _absolute(play), "record": _absolute(record)}
    media["seconds"] = seconds
    return {name: value for name, value in media.items() if value is not None}


def _absolute(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())


def _body(model: type[M], **fields: Any) -> M:
    """A request body checked here first: a bad field is a ``bad-input`` HoplineError."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
        raise HoplineError("bad-input", message) from None


def _segment(name: str) -> str:
    """A user or peer as one URL path segment (never empty, never a path of its own)."""
    if not name or len(name) > MAX_NAME_CHARS:
        raise HoplineError("bad-input", f"not a username or group id: {name!r}")
    return quote(name, safe="")


def _hex_id(ident: str, what: str = "transfer") -> str:
    if not re.fullmatch(m.HEX_ID_PATTERN, ident):
        raise HoplineError("bad-input", f"not a {what} id: {ident!r} (32 hex digits)")
    return ident


def _call_id(call_id: str) -> str:
    if not re.fullmatch(m.CALL_ID_PATTERN, call_id):
        raise HoplineError("bad-input", f"not a call id: {call_id!r} (hex digits)")
    return call_id


def _error_of(response: httpx.Response) -> HoplineError:
    try:
        doc = m.ApiErrorDoc.model_validate(response.json())
    except ValueError:
        return HoplineError("http", f"HTTP {response.status_code}", response.status_code)
    return HoplineError(doc.error, doc.message, response.status_code, doc.retry_after_ms)
