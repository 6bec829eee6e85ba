"""Peer-to-peer path establishment at run time: :class:`PathManager`.

The manager is the asyncio shell around the sans-I/O check core
(:class:`hopline.path.checks.PathChecker`) for one logged-in
:class:`~hopline.client.session.ClientSession`. It owns no socket of its
own: checks go out of the session's UDP socket (``Endpoint.send_raw``) or
through relay allocations on the home supernode
(:class:`~hopline.relay.client.RelayClient`), and come back through the
endpoint's ``raw_handler`` and the relay's data callback.

Establishing a path (docs/protocol.md, "Path establishment"):

1. The caller looks the callee up, gathers its candidates (host addresses
   of its UDP socket, the server-reflexive address its home reported) and
   sends ``path.offer`` inside a ``forward`` envelope through the callee's
   home supernode (its own home if they share one, else a connection made
   on demand). At the same time it allocates a relay on its own home and
   trickles the relayed candidate with ``path.candidates``.
2. The callee answers with ``path.answer`` through the caller's home
   (``reply_via``), allocates its own relay and starts checking as the
   controlled side; the caller starts as the controlling side when the
   answer arrives. Checks are STUN binding requests keyed with
   :func:`~hopline.path.hosts.probe_key`.
3. When the checker selects a pair, the controlling side opens the
   Hopline secure connection on it (through the pair's local base: the UDP
   socket or a relay); the controlled side takes the connection the peer
   opened (the endpoint accepts certified users, through relays too).
   The connection goes into a :class:`~hopline.path.peer.PeerPath`.
4. A relayed selection leaves the checks running; a later direct
   selection opens a direct connection and swaps it in (an *upgrade*),
   and the relay allocations are released.
5. Every :attr:`PathConfig.keepalive_s` the path pings its peer (holding
   NAT bindings and relay permissions open). When the connection closes,
   stops answering, or its relay disappears with the home supernode, the
   caller establishes again and swaps the new connection into the same
   :class:`PeerPath`; the callee folds the new incoming path into it.
6. When the session re-homes (its home died, or this host's network
   changed under it), the links to other supernodes are closed (they ran
   from the old network), the host candidates are gathered again (the
   host's addresses may have changed) and every path is checked at once, as with
   :meth:`PathManager.check_soon`: a path that died with the old network is
   established again within seconds, not at its next keep-alive.

Relay allocations are shared: a user may hold only a few on a supernode,
so every attempt uses a live allocation on the current home that has room
for more permissions (one is made when there is none), and an allocation
is released once no attempt or connection uses it. When the home
connection closes, its allocations end, and the connections that ran
through them close (and are established again).

Memory a peer can make us use is bounded: attempts in total and per peer,
candidates per message, links to other supernodes, the accept backlog.
Malformed or unsolicited path messages are dropped and counted in
:attr:`PathManager.dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from hopline.connection import Expectation, channel_data_frame
from hopline.identity import CertificateError, Role
from hopline.nat.discovery import NatReport
from hopline.nat.stun import is_stun
from hopline.path.candidates import (
    UDP_BASE,
    Candidate,
    CandidateError,
    CandidateKind,
    from_endpoint,
    gather,
    is_relay_base,
    to_endpoint,
)
from hopline.path.checks import (
    CheckConfig,
    ChecksFailed,
    PairSucceeded,
    PathChecker,
    PathSelected,
)
from hopline.path.hosts import interface_addresses, probe_key
from hopline.path.peer import PathClosedError, PeerPath
from hopline.relay.client import RelayAllocationHandle, RelayClient
from hopline.runtime.peer import Addr, ConnectionLost, EndpointError, PeerConnection
from hopline.runtime.timer import CoreTimer
from hopline.wire import Address, Kind, Message, WireError, decode, encode
from hopline.wire.commands import DeviceRecord, Forward, Ping
from hopline.wire.commands import Endpoint as EndpointRecord
from hopline.wire.directory import LookupState
from hopline.wire.path import (
    MAX_CANDIDATES,
    PATH_ID_SIZE,
    PathAnswer,
    PathCancel,
    PathCandidates,
    PathMessage,
    PathOffer,
)

if TYPE_CHECKING:
    from hopline.client.session import ClientSession

__all__ = ["SUPERNODE_ENDPOINT_KIND", "PathConfig", "PathError", "PathManager"]

log = logging.getLogger("hopline.path")
SUPERNODE_ENDPOINT_KIND = 5  # an Endpoint record naming the device's home supernode
TRANSPORT_TCP = 1
UPGRADE_GRACE_S = 1.0  # the old connection stays open this long after an upgrade
RETIRE_AFTER_S = 5.0  # checks run on this long after a direct path is installed
RELEASE_TIMEOUT_S = 2.0
SHARE_PERMISSIONS = 24  # peer IPs on one allocation before another is made (relay max 32)
POLL_S = 0.02  # how often the controlled side looks for the peer's connection
Handler = Callable[[PeerConnection, Message], Awaitable[Message | None]]


class PathError(EndpointError):
    """No path could be established (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no path: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class PathConfig:
    """How paths are established and kept.

    ``direct=False`` signals no direct candidates (a forced relay);
    ``relay=False`` never allocates one; ``udp=False`` is a client whose
    UDP is blocked (only a relay reached over its TCP home link).
    """

    direct: bool = True
    relay: bool = True
    udp: bool = True
    checks: CheckConfig | None = None
    connect_timeout_s: float = 10.0
    keepalive_s: float = 15.0
    ping_timeout_s: float = 5.0
    urgent_ping_timeout_s: float = 0.5  # after check_soon: the path's traffic stalled
    reestablish: bool = True
    reestablish_timeout_s: float = 30.0
    reestablish_attempt_s: float = 3.0  # one try (a fresh lookup each time)
    retry_backoff_s: float = 0.5
    max_attempts: int = 32
    max_attempts_per_peer: int = 2
    max_links: int = 8  # signalling links to other users' home supernodes
    accept_backlog: int = 64
    relay_lifetime_s: int | None = None


@dataclass(eq=False)
class _Attempt:
    """One run of checks with one peer device."""

    path_id: bytes
    path: PeerPath
    controlling: bool
    local_ufrag: str
    key: bytes
    started: float  # monotonic: the offer was sent (caller) or received (callee)
    reply_via: EndpointRecord | None = None
    remote_ufrag: str | None = None
    checker: PathChecker | None = None
    timer: CoreTimer | None = None
    local: list[Candidate] = dataclasses.field(default_factory=list)
    remote: list[Candidate] = dataclasses.field(default_factory=list)
    remote_relayed: set[Address] = dataclasses.field(default_factory=set)
    remote_tcp: set[Address] = dataclasses.field(default_factory=set)  # relayed over TCP
    allocation: RelayAllocationHandle | None = None
    done: asyncio.Future[None] | None = None
    selected_local: Candidate | None = None
    installed_direct: bool = False
    tie_breaker: int = 0
    again: bool = False  # re-establishing a lost path: no wait for a direct pair


class PathManager:
    """Paths to other users for one session (see the module docstring)."""

    def __init__(self, session: ClientSession, config: PathConfig | None = None) -> None:
        self.session = session
        self.config = config or PathConfig()
        self.endpoint = session.endpoint
        self.paths: list[PeerPath] = []
        self.dropped: Counter[str] = Counter()
        self._attempts: dict[bytes, _Attempt] = {}
        self._by_pc: dict[PeerConnection, PeerPath] = {}
        self._current: dict[PeerPath, _Attempt] = {}  # the attempt a path's connection came from
        self._links: dict[Address, PeerConnection] = {}
        self._relay: RelayClient | None = None
        self._accepted: asyncio.Queue[PeerPath] = asyncio.Queue(self.config.accept_backlog)
        self._tasks: set[asyncio.Task[None]] = set()
        self._hosts: list[Address] = []
        self._previous_handler: Handler | None = None
        self._previous_datagrams: Callable[[PeerConnection, bytes], None] | None = None
        self._previous_channels: Callable[[PeerConnection, int, bytes], None] | None = None
        self._previous_raw: Callable[[bytes, Addr], bool] | None = None
        self._previous_accepted: Callable[[PeerConnection], None] | None = None
        self._started = False
        self._allocating = asyncio.Lock()
        self.nat: NatReport | None = None  # set from NAT discovery when it has run
        self._connecting: dict[tuple[str, bytes | None], asyncio.Future[PeerPath]] = {}
        self.path_listeners: list[Callable[[PeerPath], None]] = []
        """Called with every new path, ours or a peer's, before it is used: the
        services that share paths (calls, messages, files) attach here."""

    # ------------------------------------------------------------ public API

    async def start(self) -> None:
        """Hook into the session's endpoint (call after ``session.connect()``)."""
        if self._started:
            return
        self._started = True
        endpoint = self.endpoint
        if endpoint.accept_expectation is None:
            endpoint.accept_expectation = Expectation(role=Role.USER)
        self._previous_handler, endpoint.handler = endpoint.handler, self._on_message
        self._previous_datagrams = endpoint.datagram_handler
        endpoint.datagram_handler = self._on_datagram
        self._previous_channels = endpoint.channel_handler
        endpoint.channel_handler = self._on_channel_data
        self._previous_raw, endpoint.raw_handler = endpoint.raw_handler, self._on_raw
        self._previous_accepted, endpoint.on_accept = endpoint.on_accept, self._on_accepted
        self.session.home_listeners.append(self._home_changed)
        if self.config.udp and endpoint.local_address is None:
            await endpoint.open_udp("0.0.0.0")  # noqa: S104 -- candidates on every interface
        await self._refresh_hosts()

    async def connect(
        self, user: str, timeout: float = 15.0, device: DeviceRecord | None = None
    ) -> PeerPath:
        """A working path to one of ``user``'s devices (a live one is reused).

        ``device`` picks the device (one of :meth:`devices`); without it the
        first device of the user's presence record is used. Concurrent calls
        for the same user and device share one attempt (a peer allows only a
        few at a time), each waiting at most its own ``timeout``. A path of ours
        that is being established again is waited for, not duplicated.
        """
        for path in list(self.paths):
            wanted = device is None or path.device_id == device.device_id
            if path.user == user.lower() and path.live and wanted:
                return path
            ours = path.user == user.lower() and wanted and path.initiator
            if ours and await self._recovered(path, timeout):
                return path
        key = (user.lower(), device.device_id if device is not None else None)
        pending = self._connecting.get(key)
        if pending is None:  # one attempt for every caller that wants this path now
            pending = asyncio.ensure_future(self._connect_new(user, timeout, device))
            self._connecting[key] = pending
            pending.add_done_callback(partial(self._connected, key))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), timeout)
        except TimeoutError:
            raise PathError("timeout") from None

    @staticmethod
    async def _recovered(path: PeerPath, timeout: float) -> bool:
        """Wait for a lost path to come back; False if it closed for good."""
        try:
            await path.wait_live(timeout)
        except PathClosedError:
            return False
        except ConnectionLost:
            raise PathError("timeout") from None
        return True

    async def _connect_new(
        self, user: str, timeout: float, device: DeviceRecord | None
    ) -> PeerPath:
        if device is None:
            device = await self._find_device(user)
        path = PeerPath(user.lower(), device.device_id, device.identity_key, initiator=True)
        await self._establish(path, device, timeout)
        self._adopt(path)
        return path

    def _connected(self, key: tuple[str, bytes | None], done: asyncio.Future[PeerPath]) -> None:
        """An attempt shared by concurrent connect() calls ended: forget it."""
        if self._connecting.get(key) is done:
            del self._connecting[key]
        if not done.cancelled():
            done.exception()  # retrieved here: the callers may all have timed out

    async def accept(self) -> PeerPath:
        """The next path another user established to us."""
        return await self._accepted.get()

    async def close(self) -> None:
        """Close every path and attempt and unhook from the endpoint."""
        for pending in list(self._connecting.values()):
            pending.cancel()
        for path in list(self.paths):
            path.shut("manager closed")
        for attempt in list(self._attempts.values()):
            self._finish(attempt, "closed")
        for task in list(self._tasks):
            task.cancel()
        for link in self._links.values():
            link.close()
        self._links.clear()
        if self._relay is not None:
            await self._release_all(self._relay)
        endpoint = self.endpoint
        if endpoint.handler == self._on_message:
            endpoint.handler = self._previous_handler
        if endpoint.datagram_handler == self._on_datagram:
            endpoint.datagram_handler = self._previous_datagrams
        if endpoint.channel_handler == self._on_channel_data:
            endpoint.channel_handler = self._previous_channels
        if endpoint.raw_handler == self._on_raw:
            endpoint.raw_handler = self._previous_raw
        if endpoint.on_accept == self._on_accepted:
            endpoint.on_accept = self._previous_accepted
        with contextlib.suppress(ValueError):
            self.session.home_listeners.remove(self._home_changed)

    async def _release_all(self, relay: RelayClient) -> None:
        """Delete our allocations on the supernode (best effort, briefly), then forget them."""
        releases = [allocation.release() for allocation in list(relay.allocations.values())]
        if releases:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*releases), RELEASE_TIMEOUT_S)
        relay.close()

    def relay_stats(self) -> dict[str, int]:
        """Live relay allocations on the current home, the channels bound on them,
        and relay datagrams dropped."""
        relay = self._relay
        if relay is None:
            return {"allocations": 0, "channels": 0, "dropped": 0}
        return {
            "allocations": len(relay.allocations),
            "channels": sum(len(a.channels) for a in relay.allocations.values()),
            "dropped": sum(relay.dropped.values()),
        }

    @property
    def attempts(self) -> int:
        """Attempts whose checks are running."""
        return len(self._attempts)

    # ------------------------------------------------------------ establishing (caller)

    async def devices(self, user: str) -> tuple[DeviceRecord, ...]:
        """Every device ``user`` is online on now (PathError when none)."""
        reply = await self.session.lookup(user)
        record = reply.record
        if reply.state != LookupState.ONLINE or record is None or not record.devices:
            raise PathError(f"{user} is not online")
        return record.devices

    async def _find_device(self, user: str, device_id: bytes | None = None) -> DeviceRecord:
        devices = await self.devices(user)
        for device in devices:
            if device_id is None or device.device_id == device_id:
                return device
        raise PathError(f"{user} is no longer online on that device")

    async def _establish(
        self, path: PeerPath, device: DeviceRecord, timeout: float, *, again: bool = False
    ) -> None:
        """Run one attempt as the controlling side until a connection is installed.

        ``again`` (re-establishing a lost path) takes a relayed pair at once
        rather than waiting for a direct one: the path is back sooner, and
        the checks that keep running upgrade it to direct if they can.
        """
        self._check_capacity(path)
        path_id = os.urandom(PATH_ID_SIZE)
        attempt = self._new_attempt(path, path_id, controlling=True)
        attempt.again = again
        attempt.reply_via = _supernode_of(device)
        attempt.local = self._gather()
        offer = PathOffer(
            path_id=path_id,
            ufrag=attempt.local_ufrag,
            candidates=tuple(to_endpoint(c) for c in attempt.local),
            reply_via=self._own_home(),
            nat_class=self.nat_class,
            tie_breaker=attempt.tie_breaker,
            to_device=device.device_id,
            certificate=self.session.profile.certificate or b"",
        )
        try:
            await self._signal(attempt, offer)
            self._start_relay(attempt)
            assert attempt.done is not None
            await asyncio.wait_for(asyncio.shield(attempt.done), timeout)
        except TimeoutError:
            self._give_up(attempt, "timeout")
            raise PathError("timeout") from None
        except BaseException:
            self._give_up(attempt, "failed")
            raise

    def _give_up(self, attempt: _Attempt, reason: str) -> None:
        """The caller stops an attempt and tells the peer (best effort)."""
        if self._attempts.get(attempt.path_id) is attempt:
            self._signal_soon(attempt, PathCancel(path_id=attempt.path_id, reason=reason))
        self._finish(attempt, reason)

    def _check_capacity(self, path: PeerPath) -> None:
        if len(self._attempts) >= self.config.max_attempts:
            raise PathError("too many attempts")
        same = sum(1 for a in self._attempts.values() if a.path.static_key == path.static_key)
        if same >= self.config.max_attempts_per_peer:
            raise PathError("too many attempts with this peer")

    def _new_attempt(self, path: PeerPath, path_id: bytes, *, controlling: bool) -> _Attempt:
        attempt = _Attempt(
            path_id=path_id,
            path=path,
            controlling=controlling,
            local_ufrag=secrets.token_hex(4),
            key=probe_key(self.endpoint.static, path.static_key, path_id),
            started=time.monotonic(),
            done=asyncio.get_running_loop().create_future(),
            tie_breaker=secrets.randbits(63),
        )
        assert attempt.done is not None
        attempt.done.add_done_callback(_retrieve)
        self._attempts[path_id] = attempt
        return attempt

    def _gather(self) -> list[Candidate]:
        local = self.endpoint.local_address
        if not self.config.udp or not self.config.direct or local is None:
            return []
        hosts = [Address(a.host, local[1]) for a in self._hosts]
        if local[0] not in ("0.0.0.0", "::"):  # noqa: S104 -- a wildcard bind
            hosts = [Address.of(*local)]
        wildcard_v4 = ":" not in local[0]
        hosts = [a for a in hosts if a.family == 4 or not wildcard_v4]
        nat = self.nat
        preserving = nat is not None and bool(nat.port_preserving)
        return gather(hosts, self.session.observed, port_preserving=preserving)[:MAX_CANDIDATES]

    @property
    def nat_class(self) -> int:
        """Our NAT type as signalled (0: unknown, discovery has not run)."""
        return 0 if self.nat is None else int(self.nat.nat_type)

    async def _refresh_hosts(self) -> None:
        self._hosts = [Address(ip, 0) for ip in await interface_addresses()]

    def _own_home(self) -> EndpointRecord | None:
        address = self.session.home_address
        if address is None:
            return None
        transport = TRANSPORT_TCP if self.session.home_transport == "tcp" else 0
        return EndpointRecord(address=address, transport=transport, kind=SUPERNODE_ENDPOINT_KIND)

    # ------------------------------------------------------------ signalling

    async def _signal(self, attempt: _Attempt, message: PathMessage) -> None:
        """Send a path message to the attempt's peer through its home supernode."""
        quick = self.config.reestablish_attempt_s / 2 if attempt.again else None
        link = await self._link(attempt.reply_via, quick)  # the peer's home may be gone too
        path = attempt.path
        envelope = Forward(payload=encode(message), to_user=path.user, to_device=path.device_id)
        link.notify(envelope)

    def _signal_soon(self, attempt: _Attempt, message: PathMessage) -> None:
        self._spawn(self._signal_quietly(attempt, message))

    async def _signal_quietly(self, attempt: _Attempt, message: PathMessage) -> None:
        try:
            await self._signal(attempt, message)
        except EndpointError as exc:
            self.dropped["signal:unsent"] += 1
            log.info("path message %s not sent: %s", message.NAME, exc)

    async def _link(
        self, via: EndpointRecord | None, timeout: float | None = None
    ) -> PeerConnection:
        """The connection to the supernode at ``via`` (our home if it is the same)."""
        home = self.session.home
        if via is None or via.address == self.session.home_address:
            if home is None or home.closed.done():
                raise PathError("no home supernode")
            return home
        link = self._links.get(via.address)
        if link is not None and not link.closed.done():
            return link
        while len(self._links) >= self.config.max_links:
            self._links.pop(next(iter(self._links))).close()
        tcp = self.session.home_transport == "tcp" or not self.config.udp
        expect = Expectation(role=Role.SUPERNODE)
        link = await self.endpoint.connect(
            via.address.as_tuple(),
            expect,
            tcp=tcp,
            timeout=timeout or self.config.connect_timeout_s,
        )
        self._links[via.address] = link
        return link

    # ------------------------------------------------------------ incoming messages

    async def _on_message(self, pc: PeerConnection, message: Message) -> Message | None:
        if isinstance(message, Forward) and _from_supernode(pc):
            signal = self._path_message(message)
            if signal is not None:
                self._on_signal(message, signal)
                return None
        relay = self._relay
        if relay is not None and pc is relay.pc and relay.handle_message(message):
            return None
        path = self._by_pc.get(pc)
        if path is not None:
            return await path.handle(message)
        if self._previous_handler is not None:
            return await self._previous_handler(pc, message)
        self.endpoint.queue(pc.incoming, message, "incoming-overflow")
        return None

    def _path_message(self, envelope: Forward) -> PathMessage | None:
        try:
            inner = decode(envelope.payload)
        except WireError:
            return None
        if isinstance(inner, PathOffer | PathAnswer | PathCandidates | PathCancel):
            return inner
        return None

    def _on_signal(self, envelope: Forward, message: PathMessage) -> None:
        if envelope.from_user is None or envelope.from_device is None:
            self.dropped["signal:anonymous"] += 1
            return
        if isinstance(message, PathOffer):
            self._on_offer(envelope.from_user, envelope.from_device, message)
            return
        attempt = self._attempts.get(message.path_id)
        if attempt is None or attempt.path.user != envelope.from_user:
            self.dropped["signal:unsolicited"] += 1
            return
        if isinstance(message, PathAnswer):
            self._on_answer(attempt, message)
        elif isinstance(message, PathCandidates):
            self._add_remote(attempt, message.candidates)
        else:
            self._fail(attempt, f"cancelled by peer: {message.reason}")

    def _on_datagram(self, pc: PeerConnection, data: bytes) -> None:
        relay = self._relay
        if relay is not None and pc is relay.pc and relay.handle_datagram(data):
            return
        path = self._by_pc.get(pc)
        if path is not None:
            path.deliver_datagram(data)
        elif self._previous_datagrams is not None:
            self._previous_datagrams(pc, data)
        else:
            self.endpoint.queue(pc.media, data, "media-overflow")

    def _on_channel_data(self, pc: PeerConnection, channel: int, payload: bytes) -> None:
        relay = self._relay
        if relay is not None and pc is relay.pc:
            relay.handle_channel(channel, payload)
        elif self._previous_channels is not None:
            self._previous_channels(pc, channel, payload)
        else:
            self._on_datagram(pc, channel_data_frame(channel, payload))

    def _on_raw(self, data: bytes, address: Addr) -> bool:
        if is_stun(data) and self._offer_check(data, UDP_BASE, Address.of(*address)):
            return True
        return self._previous_raw is not None and self._previous_raw(data, address)

    def _on_relay_data(self, base: str, data: bytes, peer: Address, address: Addr) -> None:
        if is_stun(data):
            if not self._offer_check(data, base, peer):
                self.dropped["check:unmatched"] += 1
            return
        if not self.endpoint.base_received(base, data, address):
            self.dropped["relay:unknown-peer"] += 1

    def _offer_check(self, data: bytes, base: str, source: Address) -> bool:
        now = time.time()
        for attempt in list(self._attempts.values()):
            checker = attempt.checker
            if checker is not None and checker.receive(data, base, source, now):
                self._service(attempt)
                return True
        return False

    # ------------------------------------------------------------ establishing (callee)

    def _on_offer(self, user: str, device_id: bytes, offer: PathOffer) -> None:
        static = self._verify_peer(offer.certificate, user, device_id)
        if static is None:
            return
        if offer.to_device not in (None, self.session.profile.device_id):
            self.dropped["offer:other-device"] += 1
            return
        if offer.path_id in self._attempts or len(offer.path_id) != PATH_ID_SIZE:
            self.dropped["offer:bad-id"] += 1
            return
        path = self._path_for(user, device_id, static)
        try:
            self._check_capacity(path)
        except PathError:
            self.dropped["offer:busy"] += 1
            return
        attempt = self._new_attempt(path, offer.path_id, controlling=False)
        attempt.reply_via = offer.reply_via
        attempt.remote_ufrag = offer.ufrag
        attempt.tie_breaker = offer.tie_breaker
        attempt.local = self._gather()
        self._set_remote(attempt, offer.candidates)
        self._start_checker(attempt)
        answer = PathAnswer(
            path_id=offer.path_id,
            ufrag=attempt.local_ufrag,
            candidates=tuple(to_endpoint(c) for c in attempt.local),
            reply_via=self._own_home(),
            nat_class=self.nat_class,
            certificate=self.session.profile.certificate or b"",
        )
        self._signal_soon(attempt, answer)
        self._start_relay(attempt)
        self._spawn(self._take(attempt))
        self._spawn(self._callee_deadline(attempt))

    def _verify_peer(self, certificate: bytes, user: str, device_id: bytes) -> bytes | None:
        verifier = self.endpoint.verifier
        if verifier is None:
            self.dropped["offer:no-verifier"] += 1
            return None
        try:
            cert = verifier.verify(certificate, time.time(), role=Role.USER, subject=user)
        except CertificateError as exc:
            self.dropped[f"offer:certificate:{exc.reason}"] += 1
            return None
        if cert.body.device_id != device_id:
            self.dropped["offer:certificate:device"] += 1
            return None
        return cert.body.static_key

    def _path_for(self, user: str, device_id: bytes, static: bytes) -> PeerPath:
        """The path a new incoming attempt fills: an existing one with this peer, or the
        one our own attempt to this peer is establishing (both sides connected at once:
        one path, whichever connection is installed first), or new."""
        for path in self.paths:
            if path.static_key == static and path.closed_reason is None:
                return path
        for attempt in self._attempts.values():
            path = attempt.path
            if attempt.controlling and path.static_key == static and path.closed_reason is None:
                return path
        return PeerPath(user, device_id, static, initiator=False)

    async def _callee_deadline(self, attempt: _Attempt) -> None:
        assert attempt.done is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(attempt.done), self.config.connect_timeout_s * 2)
        if not attempt.done.done():
            self._fail(attempt, "timeout")

    def _surface(self, path: PeerPath) -> None:
        """A new incoming path: keep it up and hand it to accept()."""
        if path in self.paths:
            return  # an existing path, established again
        self._adopt(path)
        try:
            self._accepted.put_nowait(path)
        except asyncio.QueueFull:
            self.dropped["accept:backlog"] += 1
            path.shut("backlog full")

    # ------------------------------------------------------------ checks

    def _on_answer(self, attempt: _Attempt, answer: PathAnswer) -> None:
        if not attempt.controlling or attempt.checker is not None:
            self.dropped["answer:unexpected"] += 1
            return
        path = attempt.path
        static = self._verify_peer(answer.certificate, path.user, path.device_id)
        if static is None or static != path.static_key:
            self._fail(attempt, "answer certificate refused")
            return
        attempt.remote_ufrag = answer.ufrag
        self._set_remote(attempt, answer.candidates)
        self._start_checker(attempt)

    def _set_remote(self, attempt: _Attempt, records: tuple[EndpointRecord, ...]) -> None:
        attempt.remote = self._parse_candidates(attempt, records)

    def _parse_candidates(
        self, attempt: _Attempt, records: tuple[EndpointRecord, ...]
    ) -> list[Candidate]:
        found = []
        for record in records[:MAX_CANDIDATES]:
            try:
                candidate = from_endpoint(record)
            except CandidateError:
                self.dropped["candidate:unusable"] += 1
                continue
            if candidate.kind == CandidateKind.RELAYED:
                attempt.remote_relayed.add(record.address)
                if record.transport == TRANSPORT_TCP:
                    attempt.remote_tcp.add(record.address)
            found.append(candidate)
        return found

    def _add_remote(self, attempt: _Attempt, records: tuple[EndpointRecord, ...]) -> None:
        fresh = self._parse_candidates(attempt, records)
        attempt.remote.extend(fresh)
        if attempt.checker is None:
            return
        attempt.checker.add_remote(fresh, time.time())
        self._permit(attempt, fresh)
        self._service(attempt)

    def _start_checker(self, attempt: _Attempt) -> None:
        assert attempt.remote_ufrag is not None
        now = time.time()
        attempt.checker = PathChecker(
            controlling=attempt.controlling,
            local_ufrag=attempt.local_ufrag,
            remote_ufrag=attempt.remote_ufrag,
            key=attempt.key,
            local=attempt.local,
            remote=attempt.remote,
            now=now,
            config=self._check_config(attempt),
            tie_breaker=attempt.tie_breaker,
        )
        attempt.timer = CoreTimer(lambda: self._on_timer(attempt))
        self._permit(attempt, attempt.remote)
        self._service(attempt)

    def _check_config(self, attempt: _Attempt) -> CheckConfig:
        """The check timing; no wait for direct pairs when there can be none
        (we have no UDP candidate, or the peer signalled only relayed ones)."""
        config = self.config.checks or CheckConfig()
        ours = any(c.base == UDP_BASE for c in attempt.local)
        theirs = any(c.kind != CandidateKind.RELAYED for c in attempt.remote)
        if ours and theirs and not attempt.again:
            return config
        return dataclasses.replace(config, direct_wait_s=0.0)

    def _on_timer(self, attempt: _Attempt) -> None:
        if attempt.checker is not None and self._attempts.get(attempt.path_id) is attempt:
            attempt.checker.handle_timer(time.time())
            self._service(attempt)

    def _service(self, attempt: _Attempt) -> None:
        checker = attempt.checker
        if checker is None:
            return
        now = time.time()
        for base, destination, datagram in checker.datagrams_to_send(now):
            self._send_check(attempt, base, destination, datagram)
        while (event := checker.next_event()) is not None:
            self._on_check_event(attempt, event)
        if attempt.timer is not None and self._attempts.get(attempt.path_id) is attempt:
            attempt.timer.arm(checker.get_timer())

    def _send_check(
        self, attempt: _Attempt, base: str, destination: Address, datagram: bytes
    ) -> None:
        if base == UDP_BASE:
            self.endpoint.send_raw(datagram, destination.as_tuple())
            return
        allocation = attempt.allocation
        if allocation is not None and allocation.base == base:
            allocation.send(datagram, destination)
        else:
            self.dropped["check:no-base"] += 1

    def _on_check_event(self, attempt: _Attempt, event: object) -> None:
        path = attempt.path
        if isinstance(event, PairSucceeded):
            if path.first_packet_ms is None or path.connection is None:
                path.first_packet_ms = _ms_since(attempt.started)
        elif isinstance(event, PathSelected):
            self._on_selected(attempt, event)
        elif isinstance(event, ChecksFailed):
            if attempt.done is not None and not attempt.done.done():
                self._fail(attempt, f"checks failed: {event.reason}")
            else:
                self._finish(attempt, "checks over")

    # ------------------------------------------------------------ selection

    def _on_selected(self, attempt: _Attempt, event: PathSelected) -> None:
        attempt.selected_local = event.local
        path = attempt.path
        if path.live and path.kind == "direct" and self._current.get(path) is attempt:
            return  # already direct on this attempt
        if attempt.controlling:
            self._spawn(self._open(attempt, event.local, event.remote, event.direct))

    async def _open(
        self, attempt: _Attempt, local: Candidate, remote: Candidate, direct: bool
    ) -> None:
        """Controlling side: open the secure connection on the selected pair."""
        path = attempt.path
        expect = Expectation(role=Role.USER, subject=path.user, static_key=path.static_key)
        via = None if local.base == UDP_BASE else local.base
        if via is not None and attempt.allocation is not None:
            with contextlib.suppress(EndpointError):
                await attempt.allocation.bind(remote.address)
        if self._came_back(attempt):
            return
        try:
            pc = await self.endpoint.connect(
                remote.address.as_tuple(),
                expect,
                timeout=self.config.connect_timeout_s,
                via=via,
            )
        except EndpointError as exc:
            log.info("path to %s: connection on %s failed: %s", path.user, remote.address, exc)
            if not direct:
                self._fail(attempt, f"connect: {exc}")
            return
        self._install(attempt, pc)

    def _came_back(self, attempt: _Attempt) -> bool:
        """An attempt re-establishing a lost path, which the peer's attempt brought back
        meanwhile: it ends without a connection of its own (opened to the same address,
        that would replace and close the live one, and lose what is in flight on it)."""
        path = attempt.path
        if not attempt.again or not path.live or self._current.get(path) is attempt:
            return False
        if attempt.done is not None and not attempt.done.done():
            attempt.done.set_result(None)  # the path is back: whoever waits may go on
        self._give_up(attempt, "path back")
        return True

    async def _take(self, attempt: _Attempt) -> None:
        """Controlled side: take the connections the peer opens (a relayed one
        first perhaps, then a direct one) until the path is direct or the
        checks are over."""
        path = attempt.path
        checks = self.config.checks or CheckConfig()
        deadline = time.monotonic() + checks.timeout_s + self.config.connect_timeout_s
        seen: set[PeerConnection] = set()
        while time.monotonic() < deadline and path.closed_reason is None:
            if self._current.get(path) is attempt and path.live and path.kind == "direct":
                return
            if attempt.done is not None and attempt.done.done() and not path.live:
                return  # failed, or lost again: a new attempt takes over
            pc = self._incoming_from(path, seen)
            if pc is not None:
                seen.add(pc)
                if self._better(attempt, pc):
                    self._install(attempt, pc)
            await asyncio.sleep(POLL_S)

    def _better(self, attempt: _Attempt, pc: PeerConnection) -> bool:
        path = attempt.path
        if not path.live or self._current.get(path) is not attempt:
            return True
        return path.kind != "direct" and self._kind(attempt, pc) == "direct"

    def _on_accepted(self, pc: PeerConnection) -> None:
        """A peer opened a connection to us: once verified, it may be for an attempt."""
        pc.established.add_done_callback(lambda _: self._claim(pc))
        if self._previous_accepted is not None:
            self._previous_accepted(pc)

    def _claim(self, pc: PeerConnection) -> None:
        """Controlled side: install a verified connection from an attempt's peer at once."""
        peer = pc.peer
        if pc.closed.done() or peer is None or pc in self._by_pc:
            return
        for attempt in list(self._attempts.values()):
            path = attempt.path
            if attempt.controlling or path.static_key != peer.static_key:
                continue
            if self._better(attempt, pc):
                self._install(attempt, pc)
                return

    def _incoming_from(self, path: PeerPath, seen: set[PeerConnection]) -> PeerConnection | None:
        """An established connection the path's peer opened that no path holds yet.

        Not one we opened: our own attempt's connection is established a few
        loop turns before that attempt installs it, and taken here for the peer's
        attempt it would make ours replace (end) the peer's attempt, whose checks
        the peer then never gets answered (both sides connecting at once).
        """
        for pc in list(self.endpoint.connections.values()):
            peer = pc.peer
            if not (
                pc.closed.done()
                or pc.core.initiator
                or pc is path.connection
                or pc in self._by_pc
                or pc in seen
                or not pc.established.done()
                or peer is None
                or peer.static_key != path.static_key
            ):
                return pc
        return None

    def _install(self, attempt: _Attempt, pc: PeerConnection) -> None:
        path = attempt.path
        kind = self._kind(attempt, pc)
        first = attempt.done is not None and not attempt.done.done()
        if path.closed_reason is not None or (
            not first and (kind != "direct" or pc is path.connection)
        ):
            if pc is not path.connection:
                pc.close()
            return
        previous_attempt = self._current.get(path)
        reason = "upgrade" if not first else "reestablished" if path.changes else "established"
        local = self._local_address(attempt, pc)
        old = path.install(
            pc, kind=kind, local=local, remote=Address.of(*pc.address), reason=reason
        )
        self._by_pc[pc] = path
        pc.closed.add_done_callback(lambda _: self._release_idle())
        self._drain(pc, path)
        if first:
            path.established_ms = _ms_since(attempt.started)
        self._current[path] = attempt
        self._bind_channel(attempt, pc)
        if old is not None:
            self._by_pc.pop(old, None)
            self._spawn(self._close_later(old, UPGRADE_GRACE_S if reason == "upgrade" else 0))
        if previous_attempt is not None and previous_attempt is not attempt:
            self._finish(previous_attempt, "replaced")
        if attempt.done is not None and not attempt.done.done():
            attempt.done.set_result(None)
        if first and not attempt.controlling:
            self._surface(path)
        if kind == "direct":
            attempt.installed_direct = True
            self._release_unused(attempt)
            self._spawn(self._retire(attempt))
        log.info("path to %s: %s %s -> %s (%s)", path.user, kind, local, pc.address, reason)

    def _bind_channel(self, attempt: _Attempt, pc: PeerConnection) -> None:
        """A connection through our relay allocation: bind a channel to its peer.

        The controlling side binds before it connects; the controlled side does
        it here, so that datagrams travel as two-byte channel-data frames in both
        directions and on both legs, not as ``relay.send``/``relay.data`` notices
        (larger, and parsed on every datagram by the supernode and by us).
        """
        allocation = attempt.allocation
        if allocation is None or self._base_of(pc) != allocation.base:
            return
        peer = Address.of(*pc.address)
        if peer not in allocation.channels:
            self._spawn(self._bind_now(allocation, peer))

    async def _bind_now(self, allocation: RelayAllocationHandle, peer: Address) -> None:
        try:
            await allocation.bind(peer)
        except EndpointError as exc:
            self.dropped["relay:bind-failed"] += 1
            log.info("relay channel to %s refused: %s", peer, exc)

    def _local_address(self, attempt: _Attempt, pc: PeerConnection) -> Address:
        base = self._base_of(pc)
        allocation = attempt.allocation
        if allocation is not None and base == allocation.base:
            return allocation.relayed
        chosen = attempt.selected_local
        if chosen is not None and chosen.base == base:
            return chosen.address
        for candidate in attempt.local:
            if candidate.base == base:
                return candidate.address
        local = self.endpoint.local_address
        return Address.of(*local) if local is not None else Address.parse("0.0.0.0:0")

    def _base_of(self, pc: PeerConnection) -> str:
        return next((k[0] for k, v in self.endpoint.connections.items() if v is pc), UDP_BASE)

    async def _close_later(self, pc: PeerConnection, after: float) -> None:
        """Close a replaced connection; after an upgrade, only once the peer has
        surely taken the new one (make before break)."""
        if after:
            await asyncio.sleep(after)
        pc.close()

    async def _retire(self, attempt: _Attempt) -> None:
        """Stop a direct path's checks once the peer has surely seen the nomination;
        the path's own pings keep the NAT bindings open from then on."""
        await asyncio.sleep(RETIRE_AFTER_S)
        if self._attempts.get(attempt.path_id) is attempt:
            self._finish(attempt, "direct", release=False)

    def _drain(self, pc: PeerConnection, path: PeerPath) -> None:
        """Messages and datagrams that came before the connection was known."""
        while not pc.media.empty():
            path.deliver_datagram(pc.media.get_nowait())
        while not pc.incoming.empty():
            message = pc.incoming.get_nowait()
            self._spawn(self._answer_late(pc, path, message))

    async def _answer_late(self, pc: PeerConnection, path: PeerPath, message: Message) -> None:
        reply = await path.handle(message)
        if reply is not None and message.KIND is Kind.REQUEST and not pc.closed.done():
            pc.core.reply(message, reply, time.time())
            pc.service()

    def _kind(self, attempt: _Attempt, pc: PeerConnection) -> str:
        """direct, relay or tcp-relay: from the base the connection runs on and
        whether the peer's address is one of its relayed candidates."""
        base = self._base_of(pc)
        remote = Address.of(*pc.address)
        if base.startswith("tcp-relay:") or remote in attempt.remote_tcp:
            return "tcp-relay"
        if is_relay_base(base) or remote in attempt.remote_relayed:
            return "relay"
        return "direct"

    # ------------------------------------------------------------ relays

    def _relay_client(self) -> RelayClient | None:
        home = self.session.home
        if home is None or home.closed.done():
            return None
        if self._relay is None or self._relay.pc is not home:
            if self._relay is not None:
                self._relay.close()
            relay = RelayClient(home, tcp=self.session.home_transport == "tcp")
            home.closed.add_done_callback(lambda _: relay.close())  # allocations go with it
            self._relay = relay
        return self._relay

    def _start_relay(self, attempt: _Attempt) -> None:
        if self.config.relay or not self.config.udp:
            self._spawn(self._allocate(attempt))

    async def _allocate(self, attempt: _Attempt) -> None:
        async with self._allocating:
            allocation = await self._shared_allocation()
        if allocation is None:
            return
        if self._attempts.get(attempt.path_id) is not attempt or attempt.installed_direct:
            self._release_if_idle(allocation)
            return
        self._use_allocation(attempt, allocation)

    async def _shared_allocation(self) -> RelayAllocationHandle | None:
        """A live allocation on the home with room for another peer, or a new one.

        Paths share allocations (a user may hold only a few on a supernode);
        each peer takes permissions and a channel on it.
        """
        client = self._relay_client()
        if client is None:
            return None
        for allocation in client.allocations.values():
            if allocation.alive and len(allocation.permitted) < SHARE_PERMISSIONS:
                return allocation
        try:
            allocation = await client.allocate(self.config.relay_lifetime_s)
        except EndpointError as exc:
            self.dropped["relay:allocate-failed"] += 1
            log.info("no relay allocation: %s", exc)
            return None
        base = allocation.base
        allocation.on_data = lambda data, peer, address: self._on_relay_data(
            base, data, peer, address
        )
        self.endpoint.add_base(base, allocation.send_to)
        allocation.released.add_done_callback(lambda _: self.endpoint.remove_base(base))
        return allocation

    def _use_allocation(self, attempt: _Attempt, allocation: RelayAllocationHandle) -> None:
        attempt.allocation = allocation
        candidate = gather([], None, [(allocation.relayed, allocation.base)])
        attempt.local.extend(candidate)
        self._spawn(self._permit_now(allocation, attempt.remote))
        if attempt.checker is not None:
            attempt.checker.add_local(candidate, time.time())
            self._service(attempt)
        message = PathCandidates(
            path_id=attempt.path_id, candidates=tuple(to_endpoint(c) for c in candidate)
        )
        self._signal_soon(attempt, message)

    def _permit(self, attempt: _Attempt, remote: list[Candidate]) -> None:
        if attempt.allocation is not None and remote:
            self._spawn(self._permit_now(attempt.allocation, remote))

    async def _permit_now(self, allocation: RelayAllocationHandle, remote: list[Candidate]) -> None:
        if not remote:
            return
        family = allocation.relayed.family
        peers = [c.address for c in remote if c.address.family == family]
        if not peers:
            return
        try:
            await allocation.permit(peers)
        except EndpointError as exc:
            self.dropped["relay:permit-failed"] += 1
            log.info("relay permission refused: %s", exc)

    # ------------------------------------------------------------ ending attempts

    def _fail(self, attempt: _Attempt, reason: str) -> None:
        if attempt.done is not None and not attempt.done.done():
            attempt.done.set_exception(PathError(reason))
        self._finish(attempt, reason, release=True)

    def _finish(self, attempt: _Attempt, reason: str, *, release: bool = True) -> None:
        """Stop the attempt's checks; release its relay unless its path runs on it."""
        if self._attempts.get(attempt.path_id) is attempt:
            del self._attempts[attempt.path_id]
        if attempt.timer is not None:
            attempt.timer.cancel()
        if attempt.done is not None and not attempt.done.done():
            attempt.done.set_exception(PathError(reason))
        if release:
            self._release_unused(attempt)

    def _release_unused(self, attempt: _Attempt) -> None:
        """Let go of the attempt's relay allocation unless its path runs on it;
        the allocation is released once no attempt or connection uses it."""
        allocation = attempt.allocation
        if allocation is not None and not self._uses(attempt.path, allocation):
            attempt.allocation = None
            self._release_if_idle(allocation)

    def _uses(self, path: PeerPath, allocation: RelayAllocationHandle) -> bool:
        pc = path.connection
        if pc is None or pc.closed.done():
            return False
        return any(
            key[0] == allocation.base and v is pc for key, v in self.endpoint.connections.items()
        )

    def _release_idle(self) -> None:
        """Release every allocation nothing uses any more (after a connection closed)."""
        if self._relay is not None:
            for allocation in list(self._relay.allocations.values()):
                self._release_if_idle(allocation)

    def _release_if_idle(self, allocation: RelayAllocationHandle) -> None:
        holders = [*self._attempts.values(), *self._current.values()]
        if any(a.allocation is allocation for a in holders):
            return
        if any(key[0] == allocation.base for key in self.endpoint.connections):
            return
        self._spawn(allocation.release())

    # ------------------------------------------------------------ keeping paths up

    def _adopt(self, path: PeerPath) -> None:
        if path not in self.paths:
            self.paths.append(path)
            self._spawn(self._watch(path))
            for listener in self.path_listeners:
                listener(path)

    async def _watch(self, path: PeerPath) -> None:
        """Ping the peer; on loss, establish again (caller) or wait for the peer (callee)."""
        while path.closed_reason is None:
            pc = path.connection
            if pc is not None and await self._alive(path, pc):
                continue
            if path.closed_reason is not None or (path.connection is not pc and path.live):
                continue  # closed, or swapped while we looked (an upgrade)
            if self._take_replacement(path):
                continue
            if pc is not None and not pc.closed.done():
                pc.close()  # it stopped answering: while open it would count as live
            path.lost()
            self._release_current(path)
            if not self.config.reestablish or not await self._recover(path):
                path.shut("unreachable")
        self._release_current(path)
        for pc in [pc for pc, owner in self._by_pc.items() if owner is path]:
            del self._by_pc[pc]
        if path in self.paths:
            self.paths.remove(path)

    def _take_replacement(self, path: PeerPath) -> bool:
        """The peer already opened a new connection (an upgrade racing the old
        one's close): take it instead of starting over."""
        attempt = self._current.get(path)
        pc = self._incoming_from(path, set())
        if attempt is None or pc is None or self._kind(attempt, pc) != "direct":
            return False
        self._install(attempt, pc)
        return path.connection is pc

    def _home_changed(self) -> None:
        """The session re-homed: drop links made from the old network, look at this
        host's addresses again, check every path."""
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._spawn(self._refresh_hosts())
        for path in self.paths:
            self.check_soon(path)

    def check_soon(self, path: PeerPath) -> None:
        """Check ``path`` now (its traffic stalled): a ping with a short timeout,
        and on failure establish it again at once."""
        path.check_requested.set()

    async def _alive(self, path: PeerPath, pc: PeerConnection) -> bool:
        """Wait one keep-alive round (or a :meth:`check_soon`); False if the
        connection closed or stopped answering."""
        closed: asyncio.Future[str] = asyncio.ensure_future(asyncio.shield(pc.closed))
        asked: asyncio.Future[bool] = asyncio.ensure_future(path.check_requested.wait())
        try:
            await asyncio.wait(
                (closed, asked),
                timeout=self.config.keepalive_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in (closed, asked):
                waiter.cancel()
        if pc.closed.done():
            return False
        urgent = path.check_requested.is_set()
        path.check_requested.clear()
        timeout = self.config.urgent_ping_timeout_s if urgent else self.config.ping_timeout_s
        try:
            await pc.request(Ping(nonce=secrets.randbits(32)), timeout=timeout)
        except EndpointError:
            return False
        return True

    def _release_current(self, path: PeerPath) -> None:
        attempt = self._current.pop(path, None)
        if attempt is not None:
            self._finish(attempt, "lost", release=True)

    async def _recover(self, path: PeerPath) -> bool:
        """Establish a lost path again (caller) or wait for the peer to (callee).

        The caller first makes sure its own home answers (re-homing if the
        path died with it), then retries with a fresh lookup each time: the
        peer may be re-homing too, and its record names its new home only
        once it has published again.
        """
        deadline = time.monotonic() + self.config.reestablish_timeout_s
        while time.monotonic() < deadline and path.closed_reason is None:
            if path.live:
                return True  # the peer came back to us (callee side)
            if path.initiator and await self._establish_again(path, deadline):
                return True
            await asyncio.sleep(self.config.retry_backoff_s)
        return path.live

    async def _establish_again(self, path: PeerPath, deadline: float) -> bool:
        left = max(1.0, deadline - time.monotonic())
        if not await self.session.confirm_home(min(left, self.config.connect_timeout_s)):
            return False
        try:
            await self._refresh_hosts()
            device = await self._find_device(path.user, path.device_id)
            if path.live:  # the peer's attempt brought it back while we looked
                return True
            timeout = min(left, self.config.reestablish_attempt_s)
            await self._establish(path, device, timeout, again=True)
        except (EndpointError, PathClosedError) as exc:
            log.info("path to %s not re-established yet: %s", path.user, exc)
            return False
        return True

    # ------------------------------------------------------------ tasks

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.dropped["task-error"] += 1
            log.error("path task failed", exc_info=task.exception())


def _supernode_of(device: DeviceRecord) -> EndpointRecord | None:
    for endpoint in device.endpoints:
        if endpoint.kind == SUPERNODE_ENDPOINT_KIND:
            return endpoint
    return None


def _from_supernode(pc: PeerConnection) -> bool:
    peer = pc.peer
    return (
        peer is not None
        and peer.certificate is not None
        and (peer.certificate.body.role == Role.SUPERNODE)
    )


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
