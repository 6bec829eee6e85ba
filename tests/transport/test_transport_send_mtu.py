"""A link that builds smaller datagrams than it accepts (``Link.set_send_mtu``).

A connection carried inside another one (a path through a relay) lowers the
size it builds so that each datagram, with the carrier's framing, still fits
one datagram of the carrier. The peer is not told: it accepts up to ``mtu``
and reassembles messages cut at ``min_send_mtu``.
"""

from __future__ import annotations

import random

import pytest

from hopline.testing import FakeNet, ImpairmentConfig
from hopline.transport import ConfigError, LinkConfig
from hopline.transport.config import fragment_payload
from hopline.transport.link import Link

CONFIG = LinkConfig(mtu=1176, min_send_mtu=1100)
LOSSY = ImpairmentConfig(drop=0.1, reorder=0.05, reorder_delay=0.02, delay=0.01)


class SizedLink(Link):
    """A link that remembers the size of every datagram it built."""

    def __init__(self, config: LinkConfig) -> None:
        super().__init__(config)
        self.sizes: list[int] = []

    def datagrams_to_send(self, now: float) -> list[bytes]:
        datagrams = super().datagrams_to_send(now)
        self.sizes.extend(map(len, datagrams))
        return datagrams


def messages(count: int, seed: int, largest: int = 64 * 1024) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice((10, 1100, 1200, 5000, largest))) for _ in range(count)]


@pytest.mark.parametrize("reliable", [True, False])
def test_lowered_sender_builds_small_datagrams_the_peer_reassembles(reliable: bool) -> None:
    a, b = SizedLink(CONFIG), SizedLink(CONFIG)
    a.set_send_mtu(1114)
    net = FakeNet(a, b, seed=3)
    sent = messages(40, 1)
    for message in sent:
        a.send(message, 0.0, reliable=reliable)
    assert net.run_until_idle(timeout=60.0)
    assert net.b_messages == sent  # the 64 KiB ones too: more fragments, still allowed
    assert max(a.sizes) <= 1114
    assert a.send_mtu == 1114 and b.send_mtu == 1176
    for message in sent:  # and back, from the end that kept the full size
        b.send(message, net.clock.now(), reliable=reliable)
    assert net.run_until_idle(timeout=60.0)
    assert net.a_messages == sent
    assert max(b.sizes) > 1114


def test_lowering_midway_never_stalls_fragments_cut_before() -> None:
    """Reliable fragments cut (and lost, and retransmitted) at the old size still go."""
    a, b = SizedLink(CONFIG), SizedLink(CONFIG)
    net = FakeNet(a, b, a_to_b=LOSSY, b_to_a=LOSSY, seed=5)
    sent = messages(30, 2)
    for message in sent:
        a.send(message, 0.0)
    net.run_for(0.05)  # part is on the way, part is cut and waiting
    a.set_send_mtu(1100)
    late = messages(10, 3)
    for message in late:
        a.send(message, net.clock.now())
    assert net.run_until_idle(timeout=120.0)
    assert net.b_messages == sent + late
    assert a.stats.segments_retransmitted > 0
    tail = a.sizes[-50:]  # long after the change: only the new size
    assert max(tail) <= 1100


def test_raising_it_again_uses_the_full_size() -> None:
    a, b = SizedLink(CONFIG), SizedLink(CONFIG)
    net = FakeNet(a, b, seed=1)
    a.set_send_mtu(1100)
    a.set_send_mtu(1176)
    a.send(bytes(20_000), 0.0)
    assert net.run_until_idle()
    assert max(a.sizes) > 1100 + 40  # full-size fragments again


@pytest.mark.parametrize("mtu", [1099, 1177, 0])
def test_outside_the_agreed_range_is_refused(mtu: int) -> None:
    link = Link(CONFIG)
    with pytest.raises(ConfigError):
        link.set_send_mtu(mtu)
    assert link.send_mtu == 1176


def test_reassembly_allows_messages_cut_at_the_smallest_size() -> None:
    assert CONFIG.max_fragments == -(-CONFIG.max_message_size // fragment_payload(1100))
    assert LinkConfig(mtu=1176).max_fragments < CONFIG.max_fragments
    with pytest.raises(ConfigError):
        LinkConfig(mtu=1176, min_send_mtu=1177)
