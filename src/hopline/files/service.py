"""File transfer at run time: :class:`FileService`, the asyncio shell around the cores.

The protocol lives elsewhere: the sender and receiver state machines and the
per-peer :class:`~hopline.files.transfer.TransferTable` in
:mod:`hopline.files.transfer`, the receiver's resumable partial file in
:mod:`hopline.files.storage`, the messages in :mod:`hopline.wire.files`. This
module wires them to peer paths, files and the clock:

* **Paths.** ``file.*`` notices travel on the reliable channel of a
  :class:`~hopline.path.peer.PeerPath` (direct or relayed, end-to-end
  encrypted by the path). :meth:`FileService.attach` puts a handler on a path
  that takes the ``file.*`` messages and passes every other message on to the
  handler that was there before (or to ``path.default_handle``), so other
  services share the path. Each path has a :class:`TransferTable` of its own,
  so what one peer sends is bounded and counted apart.
* **Sending.** :meth:`FileService.send` hashes the file and offers it to
  every device the user is online on (at most :attr:`FileConfig.max_devices`),
  under one transfer id: on the first device a path opens to at once, on the
  others as their paths open. The first device to accept takes the file; the
  others' offers are cancelled ("accepted on another device"), and a decline
  or a lost path only ends the transfer once every device's offer has ended.
  Once accepted, chunks are read from
  the file as the core's flow-control window allows
  (:meth:`~hopline.files.transfer.FileSender.next_range`); every ``file.ack``
  opens the window again.
* **Receiving.** An offer waits for :meth:`FileService.accept` or
  :meth:`FileService.decline`. Checked chunks go to a
  :class:`~hopline.files.storage.PartialFile`; when the whole-file SHA-256
  matches, the file is completed under a free name (in a worker thread) and
  ``file.done`` tells the sender.
* **Resume.** A sender watches the connection under its path: when it closes
  or is replaced (the path manager re-established the path, or upgraded a
  relayed one to direct), the running transfer ends as ``path-lost`` and,
  once the path is live again (or a new one is connected), the same file is
  offered again under a new wire id. The receiver recognises the (peer,
  SHA-256, size) of a transfer its user accepted and accepts at once with
  ``resume_from`` = the verified length of the partial file, so only the
  rest travels. A transfer is never continued on another connection under
  the same wire id, so chunks in flight on the old connection can never be
  taken out of order.
* **Timers** of the cores (an unanswered offer, a stalled transfer) are served
  by one ticker task.

Bounded: live transfers per peer (the table's limit) and in all
(:attr:`FileConfig.max_transfers`), bytes in flight per transfer (the window),
finished transfers remembered (:attr:`FileConfig.max_ended`), receivers kept
for a resume (:attr:`FileConfig.resume_keep_s`). Everything refused -- bad
offers, bad chunks, messages for unknown transfers -- is counted in
:attr:`FileService.refused` by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from hopline.files.storage import CHECKPOINT_EVERY, PartialFile, StorageError, hash_file
from hopline.files.transfer import (
    DEFAULT_WINDOW,
    TRANSFER_TIMEOUTS,
    Accepted,
    Completed,
    Ended,
    EndReason,
    FileReceiver,
    FileSender,
    LocalTransferError,
    Offered,
    Refusal,
    Send,
    TransferEvent,
    TransferTable,
    TransferTimeouts,
    Verified,
    WriteChunk,
    sanitise_name,
)
from hopline.path.manager import PathError, PathManager
from hopline.path.peer import PathClosedError, PeerPath, RequestHandler
from hopline.runtime.peer import EndpointError, PeerConnection
from hopline.transport.errors import SendQueueFull
from hopline.wire import Message
from hopline.wire.files import (
    FILE_MESSAGES,
    MAX_CHUNK_SIZE,
    TRANSFER_ID_SIZE,
    FileMessage,
)

__all__ = ["FileConfig", "FileService", "FileServiceError", "NoSuchTransfer", "Transfer"]

log = logging.getLogger("hopline.files")
Direction = Literal["outgoing", "incoming"]
LIVE_STATES = ("waiting", "offered", "transferring", "verifying", "interrupted")
_ENDED_STATES = {
    EndReason.DECLINED: "declined",
    EndReason.CANCELLED: "cancelled",
    EndReason.PEER_CANCELLED: "cancelled",
    EndReason.TIMEOUT: "failed",
    EndReason.REFUSED: "failed",
    EndReason.FILE_HASH_MISMATCH: "failed",
    EndReason.PATH_LOST: "interrupted",
}
ANSWERED_ELSEWHERE = "accepted on another device"
"""Why the offers to a user's other devices are cancelled once one device accepts."""
_DISCARD_PARTIAL = (EndReason.CANCELLED, EndReason.PEER_CANCELLED, EndReason.FILE_HASH_MISMATCH)


class FileServiceError(Exception):
    """A file request that cannot be carried out (its message says why)."""


class NoSuchTransfer(FileServiceError):
    """No transfer with that id."""


@dataclass(frozen=True)
class FileConfig:
    """Limits and timers of the file service."""

    chunk_size: int = MAX_CHUNK_SIZE
    """The largest chunk: half the chunks, half the acks and hashes to frame. Relayed,
    100 MB took 6.2 s in 63 KiB chunks and 9.4 s in 32 KiB ones (benchmarks/messaging.py)."""
    window: int = DEFAULT_WINDOW  # bytes in flight beyond the receiver's last ack
    timeouts: TransferTimeouts = TRANSFER_TIMEOUTS
    max_transfers: int = 64  # live transfers in all (both directions, every peer)
    max_per_peer: int = 16  # live transfers on one path (its TransferTable)
    connect_timeout_s: float = 15.0
    resume_wait_s: float = 60.0  # a sender waits this long for a broken path to come back
    resume_keep_s: float = 600.0  # a receiver waits this long for the sender to resume
    retry_s: float = 0.5
    tick_s: float = 0.25  # how often the cores' timers are looked at
    watch_s: float = 0.05  # how often a sender looks at the connection under its path
    max_ended: int = 64
    ended_kept_s: float = 600.0
    progress_every_s: float = 1.0  # at most one progress event per transfer this often
    checkpoint_every: int = CHECKPOINT_EVERY
    max_resumes: int = 50  # parts of one transfer before it fails (a peer re-offering forever)
    max_devices: int = 8  # devices of the recipient one file is offered to at once


@dataclass(eq=False)
class Transfer:
    """One file going to or coming from a peer, across every resume of it."""

    transfer_id: str  # public id: the hex of the first wire id
    direction: Direction
    peer: str
    name: str
    size: int
    sha256: bytes
    path: PeerPath
    wire_id: bytes
    state: str
    created_at: float = field(default_factory=time.time)
    sender: FileSender | None = None
    receiver: FileReceiver | None = None
    source: Path | None = None
    reader: BinaryIO | None = None
    to_dir: Path | None = None
    partial: PartialFile | None = None
    saved_to: Path | None = None
    connection: PeerConnection | None = None  # the one the current part runs on
    parts: list[dict[str, int]] = field(default_factory=list)  # finished parts
    resume_from: int = 0
    progress: int = 0  # bytes acked (sender) or verified (receiver)
    part_started: float = 0.0  # loop time
    interrupted_at: float = 0.0  # loop time
    end_reason: str | None = None
    detail: str = ""
    finished_at: float | None = None
    last_event: float = 0.0
    part_open: bool = False  # the current part was accepted: its bytes count
    legs: dict[PeerPath, FileSender] = field(default_factory=dict)
    """Outgoing, until one device accepts: the offer on each device's path."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        """True once the transfer completed or ended for good."""
        return self.state not in LIVE_STATES

    def part_bytes(self) -> int:
        """Data bytes moved in the current part (sent, or received)."""
        if self.sender is not None:
            return self.sender.bytes_sent
        if self.receiver is not None:
            return self.receiver.bytes_received
        return 0


@dataclass(eq=False)
class _Peer:
    """One attached path: its transfer table and the handler it had before."""

    path: PeerPath
    table: TransferTable
    previous: RequestHandler | None


class FileService:
    """Sends and receives the files of one logged-in device (see the module docstring)."""

    def __init__(
        self,
        paths: PathManager,
        *,
        downloads: Path,
        config: FileConfig | None = None,
        on_event: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        """A service over ``paths``, saving into ``downloads`` unless told otherwise."""
        self.paths = paths
        self.downloads = downloads
        self.config = config or FileConfig()
        self.on_event = on_event
        self._held: OrderedDict[str, Transfer] = OrderedDict()
        """Live and recently finished transfers by public id."""
        self.refused: Counter[str] = Counter()
        self.unsent = 0  # messages that could not be sent (the path was down)
        self._peers: dict[PeerPath, _Peer] = {}
        self._by_wire: dict[tuple[PeerPath, bytes], Transfer] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ life

    def start(self, *, accept_paths: bool = True) -> None:
        """Start the timers; with ``accept_paths``, take every path peers open to us.

        When several services share one path manager, start them with
        ``accept_paths=False`` and hand each accepted path to :meth:`attach`.
        """
        self._spawn(self._tick())
        if accept_paths:
            self._spawn(self._accept_paths())

    async def close(self) -> None:
        """Cancel every live transfer (telling the peer) and stop; partials are kept."""
        for transfer in list(self._held.values()):
            if not transfer.finished:
                self._cancel(transfer, "service stopped", keep_partial=True)
        for task in list(self._tasks):
            task.cancel()

    async def _accept_paths(self) -> None:
        while True:
            self.attach(await self.paths.accept())

    def attach(self, path: PeerPath) -> None:
        """Take ``file.*`` messages on ``path``; others go to its previous handler."""
        if path in self._peers:
            return
        table = TransferTable(self.config.max_per_peer, self.config.timeouts)
        peer = _Peer(path, table, path.handler)
        self._peers[path] = peer

        async def handler(message: Message) -> Message | None:
            if isinstance(message, FILE_MESSAGES):
                self._receive(peer, message)
                return None
            if peer.previous is not None:
                return await peer.previous(message)
            return await path.default_handle(message)

        path.handler = handler
        queued = [path.incoming.get_nowait() for _ in range(path.incoming.qsize())]
        for message in queued:
            if isinstance(message, FILE_MESSAGES):
                self._receive(peer, message)
            else:
                path.incoming.put_nowait(message)

    # ------------------------------------------------------------ sending

    async def send(self, user: str, file: Path | str) -> dict[str, Any]:
        """Offer ``file`` to every device ``user`` is online on; the first to accept takes it.

        Returns the transfer document once the first device's path is open
        (state ``waiting``); the file goes once a device accepts. Raises
        :class:`FileServiceError` when the file cannot be read, no device of
        the user is reachable, or too many transfers are running.
        """
        source = Path(file)
        if not source.is_file():
            raise FileServiceError(f"{source} is not a readable file")
        self._check_room()
        try:
            size, digest = await asyncio.to_thread(hash_file, source)
        except OSError as exc:
            raise FileServiceError(f"cannot read {source}: {exc}") from None
        try:
            reader = source.open("rb")
        except OSError as exc:
            raise FileServiceError(f"cannot read {source}: {exc}") from None
        connecting: list[asyncio.Task[PeerPath]] = []
        try:
            connecting += await self._connect_devices(user)
            path = await self._first_path(user, connecting)
            wire_id = os.urandom(TRANSFER_ID_SIZE)
            transfer = Transfer(
                wire_id.hex(), "outgoing", path.user, sanitise_name(source.name), size, digest,
                path, wire_id, "waiting", source=source, reader=reader,
            )  # fmt: skip
            self._remember(transfer)
            self._offer(transfer)
        except BaseException:
            reader.close()
            for task in connecting:
                task.cancel()
            raise
        for task in connecting:
            self._spawn(self._late_leg(transfer, wire_id, task))
        return self.describe(transfer)

    async def _connect_devices(self, user: str) -> list[asyncio.Task[PeerPath]]:
        """Start opening a path to each device ``user`` is online on (not this one)."""
        try:
            devices = await self.paths.devices(user)
        except PathError as exc:
            raise FileServiceError(f"cannot reach {user}: {exc.reason}") from None
        except EndpointError as exc:
            raise FileServiceError(f"cannot reach {user}: {exc}") from None
        mine = self.paths.session.profile.device_id
        chosen = [d for d in devices if d.device_id != mine][: self.config.max_devices]
        if not chosen:
            raise FileServiceError(f"{user} is online on no other device")
        timeout = self.config.connect_timeout_s
        return [asyncio.ensure_future(self.paths.connect(user, timeout, d)) for d in chosen]

    async def _first_path(self, user: str, connecting: list[asyncio.Task[PeerPath]]) -> PeerPath:
        """The first path that opens (taken out of ``connecting``); the error of the last
        that failed when none does."""
        pending: set[asyncio.Task[PeerPath]] = set(connecting)
        failure: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                connecting.remove(task)
                failure = task.exception()
                if failure is None:
                    path = task.result()
                    self.attach(path)
                    return path
                if not isinstance(failure, EndpointError):
                    raise failure
        reason = failure.reason if isinstance(failure, PathError) else str(failure)
        raise FileServiceError(f"cannot reach {user}: {reason}")

    async def _late_leg(
        self, transfer: Transfer, wire_id: bytes, connecting: asyncio.Task[PeerPath]
    ) -> None:
        """Offer the file on another device's path too, if it opens while still unanswered."""
        try:
            path = await connecting
        except EndpointError as exc:
            log.info("transfer %s: a device is out of reach: %s", transfer.transfer_id, exc)
            return
        unanswered = transfer.state == "waiting" and transfer.wire_id == wire_id
        if not unanswered or not transfer.legs or path in transfer.legs:
            return
        self.attach(path)
        try:
            transfer.legs[path] = self._offer_on(transfer, path)
        except LocalTransferError as exc:
            log.info("transfer %s: not offered to a device: %s", transfer.transfer_id, exc)

    def _offer(self, transfer: Transfer) -> None:
        """Offer the file (again) on the transfer's path under its current wire id."""
        transfer.state = "waiting"
        transfer.connection = transfer.path.connection
        self._bind(transfer)
        transfer.legs = {}
        try:
            transfer.sender = self._offer_on(transfer, transfer.path)
        except LocalTransferError as exc:
            self._end(transfer, "failed", exc.refusal.value, exc.detail)
            raise FileServiceError(f"cannot offer {transfer.name}: {exc}") from None
        transfer.legs[transfer.path] = transfer.sender
        self._spawn(self._watch(transfer, transfer.connection))

    def _offer_on(self, transfer: Transfer, path: PeerPath) -> FileSender:
        """A sender for the transfer's wire id on ``path``, its offer sent."""
        peer = self._peers[path]
        sender = FileSender(
            transfer.wire_id, transfer.name, transfer.size, transfer.sha256,
            chunk_size=self.config.chunk_size, window=self.config.window,
            timeouts=self.config.timeouts,
        )  # fmt: skip
        events = peer.table.add_sender(sender, asyncio.get_running_loop().time())
        self._by_wire[(path, transfer.wire_id)] = transfer
        self._apply(peer, events)
        return sender

    def _choose(self, transfer: Transfer, path: PeerPath) -> None:
        """The device on ``path`` accepted: the transfer runs there, the other offers end."""
        chosen = transfer.legs.pop(path, None)
        if chosen is None:
            return
        self._drop_legs(transfer, ANSWERED_ELSEWHERE)
        transfer.legs = {path: chosen}
        if transfer.path is not path:
            transfer.path, transfer.sender = path, chosen
            transfer.connection = path.connection
            self._spawn(self._watch(transfer, transfer.connection))

    def _drop_legs(self, transfer: Transfer, reason: str) -> None:
        """Cancel the offers on ``transfer.legs`` (their events no longer reach it)."""
        now = asyncio.get_running_loop().time()
        for path, sender in list(transfer.legs.items()):
            del transfer.legs[path]
            self._by_wire.pop((path, transfer.wire_id), None)
            peer = self._peers.get(path)
            if peer is not None and not sender.finished:
                self._apply(peer, sender.cancel(now, reason))
                peer.table.forget_finished()

    def _leg_ended(self, transfer: Transfer, path: PeerPath) -> bool:
        """One device's offer ended while others still stand: forget it (True)."""
        if path not in transfer.legs or len(transfer.legs) < 2:
            return False
        del transfer.legs[path]
        self._by_wire.pop((path, transfer.wire_id), None)
        self._peers[path].table.forget_finished()
        if transfer.path is path:
            transfer.path, transfer.sender = next(iter(transfer.legs.items()))
            transfer.connection = transfer.path.connection
            self._spawn(self._watch(transfer, transfer.connection))
        return True

    def _pump(self, peer: _Peer) -> None:
        """Send every chunk the windows of this path's senders allow."""
        for sender in list(peer.table.senders.values()):
            transfer = self._by_wire.get((peer.path, sender.transfer_id))
            if transfer is None or transfer.reader is None:
                continue
            now = asyncio.get_running_loop().time()
            while (wanted := sender.next_range()) is not None:
                if not self._same_connection(transfer):
                    self._lost(transfer)  # never continue a wire id on another connection
                    break
                offset, length = wanted
                transfer.reader.seek(offset)
                chunk = sender.chunk(offset, transfer.reader.read(length), now)
                if not self._send(peer, chunk):
                    self._lost(transfer)  # resumed from what the receiver verified
                    break

    def _same_connection(self, transfer: Transfer) -> bool:
        path = transfer.path
        return path.live and path.connection is transfer.connection

    async def _watch(self, transfer: Transfer, connection: PeerConnection | None) -> None:
        """Sender: end the part when the connection under its path closes or is replaced."""
        sender = transfer.sender
        while transfer.sender is sender and not transfer.finished:
            if transfer.connection is not connection:
                return
            if not self._same_connection(transfer):
                self._lost(transfer)
                return
            await asyncio.sleep(self.config.watch_s)

    def _lost(self, transfer: Transfer) -> None:
        """The current part of an outgoing transfer broke: end it and resume."""
        sender = transfer.sender
        if sender is None or sender.finished:
            return
        peer = self._peers[transfer.path]
        self._apply(peer, sender.path_lost(asyncio.get_running_loop().time()))
        peer.table.forget_finished()

    async def _resume(self, transfer: Transfer) -> None:
        """Offer an interrupted file again once a path to the peer is live."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.resume_wait_s
        if len(transfer.parts) >= self.config.max_resumes:
            self._end(transfer, "failed", EndReason.PATH_LOST.value, "too many resumes")
            return
        while transfer.state == "interrupted" and loop.time() < deadline:
            try:
                path = await self._path_back(transfer, deadline - loop.time())
            except EndpointError as exc:
                log.info("transfer %s: no path yet: %s", transfer.transfer_id, exc)
                await asyncio.sleep(self.config.retry_s)
                continue
            if transfer.state != "interrupted":
                return
            transfer.path = path
            transfer.wire_id = os.urandom(TRANSFER_ID_SIZE)
            with contextlib.suppress(FileServiceError):
                self._offer(transfer)
            return
        if transfer.state == "interrupted":
            self._end(transfer, "failed", EndReason.PATH_LOST.value, "the path did not come back")

    async def _path_back(self, transfer: Transfer, left: float) -> PeerPath:
        """The transfer's path once live again, or a new path to the same device."""
        path = transfer.path
        if path.closed_reason is None:
            with contextlib.suppress(PathClosedError):
                await path.wait_live(max(0.1, left))
                return path
        for device in await self.paths.devices(transfer.peer):
            if device.device_id == path.device_id:
                timeout = max(0.1, min(left, self.config.connect_timeout_s))
                new = await self.paths.connect(transfer.peer, timeout, device)
                self.attach(new)
                return new
        raise PathError(f"{transfer.peer} is no longer online on that device")

    # ------------------------------------------------------------ receiving

    def offers(self) -> list[dict[str, Any]]:
        """Incoming files waiting for an answer."""
        return [self.describe(t) for t in self._held.values() if t.state == "offered"]

    async def accept(self, transfer_id: str, to_dir: Path | str | None = None) -> dict[str, Any]:
        """Take an offered file into ``to_dir`` (the downloads directory by default).

        A partial file of the same (SHA-256, size) kept there from a broken
        transfer is continued: only the rest is sent.
        """
        transfer = self._get(transfer_id)
        if transfer.state != "offered" or transfer.receiver is None:
            raise FileServiceError(f"transfer {transfer_id} is {transfer.state}, not offered")
        directory = Path(to_dir) if to_dir is not None else self.downloads
        if not directory.is_dir():
            raise FileServiceError(f"{directory} is not a directory")
        transfer.to_dir, transfer.state = directory, "transferring"
        try:
            await self._take(transfer, transfer.receiver)
        except (StorageError, OSError) as exc:
            self._decline_core(transfer, "cannot store the file")
            raise FileServiceError(f"cannot store {transfer.name}: {exc}") from None
        return self.describe(transfer)

    async def _take(self, transfer: Transfer, receiver: FileReceiver) -> None:
        """Open (or reopen) the partial file and accept from its verified length."""
        assert transfer.to_dir is not None
        offer = receiver.offer
        partial = await asyncio.to_thread(
            PartialFile.open_for, transfer.to_dir, offer.name, offer.size, offer.sha256,
            self.config.checkpoint_every,
        )  # fmt: skip
        prefix = await asyncio.to_thread(partial.prefix_hash) if partial.verified else None
        if receiver.finished or transfer.receiver is not receiver:
            partial.close()  # the offer ended while the file was opened
            return
        transfer.partial, transfer.resume_from = partial, partial.verified
        transfer.part_open = True
        transfer.progress = partial.verified
        transfer.part_started = asyncio.get_running_loop().time()
        now = asyncio.get_running_loop().time()
        self._apply(self._peers[transfer.path], receiver.accept(now, partial.verified, prefix))
        self._changed(transfer)

    def decline(self, transfer_id: str, reason: str = "declined") -> dict[str, Any]:
        """Refuse an offered file."""
        transfer = self._get(transfer_id)
        if transfer.state != "offered":
            raise FileServiceError(f"transfer {transfer_id} is {transfer.state}, not offered")
        self._decline_core(transfer, reason)
        return self.describe(transfer)

    def _decline_core(self, transfer: Transfer, reason: str) -> None:
        receiver = transfer.receiver
        if receiver is not None and not receiver.finished:
            now = asyncio.get_running_loop().time()
            self._apply(self._peers[transfer.path], receiver.decline(now, reason))

    def _on_offer(self, peer: _Peer, receiver: FileReceiver) -> None:
        offer = receiver.offer
        resumed = self._resumable(peer.path, offer.sha256, offer.size)
        if resumed is not None and len(resumed.parts) < self.config.max_resumes:
            self._resume_incoming(peer, resumed, receiver)
            return
        refusal = None
        if resumed is not None:
            refusal = "too-many-resumes"
        elif offer.transfer_id.hex() in self._held:
            refusal = Refusal.DUPLICATE_TRANSFER.value
        elif self._live_count() >= self.config.max_transfers:
            refusal = Refusal.TOO_MANY_TRANSFERS.value
        if refusal is not None:
            self.refused[refusal] += 1
            now = asyncio.get_running_loop().time()
            self._apply(peer, receiver.decline(now, refusal))
            return
        transfer = Transfer(
            offer.transfer_id.hex(), "incoming", peer.path.user, offer.name, offer.size,
            offer.sha256, peer.path, offer.transfer_id, "offered", receiver=receiver,
        )  # fmt: skip
        self._bind(transfer)
        self._remember(transfer)
        self._changed(transfer)

    def _resumable(self, path: PeerPath, sha256: bytes, size: int) -> Transfer | None:
        """An accepted incoming transfer of this file from this device, live or interrupted."""
        for transfer in self._held.values():
            if (
                transfer.direction == "incoming"
                and transfer.state in ("offered", "transferring", "interrupted")
                and transfer.peer == path.user
                and transfer.path.device_id == path.device_id
                and transfer.size == size
                and transfer.sha256 == sha256
            ):
                return transfer
        return None

    def _resume_incoming(self, peer: _Peer, transfer: Transfer, receiver: FileReceiver) -> None:
        """The sender offered the file again: the new offer replaces the old one, and
        a file the user accepted is accepted again at once, from what was verified."""
        answered = transfer.state != "offered"
        old = transfer.receiver
        if old is not None and not old.finished:
            old_peer = self._peers[transfer.path]
            self._apply(old_peer, old.path_lost(asyncio.get_running_loop().time()))
            old_peer.table.forget_finished()
        self._close_part(transfer)
        transfer.receiver, transfer.path = receiver, peer.path
        transfer.wire_id = receiver.transfer_id
        transfer.state = "transferring" if answered else "offered"
        self._bind(transfer)
        if answered:
            self._spawn(self._take_or_fail(transfer, receiver))

    async def _take_or_fail(self, transfer: Transfer, receiver: FileReceiver) -> None:
        try:
            await self._take(transfer, receiver)
        except (StorageError, OSError) as exc:
            self._decline_core(transfer, "cannot store the file")
            self._end(transfer, "failed", "storage", str(exc))

    def _bind(self, transfer: Transfer) -> None:
        """Route the transfer's current wire id on its path to it (and no older one)."""
        for key in [k for k, t in self._by_wire.items() if t is transfer]:
            del self._by_wire[key]
        self._by_wire[(transfer.path, transfer.wire_id)] = transfer

    def _close_part(self, transfer: Transfer) -> None:
        """Close the partial file (keeping it) and file the part's byte count."""
        if transfer.partial is not None:
            transfer.partial.close()
            transfer.partial = None
        if transfer.part_open:
            part = {"resume_from": transfer.resume_from, "bytes": transfer.part_bytes()}
            transfer.parts.append(part)
        transfer.part_open = False
        transfer.sender = transfer.receiver = None

    def _write(self, event: WriteChunk, transfer: Transfer) -> None:
        partial = transfer.partial
        if partial is None:
            return
        try:
            partial.write(event.offset, event.data)
        except (StorageError, OSError) as exc:
            self._cancel(transfer, f"cannot write: {exc}", keep_partial=True)
            return
        transfer.progress = event.offset + len(event.data)
        self._progress(transfer)

    def _on_verified(self, peer: _Peer, transfer: Transfer) -> None:
        transfer.state = "verifying"
        self._spawn(self._save(peer, transfer))

    async def _save(self, peer: _Peer, transfer: Transfer) -> None:
        """Complete the verified file under a free name, then send ``file.done``."""
        partial, receiver = transfer.partial, transfer.receiver
        assert partial is not None and receiver is not None
        try:
            transfer.saved_to = await asyncio.to_thread(partial.finish)
        except (StorageError, OSError) as exc:
            transfer.partial = None
            self._cancel(transfer, f"cannot save: {exc}", keep_partial=True)
            return
        transfer.partial = None
        self._apply(peer, receiver.saved(asyncio.get_running_loop().time()))

    # ------------------------------------------------------------ both directions

    def _receive(self, peer: _Peer, message: FileMessage) -> None:
        now = asyncio.get_running_loop().time()
        self._apply(peer, peer.table.receive(message, now))
        self._count(peer)

    def _count(self, peer: _Peer) -> None:
        for refusal, count in peer.table.refused.items():
            self.refused[refusal.value] += count
        peer.table.refused.clear()

    def _apply(self, peer: _Peer, events: list[TransferEvent]) -> None:
        """Carry out what a core asked for."""
        for event in events:
            if isinstance(event, Send):
                self._send(peer, event.message)
            elif isinstance(event, Offered):
                self._on_offer(peer, event.receiver)
            else:
                self._on_transfer_event(peer, event)
        self._pump(peer)

    def _on_transfer_event(self, peer: _Peer, event: TransferEvent) -> None:
        transfer_id = getattr(event, "transfer_id", b"")
        transfer = self._by_wire.get((peer.path, transfer_id))
        if transfer is None:
            return
        if isinstance(event, WriteChunk):
            self._write(event, transfer)
        elif isinstance(event, Accepted):
            self._choose(transfer, peer.path)
            transfer.state, transfer.resume_from = "transferring", event.resume_from
            transfer.part_open = True
            transfer.progress = event.resume_from
            transfer.part_started = asyncio.get_running_loop().time()
            self._changed(transfer)
        elif isinstance(event, Verified):
            self._on_verified(peer, transfer)
        elif isinstance(event, Completed):
            self._completed(transfer)
        elif isinstance(event, Ended) and not self._leg_ended(transfer, peer.path):
            self._ended(transfer, event)

    def _send(self, peer: _Peer, message: Message) -> bool:
        """Send a notice on the path; False (and counted) when it could not go."""
        try:
            peer.path.notify(message)
        except (EndpointError, SendQueueFull) as exc:
            self.unsent += 1
            log.info("could not send %s to %s: %s", message.NAME, peer.path.user, exc)
            return False
        return True

    def _completed(self, transfer: Transfer) -> None:
        transfer.progress = transfer.size
        self._close_part(transfer)
        self._end(transfer, "complete", None, "")

    def _ended(self, transfer: Transfer, event: Ended) -> None:
        state = _ENDED_STATES[event.reason]
        keep = event.reason not in _DISCARD_PARTIAL
        if transfer.partial is not None and not keep:
            transfer.partial.discard()
            transfer.partial = None
        self._close_part(transfer)
        if state != "interrupted":
            self._end(transfer, state, event.reason.value, event.detail)
            return
        transfer.state = "interrupted"
        transfer.interrupted_at = asyncio.get_running_loop().time()
        self._changed(transfer)
        if transfer.direction == "outgoing":
            self._spawn(self._resume(transfer))

    def _end(self, transfer: Transfer, state: str, reason: str | None, detail: str) -> None:
        """The transfer is over for good: release its file and wake waiters."""
        transfer.state, transfer.end_reason, transfer.detail = state, reason, detail
        transfer.finished_at = time.time()
        if transfer.reader is not None:
            transfer.reader.close()
            transfer.reader = None
        if transfer.partial is not None:
            transfer.partial.close()
            transfer.partial = None
        for key in [k for k, t in self._by_wire.items() if t is transfer]:
            del self._by_wire[key]
        transfer.done.set()
        self._changed(transfer)
        self._forget_ended()

    def cancel(self, transfer_id: str) -> dict[str, Any]:
        """Give up on a transfer in either direction (a kept partial is thrown away)."""
        transfer = self._get(transfer_id)
        if transfer.finished:
            raise FileServiceError(f"transfer {transfer_id} is already {transfer.state}")
        self._cancel(transfer, "cancelled", keep_partial=False)
        return self.describe(transfer)

    def _cancel(self, transfer: Transfer, reason: str, *, keep_partial: bool) -> None:
        transfer.legs.pop(transfer.path, None)
        self._drop_legs(transfer, reason)  # the offers to the other devices
        core = transfer.sender or transfer.receiver
        if transfer.partial is not None:
            if keep_partial:
                transfer.partial.close()
            else:
                transfer.partial.discard()
            transfer.partial = None
        if core is not None and not core.finished:
            peer = self._peers[transfer.path]
            self._apply(peer, core.cancel(asyncio.get_running_loop().time(), reason))
            peer.table.forget_finished()
        if not transfer.finished:
            self._end(transfer, "cancelled", EndReason.CANCELLED.value, reason)

    async def wait(self, transfer_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the transfer is complete or over (at most ``timeout`` s); its document."""
        transfer = self._get(transfer_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transfer.done.wait(), timeout)
        return self.describe(transfer)

    # ------------------------------------------------------------ timers and bookkeeping

    async def _tick(self) -> None:
        """Fire the cores' timers; give up on receivers that were not resumed in time."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.tick_s)
            now = loop.time()
            for peer in list(self._peers.values()):
                self._apply(peer, peer.table.handle_timers(now))
                self._forget_path(peer)
            self._expire_interrupted(now)

    def _expire_interrupted(self, now: float) -> None:
        """Incoming transfers not resumed within ``resume_keep_s`` fail (partials stay)."""
        for transfer in list(self._held.values()):
            waiting = transfer.state == "interrupted" and transfer.direction == "incoming"
            if waiting and now - transfer.interrupted_at > self.config.resume_keep_s:
                self._end(transfer, "failed", EndReason.PATH_LOST.value, "not resumed")

    def _forget_path(self, peer: _Peer) -> None:
        """Drop a path closed for good; its receivers wait for a resume on another."""
        path = peer.path
        if path.closed_reason is None:
            return
        now = asyncio.get_running_loop().time()
        self._apply(peer, peer.table.path_lost(now))
        if not any(t.path is path and not t.finished for t in self._held.values()):
            del self._peers[path]

    def _check_room(self) -> None:
        if self._live_count() >= self.config.max_transfers:
            self.refused[Refusal.TOO_MANY_TRANSFERS.value] += 1
            raise FileServiceError(f"{self.config.max_transfers} transfers are running")

    def _live_count(self) -> int:
        return sum(1 for t in self._held.values() if not t.finished)

    def _remember(self, transfer: Transfer) -> None:
        self._held[transfer.transfer_id] = transfer
        self._forget_ended()

    def _forget_ended(self) -> None:
        """Keep at most ``max_ended`` finished transfers, none older than ``ended_kept_s``."""
        ended = [t for t in self._held.values() if t.finished]
        now = time.time()
        for transfer in ended[: max(0, len(ended) - self.config.max_ended)]:
            del self._held[transfer.transfer_id]
        for transfer in ended:
            kept = now - (transfer.finished_at or now)
            if kept > self.config.ended_kept_s:
                self._held.pop(transfer.transfer_id, None)

    def _get(self, transfer_id: str) -> Transfer:
        transfer = self._held.get(transfer_id.lower())
        if transfer is None:
            raise NoSuchTransfer(f"no transfer {transfer_id}")
        return transfer

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.refused["task-error"] += 1
            log.error("file task failed", exc_info=task.exception())

    # ------------------------------------------------------------ reports

    def _progress(self, transfer: Transfer) -> None:
        now = asyncio.get_running_loop().time()
        if now - transfer.last_event >= self.config.progress_every_s:
            self._changed(transfer)

    def _changed(self, transfer: Transfer) -> None:
        transfer.last_event = asyncio.get_running_loop().time()
        if self.on_event is not None:
            self.on_event(self.describe(transfer))

    def status(self, transfer_id: str) -> dict[str, Any]:
        """The document of one transfer (:class:`NoSuchTransfer` if unknown)."""
        return self.describe(self._get(transfer_id))

    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer held (live and recently finished), oldest first."""
        return [self.describe(t) for t in self._held.values()]

    def describe(self, transfer: Transfer) -> dict[str, Any]:
        """The JSON-able transfer document of the API and ``hopline files``."""
        sender = transfer.sender
        if sender is not None and transfer.state == "transferring":
            transfer.progress = sender.acked
        live = transfer.state in ("transferring", "verifying")
        elapsed = asyncio.get_running_loop().time() - transfer.part_started
        moved = transfer.progress - transfer.resume_from
        rate = moved / elapsed if live and elapsed > 0 else 0.0
        left = transfer.size - transfer.progress
        parts = list(transfer.parts)
        if live:
            parts.append({"resume_from": transfer.resume_from, "bytes": transfer.part_bytes()})
        return {
            "transfer_id": transfer.transfer_id,
            "direction": transfer.direction,
            "peer": transfer.peer,
            "device": transfer.path.device_id.hex(),
            "name": transfer.name,
            "size": transfer.size,
            "sha256": transfer.sha256.hex(),
            "state": transfer.state,
            "end_reason": transfer.end_reason,
            "detail": transfer.detail,
            "bytes": transfer.progress,
            "bytes_moved": sum(p["bytes"] for p in parts),
            "parts": parts,
            "resumes": max(0, len(parts) - 1),
            "rate_bps": round(rate),
            "eta_s": round(left / rate, 1) if rate > 0 else None,
            "path": transfer.path.kind or None,
            "source": str(transfer.source) if transfer.source is not None else None,
            "saved_to": str(transfer.saved_to) if transfer.saved_to is not None else None,
            "started_at": transfer.created_at,
            "elapsed_s": round((transfer.finished_at or time.time()) - transfer.created_at, 2),
            "finished_at": transfer.finished_at,
        }

    def describe_service(self) -> dict[str, Any]:
        """Counters of the service: live transfers, paths, refusals by reason."""
        return {
            "live": self._live_count(),
            "held": len(self._held),
            "paths": len(self._peers),
            "refused": dict(self.refused),
            "unsent": self.unsent,
        }
