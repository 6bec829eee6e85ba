"""A logged-in device on the network: its home supernode and its presence.

:class:`ClientSession` is what the client daemon runs for one profile:

1. **Home**: it races the best entries of the host cache (then bootstrap
   supernodes: those the login server knows now, and those it handed out at
   login) with
   :func:`~hopline.client.race.race_connect`, and keeps the winner as its
   home supernode; outcomes go into the cache, which is saved in the profile.
2. **Presence and profile**: it learns its public (server-reflexive) address from the
   home's answer to a ping and publishes a presence record listing this
   device: its certificate, static key and endpoints (the server-reflexive
   address, and the home supernode as kind 5: where path offers reach it,
   see :mod:`hopline.path.manager`; the endpoint accepts connections from
   certified users, and its UDP socket is dual-stack where IPv6 exists). The record's sequence
   number grows with the clock, so a newer record always wins, even after a
   restart. It also puts the public profile given at registration (full
   name, city, country, language) in the white pages.
3. **Keeping it up**: it pings its home every :attr:`keepalive_s`; when a
   ping fails or the connection closes, it marks the home failed in the
   cache and re-homes through another race, then republishes. Presence is
   refreshed before it expires. Callbacks in :attr:`home_listeners` hear of
   every new home, so what ran over the old network is checked at once.
4. **Network changes**: every :attr:`route_check_s` it asks the kernel which
   local address it would send from to its home (:func:`local_route`, a
   route lookup: nothing is sent). When that changes — the host got another
   address, or lost its link or route — the NAT binding the home knows is
   gone, so it re-homes at once instead of waiting for a keep-alive to fail.
   Any re-homing prefers another supernode to the old home, which still
   holds our lost connection until it times out there and would pass
   envelopes for this device to that one. With no route at
   all it waits, re-homing, until one comes back. Its sockets are bound to
   the wildcard address, so they work from the new address.
5. **Host cache from the overlay**: after connecting, and every
   :attr:`hosts_refresh_s`, it asks the home for a sample of live supernodes
   and merges them into the cache, so the next start (or re-homing) does not
   depend on the login server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from hopline.client import account
from hopline.client.hostcache import HostCache
from hopline.client.overlay_hosts import refresh_host_cache
from hopline.client.profile import Profile, ProfileError, parse_address
from hopline.client.race import RaceConfig, Transport, race_connect
from hopline.connection import Expectation
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import (
    ConnectError,
    Endpoint,
    EndpointError,
    PeerConnection,
    RequestError,
)
from hopline.wire import Address, ErrorCode, Message
from hopline.wire.commands import DeviceRecord, Ping, Pong, PresencePublish, PresenceRecord
from hopline.wire.commands import Endpoint as EndpointRecord
from hopline.wire.directory import (
    DirectoryLookup,
    DirectoryLookupReply,
    ProfilePublish,
    PublicProfile,
    SearchField,
    SearchReply,
    SearchRequest,
)

log = logging.getLogger("hopline.session")


class PresenceStatus(IntEnum):
    """A user's status as published in the directory (``PresenceRecord.status``)."""

    OFFLINE = 0
    ONLINE = 1
    AWAY = 2
    DND = 3
    INVISIBLE = 4


ONLINE = PresenceStatus.ONLINE
PUBLIC_FIELDS = ("full_name", "city", "country", "language")
MAX_MOOD_CHARS = 200


@dataclass
class SessionConfig:
    """Timers of a session."""

    keepalive_s: float = 20.0  # 3 datagrams a round: 9/min idle; holds NAT bindings (>= 30 s)
    ping_timeout_s: float = 3.0
    urgent_ping_timeout_s: float = 0.5  # after check_home_soon()
    presence_ttl_s: int = 300
    connect_timeout_s: float = 5.0
    rehome_backoff_s: float = 1.0
    listen: Address | None = None  # bind UDP and TCP here (default: any port, UDP only)
    race: RaceConfig = field(default_factory=RaceConfig)  # parallelism, fallback ports
    hosts_refresh_s: float = 600.0  # ask the home for live supernodes this often
    route_check_s: float = 1.0  # look up the route to the home this often (no packet sent)


def local_route(address: Address) -> str | None:
    """The local address the kernel would send from to ``address``; None: no route.

    A UDP socket's ``connect`` only looks the route up and binds a source
    address; nothing goes on the wire, so this costs a system call or two.
    """
    host, port = address.as_tuple()
    family = socket.AF_INET6 if address.host.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port or 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


class ClientSession:
    """One profile's presence on the network (see the module docstring)."""

    def __init__(self, profile: Profile, config: SessionConfig | None = None) -> None:
        if profile.certificate is None:
            raise ProfileError("not logged in: run 'hopline login' first")
        self.profile = profile
        self.config = config or SessionConfig()
        self.cache = HostCache.in_profile(profile.path)
        self.endpoint = Endpoint(
            static=profile.keys.static,
            certificate=profile.certificate,
            verifier=CertificateVerifier(profile.ls_key),
            accept=Expectation(role=Role.USER),  # peers open paths to us (hopline.path)
        )
        self.home: PeerConnection | None = None
        self.home_address: Address | None = None
        self.home_transport: str | None = None
        self.home_rtt_ms: float | None = None
        self.observed: Address | None = None
        self.nat_class = 0  # hopline.nat.discovery.NatType, once discovered (0: unknown)
        self.status = PresenceStatus(profile.config.get("presence", {}).get("status", ONLINE))
        self.mood: str | None = profile.config.get("presence", {}).get("mood")
        self.connected_at: float | None = None
        self.dropped: Counter[str] = Counter()  # malformed replies, by reason
        self.rehomes = 0
        self.route: Callable[[Address], str | None] = local_route
        self.local: str | None = None  # the source address towards the home, at connect
        self.home_listeners: list[Callable[[], None]] = []
        """Called after each re-homing (not the first connect): paths that ran
        from the old network or through the old home may be dead."""
        self._check_home = asyncio.Event()
        self._last_sequence = 0
        self._nonce = itertools.count(1)

    @property
    def user(self) -> str:
        """The certified username."""
        body = self.profile.certificate_body()
        assert body is not None
        return body.subject

    # ------------------------------------------------------------ home

    async def connect(self, *, avoid: Address | None = None) -> PeerConnection:
        """Race to a home supernode, learn our public address, publish presence.

        ``avoid`` is left out of the race (it fails at once, as if unreachable).
        """
        expect = Expectation(role=Role.SUPERNODE)
        timeout = self.config.connect_timeout_s
        if self.config.listen is not None and self.endpoint.local_address is None:
            await self.endpoint.listen(self.config.listen)
        elif self.endpoint.local_address is None and Transport.UDP in self.config.race.transports:
            await self._open_dual_stack()

        async def attempt(address: Address, tcp: bool) -> PeerConnection:
            if address == avoid:
                raise ConnectError("avoided: the home just lost")
            return await self.endpoint.connect(address.as_tuple(), expect, tcp=tcp, timeout=timeout)

        home, won = await race_connect(
            self.cache, self._bootstrap, attempt, self.config.race, discard=PeerConnection.close
        )
        self.cache.save()
        self.home, self.home_address = home, won.address
        self.local = self.route(won.address)
        self.home_transport, self.home_rtt_ms = str(won.transport), round(won.rtt * 1000, 1)
        self.connected_at = time.time()
        started = time.monotonic()
        await self._learn_address()
        await self.publish()
        published = time.monotonic()
        await self.publish_profile()
        await self.refresh_hosts()
        log.info(
            "home supernode %s at %s (raced %.0f ms, published %.0f ms, then %.0f ms)",
            home.peer.name if home.peer else "?",
            won.address,
            won.rtt * 1000,
            (published - started) * 1000,
            (time.monotonic() - published) * 1000,
        )
        return home

    async def _open_dual_stack(self) -> None:
        """One UDP socket for IPv6 and IPv4 (peers reach us on either; see
        hopline.path), or IPv4 only where the host has no IPv6."""
        try:
            await self.endpoint.open_udp("::", 0, dual=True)
        except OSError:
            await self.endpoint.open_udp("0.0.0.0", 0)  # noqa: S104 -- every interface

    @property
    def connected(self) -> bool:
        """True while a home supernode connection is open."""
        return self.home is not None and not self.home.closed.done()

    async def _bootstrap(self) -> list[Address]:
        """The login server's current supernodes, then those it gave at login."""
        known = list(self.profile.config.get("bootstrap", []))
        try:
            fresh = await account.bootstrap(self.profile)
        except EndpointError as exc:
            log.warning("login server unreachable for bootstrap (%s)", exc)
            fresh = []
        return [parse_address(a) for a in dict.fromkeys(fresh + known)]

    async def _learn_address(self) -> None:
        pong = await self.request(Ping(nonce=next(self._nonce)))
        if isinstance(pong, Pong) and pong.observed is not None:
            self.observed = pong.observed

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """A request to the home supernode."""
        if self.home is None:
            raise EndpointError("no home supernode: call connect() first")
        return await self.home.request(message, timeout=timeout)

    # ------------------------------------------------------------ presence

    def presence_record(self, *, leaving: bool = False) -> PresenceRecord:
        """This device's presence record, with a fresh sequence number.

        ``leaving`` (and the INVISIBLE status) publish a record that expires at
        once: the directory shows the user "offline, last seen now" and hands
        out no endpoints, while the devices and certificates stay findable.
        """
        certificate = self.profile.certificate
        assert certificate is not None
        now = int(time.time())
        hidden = leaving or self.status == PresenceStatus.INVISIBLE
        endpoints = []
        if self.observed is not None and not hidden:
            endpoints.append(EndpointRecord(address=self.observed, kind=1))
        if self.home_address is not None and not hidden:  # where path offers reach us
            tcp = 1 if self.home_transport == "tcp" else 0
            endpoints.append(EndpointRecord(address=self.home_address, transport=tcp, kind=5))
        device = DeviceRecord(
            device_id=self.profile.device_id,
            identity_key=self.profile.keys.static.public,
            certificate=certificate,
            endpoints=tuple(endpoints),
            nat_class=self.nat_class,
        )
        return PresenceRecord(
            user=self.user,
            status=PresenceStatus.OFFLINE if leaving else self.status,
            devices=(device,),
            mood=self.mood,
            last_seen=now,
            expires=now if hidden else now + self.config.presence_ttl_s,
            sequence=self._next_sequence(),
        )

    def _next_sequence(self) -> int:
        """Milliseconds of the clock, kept increasing: the directory orders the
        records of all of a user's devices by it, so it must not be a count of
        this session's own publishes."""
        self._last_sequence = max(self._last_sequence + 1, int(time.time() * 1000))
        return self._last_sequence

    async def publish(self) -> None:
        """Publish (or refresh) this device's presence."""
        await self.request(PresencePublish(record=self.presence_record()))

    async def set_presence(self, status: PresenceStatus, mood: str | None) -> None:
        """Change status and mood, keep them in the profile, and publish at once."""
        if mood is not None and len(mood) > MAX_MOOD_CHARS:
            raise ProfileError(f"a mood text has at most {MAX_MOOD_CHARS} characters")
        if status == PresenceStatus.OFFLINE:
            raise ProfileError("'offline' is not a status one sets: log out or go invisible")
        self.status, self.mood = status, mood or None
        self.profile.config["presence"] = {"status": int(status), "mood": self.mood}
        self.profile.save_config()
        if self.home is not None:
            await self.publish()

    async def set_public_profile(self, fields: dict[str, str | None]) -> dict[str, str]:
        """Change white-pages fields (None or "" clears one), keep and publish them."""
        current = dict(self.profile.config.get("public_profile") or {})
        for name, value in fields.items():
            if name not in PUBLIC_FIELDS:
                raise ProfileError(f"unknown profile field {name!r}")
            if value:
                current[name] = value
            else:
                current.pop(name, None)
        if self.home is not None:  # the supernode checks the fields before they are kept
            previous = self.profile.config.get("public_profile") or {}
            await self.publish_profile(current, withdraw_if_empty=True, previous=previous)
        self.profile.config["public_profile"] = current
        self.profile.save_config()
        return current

    async def publish_profile(
        self,
        fields: dict[str, str] | None = None,
        *,
        withdraw_if_empty: bool = False,
        previous: dict[str, str] | None = None,
    ) -> None:
        """Put this user's public profile in the white pages.

        A publish that comes too soon after the last one waits the time the
        supernode asks for, once.
        """
        if fields is None:
            fields = self.profile.config.get("public_profile")
        if not fields and not withdraw_if_empty:
            return
        replaced = PublicProfile(username=self.user, **previous) if previous else None
        message = ProfilePublish(
            profile=PublicProfile(username=self.user, **(fields or {})), previous=replaced
        )
        try:
            await self.request(message)
        except RequestError as exc:
            if exc.code != ErrorCode.TOO_MANY_REQUESTS:
                raise
            await asyncio.sleep(min(exc.retry_after_ms or 1000, 5000) / 1000)
            await self.request(message)

    async def search(
        self, field: SearchField, text: str, limit: int = 20, cursor: str | None = None
    ) -> SearchReply:
        """Search the white pages by name, city, country or language."""
        request = SearchRequest(field=int(field), text=text, limit=limit, cursor=cursor)
        reply = await self.request(request)
        assert isinstance(reply, SearchReply)
        return reply

    async def lookup(self, username: str) -> DirectoryLookupReply:
        """Where is ``username``? (one overlay hop from the home supernode)."""
        reply = await self.request(DirectoryLookup(username=username))
        assert isinstance(reply, DirectoryLookupReply)
        return reply

    # ------------------------------------------------------------ keeping it up

    async def run(self) -> None:
        """Keep the home alive, refresh presence and host cache, re-home when the home dies."""
        refresh_every = self.config.presence_ttl_s / 3
        refreshed = hosts_refreshed = time.monotonic()
        while True:
            change = await self._next_round()
            if change is not None:
                log.info("network changed (%s): re-homing", change)
                await self.rehome()
                refreshed = hosts_refreshed = time.monotonic()
                continue
            urgent = self._check_home.is_set()
            self._check_home.clear()
            if not await self._home_alive(urgent=urgent):
                await self.rehome()  # connect() refreshes presence and hosts
                refreshed = hosts_refreshed = time.monotonic()
                continue
            if time.monotonic() - refreshed >= refresh_every:
                await self.publish()
                refreshed = time.monotonic()
            if time.monotonic() - hosts_refreshed >= self.config.hosts_refresh_s:
                await self.refresh_hosts()
                hosts_refreshed = time.monotonic()

    async def _next_round(self) -> str | None:
        """Wait one keep-alive round (or a :meth:`check_home_soon`), looking at the
        route to the home meanwhile; what changed if it did (None: nothing)."""
        deadline = time.monotonic() + self.config.keepalive_s
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                wait = min(left, self.config.route_check_s)
                await asyncio.wait_for(self._check_home.wait(), wait)
            if self._check_home.is_set():
                return None
            change = self.route_change()
            if change is not None:
                return change
        return None

    def route_change(self) -> str | None:
        """How the route to the home changed since connecting (None: it did not)."""
        if self.home_address is None or self.home is None:
            return None
        now = self.route(self.home_address)
        if now == self.local:
            return None
        return f"local address {self.local} -> {now or 'no route'}"

    async def refresh_hosts(self) -> int:
        """Learn live supernodes from the home (best effort); return how many were new."""
        try:
            added = await refresh_host_cache(
                self.request, self.cache, time.time(), dropped=self.dropped
            )
        except EndpointError as exc:
            log.info("host cache refresh from the overlay failed: %s", exc)
            return 0
        with contextlib.suppress(OSError):  # a read-only profile keeps its old cache
            self.cache.save()
        if added:
            log.info("host cache: %d supernodes learnt from the overlay", added)
        return added

    def check_home_soon(self) -> None:
        """Ping the home now with a short timeout (and re-home if it is gone):
        something that runs through it, such as a call's relay, stalled."""
        self._check_home.set()

    async def confirm_home(self, timeout: float) -> bool:
        """True once a home answers a quick ping, re-homing first if the
        current one is gone; False if none does within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.home is not None and await self._home_alive(urgent=True):
                return True
            self.check_home_soon()  # run() re-homes
            await asyncio.sleep(0.05)
        return False

    async def _home_alive(self, *, urgent: bool = False) -> bool:
        if self.home is None or self.home.closed.done():
            return False
        timeout = self.config.urgent_ping_timeout_s if urgent else self.config.ping_timeout_s
        try:
            await self.request(Ping(nonce=next(self._nonce)), timeout=timeout)
        except EndpointError as exc:
            log.info("home supernode not answering: %s", exc)
            return False
        return True

    async def rehome(self) -> None:
        """Find another home (the old one is recorded as failed) and republish;
        then tell :attr:`home_listeners`.

        Another supernode is preferred: the old one may still hold our lost
        connection until it times out there, and pass envelopes for this
        device to that one; it is raced again only when no other answers.
        While there is no route to the old home the host has no network: it
        waits for one rather than racing (and recording failures for)
        supernodes it cannot reach.
        """
        lost = avoid = self.home_address
        if lost is not None:
            self.cache.record_failure(lost, time.time())
        if self.home is not None:
            self.home.close()
        self.home = None
        while self.home is None:
            if lost is not None and self.route(lost) is None:
                await asyncio.sleep(self.config.route_check_s)
                continue
            try:
                await self.connect(avoid=avoid)
            except EndpointError as exc:
                if avoid is not None:
                    avoid = None  # no other supernode answered: the old one again
                    continue
                log.warning("re-homing failed (%s); trying again", exc)
                await asyncio.sleep(self.config.rehome_backoff_s)
        self.rehomes += 1
        for listener in list(self.home_listeners):
            listener()

    async def leave(self, timeout: float = 2.0) -> None:
        """Tell the directory this device went offline (best effort), then close."""
        if self.home is not None and not self.home.closed.done():
            try:
                leaving = PresencePublish(record=self.presence_record(leaving=True))
                await self.request(leaving, timeout=timeout)
            except EndpointError as exc:
                log.info("could not publish offline presence: %s", exc)
        await self.close()

    async def close(self) -> None:
        """Close the connection and save the host cache."""
        if self.home is not None:
            self.home.close()
        self.endpoint.close()
        with contextlib.suppress(OSError):  # a read-only profile keeps its old cache
            self.cache.save()
