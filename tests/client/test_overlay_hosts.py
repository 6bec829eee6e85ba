"""refresh_host_cache: what a home's answer does to the cache, bad answers included.

The real exchange with supernode processes is in
tests/supernode/test_overlay_hosts_process.py; here the reply is given.
"""

from __future__ import annotations

from collections import Counter

import pytest

from hopline.client.hostcache import HostCache, HostCachePolicy, Source
from hopline.client.overlay_hosts import Request, refresh_host_cache
from hopline.runtime.endpoint import RequestTimeout
from hopline.wire import Address, Message
from hopline.wire.commands import Pong
from hopline.wire.hosts import MAX_SAMPLE, SupernodeHost, SupernodeSample, SupernodeSampleReply


def host(n: int, text: str | None = None) -> SupernodeHost:
    return SupernodeHost(node_id=f"sn-{n}", address=Address.parse(text or f"10.1.0.{n}:4434"))


def answering(reply: Message, asked: list[Message] | None = None) -> Request:
    async def request(message: Message) -> Message:
        if asked is not None:
            asked.append(message)
        return reply

    return request


async def test_new_supernodes_are_merged_as_overlay_entries() -> None:
    cache = HostCache()
    cache.record_success(host(1).address, 0.01, now=1.0, source=Source.BOOTSTRAP)
    asked: list[Message] = []
    reply = SupernodeSampleReply(hosts=(host(1), host(2), host(3)))
    assert await refresh_host_cache(answering(reply, asked), cache, now=5.0) == 2
    assert asked == [SupernodeSample(limit=MAX_SAMPLE)]
    assert {e.address: e.source for e in cache} == {
        host(n).address: Source.OVERLAY for n in (1, 2, 3)
    }
    assert await refresh_host_cache(answering(reply), cache, now=6.0) == 0  # nothing new


async def test_bad_answers_are_dropped_and_counted() -> None:
    cache = HostCache()
    dropped: Counter[str] = Counter()
    junk = (host(1, "0.0.0.0:4434"), host(2, "10.1.0.2:0"), host(3, "[ff02::1]:4434"))
    too_many = tuple(host(n) for n in range(10, 10 + MAX_SAMPLE + 5))
    reply = SupernodeSampleReply(hosts=junk + too_many)
    kept = await refresh_host_cache(answering(reply), cache, now=1.0, dropped=dropped)
    assert kept == MAX_SAMPLE - len(junk)  # only the first 32 hosts are read
    over = len(junk) + len(too_many) - MAX_SAMPLE
    assert dropped == Counter({"unusable-address": 3, "too-many-hosts": over})
    assert await refresh_host_cache(answering(Pong(nonce=1)), cache, 2.0, dropped=dropped) == 0
    assert dropped["unexpected-reply"] == 1


async def test_a_full_cache_of_good_supernodes_keeps_them() -> None:
    cache = HostCache(policy=HostCachePolicy(capacity=2))
    for n in (1, 2):
        cache.record_success(host(n).address, 0.01, now=1.0)
    reply = SupernodeSampleReply(hosts=(host(3), host(4)))
    assert await refresh_host_cache(answering(reply), cache, now=2.0) == 0
    assert {e.address for e in cache} == {host(1).address, host(2).address}


async def test_request_errors_propagate_and_the_limit_is_bounded() -> None:
    async def failing(message: Message) -> Message:
        raise RequestTimeout("no reply")

    with pytest.raises(RequestTimeout):
        await refresh_host_cache(failing, HostCache(), now=1.0)
    asked: list[Message] = []
    empty = SupernodeSampleReply(hosts=())
    await refresh_host_cache(answering(empty, asked), HostCache(), now=1.0, limit=500)
    await refresh_host_cache(answering(empty, asked), HostCache(), now=1.0, limit=0)
    assert asked == [SupernodeSample(limit=MAX_SAMPLE), SupernodeSample(limit=1)]
