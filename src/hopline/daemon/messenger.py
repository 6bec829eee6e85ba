"""The daemon's contacts, chats and file transfers, as the local API sees them.

:class:`Messenger` is a thin front over two services that live as long as the
daemon's session: :class:`~hopline.messaging.service.MessagingService`
(contacts, presence, 1:1 and group chats, offline delivery) and
:class:`~hopline.files.service.FileService` (offers, chunked encrypted
transfers, resume). The daemon starts both when it comes online and stops
them when it goes offline; in between, every request the API makes goes
through here, so that:

* a request made while the daemon is logged out or between supernodes gets
  :class:`~hopline.daemon.errors.NotLoggedIn` or
  :class:`~hopline.daemon.errors.NotOnline`, never an ``AttributeError``;
* the services' own failures become daemon errors with stable codes
  (``bad-input`` for a malformed name, text or path, ``not-found`` for an
  unknown contact, group or transfer, ``refused`` for what the network or the
  peer refused).

Documents are the services' own JSON (see their ``describe`` methods); this
module adds nothing to them but the error mapping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from hopline.daemon.errors import BadInput, NoSuchItem, NotOnline, Refused
from hopline.files.service import FileService, FileServiceError, NoSuchTransfer
from hopline.identity.names import canonical_username
from hopline.messaging.envelope import MessageError
from hopline.messaging.service import MessagingError, MessagingService

T = TypeVar("T")

CONTACT_OPS = ("add", "accept", "decline", "remove", "block")

# MessagingError reasons that mean "your input is wrong" (the rest: refused)
BAD_INPUT_REASONS = frozenset({"contact-transition", "not-a-member", "blocked"})
NOT_FOUND_REASONS = frozenset({"no-such-group", "no-such-user"})
CONTACT_STATE_WORDS = {
    "none": "not a contact, and no request from them",
    "requested_by_me": "your request waits for their answer",
    "requested_by_them": "they asked you: accept or decline",
    "accepted": "already a contact",
    "declined": "the request was declined",
    "blocked": "blocked",
}


class Messenger:
    """Contacts, presence, chats and files of one daemon (see the module docstring)."""

    def __init__(
        self,
        services: Callable[[], tuple[MessagingService | None, FileService | None]],
    ) -> None:
        """``services`` returns the live services, checking the daemon is online first."""
        self._services = services

    def _messaging(self) -> MessagingService:
        messaging, _ = self._services()
        if messaging is None:
            raise NotOnline("messaging is not ready yet (connecting)")
        return messaging

    def _files(self) -> FileService:
        _, files = self._services()
        if files is None:
            raise NotOnline("file transfer is not ready yet (connecting)")
        return files

    # ------------------------------------------------------------ contacts

    async def contacts(self) -> list[dict[str, Any]]:
        """Every contact with its state and last seen presence."""
        return await self._messaging().contacts()

    async def contact(self, op: str, user: str, message: str = "") -> dict[str, Any]:
        """``add`` (with a request text), ``accept``, ``decline``, ``remove`` or ``block``."""
        if op not in CONTACT_OPS:
            raise BadInput(f"unknown contact operation {op!r}: use {', '.join(CONTACT_OPS)}")
        service = self._messaging()
        actions = {
            "accept": service.accept,
            "decline": service.decline,
            "remove": service.remove,
            "block": service.block,
        }
        change = service.add_contact(user, message) if op == "add" else actions[op](user)
        try:
            return await change
        except MessagingError as exc:
            if exc.reason == "contact-transition":
                raise BadInput(_refused_change(service, op, user)) from None
            raise _messaging_error(exc.reason, str(exc)) from None
        except MessageError as exc:
            raise BadInput(str(exc)) from None

    async def push_presence(self, status: str, mood: str) -> dict[str, Any]:
        """Show ``status`` and ``mood`` to accepted contacts (the directory is separate)."""
        return await _chatting(self._messaging().set_presence(status, mood))

    # ------------------------------------------------------------ chats

    async def send(self, peer: str, text: str) -> dict[str, Any]:
        """Send ``text`` to a user or a group (hex id); the message with its delivery."""
        return await _chatting(self._messaging().send(peer, text))

    async def history(self, peer: str, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` messages with ``peer``, in the order every device shows."""
        return await _chatting(self._messaging().history(peer, limit))

    async def search(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Messages containing every word of ``text``."""
        return await _chatting(self._messaging().search(text, limit))

    async def mark_read(self, peer: str) -> dict[str, Any]:
        """Mark the conversation with ``peer`` read (read receipts go to the senders)."""
        return await _chatting(self._messaging().mark_read(peer))

    # ------------------------------------------------------------ groups

    async def groups(self) -> list[dict[str, Any]]:
        """Every group this device knows, with its members."""
        return await self._messaging().groups()

    async def create_group(self, name: str, members: list[str]) -> dict[str, Any]:
        """A new group of this user and ``members``."""
        return await _chatting(self._messaging().create_group(name, members))

    async def invite(self, group: str, users: list[str]) -> dict[str, Any]:
        """Add ``users`` to ``group``."""
        return await _chatting(self._messaging().invite(group, users))

    async def leave(self, group: str) -> dict[str, Any]:
        """Leave ``group``."""
        return await _chatting(self._messaging().leave(group))

    async def rename(self, group: str, name: str) -> dict[str, Any]:
        """Rename ``group``."""
        return await _chatting(self._messaging().rename(group, name))

    def messaging_status(self) -> dict[str, Any]:
        """The messaging service's counters (outbox, dropped input by reason, ...)."""
        return self._messaging().describe()

    # ------------------------------------------------------------ files

    async def send_file(self, peer: str, path: str) -> dict[str, Any]:
        """Offer the file at ``path`` (absolute) to ``peer``; the transfer document."""
        if not Path(path).is_absolute():
            raise BadInput(f"give the file's absolute path, not {path!r}")
        if not _is_file(path):
            raise BadInput(f"{path} is not a readable file")
        return await _filing(self._files().send(peer, path))

    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer held: live, offered to us, and recently finished."""
        return self._files().transfers()

    def transfer(self, transfer_id: str) -> dict[str, Any]:
        """One transfer's document."""
        return _now_filing(self._files().status, transfer_id)

    async def accept_file(self, transfer_id: str, to_dir: str | None) -> dict[str, Any]:
        """Take an offered file (into ``to_dir``, absolute, or the downloads directory)."""
        if to_dir is not None and not Path(to_dir).is_absolute():
            raise BadInput(f"give the directory's absolute path, not {to_dir!r}")
        return await _filing(self._files().accept(transfer_id, to_dir))

    def decline_file(self, transfer_id: str) -> dict[str, Any]:
        """Refuse an offered file."""
        return _now_filing(self._files().decline, transfer_id)

    def cancel_file(self, transfer_id: str) -> dict[str, Any]:
        """Stop a transfer in either direction."""
        return _now_filing(self._files().cancel, transfer_id)

    async def wait_file(self, transfer_id: str, timeout_s: float) -> dict[str, Any]:
        """Wait until the transfer ends (or ``timeout_s``); its document."""
        return await _filing(self._files().wait(transfer_id, timeout_s))


def _is_file(path: str) -> bool:
    """A regular file is there (a name the system refuses, e.g. too long, is none)."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


async def _chatting(awaitable: Awaitable[T]) -> T:
    """Await a messaging request, turning its failures into daemon errors."""
    try:
        return await awaitable
    except MessagingError as exc:
        raise _messaging_error(exc.reason, str(exc)) from None
    except MessageError as exc:
        raise BadInput(str(exc)) from None


def _refused_change(service: MessagingService, op: str, user: str) -> str:
    """Why ``op`` cannot be done to ``user`` now, in words."""
    state = service.contact_list.state(canonical_username(user)).name.lower()
    return f"cannot {op} {user}: {CONTACT_STATE_WORDS.get(state, state)}"


def _messaging_error(reason: str, text: str) -> Exception:
    if reason in NOT_FOUND_REASONS:
        return NoSuchItem(text.replace(reason, reason.replace("-", " "), 1))
    if reason in BAD_INPUT_REASONS or reason.startswith("bad-"):
        return BadInput(text)
    return Refused(text)


async def _filing(awaitable: Awaitable[T]) -> T:
    """Await a file request, turning its failures into daemon errors."""
    try:
        return await awaitable
    except NoSuchTransfer as exc:
        raise NoSuchItem(str(exc)) from None
    except FileServiceError as exc:
        raise Refused(str(exc)) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise BadInput(f"cannot read {exc.filename}: {exc.strerror}") from None


def _now_filing(function: Callable[[str], dict[str, Any]], transfer_id: str) -> dict[str, Any]:
    try:
        return function(transfer_id)
    except NoSuchTransfer as exc:
        raise NoSuchItem(str(exc)) from None
    except FileServiceError as exc:
        raise Refused(str(exc)) from None
