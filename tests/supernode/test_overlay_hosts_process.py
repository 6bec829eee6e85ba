"""A client's host cache learns the overlay from its home, then outlives that home."""

from __future__ import annotations

import time
from pathlib import Path

from hopline.client.hostcache import HostCache, Source
from hopline.client.overlay_hosts import refresh_host_cache
from hopline.client.race import RaceConfig, race_connect
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.testing.network import logged_in, start_network
from hopline.wire import Address
from hopline.wire.commands import Ping, Pong

EXPECT = Expectation(role=Role.SUPERNODE)


async def test_cache_learns_every_supernode_and_reaches_one_without_the_login_server(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path / "logs") as cluster:
        ls, nodes = start_network(cluster, tmp_path, supernodes=3)
        profile = await logged_in(tmp_path, ls, "alice")
        addresses = {Address.parse(p.ready["listen"]): p for p in nodes}
        first = Address.parse(nodes[0].ready["listen"])
        cache = HostCache.in_profile(profile.path)
        cache.merge([first], Source.BOOTSTRAP, time.time())  # the cache knows one supernode
        endpoint = Endpoint(
            static=profile.keys.static,
            certificate=profile.certificate,
            verifier=CertificateVerifier(profile.ls_key),
        )

        async def attempt(address: Address, tcp: bool) -> PeerConnection:
            return await endpoint.connect(address.as_tuple(), EXPECT, tcp=tcp, timeout=2.0)

        try:
            home, won = await race_connect(cache, [], attempt, discard=PeerConnection.close)
            assert won.address == first
            added = await refresh_host_cache(home.request, cache, time.time())
            assert added == 2
            assert {e.address for e in cache} == set(addresses)
            assert {e.source for e in cache} == {Source.OVERLAY}
            cache.save()
            home.close()

            nodes[0].kill()  # the only supernode the cache started with: gone
            ls.kill()  # and no bootstrap from the login server either
            nodes[0].popen.wait(10)
            ls.popen.wait(10)

            reloaded = HostCache.in_profile(profile.path)
            config = RaceConfig(attempt_timeout=2.0)
            again, won = await race_connect(
                reloaded, [], attempt, config, discard=PeerConnection.close
            )
            assert won.address in set(addresses) - {first}
            pong = await again.request(Ping(nonce=7))
            assert isinstance(pong, Pong) and pong.nonce == 7
        finally:
            endpoint.close()
