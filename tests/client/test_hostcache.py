"""HostCache: capacity, ordering, back-off, eviction, persistence."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hopline.client.hostcache import (
    HOSTCACHE_FILE,
    HostCache,
    HostCachePolicy,
    HostEntry,
    Source,
)
from hopline.wire import Address

DAY = 24 * 3600.0


def addr(i: int, port: int = 33033) -> Address:
    return Address.parse(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:{port}")


def source_of(cache: HostCache, address: Address) -> Source | None:
    entry = cache.get(address)
    return None if entry is None else entry.source


def test_capacity_of_200_is_enforced() -> None:
    cache = HostCache()
    added = cache.merge([addr(i) for i in range(250)], Source.OVERLAY, now=0.0)
    assert added == 200
    assert len(cache) == 200
    assert addr(199) in cache and addr(200) not in cache  # one merge keeps its first 200
    cache.record_success(addr(999), 0.05, now=1.0)
    assert len(cache) == 200
    assert addr(999) in cache


def test_candidates_order_best_first() -> None:
    cache = HostCache()
    now = 10 * DAY
    fast, slow, old, untried, failed = (addr(i) for i in range(5))
    cache.merge([failed, untried, old, slow, fast], Source.OVERLAY, now=0.0)
    cache.record_success(slow, 0.200, now - 60)
    cache.record_success(fast, 0.020, now - 120)
    cache.record_success(old, 0.001, now - 5 * DAY)  # fastest, but long ago
    cache.record_failure(failed, now - 3600)  # back-off long over
    assert cache.candidates(now) == [fast, slow, old, untried, failed]
    assert cache.candidates(now, 2) == [fast, slow]


def test_rtt_is_smoothed_and_success_resets_failures() -> None:
    cache = HostCache()
    a = addr(1)
    cache.record_success(a, 0.100, now=0.0, source=Source.MANUAL)
    cache.record_failure(a, now=1.0)
    cache.record_failure(a, now=2.0)
    cache.record_success(a, 0.020, now=3.0)
    entry = cache.get(a)
    assert entry is not None
    assert entry.source is Source.MANUAL
    assert entry.failures == 0
    assert entry.last_failure == 2.0
    assert entry.rtt == pytest.approx(0.100 * 7 / 8 + 0.020 / 8)


def test_failures_back_off_exponentially() -> None:
    policy = HostCachePolicy(backoff_base=10.0, backoff_max=100.0)
    cache = HostCache(policy=policy)
    a, b = addr(1), addr(2)
    cache.merge([a, b], Source.OVERLAY, now=0.0)
    expected = {1: 10.0, 2: 20.0, 3: 40.0, 4: 80.0, 5: 100.0, 6: 100.0}
    for failures, delay in expected.items():
        cache.record_failure(a, now=1000.0)
        entry = cache.get(a)
        assert entry is not None and entry.failures == failures
        assert entry.retry_at(policy) == 1000.0 + delay
        assert cache.candidates(1000.0 + delay - 0.001) == [b]
        assert cache.candidates(1000.0 + delay) == [b, a]


def test_backed_off_entries_come_last_on_request() -> None:
    cache = HostCache()
    a, b, c = addr(1), addr(2), addr(3)
    cache.merge([a, b, c], Source.OVERLAY, now=0.0)
    cache.record_failure(a, now=100.0)
    cache.record_failure(b, now=90.0)  # retries sooner than a
    assert cache.candidates(101.0) == [c]
    assert cache.candidates(101.0, include_backed_off=True) == [c, b, a]


def test_record_failure_of_unknown_address_is_ignored() -> None:
    cache = HostCache()
    cache.record_failure(addr(1), now=0.0)
    assert len(cache) == 0


def test_full_cache_evicts_the_worst_entries_first() -> None:
    cache = HostCache(policy=HostCachePolicy(capacity=3))
    good, failing, untried = addr(1), addr(2), addr(3)
    cache.merge([good, failing, untried], Source.OVERLAY, now=0.0)
    cache.record_success(good, 0.05, now=1.0)
    cache.record_failure(failing, now=1.0)
    assert cache.merge([addr(4)], Source.OVERLAY, now=2.0) == 1
    assert failing not in cache
    assert cache.merge([addr(5)], Source.OVERLAY, now=3.0) == 1
    assert untried not in cache  # the older of the two untried entries
    assert set(cache.candidates(3.0)) == {good, addr(4), addr(5)}


def test_heard_of_addresses_never_evict_known_good_entries() -> None:
    cache = HostCache(policy=HostCachePolicy(capacity=2))
    a, b = addr(1), addr(2)
    cache.merge([a, b], Source.OVERLAY, now=0.0)
    cache.record_success(a, 0.05, now=0.0)
    cache.record_success(b, 0.05, now=0.0)
    later = 30 * DAY  # both successes are stale now
    for source in (Source.BOOTSTRAP, Source.OVERLAY):
        assert cache.merge([addr(3), addr(4)], source, now=later) == 0
    assert set(cache.candidates(later)) == {a, b}
    # a supernode that just answered may replace a stale known-good entry, never a fresh one
    cache.record_success(b, 0.05, now=later)
    cache.record_success(addr(5), 0.05, now=later)
    assert set(cache.candidates(later)) == {b, addr(5)}
    cache.record_success(addr(6), 0.05, now=later)
    assert addr(6) not in cache and len(cache) == 2


def test_overlay_news_replaces_untried_and_failing_entries() -> None:
    cache = HostCache(policy=HostCachePolicy(capacity=3))
    good, failing, untried = addr(1), addr(2), addr(3)
    cache.merge([good, failing, untried], Source.BOOTSTRAP, now=0.0)
    cache.record_success(good, 0.05, now=1.0)
    cache.record_failure(failing, now=1.0)
    assert cache.merge([addr(4), addr(5), addr(6)], Source.OVERLAY, now=2.0) == 2
    assert good in cache and failing not in cache and untried not in cache
    assert {e.source for e in cache if e.address != good} == {Source.OVERLAY}


def test_overlay_vouches_for_bootstrap_entries_but_not_over_manual_ones() -> None:
    cache = HostCache()
    boot, manual, heard = addr(1), addr(2), addr(3)
    cache.merge([boot], Source.BOOTSTRAP, now=0.0)
    cache.merge([manual], Source.MANUAL, now=0.0)
    cache.record_success(boot, 0.02, now=1.0)
    assert cache.merge([boot, manual, heard], Source.OVERLAY, now=2.0) == 1
    entry = cache.get(boot)
    assert entry is not None and entry.source is Source.OVERLAY
    assert entry.last_success == 1.0 and entry.added == 0.0  # history kept
    assert source_of(cache, manual) is Source.MANUAL
    assert cache.merge([heard], Source.BOOTSTRAP, now=3.0) == 0
    assert source_of(cache, heard) is Source.OVERLAY


def test_manual_entries_are_only_evicted_by_manual_ones() -> None:
    cache = HostCache(policy=HostCachePolicy(capacity=1))
    cache.merge([addr(1)], Source.MANUAL, now=0.0)
    assert cache.merge([addr(2)], Source.OVERLAY, now=1.0) == 0
    assert cache.merge([addr(3)], Source.MANUAL, now=1.0) == 1
    assert cache.candidates(1.0) == [addr(3)]


def test_stale_until_something_answered_recently() -> None:
    cache = HostCache()
    assert cache.stale(0.0)
    cache.merge([addr(1)], Source.BOOTSTRAP, now=0.0)
    assert cache.stale(0.0)
    cache.record_success(addr(1), 0.01, now=0.0)
    assert not cache.stale(DAY)
    assert cache.stale(DAY + 1)
    cache.record_success(addr(1), 0.01, now=DAY + 2)
    cache.record_failure(addr(1), now=DAY + 3)
    assert cache.stale(DAY + 4)


def test_persistence_round_trip_and_mode_0600(tmp_path: Path) -> None:
    cache = HostCache.in_profile(tmp_path)
    assert len(cache) == 0 and cache.load_error is None
    cache.merge([addr(1), Address.parse("[2001:db8::1]:443")], Source.BOOTSTRAP, now=5.0)
    cache.record_success(addr(1), 0.03, now=6.0)
    cache.record_failure(addr(2), now=6.0)
    cache.merge([addr(2)], Source.OVERLAY, now=6.0)
    cache.record_failure(addr(2), now=7.0)
    cache.save()
    path = tmp_path / HOSTCACHE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = HostCache.in_profile(tmp_path)
    assert loaded.load_error is None
    assert sorted(map(HostEntry.to_json, loaded), key=str) == sorted(
        map(HostEntry.to_json, cache), key=str
    )
    assert loaded.candidates(10_000.0) == cache.candidates(10_000.0)
    assert not list(tmp_path.glob(".hostcache.json.*"))  # no temporary files left


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b"[]", b'{"version": 99, "entries": []}'],
)
def test_corrupt_file_is_reported_and_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / HOSTCACHE_FILE
    path.write_bytes(content)
    cache = HostCache.load(path)
    assert cache.load_error is not None and "corrupt" in cache.load_error
    assert len(cache) == 0
    assert json.loads(path.read_text()) == {"version": 1, "entries": []}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unusable_entries_are_skipped(tmp_path: Path) -> None:
    good = HostEntry(addr(1), Source.OVERLAY, added=1.0, rtt=0.02).to_json()
    bad = [
        {"address": "not an address", "source": "overlay", "added": 1.0},
        {"address": "10.0.0.2:1", "source": "martian", "added": 1.0},
        {"address": "10.0.0.3:1", "source": "overlay", "added": "yesterday"},
        {"address": "10.0.0.4:1", "source": "overlay", "added": 1.0, "failures": -1},
        "just a string",
    ]
    path = tmp_path / HOSTCACHE_FILE
    path.write_text(json.dumps({"version": 1, "entries": [good, *bad]}))
    cache = HostCache.load(path)
    assert cache.candidates(2.0) == [addr(1)]
    assert cache.load_error is not None and "skipped 5" in cache.load_error


def test_oversized_file_is_trimmed_to_capacity(tmp_path: Path) -> None:
    entries = [HostEntry(addr(i), Source.OVERLAY, added=float(i)).to_json() for i in range(250)]
    path = tmp_path / HOSTCACHE_FILE
    path.write_text(json.dumps({"version": 1, "entries": entries}))
    cache = HostCache.load(path)
    assert len(cache) == 200
    assert addr(249) in cache and addr(0) not in cache  # the oldest added went first


def test_save_without_a_file_is_an_error() -> None:
    with pytest.raises(ValueError, match="no file"):
        HostCache().save()
