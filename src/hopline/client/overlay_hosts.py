"""Keep the host cache fresh from the overlay, not only from the login server.

The classic client learnt new supernodes from the network itself. A
session calls :func:`refresh_host_cache` now and then (after connecting,
then every few minutes): it asks the home supernode for a sample of live
supernodes (``membership.sample``, :mod:`hopline.wire.hosts`) and merges
their advertised addresses into the :class:`~hopline.client.hostcache.HostCache`
as :attr:`~hopline.client.hostcache.Source.OVERLAY` entries. The cache's
policy keeps that safe: addresses merely heard of never push out a
supernode that answered before, and a full cache drops the newcomers
instead.

``request`` is any coroutine function that sends a message to the home
supernode and returns its reply, such as ``ClientSession.request`` or
``PeerConnection.request``; its errors (``EndpointError`` and subclasses)
propagate. The reply is the home's word, not proof: a malformed reply,
more than :data:`~hopline.wire.hosts.MAX_SAMPLE` hosts, or addresses no
one could dial (unspecified, multicast, port 0) are dropped and counted in
``dropped`` (when given), never raised. The addresses are checked for real
when the client races them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from hopline.client.hostcache import HostCache, Source
from hopline.wire import Address, Message
from hopline.wire.hosts import (
    MAX_SAMPLE,
    SupernodeSample,
    SupernodeSampleReply,
    usable_address,
)

__all__ = ["Request", "refresh_host_cache"]

Request = Callable[[Message], Awaitable[Message]]


async def refresh_host_cache(
    request: Request,
    cache: HostCache,
    now: float,
    *,
    limit: int = MAX_SAMPLE,
    dropped: Counter[str] | None = None,
) -> int:
    """Ask the home supernode for live supernodes and merge them into ``cache``.

    ``now`` is wall-clock seconds (the cache's time). Returns how many
    addresses were new to the cache and kept. Saving the cache is the
    caller's business.
    """
    counts = dropped if dropped is not None else Counter()
    reply = await request(SupernodeSample(limit=max(1, min(limit, MAX_SAMPLE))))
    if not isinstance(reply, SupernodeSampleReply):
        counts["unexpected-reply"] += 1
        return 0
    hosts = reply.hosts
    if len(hosts) > MAX_SAMPLE:
        counts["too-many-hosts"] += len(hosts) - MAX_SAMPLE
        hosts = hosts[:MAX_SAMPLE]
    addresses: list[Address] = []
    for host in hosts:
        if not usable_address(host.address):
            counts["unusable-address"] += 1
        elif host.address not in addresses:
            addresses.append(host.address)
    return cache.merge(addresses, Source.OVERLAY, now)
