"""Contacts, presence and chats at run time: :class:`MessagingService`.

The pure parts live beside this module: envelopes
(:mod:`hopline.messaging.envelope`), ordered conversation logs and receipts
(:mod:`hopline.messaging.conversation`), the contact state table and the
synced contact list (:mod:`hopline.messaging.contacts`), groups
(:mod:`hopline.messaging.groups`) and the SQLite history
(:mod:`hopline.messaging.history`). This module is the asyncio shell that
wires them to one logged-in device's session and paths:

* **Sending** to a user looks the user up (a short-lived cache), verifies
  every device certificate against the login server's key (bad ones are
  skipped and counted), and seals one envelope per device; for a chat
  message every *other* device of this user gets a ``SYNC`` copy with the
  same id and clock, so all of a user's devices show what it sent. The
  contact list travels to this user's own devices as ``CONTACT_OP``
  envelopes that carry a contact-list document.
* **Delivery**: to an online device the envelopes go in ``msg.deliver`` on
  a :class:`~hopline.path.peer.PeerPath` (direct or relayed), and the
  service waits briefly for the ``msg.ack``; what is not acknowledged in
  time, and everything for offline devices, goes to the home supernode in
  ``offline.store``. Envelopes the supernode cannot take now wait in a
  bounded outbox that is retried in the background; so does a message
  whose recipient cannot be looked up (the home is gone), and its copies
  for this user's other devices, sealed once the lookup works again.
  Presence is ephemeral: it is never stored offline.
* **Receiving**: ``msg.deliver`` on any attached path and the pages of
  ``offline.fetch`` (at start, at once on a new home supernode, and
  periodically) are opened with the sender's certificate key (looked up
  once, then cached), applied exactly
  once to the conversation log and the history, answered with ``msg.ack``
  or ``offline.ack``, reported through ``on_event``, and chat messages are
  answered with a delivered receipt to the sender.

* **Devices that went offline**: the directory lists only the devices a
  user is online on (and, once the user is offline, the last one), so the
  service remembers, for a while, the devices it has seen of each user and
  seals to them too, through the offline store. A device that did not
  answer a direct attempt is sent to through the offline store for
  :attr:`MessagingConfig.unreachable_s`. A group message that arrives
  before its group (the invitation took another route) waits, bounded,
  until the group does.
* **Saved state**: the contact list, the groups and this device's presence
  are kept in a small JSON file in the profile (written atomically); the
  messages themselves are in the history database.

Conversation ids: a 1:1 conversation is named by a hash of both usernames
(:func:`direct_conversation`), so both users and all their devices compute
the same id; a group is named by its random group id.

What a peer can make us hold is bounded: the outbox
(:attr:`MessagingConfig.max_outbox`), cached sender keys and lookups, the
receipts waiting to be sent, the in-memory conversation windows. Input
that is refused is counted in :attr:`MessagingService.dropped` by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from hopline.client.session import ClientSession
from hopline.identity import CertificateError, CertificateVerifier, Role
from hopline.identity.names import InvalidUsername, canonical_username
from hopline.messaging.contacts import (
    AcceptContact,
    BlockContact,
    ContactEvent,
    ContactList,
    ContactOp,
    ContactState,
    DeclineContact,
    LocalContactError,
    Presence,
    PresenceStatus,
    RemoteContactError,
    RemoveContact,
    RequestContact,
    decode_contact_op,
    decode_presence,
    encode_contact_op,
    encode_presence,
    may_see_presence,
)
from hopline.messaging.conversation import ConversationLog, LogEntry, ReceiptKind
from hopline.messaging.envelope import (
    MAX_BODY,
    MessageError,
    MessageKind,
    MessageRecord,
    Recipient,
    envelope_id,
    new_message_id,
    open_envelope,
    seal_envelope,
)
from hopline.messaging.groups import Group, GroupOp, GroupTable, new_group_id
from hopline.messaging.history import History
from hopline.path.manager import PathManager
from hopline.path.peer import PeerPath
from hopline.runtime.peer import EndpointError
from hopline.wire import Message
from hopline.wire.commands import DeviceRecord
from hopline.wire.directory import LookupState
from hopline.wire.messaging import (
    MAX_ITEMS,
    MAX_REFUSAL_REASON,
    MsgAck,
    MsgDeliver,
    Refusal,
    SealedItem,
    batch_items,
)
from hopline.wire.offline import (
    MAX_FETCH,
    OfflineAck,
    OfflineAckReply,
    OfflineFetch,
    OfflineFetchReply,
    OfflineStoreReply,
    OfflineStoreRequest,
    SealedEnvelope,
)

__all__ = [
    "MessagingConfig",
    "MessagingError",
    "MessagingService",
    "direct_conversation",
]

log = logging.getLogger("hopline.messaging")
EventCallback = Callable[[dict[str, Any]], object]
RECEIPT_BATCH: Final = 256  # delivered receipts sealed and sent together
MAX_KNOWN_DEVICES: Final = 8  # devices remembered per user (the directory's limit)
_DM_DOMAIN: Final = b"hopline direct conversation v1\x00"
_STORED: Final = frozenset({"stored", "duplicate", "delivered"})
_RETRY_OUTCOMES: Final = frozenset({"quota", "sender-share"})
_RECEIPT_KIND: Final = {
    MessageKind.RECEIPT_DELIVERED: ReceiptKind.DELIVERED,
    MessageKind.RECEIPT_READ: ReceiptKind.READ,
}
_STATUS_NAMES: Final = {status.name.lower(): status for status in PresenceStatus}
_LOCAL_OPS: Final[dict[str, Callable[[], ContactEvent]]] = {
    "accept": AcceptContact,
    "decline": DeclineContact,
    "remove": RemoveContact,
    "block": BlockContact,
}


class MessagingError(Exception):
    """A request that cannot be carried out; ``reason`` is a short stable key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class MessagingConfig:
    """Timers and limits of the messaging service."""

    connect_timeout_s: float = 3.0  # a path to one recipient device
    ack_timeout_s: float = 3.0  # a msg.ack after a msg.deliver
    request_timeout_s: float = 5.0  # offline.* requests to the home supernode
    lookup_ttl_s: float = 1.0  # directory answers reused this long
    unreachable_s: float = 15.0  # a device that did not answer is not tried directly this long
    retry_s: float = 2.0  # the outbox is retried this often
    fetch_every_s: float = 30.0  # offline.fetch while logged in
    fetch_page: int = 50
    max_outbox: int = 2000  # envelopes waiting for a supernode that would take them
    max_keys: int = 1024  # cached sender device keys
    max_lookups: int = 256  # cached directory answers (and users whose devices we know)
    known_device_s: float = 72 * 3600.0  # a device that went offline is still sent to this long
    max_pending_receipts: int = 1000  # delivered receipts waiting to be sent
    max_conversations: int = 128  # conversation windows in memory
    window: int = 500  # messages per in-memory window (all of them are in the history)
    max_orphans: int = 256  # group messages that came before their group
    read_scan: int = 200  # messages mark_read looks at
    display_name: str = ""
    state_file: str | None = "messaging-state.json"  # in the profile; None: keep nothing


@dataclass(frozen=True, slots=True)
class _Device:
    """A device of a user whose certificate verified."""

    user: str
    device_id: bytes
    static: bytes
    signing: bytes
    record: DeviceRecord
    online: bool


@dataclass(slots=True)
class _Outgoing:
    """One sealed envelope on its way to one device."""

    device: _Device
    item: SealedItem
    eid: bytes
    keep: bool  # store offline when the device cannot be reached


@dataclass(slots=True)
class _Lookup:
    at: float
    devices: list[_Device]


@dataclass(slots=True)
class _Stamp:
    """What every envelope of one logical message shares."""

    conversation_id: bytes
    kind: MessageKind
    body: bytes
    clock: int = 0
    message_id: bytes = field(default_factory=new_message_id)
    sent_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def direct_conversation(a: str, b: str) -> bytes:
    """The id of the 1:1 conversation of two users (the same on every device)."""
    first, second = sorted((a.lower(), b.lower()))
    data = _DM_DOMAIN + first.encode("utf-8") + b"\x00" + second.encode("utf-8")
    return hashlib.sha256(data).digest()[:16]


def _user(text: str) -> str:
    try:
        return canonical_username(text)
    except InvalidUsername as exc:
        raise MessagingError("bad-user", str(exc)) from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entry_doc(entry: LogEntry, peer: str | None) -> dict[str, Any]:
    return {
        "message_id": entry.message_id.hex(),
        "conversation": entry.conversation_id.hex(),
        "peer": peer,
        "sender": entry.sender_user,
        "sender_device": entry.sender_device.hex(),
        "clock": entry.clock,
        "sent_at_ms": entry.sent_at_ms,
        "text": entry.text,
    }


class MessagingService:
    """Contacts, presence, 1:1 and group chat for one logged-in device."""

    def __init__(
        self,
        session: ClientSession,
        paths: PathManager,
        history: History,
        *,
        config: MessagingConfig | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        body = session.profile.certificate_body()
        if body is None:
            raise MessagingError("not-logged-in", "the profile has no certificate")
        self.session, self.paths, self._history = session, paths, history
        self.config = config or MessagingConfig()
        self.on_event = on_event
        self.me: str = body.subject
        self.device: bytes = body.device_id
        keys = session.profile.keys
        self._signing = keys.signing
        self._recipient = Recipient(self.me, self.device, keys.static)
        self._verifier = CertificateVerifier(session.profile.ls_key)
        self.contact_list = ContactList(self.device)
        self.groups_table = GroupTable(self.me, self.device)
        self.presence = Presence(PresenceStatus.ONLINE)
        self.seen_presence: OrderedDict[str, Presence] = OrderedDict()
        self.dropped: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.outbox: OrderedDict[bytes, _Outgoing] = OrderedDict()
        self._orphans: OrderedDict[bytes, list[MessageRecord]] = OrderedDict()
        self._orphan_count = 0
        self.unsealed: OrderedDict[tuple[str, bytes, MessageKind], _Stamp] = OrderedDict()
        self._keys: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._lookups: OrderedDict[str, _Lookup] = OrderedDict()
        self._unreachable: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._known: OrderedDict[str, OrderedDict[bytes, tuple[float, _Device]]] = OrderedDict()
        self._logs: OrderedDict[bytes, ConversationLog] = OrderedDict()
        self._peers: OrderedDict[bytes, str] = OrderedDict()
        self._acks: dict[bytes, asyncio.Future[str]] = {}
        self._receipts: asyncio.Queue[tuple[str, MessageRecord]] = asyncio.Queue(
            self.config.max_pending_receipts
        )
        self._attached: weakref.WeakSet[PeerPath] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetching = asyncio.Lock()
        self._state_path = (
            session.profile.path / self.config.state_file if self.config.state_file else None
        )
        self._load_state()

    # ------------------------------------------------------------ life

    async def start(self, *, accept_paths: bool = True) -> None:
        """Serve paths, fetch what waited offline, then keep retrying and fetching.

        Call after ``paths.start()``. The first ``offline.fetch`` run is
        finished when this returns. Where several services share the path
        manager, pass ``accept_paths=False`` and have :meth:`attach` called for
        every new path (``PathManager.path_listeners``).
        """
        if accept_paths:
            self._spawn(self._accept_paths())
        for path in list(self.paths.paths):
            self.attach(path)
        await self.fetch_offline()
        self._spawn(self._send_receipts())
        self._spawn(self._background())
        self._spawn(self._announce())

    async def close(self) -> None:
        """Stop the background work (the outbox is not persisted)."""
        for task in list(self._tasks):
            task.cancel()
        for future in self._acks.values():
            future.cancel()
        self._acks.clear()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_paths(self) -> None:
        while True:
            self.attach(await self.paths.accept())

    async def _background(self) -> None:
        """Retry the outbox and fetch offline messages now and then."""
        loop = asyncio.get_running_loop()
        fetched, rehomes = loop.time(), self.session.rehomes
        while True:
            await asyncio.sleep(self.config.retry_s)
            try:
                if self.unsealed:
                    await self._retry_unsealed()
                if self.outbox:
                    await self._retry_outbox()
                moved = self.session.rehomes != rehomes and self.session.connected
                if moved or loop.time() - fetched >= self.config.fetch_every_s:
                    fetched, rehomes = loop.time(), self.session.rehomes
                    await self.fetch_offline()  # at once on a new home: what waited meanwhile
            except Exception:  # a bug in one round must not stop the retries: logged, counted
                log.exception("messaging background round failed")
                self.dropped["background-error"] += 1

    async def _announce(self) -> None:
        """At login: our contact list to our other devices, our presence to contacts."""
        with contextlib.suppress(MessagingError):
            await self._sync_contacts(since=0)
        await self._push_presence(self.contact_list.presence_audience())

    # ------------------------------------------------------------ saved state

    def _load_state(self) -> None:
        """Contacts, groups and our presence as this device saved them."""
        path = self._state_path
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for document in data["contacts"]:
                self.contact_list.merge(bytes.fromhex(document))
            for group in data["groups"]:
                self.groups_table.restore(Group.from_json(group))
            status = _STATUS_NAMES[data["presence"]["status"]]
            self.presence = Presence(status, str(data["presence"]["mood"]))
        except (OSError, ValueError, KeyError, TypeError, MessageError) as exc:
            raise MessagingError("bad-state-file", f"{path}: {exc}") from None
        for entry in self.contact_list.entries():
            self._remember_peer(direct_conversation(self.me, entry.username), entry.username)

    def _save_state(self) -> None:
        """Write contacts, groups and presence (atomically: a new file, then a rename)."""
        path = self._state_path
        if path is None:
            return
        data = {
            "contacts": [doc.hex() for doc in self.contact_list.to_documents()],
            "groups": [g.to_json() for g in self.groups_table.groups()],
            "presence": {
                "status": self.presence.status.name.lower(),
                "mood": self.presence.mood,
            },
        }
        temporary = path.with_name(path.name + ".new")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            self.dropped["state-unsaved"] += 1
            log.warning("could not save %s: %s", path, exc)

    # ------------------------------------------------------------ paths

    def attach(self, path: PeerPath) -> None:
        """Take ``msg.*`` on ``path``; other messages go to the handler it had before."""
        if path in self._attached:
            return
        self._attached.add(path)
        previous = path.handler

        async def handler(message: Message) -> Message | None:
            if isinstance(message, MsgDeliver):
                await self._on_deliver(path, message)
                return None
            if isinstance(message, MsgAck):
                self._on_ack(message)
                return None
            if previous is not None:
                return await previous(message)
            return await path.default_handle(message)

        path.handler = handler
        self._drain_queued(path)

    def _drain_queued(self, path: PeerPath) -> None:
        """Notices that arrived before we attached: ours are handled, others kept."""
        others: list[Message] = []
        while not path.incoming.empty():
            message = path.incoming.get_nowait()
            if isinstance(message, MsgDeliver):
                self._spawn(self._on_deliver(path, message))
            elif isinstance(message, MsgAck):
                self._on_ack(message)
            else:
                others.append(message)
        for message in others:
            path.incoming.put_nowait(message)

    # ------------------------------------------------------------ devices and keys

    async def _devices(self, user: str, *, fresh: bool = False) -> list[_Device]:
        """Every device of ``user`` with a valid certificate (cached briefly)."""
        now = time.monotonic()
        cached = self._lookups.get(user)
        if cached is not None and not fresh and now - cached.at < self.config.lookup_ttl_s:
            return cached.devices
        try:
            reply = await asyncio.wait_for(self.session.lookup(user), self.config.request_timeout_s)
        except (EndpointError, TimeoutError) as exc:
            raise MessagingError("lookup-failed", f"{user}: {exc}") from None
        if reply.state == LookupState.NOT_FOUND or reply.record is None:
            raise MessagingError("no-such-user", user)
        online = reply.state == LookupState.ONLINE
        devices = [d for d in (self._verify(user, r, online) for r in reply.record.devices) if d]
        devices += self._known_offline(user, devices, now)
        self._lookups[user] = _Lookup(now, devices)
        self._lookups.move_to_end(user)
        while len(self._lookups) > self.config.max_lookups:
            self._lookups.popitem(last=False)
        return devices

    def _known_offline(self, user: str, listed: list[_Device], now: float) -> list[_Device]:
        """Devices of ``user`` seen lately that the directory no longer lists (they went
        offline): they still get their envelopes, through the offline store."""
        known = self._known.setdefault(user, OrderedDict())
        self._known.move_to_end(user)
        while len(self._known) > self.config.max_lookups:
            self._known.popitem(last=False)
        for device in listed:
            known[device.device_id] = (now, device)
            known.move_to_end(device.device_id)
        horizon = now - self.config.known_device_s
        for device_id in [k for k, (seen, _) in known.items() if seen < horizon]:
            del known[device_id]
        while len(known) > MAX_KNOWN_DEVICES:
            known.popitem(last=False)
        ids = {d.device_id for d in listed}
        return [replace(d, online=False) for k, (_, d) in known.items() if k not in ids]

    def _verify(self, user: str, record: DeviceRecord, online: bool) -> _Device | None:
        """The device if its certificate is the login server's for this user and key."""
        try:
            cert = self._verifier.verify(
                record.certificate,
                time.time(),
                role=Role.USER,
                subject=user,
                static_key=record.identity_key,
            )
        except CertificateError as exc:
            self.dropped[f"certificate-{exc.reason}"] += 1
            return None
        signing = cert.body.signing_key
        if signing is None or not hmac.compare_digest(cert.body.device_id, record.device_id):
            self.dropped["certificate-no-signing-key"] += 1
            return None
        self._keys[(user, record.device_id)] = signing
        self._keys.move_to_end((user, record.device_id))
        while len(self._keys) > self.config.max_keys:
            self._keys.popitem(last=False)
        return _Device(user, record.device_id, record.identity_key, signing, record, online)

    # ------------------------------------------------------------ sealing and sending

    def _seal(self, device: _Device, stamp: _Stamp, kind: MessageKind, keep: bool) -> _Outgoing:
        record = MessageRecord(
            sender_user=self.me,
            sender_device=self.device,
            recipient_user=device.user,
            recipient_device=device.device_id,
            conversation_id=stamp.conversation_id,
            message_id=stamp.message_id,
            sent_at_ms=stamp.sent_at_ms,
            clock=stamp.clock,
            kind=kind,
            body=stamp.body,
        )
        sealed = seal_envelope(record, self._signing, device.static)
        item = SealedItem(to_user=device.user, to_device=device.device_id, envelope=sealed)
        return _Outgoing(device, item, envelope_id(sealed), keep)

    async def _fan_out(
        self, users: Iterable[str], stamp: _Stamp, *, own: MessageKind | None, keep: bool = True
    ) -> Counter[str]:
        """Seal ``stamp`` for every device of ``users`` (and, with ``own``, for our other
        devices as that kind) and deliver; returns how many went which way."""
        held_before = self.counters["held"]
        outgoing = await self._seal_for(users, stamp, own=own, keep=keep)
        result = await self._deliver(outgoing)
        if self.counters["held"] > held_before:
            result["queued"] += self.counters["held"] - held_before
        return result

    async def _seal_for(
        self, users: Iterable[str], stamp: _Stamp, *, own: MessageKind | None, keep: bool = True
    ) -> list[_Outgoing]:
        """Envelopes for every device of ``users`` (and, with ``own``, copies of that kind
        for our other devices); a user that cannot be looked up now, ourselves included,
        waits (unsealed) in the outbox when ``keep``."""
        outgoing: list[_Outgoing] = []
        unreachable = False  # a lookup failed: the home is gone, ours would fail too
        for user in sorted({u for u in users if u != self.me}):
            try:
                devices = await self._devices(user)
            except MessagingError as exc:
                self.dropped[f"send-{exc.reason}"] += 1
                if exc.reason == "lookup-failed" and keep:
                    self._hold(user, stamp, stamp.kind)
                unreachable |= exc.reason == "lookup-failed"
                continue
            outgoing += [self._seal(d, stamp, stamp.kind, keep) for d in devices]
        if own is not None:
            outgoing += await self._seal_own(stamp, own, keep, look_up=not unreachable)
        return outgoing

    async def _seal_own(
        self, stamp: _Stamp, kind: MessageKind, keep: bool, *, look_up: bool = True
    ) -> list[_Outgoing]:
        """Copies of ``stamp`` as ``kind`` for this user's other devices. When our own
        lookup fails (the home is gone; ``look_up=False``: it just failed for another
        user) and other devices of ours were seen, the copies wait unsealed like a
        recipient's, so those devices still get what this one sent."""
        try:
            if not look_up:
                raise MessagingError("lookup-failed", self.me)
            devices = await self._devices(self.me)
        except MessagingError as exc:
            self.dropped[f"own-{exc.reason}"] += 1
            others = [d for d in self._known.get(self.me, ()) if d != self.device]
            if exc.reason == "lookup-failed" and keep and others:
                self._hold(self.me, stamp, kind)
            return []
        return [self._seal(d, stamp, kind, keep) for d in devices if d.device_id != self.device]

    def _hold(self, user: str, stamp: _Stamp, kind: MessageKind) -> None:
        """Keep a message whose recipient could not be looked up, to seal it later."""
        if self._outbox_size() >= self.config.max_outbox:
            self.dropped["outbox-full"] += 1
            return
        self.unsealed[(user, stamp.message_id, kind)] = stamp
        self.counters["held"] += 1

    def _outbox_size(self) -> int:
        return len(self.outbox) + len(self.unsealed)

    async def _deliver(self, outgoing: list[_Outgoing]) -> Counter[str]:
        """Send envelopes, each device's in order and all devices at once."""
        by_device: dict[tuple[str, bytes], list[_Outgoing]] = {}
        for one in outgoing:
            by_device.setdefault((one.device.user, one.device.device_id), []).append(one)
        results = await asyncio.gather(*(self._deliver_device(g) for g in by_device.values()))
        total: Counter[str] = Counter()
        for result in results:
            total.update(result)
        self.counters.update(total)
        return total

    async def _deliver_device(self, group: list[_Outgoing]) -> Counter[str]:
        """Direct to an online device; what it did not take goes to the supernode."""
        outcome: Counter[str] = Counter()
        rest = group
        device = group[0].device
        key = (device.user, device.device_id)
        if device.online and self._unreachable.get(key, 0.0) <= time.monotonic():
            rest = await self._direct(group, outcome)
            self._note_reach(key, reached=len(rest) < len(group))
        kept = [one for one in rest if one.keep]
        if len(rest) > len(kept):
            outcome["not-sent"] += len(rest) - len(kept)
        if kept:
            outcome.update(await self._store(kept))
        return outcome

    def _note_reach(self, key: tuple[str, bytes], *, reached: bool) -> None:
        """A device that did not answer is sent to through the offline store for a while."""
        self._unreachable.pop(key, None)
        if not reached:
            self._unreachable[key] = time.monotonic() + self.config.unreachable_s
            while len(self._unreachable) > self.config.max_lookups:
                self._unreachable.popitem(last=False)

    async def _direct(self, group: list[_Outgoing], outcome: Counter[str]) -> list[_Outgoing]:
        """Deliver on a path and wait for the ack; returns the envelopes not taken."""
        device = group[0].device
        try:
            path = await self.paths.connect(
                device.user, self.config.connect_timeout_s, device.record
            )
        except EndpointError as exc:
            log.info("no path to a device of %s: %s", device.user, exc)
            return group
        self.attach(path)
        loop = asyncio.get_running_loop()
        futures = {one.eid: self._acks.setdefault(one.eid, loop.create_future()) for one in group}
        try:
            for batch in batch_items([one.item for one in group]):
                path.notify(MsgDeliver(items=tuple(batch)))
            await asyncio.wait(futures.values(), timeout=self.config.ack_timeout_s)
        except EndpointError as exc:
            log.info("deliver to %s failed: %s", device.user, exc)
        finally:
            for eid in futures:
                self._acks.pop(eid, None)
        return self._sort_acks(group, futures, outcome)

    def _sort_acks(
        self, group: list[_Outgoing], futures: dict[bytes, asyncio.Future[str]], out: Counter[str]
    ) -> list[_Outgoing]:
        rest = []
        for one in group:
            future = futures[one.eid]
            if not future.done() or future.cancelled():
                future.cancel()
                rest.append(one)
            elif future.result() == "accepted":
                out["direct"] += 1
            else:
                out["refused"] += 1
                self.dropped[f"refused-by-peer-{future.result()}"] += 1
        return rest

    def _on_ack(self, ack: MsgAck) -> None:
        for eid in ack.accepted:
            self._resolve(eid, "accepted")
        for refusal in ack.refused:
            self._resolve(refusal.envelope_id, refusal.reason[:MAX_REFUSAL_REASON] or "refused")

    def _resolve(self, eid: bytes, result: str) -> None:
        future = self._acks.get(eid)
        if future is None or future.done():
            self.dropped["unexpected-ack"] += 1
            return
        future.set_result(result)

    async def _store(self, group: list[_Outgoing]) -> Counter[str]:
        """Hand envelopes to the home supernode in requests that each fit one message."""
        outcome: Counter[str] = Counter()
        runs = batch_items([one.item for one in group], max_items=MAX_FETCH)
        start = 0
        for run in runs:
            outcome.update(await self._store_run(group[start : start + len(run)]))
            start += len(run)
        return outcome

    async def _store_run(self, group: list[_Outgoing]) -> Counter[str]:
        """One ``offline.store``; what the supernode cannot take now waits in the outbox."""
        outcome: Counter[str] = Counter()
        wire = [
            SealedEnvelope(
                message_id=one.eid,
                recipient=one.device.user,
                devices=(one.device.device_id,),
                ciphertext=one.item.envelope,
                acked=(),
            )
            for one in group
        ]
        try:
            reply = await self.session.request(
                OfflineStoreRequest(envelopes=tuple(wire)), self.config.request_timeout_s
            )
        except (EndpointError, TimeoutError) as exc:
            log.info("offline.store failed: %s", exc)
            self.session.check_home_soon()  # a dead home shows now, not at the next ping
            reply = None
        if not isinstance(reply, OfflineStoreReply):
            self._queue(group, outcome)
            return outcome
        results = {r.message_id: r.outcome for r in reply.results}
        for one in group:
            result = results.get(one.eid, "missing")
            if result in _STORED:
                outcome["stored"] += 1
                self.outbox.pop(one.eid, None)
            elif result in _RETRY_OUTCOMES or result == "missing":
                self._queue([one], outcome)
            else:
                outcome["refused"] += 1
                self.dropped[f"store-refused-{result}"] += 1
                self.outbox.pop(one.eid, None)
        return outcome

    def _queue(self, group: list[_Outgoing], outcome: Counter[str]) -> None:
        for one in group:
            if one.eid in self.outbox:
                outcome["queued"] += 1
            elif self._outbox_size() >= self.config.max_outbox:
                outcome["lost"] += 1
                self.dropped["outbox-full"] += 1
            else:
                self.outbox[one.eid] = one
                outcome["queued"] += 1

    async def _retry_unsealed(self) -> None:
        """Look the recipients of held messages up again and send what can be sealed."""
        held = list(self.unsealed.items())
        self.unsealed.clear()
        outgoing: list[_Outgoing] = []
        for (user, _, kind), stamp in held:
            if user == self.me:  # copies for our other devices
                outgoing += await self._seal_own(stamp, kind, keep=True)
                continue
            stamp.kind = kind
            outgoing += await self._seal_for([user], stamp, own=None)
        if outgoing:
            await self._deliver(outgoing)

    async def _retry_outbox(self) -> None:
        """Try every waiting envelope again (with the device's current state)."""
        waiting = list(self.outbox.values())
        refreshed: list[_Outgoing] = []
        for one in waiting:
            device = one.device
            with contextlib.suppress(MessagingError):
                current = await self._devices(device.user)
                match = [d for d in current if d.device_id == device.device_id]
                device = match[0] if match else replace(device, online=False)
            refreshed.append(_Outgoing(device, one.item, one.eid, one.keep))
        for one in refreshed:
            self.outbox.pop(one.eid, None)
        result = await self._deliver(refreshed)
        self.counters["retried"] += len(refreshed)
        log.debug("outbox retry: %s", dict(result))

    # ------------------------------------------------------------ receiving

    async def _on_deliver(self, path: PeerPath, message: MsgDeliver) -> None:
        accepted: list[bytes] = []
        refused: list[Refusal] = []
        if len(message.items) > MAX_ITEMS:
            self.dropped["too-many-items"] += len(message.items) - MAX_ITEMS
        for item in message.items[:MAX_ITEMS]:
            eid = envelope_id(item.envelope)
            reason = await self._take_item(item.to_user, item.to_device, item.envelope)
            if reason is None:
                accepted.append(eid)
            else:
                refused.append(Refusal(envelope_id=eid, reason=reason))
        try:
            path.notify(MsgAck(accepted=tuple(accepted), refused=tuple(refused)))
        except EndpointError:
            self.dropped["ack-unsent"] += 1

    async def _take_item(self, to_user: str, to_device: bytes, sealed: bytes) -> str | None:
        """Open and apply one envelope; the refusal reason, or ``None`` when taken."""
        if to_user != self.me or not hmac.compare_digest(to_device, self.device):
            self.dropped["wrong-recipient"] += 1
            return "wrong-recipient"
        try:
            record = await self._open(sealed)
            await self._dispatch(record)
        except MessageError as exc:
            self.dropped[exc.reason] += 1
            return exc.reason
        self.counters["received"] += 1
        return None

    async def _open(self, sealed: bytes) -> MessageRecord:
        missing: list[tuple[str, bytes]] = []

        def key(user: str, device: bytes) -> bytes | None:
            found = self._keys.get((user, device))
            if found is None:
                missing.append((user, device))
            return found

        try:
            return open_envelope(sealed, self._recipient, key)
        except MessageError as exc:
            if exc.reason != "unknown-sender" or not missing:
                raise
        try:
            await self._devices(missing[0][0], fresh=True)
        except MessagingError as exc:
            raise MessageError("unknown-sender", exc.reason) from None
        return open_envelope(sealed, self._recipient, key)

    async def _dispatch(self, record: MessageRecord) -> None:
        kind = MessageKind(record.kind)
        mine = record.sender_user == self.me
        if mine and hmac.compare_digest(record.sender_device, self.device):
            raise MessageError("own-echo", "an envelope this device sealed")
        if kind is MessageKind.TEXT:
            self._on_text(record, mine)
        elif kind is MessageKind.SYNC:
            self._on_sync(record, mine)
        elif kind in _RECEIPT_KIND:
            self._on_receipt(record, mine)
        elif kind is MessageKind.CONTACT_OP:
            await self._on_contact(record, mine)
        elif kind is MessageKind.PRESENCE:
            self._on_presence(record, mine)
        else:
            self._on_group(record)

    def _check_conversation(self, record: MessageRecord, other: str) -> str | None:
        """The peer name of a 1:1 conversation, ``None`` for a group; refuse others."""
        cid = record.conversation_id
        if hmac.compare_digest(cid, direct_conversation(self.me, other)):
            return other
        group = self.groups_table.get(cid)
        if group is not None and {self.me, record.sender_user} <= group.members:
            return None
        if record.kind == MessageKind.SYNC and cid in self._peers:
            return self._peers[cid]
        if record.kind == MessageKind.SYNC and group is None:
            return None  # a 1:1 conversation with a user this device has not met yet
        raise MessageError("unknown-conversation", "not a conversation of this user")

    def _on_text(self, record: MessageRecord, mine: bool) -> None:
        if mine:
            raise MessageError("bad-kind", "our own messages come as SYNC")
        if self.contact_list.state(record.sender_user) is ContactState.BLOCKED:
            raise MessageError("blocked", record.sender_user)
        cid = record.conversation_id
        if self.groups_table.get(cid) is None and cid != direct_conversation(
            self.me, record.sender_user
        ):
            self._keep_orphan(record)
            return
        peer = self._check_conversation(record, record.sender_user)
        if self._add_entry(record, peer):
            try:
                self._receipts.put_nowait((record.sender_user, record))
            except asyncio.QueueFull:
                self.dropped["receipts-full"] += 1

    def _keep_orphan(self, record: MessageRecord) -> None:
        """A message of a group we have not heard of yet (its invitation may come later
        by another route): kept, bounded, until the group arrives."""
        self._orphans.setdefault(record.conversation_id, []).append(record)
        self._orphan_count += 1
        self.counters["orphans"] += 1
        while self._orphan_count > self.config.max_orphans:
            _, dropped = self._orphans.popitem(last=False)
            self._orphan_count -= len(dropped)
            self.dropped["orphan-overflow"] += len(dropped)

    def _adopt_orphans(self, cid: bytes) -> None:
        """The group arrived: apply what waited for it (refusing non-members)."""
        waiting = self._orphans.pop(cid, [])
        self._orphan_count -= len(waiting)
        for record in waiting:
            try:
                self._on_text(record, mine=False)
            except MessageError as exc:
                self.dropped[exc.reason] += 1

    def _on_sync(self, record: MessageRecord, mine: bool) -> None:
        if not mine:
            raise MessageError("bad-kind", "SYNC comes only from our own devices")
        self._add_entry(record, self._check_conversation(record, self.me))

    def _add_entry(self, record: MessageRecord, peer: str | None) -> bool:
        """Apply a chat message exactly once; report it when it is new."""
        entry = LogEntry.from_record(record)
        self._log(entry.conversation_id).add(entry)
        if not self._history.add(entry, _now_ms()):
            self.dropped["duplicate"] += 1
            return False
        if peer is not None:
            self._remember_peer(entry.conversation_id, peer)
        self._emit("message", **_entry_doc(entry, self._peer_name(entry.conversation_id)))
        return True

    def _on_receipt(self, record: MessageRecord, mine: bool) -> None:
        if mine:
            raise MessageError("bad-kind", "receipts come from recipients")
        kind = _RECEIPT_KIND[MessageKind(record.kind)]
        self._log(record.conversation_id).apply(record)
        self._history.add_receipt(
            record.body, record.sender_user, record.sender_device, kind, record.sent_at_ms
        )
        self._emit(
            "receipt",
            message_id=record.body.hex(),
            conversation=record.conversation_id.hex(),
            user=record.sender_user,
            device=record.sender_device.hex(),
            receipt=kind.value,
        )

    async def _on_contact(self, record: MessageRecord, mine: bool) -> None:
        if mine:
            changed = self.contact_list.merge(record.body)
            for user in changed:
                self._remember_peer(direct_conversation(self.me, user), user)
                self._emit("contact", **self._contact_doc(user))
            if changed:
                self._save_state()
            return
        if record.conversation_id != direct_conversation(self.me, record.sender_user):
            raise MessageError("unknown-conversation", "contact operations are 1:1")
        event, name = decode_contact_op(record.body)
        try:
            change = self.contact_list.handle(record.sender_user, event, name)
        except RemoteContactError as exc:
            raise MessageError("contact-transition", str(exc)) from None
        await self._after_contact_change(record.sender_user, change.previous, change.send)

    def _on_presence(self, record: MessageRecord, mine: bool) -> None:
        if mine or not may_see_presence(self.contact_list.state(record.sender_user)):
            raise MessageError("presence-not-allowed", "only accepted contacts send presence")
        presence = decode_presence(record.body)
        self.seen_presence[record.sender_user] = presence
        self.seen_presence.move_to_end(record.sender_user)
        while len(self.seen_presence) > self.config.max_keys:
            self.seen_presence.popitem(last=False)
        self._emit(
            "presence",
            user=record.sender_user,
            status=presence.status.name.lower(),
            mood=presence.mood,
        )

    def _on_group(self, record: MessageRecord) -> None:
        cid = record.conversation_id
        group = self.groups_table.apply(cid, record.sender_user, record.sender_device, record.body)
        if group is not None:
            self._save_state()
            self._emit("group", **group.describe(self.me))
            self._adopt_orphans(cid)

    # ------------------------------------------------------------ conversation windows

    def _log(self, cid: bytes) -> ConversationLog:
        found = self._logs.get(cid)
        if found is not None:
            self._logs.move_to_end(cid)
            return found
        window = ConversationLog(cid, max_entries=self.config.window)
        latest = self._history.latest(cid, 1)
        window.clock = latest[0].clock if latest else 0
        self._logs[cid] = window
        while len(self._logs) > self.config.max_conversations:
            self._logs.popitem(last=False)
        return window

    def _remember_peer(self, cid: bytes, user: str) -> None:
        self._peers[cid] = user
        self._peers.move_to_end(cid)
        while len(self._peers) > self.config.max_keys:
            self._peers.popitem(last=False)

    def _peer_name(self, cid: bytes) -> str | None:
        group = self.groups_table.get(cid)
        if group is not None:
            return group.group_id.hex()
        return self._peers.get(cid)

    # ------------------------------------------------------------ offline store

    async def fetch_offline(self) -> int:
        """Fetch, apply and acknowledge every envelope waiting on the supernodes.

        Returns how many envelopes were taken. A supernode without the
        offline service answers with an error: counted, nothing fetched.
        """
        taken = 0
        async with self._fetching:
            cursor, more = 0, True
            while more:
                page = await self._fetch_page(cursor)
                if page is None:
                    break
                ids = [env.message_id for env in page.envelopes]
                for env in page.envelopes:
                    reason = await self._take_item(self.me, self.device, env.ciphertext)
                    taken += reason is None
                if ids:
                    await self._ack_offline(ids)
                cursor, more = page.next_cursor, bool(page.more) and bool(ids)
        return taken

    async def _fetch_page(self, cursor: int) -> OfflineFetchReply | None:
        limit = min(self.config.fetch_page, MAX_FETCH)
        try:
            reply = await self.session.request(
                OfflineFetch(cursor=cursor, limit=limit), self.config.request_timeout_s
            )
        except (EndpointError, TimeoutError) as exc:
            self.dropped["offline-fetch-failed"] += 1
            log.info("offline.fetch failed: %s", exc)
            return None
        return reply if isinstance(reply, OfflineFetchReply) else None

    async def _ack_offline(self, ids: list[bytes]) -> None:
        try:
            reply = await self.session.request(
                OfflineAck(message_ids=tuple(ids)), self.config.request_timeout_s
            )
        except (EndpointError, TimeoutError) as exc:
            self.dropped["offline-ack-failed"] += 1
            log.info("offline.ack failed: %s", exc)
            return
        if isinstance(reply, OfflineAckReply):
            self.counters["offline-acked"] += reply.acked

    # ------------------------------------------------------------ receipts

    async def _send_receipts(self) -> None:
        """Delivered receipts from the bounded queue, sealed and delivered in batches."""
        while True:
            batch = [await self._receipts.get()]
            while not self._receipts.empty() and len(batch) < RECEIPT_BATCH:
                batch.append(self._receipts.get_nowait())
            outgoing: list[_Outgoing] = []
            for sender, record in batch:
                stamp = _Stamp(
                    record.conversation_id,
                    MessageKind.RECEIPT_DELIVERED,
                    record.message_id,
                    clock=self._log(record.conversation_id).clock,
                )
                outgoing += await self._seal_for([sender], stamp, own=None)
            try:
                await self._deliver(outgoing)
            except Exception:  # receipts keep flowing after a failed batch: logged, counted
                log.exception("sending delivered receipts failed")
                self.dropped["receipt-error"] += len(outgoing)

    async def mark_read(self, peer: str) -> dict[str, Any]:
        """Send read receipts for the messages of ``peer`` (a user or a group) not yet read."""
        cid = self._conversation(peer)
        count = 0
        outgoing: list[_Outgoing] = []
        for entry in self._history.latest(cid, self.config.read_scan):
            if entry.sender_user == self.me or self._read_here(entry.message_id):
                continue
            self._history.add_receipt(
                entry.message_id, self.me, self.device, ReceiptKind.READ, _now_ms()
            )
            stamp = _Stamp(
                cid, MessageKind.RECEIPT_READ, entry.message_id, clock=self._log(cid).clock
            )
            outgoing += await self._seal_for([entry.sender_user], stamp, own=None)
            count += 1
        delivery = await self._deliver(outgoing)
        return {"peer": peer, "conversation": cid.hex(), "read": count, "delivery": dict(delivery)}

    def _read_here(self, message_id: bytes) -> bool:
        for row in self._history.receipts(message_id):
            if row.user == self.me and row.device == self.device and row.read_at_ms is not None:
                return True
        return False

    # ------------------------------------------------------------ chat API

    def _conversation(self, peer: str) -> bytes:
        """The conversation id of a group (hex id) or a user."""
        with contextlib.suppress(ValueError):
            gid = bytes.fromhex(peer)
            if self.groups_table.get(gid) is not None:
                return gid
        user = _user(peer)
        cid = direct_conversation(self.me, user)
        self._remember_peer(cid, user)
        return cid

    async def send(self, peer: str, text: str) -> dict[str, Any]:
        """Send ``text`` to a user or a group (hex group id); returns the message and how
        many envelopes went directly, were stored offline or wait in the outbox."""
        body = text.encode("utf-8")
        if not body or len(body) > MAX_BODY:
            self.dropped["bad-text"] += 1
            raise MessagingError("bad-text", f"a message is 1-{MAX_BODY} bytes of UTF-8")
        if self._outbox_size() >= self.config.max_outbox:
            raise MessagingError("outbox-full", "too many messages wait for a supernode")
        cid = self._conversation(peer)
        users = self._audience(cid, peer)
        if self.groups_table.get(cid) is None:
            await self._check_user(users[0])
        window = self._log(cid)
        stamp = _Stamp(cid, MessageKind.TEXT, body, clock=window.next_clock())
        entry = LogEntry(
            cid, stamp.message_id, self.me, self.device, stamp.clock, stamp.sent_at_ms, text
        )
        window.add(entry)
        self._history.add(entry, _now_ms())
        delivery = await self._fan_out(users, stamp, own=MessageKind.SYNC)
        return {**_entry_doc(entry, self._peer_name(cid)), "delivery": dict(delivery)}

    async def _check_user(self, user: str) -> None:
        """Refuse a user the directory does not know (a failed lookup is retried later)."""
        try:
            await self._devices(user)
        except MessagingError as exc:
            if exc.reason != "lookup-failed":
                raise

    def _audience(self, cid: bytes, peer: str) -> list[str]:
        group = self.groups_table.get(cid)
        if group is not None:
            if self.me not in group.members:
                raise MessagingError("not-a-member", f"not in group {peer}")
            return sorted(group.members - {self.me})
        user = _user(peer)
        if user == self.me:
            raise MessagingError("bad-user", "a conversation needs another user")
        if self.contact_list.state(user) is ContactState.BLOCKED:
            raise MessagingError("blocked", f"{user} is blocked")
        return [user]

    async def history(self, peer: str, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` messages with ``peer`` (a user or a hex group id), in the
        order every device shows, with the receipts other users sent."""
        cid = self._conversation(peer)
        name = self._peer_name(cid)
        return [self._with_receipts(entry, name) for entry in self._history.latest(cid, limit)]

    def _with_receipts(self, entry: LogEntry, name: str | None) -> dict[str, Any]:
        doc = _entry_doc(entry, name)
        doc["receipts"] = [
            {
                "user": row.user,
                "device": row.device.hex(),
                "delivered_at_ms": row.delivered_at_ms,
                "read_at_ms": row.read_at_ms,
            }
            for row in self._history.receipts(entry.message_id)
            if row.user != self.me
        ]
        return doc

    async def search(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Messages containing every word of ``text``, across all conversations."""
        return [
            _entry_doc(e, self._peer_name(e.conversation_id))
            for e in self._history.search(text, limit=limit)
        ]

    # ------------------------------------------------------------ contacts API

    async def contacts(self) -> list[dict[str, Any]]:
        """Every contact with its state and, for accepted ones, the last presence seen."""
        return [self._contact_doc(e.username) for e in self.contact_list.entries()]

    def _contact_doc(self, user: str) -> dict[str, Any]:
        entry = self.contact_list.get(user)
        state = self.contact_list.state(user)
        presence = self.seen_presence.get(user) if may_see_presence(state) else None
        return {
            "user": user,
            "state": state.name.lower(),
            "display_name": entry.display_name if entry else "",
            "request_text": entry.request_text if entry else "",
            "presence": presence.status.name.lower() if presence else None,
            "mood": presence.mood if presence else None,
        }

    async def add_contact(self, user: str, message: str = "") -> dict[str, Any]:
        """Ask ``user`` for authorisation (accepts at once if they asked us)."""
        return await self._local_contact(_user(user), RequestContact(message), message)

    async def accept(self, user: str) -> dict[str, Any]:
        """Accept ``user``'s request."""
        return await self._local_contact(_user(user), _LOCAL_OPS["accept"]())

    async def decline(self, user: str) -> dict[str, Any]:
        """Decline ``user``'s request."""
        return await self._local_contact(_user(user), _LOCAL_OPS["decline"]())

    async def remove(self, user: str) -> dict[str, Any]:
        """Remove ``user`` from the contacts (or withdraw our request)."""
        return await self._local_contact(_user(user), _LOCAL_OPS["remove"]())

    async def block(self, user: str) -> dict[str, Any]:
        """Block ``user``: nothing they send gets through, and they are not told."""
        return await self._local_contact(_user(user), _LOCAL_OPS["block"]())

    async def _local_contact(
        self, user: str, event: ContactEvent, text: str = ""
    ) -> dict[str, Any]:
        if user == self.me:
            raise MessagingError("bad-user", "not a contact of oneself")
        try:
            change = self.contact_list.handle(user, event)
        except LocalContactError as exc:
            raise MessagingError("contact-transition", str(exc)) from None
        except MessageError as exc:
            raise MessagingError(exc.reason, str(exc)) from None
        self._remember_peer(direct_conversation(self.me, user), user)
        await self._after_contact_change(user, change.previous, change.send, text)
        return self._contact_doc(user)

    async def _after_contact_change(
        self, user: str, previous: ContactState, send: ContactOp | None, text: str = ""
    ) -> None:
        """Tell the other user, our other devices, and start presence if now accepted."""
        cid = direct_conversation(self.me, user)
        self._remember_peer(cid, user)
        if send is not None:
            body = encode_contact_op(send, text, self.config.display_name)
            await self._fan_out([user], _Stamp(cid, MessageKind.CONTACT_OP, body), own=None)
        state = self.contact_list.state(user)
        if state is not previous:
            self._save_state()
            self._emit("contact", **self._contact_doc(user))
            await self._sync_contacts(since=0)
        if state is ContactState.ACCEPTED and previous is not ContactState.ACCEPTED:
            await self._push_presence([user])
        if state is not ContactState.ACCEPTED:
            self.seen_presence.pop(user, None)

    async def _sync_contacts(self, since: int) -> None:
        """Our contact list (entries after ``since``) to our other devices."""
        cid = direct_conversation(self.me, self.me)
        for document in self.contact_list.to_documents(since=since):
            stamp = _Stamp(cid, MessageKind.CONTACT_OP, document)
            mine = await self._own_devices()
            outgoing = [self._seal(d, stamp, MessageKind.CONTACT_OP, True) for d in mine]
            await self._deliver(outgoing)

    async def _own_devices(self) -> list[_Device]:
        try:
            devices = await self._devices(self.me)
        except MessagingError:
            return []
        return [d for d in devices if d.device_id != self.device]

    # ------------------------------------------------------------ presence API

    async def set_presence(self, status: str, mood: str = "") -> dict[str, Any]:
        """Show ``status`` (online, away, dnd, invisible, offline) and a mood to accepted
        contacts only; invisible is shown to them as offline."""
        found = _STATUS_NAMES.get(status.lower())
        if found is None:
            raise MessagingError("bad-status", f"one of {', '.join(_STATUS_NAMES)}")
        presence = Presence(found, mood)
        try:
            encode_presence(presence)
        except MessageError as exc:
            raise MessagingError(exc.reason, str(exc)) from None
        self.presence = presence
        self._save_state()
        sent = await self._push_presence(self.contact_list.presence_audience())
        return {"status": found.name.lower(), "mood": mood, "sent": dict(sent)}

    async def _push_presence(self, users: list[str]) -> Counter[str]:
        body = encode_presence(self.presence)
        total: Counter[str] = Counter()
        for user in users:
            stamp = _Stamp(direct_conversation(self.me, user), MessageKind.PRESENCE, body)
            total.update(await self._fan_out([user], stamp, own=None, keep=False))
        return total

    # ------------------------------------------------------------ groups API

    async def create_group(self, name: str, members: list[str]) -> dict[str, Any]:
        """A new group of this user and ``members``; every member is told."""
        users = tuple(sorted({_user(m) for m in members} - {self.me}))
        return await self._group_op(GroupOp.CREATE, new_group_id(), name=name, users=users)

    async def invite(self, group: str, users: list[str]) -> dict[str, Any]:
        """Add ``users`` to a group this user is in."""
        added = tuple(sorted({_user(u) for u in users}))
        return await self._group_op(GroupOp.INVITE, self._group_id(group), users=added)

    async def leave(self, group: str) -> dict[str, Any]:
        """Leave a group (the others are told; later messages are refused here)."""
        return await self._group_op(GroupOp.LEAVE, self._group_id(group))

    async def rename(self, group: str, name: str) -> dict[str, Any]:
        """Rename a group this user is in."""
        return await self._group_op(GroupOp.RENAME, self._group_id(group), name=name)

    async def groups(self) -> list[dict[str, Any]]:
        """Every group this device knows, with its members."""
        return [g.describe(self.me) for g in self.groups_table.groups()]

    def _group_id(self, group: str) -> bytes:
        try:
            gid = bytes.fromhex(group)
        except ValueError:
            raise MessagingError("no-such-group", group) from None
        if self.groups_table.get(gid) is None:
            raise MessagingError("no-such-group", group)
        return gid

    async def _group_op(
        self, op: GroupOp, gid: bytes, *, name: str | None = None, users: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        try:
            group, audience, body = self.groups_table.local(op, gid, name=name, users=users)
        except MessageError as exc:
            raise MessagingError(exc.reason, str(exc)) from None
        self._save_state()
        stamp = _Stamp(gid, MessageKind.GROUP_OP, body)
        delivery = await self._fan_out(audience, stamp, own=MessageKind.GROUP_OP)
        self._emit("group", **group.describe(self.me))
        return {**group.describe(self.me), "delivery": dict(delivery)}

    # ------------------------------------------------------------ reports

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event({"type": kind, **fields})
        except Exception:  # a faulty listener must not break message handling
            log.exception("messaging event listener failed")
            self.dropped["listener-failed"] += 1

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: who, presence, queues, counters."""
        return {
            "user": self.me,
            "device": self.device.hex(),
            "presence": self.presence.status.name.lower(),
            "mood": self.presence.mood,
            "contacts": len(self.contact_list.entries()),
            "groups": len(self.groups_table.groups()),
            "outbox": self._outbox_size(),
            "pending_receipts": self._receipts.qsize(),
            "cached_keys": len(self._keys),
            "conversations": len(self._logs),
            "counters": dict(self.counters),
            "dropped": dict(self.dropped),
        }
