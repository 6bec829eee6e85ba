"""The client's host cache: the supernodes it knows, best first.

An ordinary node remembers up to 200 supernodes (``HostCachePolicy.capacity``)
so that it can log in to the overlay without asking the login server. Each
:class:`HostEntry` keeps what the node learned about one supernode address: when
it last answered, when it last failed, how many times in a row it failed, a
smoothed round-trip time (RFC 6298 style, ``srtt = 7/8 srtt + 1/8 sample``) and
where the address came from (:class:`Source`: the login server's bootstrap list,
the overlay, or the user).

Policy, all pure functions of ``now`` (seconds of wall-clock time, because the
cache outlives the process):

* :meth:`HostCache.candidates` orders entries best-first in tiers — recent
  success, older success, never tried, failed but due for a retry — and by RTT
  inside a tier. An entry that failed ``n`` times in a row is *backed off* for
  ``min(backoff_base * 2**(n-1), backoff_max)`` seconds after its last failure
  and is left out (or, on request, put last).
* :meth:`HostCache.merge` adds addresses heard from the overlay (a home
  supernode's sample of live members, :mod:`hopline.client.overlay_hosts`) or
  the login server. When the cache is full the worst entry (most consecutive
  failures, then the oldest success, then the oldest added) makes room — but
  known-good entries are never pushed out by addresses merely heard of
  (bootstrap or overlay), only by one that just answered
  (:meth:`HostCache.record_success`), fresh known-good entries are never
  pushed out at all, and manual entries only by manual ones. If nothing may
  be evicted, the new address is dropped. An overlay merge marks a known
  bootstrap entry as overlay-learnt (the overlay vouches for it now); a
  manual merge marks any entry manual.
* :meth:`HostCache.stale` says the cache needs refreshing: fewer than
  ``min_fresh`` entries answered within ``fresh_window``.

Persistence: ``hostcache.json`` in the profile directory, written atomically
with mode 0600 by :func:`hopline.client.profile.write_private`. Loading is
tolerant: a missing file is an empty cache, unusable entries are skipped, and
a corrupt file is logged, reported in :attr:`HostCache.load_error` and replaced
by an empty cache on disk — never a crash at start-up.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hopline.client.profile import write_private
from hopline.wire import Address, WireError

__all__ = [
    "HOSTCACHE_FILE",
    "HostCache",
    "HostCachePolicy",
    "HostEntry",
    "Source",
]

log = logging.getLogger("hopline.hostcache")

HOSTCACHE_FILE = "hostcache.json"
FORMAT_VERSION = 1
RTT_GAIN = 1 / 8  # RFC 6298 alpha


class Source(StrEnum):
    """Where a supernode address came from."""

    BOOTSTRAP = "bootstrap"
    OVERLAY = "overlay"
    MANUAL = "manual"


_SOURCE_RANK = {Source.MANUAL: 0, Source.OVERLAY: 1, Source.BOOTSTRAP: 2}


@dataclass(frozen=True)
class HostCachePolicy:
    """The knobs of the cache; the defaults suit a desktop client."""

    capacity: int = 200
    backoff_base: float = 30.0  # seconds after the first failure
    backoff_max: float = 6 * 3600.0
    fresh_window: float = 24 * 3600.0  # a success younger than this is "recent"
    min_fresh: int = 1  # fewer recent successes than this: the cache is stale


@dataclass
class HostEntry:
    """What the client knows about one supernode address."""

    address: Address
    source: Source
    added: float
    last_success: float | None = None
    last_failure: float | None = None
    failures: int = 0  # consecutive; a success resets it
    rtt: float | None = None  # smoothed, seconds

    @property
    def known_good(self) -> bool:
        """It answered, and has not failed since."""
        return self.last_success is not None and self.failures == 0

    def retry_at(self, policy: HostCachePolicy) -> float:
        """When the back-off after the last failure ends (``-inf`` if none)."""
        if self.failures == 0 or self.last_failure is None:
            return -math.inf
        delay = policy.backoff_base * 2.0 ** min(self.failures - 1, 62)
        return self.last_failure + min(delay, policy.backoff_max)

    def backed_off(self, now: float, policy: HostCachePolicy) -> bool:
        """Whether it failed too recently to be tried again."""
        return now < self.retry_at(policy)

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object."""
        return {
            "address": str(self.address),
            "source": self.source.value,
            "added": self.added,
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "failures": self.failures,
            "rtt": self.rtt,
        }

    @classmethod
    def from_json(cls, obj: object) -> HostEntry:
        """Parse one entry; ValueError (or WireError) if it is malformed."""
        if not isinstance(obj, dict):
            raise ValueError("entry is not an object")
        failures = obj.get("failures", 0)
        if not isinstance(failures, int) or isinstance(failures, bool) or failures < 0:
            raise ValueError(f"bad failure count {failures!r}")
        return cls(
            address=Address.parse(_text(obj.get("address"))),
            source=Source(_text(obj.get("source"))),
            added=_time(obj.get("added"), optional=False) or 0.0,
            last_success=_time(obj.get("last_success")),
            last_failure=_time(obj.get("last_failure")),
            failures=failures,
            rtt=_time(obj.get("rtt")),
        )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _time(value: object, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


@dataclass
class HostCache:
    """The supernode host cache (see the module docstring for the policy)."""

    path: Path | None = None
    policy: HostCachePolicy = field(default_factory=HostCachePolicy)
    load_error: str | None = None  # why the file on disk was (partly) unusable
    _entries: dict[Address, HostEntry] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[HostEntry]:
        return iter(self._entries.values())

    def __contains__(self, address: object) -> bool:
        return address in self._entries

    def get(self, address: Address) -> HostEntry | None:
        """The entry for ``address``, if cached."""
        return self._entries.get(address)

    def candidates(
        self, now: float, n: int | None = None, *, include_backed_off: bool = False
    ) -> list[Address]:
        """Up to ``n`` addresses to try, best first.

        Backed-off entries are left out unless ``include_backed_off``, in which
        case they come last, the soonest retry first.
        """
        usable = [e for e in self._entries.values() if not e.backed_off(now, self.policy)]
        usable.sort(key=lambda e: self._rank(e, now))
        if include_backed_off:
            waiting = [e for e in self._entries.values() if e.backed_off(now, self.policy)]
            usable += sorted(waiting, key=lambda e: (e.retry_at(self.policy), str(e.address)))
        return [e.address for e in usable[:n]]

    def stale(self, now: float) -> bool:
        """Whether too few entries answered recently (time to ask for more)."""
        fresh = sum(1 for e in self._entries.values() if self._fresh(e, now))
        return fresh < self.policy.min_fresh

    def _fresh(self, entry: HostEntry, now: float) -> bool:
        return entry.known_good and now - (entry.last_success or 0.0) <= self.policy.fresh_window

    def _rank(self, entry: HostEntry, now: float) -> tuple[Any, ...]:
        if entry.known_good:
            tier = 0 if self._fresh(entry, now) else 1
        else:
            tier = 2 if entry.failures == 0 else 3
        return (
            tier,
            entry.failures,
            math.inf if entry.rtt is None else entry.rtt,
            -(entry.last_success or 0.0),
            _SOURCE_RANK[entry.source],
            -entry.added,
            str(entry.address),
        )

    # ------------------------------------------------------------ updates

    def record_success(
        self, address: Address, rtt: float, now: float, source: Source = Source.OVERLAY
    ) -> None:
        """``address`` answered after ``rtt`` seconds (adds it, from ``source``, if new)."""
        entry = self._entries.get(address) or self._admit(address, source, now, success=True)
        if entry is None:
            return
        entry.rtt = rtt if entry.rtt is None else (1 - RTT_GAIN) * entry.rtt + RTT_GAIN * rtt
        entry.last_success = now
        entry.failures = 0

    def record_failure(self, address: Address, now: float) -> None:
        """An attempt to reach ``address`` failed (unknown addresses are ignored)."""
        entry = self._entries.get(address)
        if entry is not None:
            entry.failures += 1
            entry.last_failure = now

    def merge(self, addresses: Iterable[Address], source: Source, now: float) -> int:
        """Add addresses learned from ``source``; return how many were new and kept.

        Known addresses keep their history; a manual merge marks them manual,
        an overlay merge marks bootstrap ones overlay-learnt. Addresses of one
        merge never evict each other: when the cache fills up, the first ones
        (the sender's best) stay.
        """
        added: set[Address] = set()
        for address in addresses:
            entry = self._entries.get(address)
            if entry is not None:
                if _SOURCE_RANK[source] < _SOURCE_RANK[entry.source]:
                    entry.source = source
            elif self._admit(address, source, now, keep=added) is not None:
                added.add(address)
        return len(added)

    def remove(self, address: Address) -> bool:
        """Forget ``address``; whether it was cached."""
        return self._entries.pop(address, None) is not None

    def _admit(
        self,
        address: Address,
        source: Source,
        now: float,
        *,
        success: bool = False,
        keep: set[Address] | None = None,
    ) -> HostEntry | None:
        if len(self._entries) >= self.policy.capacity:
            victims = [
                e
                for e in self._entries.values()
                if self._evictable(e, source, now, success) and e.address not in (keep or ())
            ]
            if not victims:
                return None
            del self._entries[min(victims, key=_eviction_key).address]
        entry = HostEntry(address, source, added=now)
        self._entries[address] = entry
        return entry

    def _evictable(self, victim: HostEntry, source: Source, now: float, success: bool) -> bool:
        if victim.source is Source.MANUAL and source is not Source.MANUAL:
            return False
        if not victim.known_good:
            return True
        if not success and source is not Source.MANUAL:
            return False  # merely heard of: never worth a supernode that answered
        return not self._fresh(victim, now)

    # ------------------------------------------------------------ persistence

    @classmethod
    def in_profile(cls, directory: Path, policy: HostCachePolicy | None = None) -> HostCache:
        """Load the cache of the profile at ``directory``."""
        return cls.load(directory / HOSTCACHE_FILE, policy)

    @classmethod
    def load(cls, path: Path, policy: HostCachePolicy | None = None) -> HostCache:
        """Load ``path`` tolerantly (see the module docstring); never raises on bad data."""
        cache = cls(path, policy or HostCachePolicy())
        if not path.exists():
            return cache
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            entries = _entries_of(document)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            cache.load_error = f"corrupt host cache {path}: {exc}"
            log.warning("%s; starting with an empty cache", cache.load_error)
            cache.save()
            return cache
        cache._fill(entries)
        return cache

    def _fill(self, raw_entries: list[object]) -> None:
        bad = 0
        for raw in raw_entries:
            try:
                entry = HostEntry.from_json(raw)
            except (ValueError, WireError):
                bad += 1
                continue
            self._entries.setdefault(entry.address, entry)
        while len(self._entries) > self.policy.capacity:
            del self._entries[min(self._entries.values(), key=_eviction_key).address]
        if bad:
            self.load_error = f"skipped {bad} unusable entries in {self.path}"
            log.warning("%s", self.load_error)

    def save(self) -> None:
        """Write the cache to its file atomically (0600)."""
        if self.path is None:
            raise ValueError("this host cache has no file")
        document = {
            "version": FORMAT_VERSION,
            "entries": [e.to_json() for e in self._entries.values()],
        }
        write_private(self.path, json.dumps(document, indent=1).encode())


def _entries_of(document: object) -> list[object]:
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValueError("not a version-1 host cache document")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ValueError("'entries' is not a list")
    return entries


def _eviction_key(entry: HostEntry) -> tuple[Any, ...]:
    """Smaller is worse: failing first, then never-good, oldest success, oldest added."""
    return (
        entry.known_good,
        -entry.failures,
        entry.last_success if entry.last_success is not None else -math.inf,
        entry.added,
    )
