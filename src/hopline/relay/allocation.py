"""Relay allocations on a supernode, TURN-like (RFC 8656 in spirit), sans-I/O.

A certified user whose peer cannot be reached directly asks a supernode for
an *allocation*: a relayed UDP port on the supernode, its *relayed transport
address*. Anyone on the Internet can send to that address, but the relay
passes on only datagrams from peer IP addresses the owner has *permitted*;
the owner sends to its peers through its secure connection to the
supernode, and the relay sends those datagrams from the relayed port.

:class:`RelayTable` decides everything and does no I/O: the supernode's
shell (:mod:`hopline.supernode.relay_service`) opens and closes the sockets
and moves the bytes. Every method takes ``now`` (seconds) and returns a
typed outcome; refused requests and dropped datagrams carry a short
``reason``, which is also the key of the counters (``refused``,
``dropped``).

Rules:

* an allocation belongs to one certified user and device (its
  :data:`Owner`); only the owner may refresh it, add permissions or channels,
  or send through it, and a request naming someone else's allocation is
  refused exactly like one naming no allocation (``no-allocation``);
* lifetime: the owner asks for one (default 600 s, clamped to
  ``[min_lifetime, max_lifetime]``); a refresh sets a new lifetime from now,
  and a refresh with lifetime 0 deletes the allocation. Expiry frees it
  (:meth:`RelayTable.handle_timer`, armed from :meth:`RelayTable.get_timer`);
* permissions are per peer IP address (any port, as in TURN) and last
  ``permission_lifetime`` (300 s) unless installed again; channels bind a
  number in ``0x4000-0x7FFF`` to one peer address for ``channel_lifetime``
  (600 s) and refresh that peer's permission;
* quotas: allocations per user and per supernode, permissions and channels
  per allocation, the largest payload, and token buckets for packets/s and
  bytes/s per allocation (both directions together) and bytes/s for the
  whole relay;
* two tiers per allocation. The *guaranteed* budget (``packets_per_s``,
  ``bytes_per_s``: 5,000 packets/s, 4 MB/s) is far above a call and may use
  the relay's whole bandwidth. A file transfer needs more: the *bulk* budget
  (``bulk_packets_per_s``, ``bulk_bytes_per_s``: another 40,000 packets/s
  and 32 MB/s) is spent only once the guaranteed one is empty, and only
  while the relay's bandwidth bucket stays above ``bulk_reserve`` of its
  burst. So one allocation never exceeds 45,000 packets/s and 36 MB/s, and
  bulk traffic uses only spare capacity: when the relay is busy it is
  refused first (``bulk-bandwidth``) and calls keep the reserved half;
* no amplification: a datagram arriving on a relayed port from anyone
  never causes anything to be sent back to its source. It is either
  delivered to the allocation's owner over the owner's authenticated
  connection or dropped silently and counted; the relay sends to a peer
  only what the authenticated owner asked it to send.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from hopline.relay.bucket import TokenBucket
from hopline.wire import Address

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

Owner = tuple[str, bytes]  # (canonical username, device id) from the owner's certificate
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x7FFF

__all__ = [
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "ChannelBound",
    "Deliver",
    "Drop",
    "Owner",
    "Permitted",
    "Refusal",
    "RelayAllocation",
    "RelayConfig",
    "RelayTable",
    "Released",
    "Transmit",
]


@dataclass(frozen=True)
class RelayConfig:
    """Lifetimes (seconds) and quotas of one supernode's relay."""

    default_lifetime: float = 600.0
    min_lifetime: float = 1.0  # shorter than the default only frees resources sooner
    max_lifetime: float = 3600.0
    permission_lifetime: float = 300.0
    channel_lifetime: float = 600.0
    max_per_user: int = 4
    max_allocations: int = 1000
    max_permissions: int = 32  # per allocation
    max_channels: int = 32  # per allocation
    max_payload: int = 1500  # bytes of one relayed datagram
    packets_per_s: float = 5000.0  # per allocation, both directions together
    packet_burst: float = 1000.0
    bytes_per_s: float = 4_000_000.0  # per allocation (32 Mbit/s)
    byte_burst: float = 800_000.0
    # the bulk tier, spent after the guaranteed one (0: no bulk tier); sized for a
    # file transfer of over 20 MiB/s: ~1,100-byte datagrams one way, acks the other
    bulk_packets_per_s: float = 40_000.0
    bulk_packet_burst: float = 4000.0
    bulk_bytes_per_s: float = 32_000_000.0  # (256 Mbit/s)
    bulk_byte_burst: float = 3_200_000.0
    bulk_reserve: float = 0.5  # of total_byte_burst, kept for guaranteed traffic
    total_bytes_per_s: float = 100_000_000.0  # the whole relay
    total_byte_burst: float = 10_000_000.0
    allow_loopback_peers: bool = False  # tests and a relay bound to loopback only


@dataclass(frozen=True)
class Refusal:
    """A request the relay refuses; ``reason`` is the counter key."""

    reason: str


@dataclass(frozen=True)
class Drop:
    """A datagram the relay does not pass on; ``reason`` is the counter key."""

    reason: str


@dataclass(frozen=True)
class Deliver:
    """Pass ``size`` bytes from ``peer`` to the allocation's owner (on ``channel`` if bound)."""

    relay_id: int
    owner: Owner
    peer: Address
    channel: int | None


@dataclass(frozen=True)
class Transmit:
    """Send the owner's datagram to ``peer`` from the allocation's relayed port."""

    relay_id: int
    peer: Address


@dataclass(frozen=True)
class Permitted:
    """Permissions installed (or refreshed) until ``expires``."""

    relay_id: int
    expires: float


@dataclass(frozen=True)
class ChannelBound:
    """``channel`` now means ``peer`` on allocation ``relay_id`` until ``expires``."""

    relay_id: int
    channel: int
    peer: Address
    expires: float


@dataclass(frozen=True)
class Released:
    """An allocation is gone (``expired``, ``deleted``, ``owner-left``): close its port."""

    relay_id: int
    owner: Owner
    reason: str


@dataclass
class RelayAllocation:
    """One allocation: its owner, relayed address, lifetime, permissions, channels, buckets."""

    relay_id: int
    owner: Owner
    expires: float
    packets: TokenBucket
    bytes: TokenBucket
    bulk: tuple[TokenBucket, TokenBucket] | None = None  # (packets, bytes) of the bulk tier
    relayed: Address | None = None  # set once the shell has opened the port
    permissions: dict[IPAddress, float] = field(default_factory=dict)  # peer IP -> expiry
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)

    def permitted(self, host: IPAddress, now: float) -> bool:
        """Whether ``host`` holds a permission at ``now``."""
        expiry = self.permissions.get(host)
        return expiry is not None and expiry > now

    def channel_of(self, peer: Address, now: float) -> int | None:
        """The live channel bound to ``peer``, if any."""
        channel = self.peer_channels.get(peer)
        if channel is None or self.channels[channel][1] <= now:
            return None
        return channel

    def next_deadline(self) -> float:
        """The earliest expiry of the allocation, a permission or a channel."""
        deadlines = [self.expires, *self.permissions.values()]
        deadlines += [expiry for _, expiry in self.channels.values()]
        return min(deadlines)

    def prune(self, now: float) -> tuple[int, list[int]]:
        """Forget expired permissions and channels: (permissions gone, channels gone)."""
        gone = [host for host, expiry in self.permissions.items() if expiry <= now]
        for host in gone:
            del self.permissions[host]
        stale = [number for number, (_, expiry) in self.channels.items() if expiry <= now]
        for number in stale:
            peer, _ = self.channels.pop(number)
            del self.peer_channels[peer]
        return len(gone), stale


class RelayTable:
    """Every allocation of one supernode, and every decision about them."""

    def __init__(self, config: RelayConfig | None = None, now: float = 0.0) -> None:
        """An empty relay with ``config`` (defaults: :class:`RelayConfig`)."""
        self.config = config or RelayConfig()
        self.allocations: dict[int, RelayAllocation] = {}
        self.per_user: Counter[str] = Counter()
        self.channels: dict[tuple[Owner, int], int] = {}  # (owner, channel) -> relay id
        self.total = TokenBucket(self.config.total_bytes_per_s, self.config.total_byte_burst, now)
        self.counters: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._next_id = 1

    def __len__(self) -> int:
        return len(self.allocations)

    # ------------------------------------------------------------ requests

    def allocate(
        self, owner: Owner, lifetime: float | None, now: float
    ) -> RelayAllocation | Refusal:
        """A new allocation for ``owner`` (its port still to be opened), or why not."""
        cfg = self.config
        if self.per_user[owner[0]] >= cfg.max_per_user:
            return self._refuse("quota-user")
        if len(self.allocations) >= cfg.max_allocations:
            return self._refuse("capacity")
        relay_id, self._next_id = self._next_id, self._next_id % 0xFFFFFFFF + 1
        allocation = RelayAllocation(
            relay_id,
            owner,
            now + self._lifetime(lifetime),
            TokenBucket(cfg.packets_per_s, cfg.packet_burst, now),
            TokenBucket(cfg.bytes_per_s, cfg.byte_burst, now),
            self._bulk_buckets(now),
        )
        self.allocations[relay_id] = allocation
        self.per_user[owner[0]] += 1
        self.counters["allocated"] += 1
        return allocation

    def attach(self, relay_id: int, relayed: Address) -> None:
        """Record the relayed transport address the shell opened for ``relay_id``."""
        self.allocations[relay_id].relayed = relayed

    def refresh(
        self, owner: Owner, relay_id: int, lifetime: float | None, now: float
    ) -> RelayAllocation | Released | Refusal:
        """Extend the lifetime from ``now``; lifetime 0 deletes the allocation."""
        allocation = self._owned(owner, relay_id, now)
        if allocation is None:
            return self._refuse("no-allocation")
        if lifetime == 0:
            released = self.release(relay_id, "deleted")
            assert released is not None
            return released
        allocation.expires = now + self._lifetime(lifetime)
        self.counters["refreshed"] += 1
        return allocation

    def permit(
        self, owner: Owner, relay_id: int, hosts: list[IPAddress], now: float
    ) -> Permitted | Refusal:
        """Install or refresh permissions for peer IP ``hosts`` (all or none)."""
        allocation = self._owned(owner, relay_id, now)
        if allocation is None:
            return self._refuse("no-allocation")
        if not hosts or not all(self._host_allowed(host) for host in hosts):
            return self._refuse("peer-denied")
        self._prune(allocation, now)
        new = {host for host in hosts if host not in allocation.permissions}
        if len(allocation.permissions) + len(new) > self.config.max_permissions:
            return self._refuse("quota-permissions")
        expires = now + self.config.permission_lifetime
        for host in hosts:
            allocation.permissions[host] = expires
        self.counters["permissions"] += len(hosts)
        return Permitted(relay_id, expires)

    def bind_channel(
        self, owner: Owner, relay_id: int, channel: int, peer: Address, now: float
    ) -> ChannelBound | Refusal:
        """Bind ``channel`` to ``peer`` (or refresh the binding); also permits the peer."""
        allocation = self._owned(owner, relay_id, now)
        if allocation is None:
            return self._refuse("no-allocation")
        if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
            return self._refuse("bad-channel")
        if not self._peer_allowed(peer):
            return self._refuse("peer-denied")
        self._prune(allocation, now)
        refusal = self._channel_conflict(allocation, channel, peer)
        if refusal is not None:
            return refusal
        permitted = self.permit(owner, relay_id, [peer.host], now)
        if isinstance(permitted, Refusal):
            return permitted
        expires = now + self.config.channel_lifetime
        allocation.channels[channel] = (peer, expires)
        allocation.peer_channels[peer] = channel
        self.channels[(owner, channel)] = relay_id
        self.counters["channels"] += 1
        return ChannelBound(relay_id, channel, peer, expires)

    def _channel_conflict(
        self, allocation: RelayAllocation, channel: int, peer: Address
    ) -> Refusal | None:
        holder = self.channels.get((allocation.owner, channel))
        if holder is not None and holder != allocation.relay_id:
            return self._refuse("channel-in-use")  # another allocation of this owner
        bound = allocation.channels.get(channel)
        if bound is not None and bound[0] != peer:
            return self._refuse("channel-in-use")
        other = allocation.peer_channels.get(peer)
        if other is not None and other != channel:
            return self._refuse("peer-has-channel")
        if bound is None and len(allocation.channels) >= self.config.max_channels:
            return self._refuse("quota-channels")
        return None

    def release(self, relay_id: int, reason: str) -> Released | None:
        """Free an allocation (``deleted``, ``owner-left``, ...); None if it is gone already."""
        allocation = self.allocations.pop(relay_id, None)
        if allocation is None:
            return None
        self.per_user[allocation.owner[0]] -= 1
        if self.per_user[allocation.owner[0]] <= 0:
            del self.per_user[allocation.owner[0]]
        for channel in allocation.channels:
            if self.channels.get((allocation.owner, channel)) == relay_id:
                del self.channels[(allocation.owner, channel)]
        self.counters[f"released:{reason}"] += 1
        return Released(relay_id, allocation.owner, reason)

    def owned_by(self, owner: Owner) -> list[int]:
        """The relay ids ``owner`` holds."""
        return [rid for rid, a in self.allocations.items() if a.owner == owner]

    # ------------------------------------------------------------ datagrams

    def from_peer(self, relay_id: int, source: Address, size: int, now: float) -> Deliver | Drop:
        """A datagram of ``size`` bytes from ``source`` arrived on a relayed port.

        Never a reply to ``source``: delivered to the owner, or dropped.
        """
        allocation = self.allocations.get(relay_id)
        if allocation is None or allocation.expires <= now:
            return self._drop("no-allocation")
        if not allocation.permitted(source.host, now):
            return self._drop("no-permission")
        drop = self._charge(allocation, size, now)
        if drop is not None:
            return drop
        allocation.counters["packets_in"] += 1
        allocation.counters["bytes_in"] += size
        self.counters["packets_in"] += 1
        self.counters["bytes_in"] += size
        return Deliver(relay_id, allocation.owner, source, allocation.channel_of(source, now))

    def to_peer(
        self, owner: Owner, relay_id: int, peer: Address, size: int, now: float
    ) -> Transmit | Drop:
        """The owner sends ``size`` bytes to ``peer`` through allocation ``relay_id``."""
        allocation = self._owned(owner, relay_id, now)
        if allocation is None:
            return self._drop("no-allocation")
        return self._transmit(allocation, peer, size, now)

    def channel_to_peer(self, owner: Owner, channel: int, size: int, now: float) -> Transmit | Drop:
        """The owner sends ``size`` bytes on ``channel`` (to the peer bound to it)."""
        relay_id = self.channels.get((owner, channel))
        allocation = self._owned(owner, relay_id, now) if relay_id is not None else None
        if allocation is None or channel not in allocation.channels:
            return self._drop("no-channel")
        peer, expiry = allocation.channels[channel]
        if expiry <= now:
            return self._drop("no-channel")
        return self._transmit(allocation, peer, size, now)

    def _transmit(
        self, allocation: RelayAllocation, peer: Address, size: int, now: float
    ) -> Transmit | Drop:
        if not self._peer_allowed(peer):
            return self._drop("peer-denied")
        if not allocation.permitted(peer.host, now):
            return self._drop("no-permission")
        drop = self._charge(allocation, size, now)
        if drop is not None:
            return drop
        allocation.counters["packets_out"] += 1
        allocation.counters["bytes_out"] += size
        self.counters["packets_out"] += 1
        self.counters["bytes_out"] += size
        return Transmit(allocation.relay_id, peer)

    def _charge(self, allocation: RelayAllocation, size: int, now: float) -> Drop | None:
        if size > self.config.max_payload:
            return self._drop("too-large")
        # take_all, unrolled: this runs for every relayed datagram
        packets, octets, total = allocation.packets, allocation.bytes, self.total
        if packets.refill(now) < 1.0:
            return self._charge_bulk(allocation, size, now, "rate-packets")
        if octets.refill(now) < size:
            return self._charge_bulk(allocation, size, now, "rate-bytes")
        if total.refill(now) < size:
            return self._drop("bandwidth")
        packets.tokens -= 1.0
        octets.tokens -= size
        total.tokens -= size
        return None

    def _charge_bulk(
        self, allocation: RelayAllocation, size: int, now: float, reason: str
    ) -> Drop | None:
        """The guaranteed tier cannot pay (``reason``): the bulk tier, from spare bandwidth."""
        if allocation.bulk is None:
            return self._drop(reason)
        packets, octets = allocation.bulk
        if packets.refill(now) < 1.0:
            return self._drop(reason)
        if octets.refill(now) < size:
            return self._drop(reason)
        total = self.total
        if total.refill(now) - size < self.config.bulk_reserve * total.burst:
            return self._drop("bulk-bandwidth")
        packets.tokens -= 1.0
        octets.tokens -= size
        total.tokens -= size
        self.counters["bulk_packets"] += 1
        return None

    def _bulk_buckets(self, now: float) -> tuple[TokenBucket, TokenBucket] | None:
        cfg = self.config
        if cfg.bulk_packets_per_s <= 0 or cfg.bulk_bytes_per_s <= 0:
            return None
        return (
            TokenBucket(cfg.bulk_packets_per_s, cfg.bulk_packet_burst, now),
            TokenBucket(cfg.bulk_bytes_per_s, cfg.bulk_byte_burst, now),
        )

    # ------------------------------------------------------------ time

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` next has work (an expiry), or None."""
        if not self.allocations:
            return None
        return min(a.next_deadline() for a in self.allocations.values())

    def handle_timer(self, now: float) -> list[Released]:
        """Free expired allocations (returned: close their ports); prune the rest."""
        released = []
        for relay_id, allocation in list(self.allocations.items()):
            if allocation.expires <= now:
                gone = self.release(relay_id, "expired")
                assert gone is not None
                released.append(gone)
                continue
            self._prune(allocation, now)
        return released

    def _prune(self, allocation: RelayAllocation, now: float) -> None:
        permissions, channels = allocation.prune(now)
        for channel in channels:
            if self.channels.get((allocation.owner, channel)) == allocation.relay_id:
                del self.channels[(allocation.owner, channel)]
        self.counters["expired-permissions"] += permissions
        self.counters["expired-channels"] += len(channels)

    # ------------------------------------------------------------ helpers

    def _owned(self, owner: Owner, relay_id: int, now: float) -> RelayAllocation | None:
        allocation = self.allocations.get(relay_id)
        if allocation is None or allocation.owner != owner or allocation.expires <= now:
            return None
        return allocation

    def _lifetime(self, requested: float | None) -> float:
        cfg = self.config
        wanted = cfg.default_lifetime if requested is None else requested
        return min(max(wanted, cfg.min_lifetime), cfg.max_lifetime)

    def _host_allowed(self, host: IPAddress) -> bool:
        if host.is_unspecified or host.is_multicast:
            return False
        if host == _BROADCAST:  # checked per relayed datagram: no address parsing here
            return False
        return self.config.allow_loopback_peers or not host.is_loopback

    def _peer_allowed(self, peer: Address) -> bool:
        return peer.port != 0 and self._host_allowed(peer.host)

    def _refuse(self, reason: str) -> Refusal:
        self.refused[reason] += 1
        return Refusal(reason)

    def _drop(self, reason: str) -> Drop:
        self.dropped[reason] += 1
        return Drop(reason)
