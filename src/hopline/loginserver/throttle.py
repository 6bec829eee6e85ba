"""Throttling of failed logins, per account and per source address (sans-I/O).

Nothing here reads a clock or sleeps: every call takes ``now`` (seconds) and
the answer is how long the caller must wait, in seconds; the login service
turns it into ``retry_after_ms``.

The model
---------
Each key (a canonical username, or a source address) has a *failure count*
that **decays exponentially**: it halves every ``half_life_s`` without new
failures. A failure adds one. While the count is at most ``free_failures``
nothing happens; above it, the key is blocked for
``base_delay_s * 2 ** (count - free_failures - 1)`` seconds, capped at
``max_delay_s``. Attempts made while blocked are refused without being
evaluated and do not count, so a patient attacker gets one evaluated guess
per block, and the blocks grow. A successful login resets the account's
count (not the address's: otherwise an attacker could clear their address
by logging in to an account of their own between guesses).

Two keyspaces work together in :class:`LoginThrottle`: accounts
(:data:`ACCOUNT_POLICY`: 5 free failures, blocks up to an hour) and source
addresses (:data:`ADDRESS_POLICY`: 20 free failures, blocks up to 15 minutes
— looser, because many honest users may share one NAT address). An IPv6
source counts by its /64 prefix, since one host usually holds a whole /64.

Bounded memory
--------------
Each keyspace tracks at most ``max_keys`` keys (default
:data:`DEFAULT_MAX_KEYS`, 65,536: a few tens of MB at most). Keys are kept in
order of their last failure. Adding a key to a full table first forgets the
keys whose count has decayed to nothing and whose block is over, then, if
fewer than a sixteenth of the places are free, evicts the keys with the
oldest failures until they are (counted in ``evictions``; freeing places in
batches keeps the cost per new key constant). A flood of distinct usernames
or addresses can therefore not grow memory. It could push
out an old entry, but keys are only added after a password was actually
checked, so the rate of new keys is bounded by the (deliberately slow)
Argon2 rate of the server, and by the flooding address's own limit.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 65_536
FORGET_BELOW = 0.05  # a decayed count under this is as good as none


@dataclass(frozen=True)
class BackoffPolicy:
    """How failures of one key turn into waiting time (see the module docstring)."""

    free_failures: int
    base_delay_s: float
    max_delay_s: float
    half_life_s: float

    def delay(self, count: float) -> float:
        """Seconds to block a key whose (decayed) failure count is ``count``."""
        if count <= self.free_failures:
            return 0.0
        exponent = max(0.0, count - self.free_failures - 1)
        if exponent > 60:  # 2**60 seconds is far past any cap
            return self.max_delay_s
        return min(self.max_delay_s, self.base_delay_s * math.pow(2.0, exponent))

    def decayed(self, count: float, elapsed_s: float) -> float:
        """``count`` after ``elapsed_s`` seconds without failures."""
        return count * math.pow(0.5, max(0.0, elapsed_s) / self.half_life_s)


ACCOUNT_POLICY = BackoffPolicy(
    free_failures=5, base_delay_s=1.0, max_delay_s=3600.0, half_life_s=3600.0
)
"""Per account: 5 free failures, then 1 s, 2 s, 4 s ... up to 1 hour; halves hourly."""

ADDRESS_POLICY = BackoffPolicy(
    free_failures=20, base_delay_s=1.0, max_delay_s=900.0, half_life_s=900.0
)
"""Per source address: 20 free failures, blocks up to 15 minutes; halves in 15 minutes."""

REGISTRATION_POLICY = BackoffPolicy(
    free_failures=10, base_delay_s=10.0, max_delay_s=3600.0, half_life_s=3600.0
)
"""Per source address, every registration counts: 10 free, then 10 s and up."""


class _Entry:
    __slots__ = ("blocked_until", "count", "last")

    def __init__(self) -> None:
        self.count = 0.0
        self.last = 0.0
        self.blocked_until = 0.0


class BackoffThrottle:
    """Decaying failure counts with exponential blocks, for one keyspace."""

    def __init__(self, policy: BackoffPolicy, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.policy = policy
        self.max_keys = max_keys
        self.evictions = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def retry_after(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait (0.0 if it may try now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - now)

    def failures(self, key: str, now: float) -> float:
        """The decayed failure count of ``key`` at ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return self.policy.decayed(entry.count, now - entry.last)

    def record_failure(self, key: str, now: float) -> float:
        """Count one failure of ``key``; return the seconds it must now wait."""
        entry = self._entries.get(key)
        if entry is None:
            self._make_room(now)
            entry = _Entry()
            self._entries[key] = entry
        else:
            self._entries.move_to_end(key)
        entry.count = self.policy.decayed(entry.count, now - entry.last) + 1.0
        entry.last = now
        delay = self.policy.delay(entry.count)
        if delay > 0:
            entry.blocked_until = max(entry.blocked_until, now + delay)
        return max(0.0, entry.blocked_until - now)

    def reset(self, key: str) -> None:
        """Forget ``key`` (after a success)."""
        self._entries.pop(key, None)

    def prune(self, now: float) -> int:
        """Forget keys with nothing left to remember; return how many."""
        forgotten = 0
        for key in list(self._entries):
            if self._is_stale(self._entries[key], now):
                del self._entries[key]
                forgotten += 1
        return forgotten

    def _is_stale(self, entry: _Entry, now: float) -> bool:
        if now < entry.blocked_until:
            return False
        return self.policy.decayed(entry.count, now - entry.last) < FORGET_BELOW

    def _make_room(self, now: float) -> None:
        if len(self._entries) < self.max_keys:
            return
        self.prune(now)
        # Leave a sixteenth of the table free, evicting the oldest failures if
        # need be, so the O(n) prune above runs at most once per max_keys/16
        # new keys.
        target = self.max_keys - max(1, self.max_keys // 16)
        while len(self._entries) > target:
            self._entries.popitem(last=False)
            self.evictions += 1


def address_key(source: str) -> str:
    """The throttling key of a source address: the IPv4 address, or the IPv6 /64.

    ``source`` may be ``host``, ``host:port`` or ``[v6]:port``; text that is
    not an IP address is used as it is.
    """
    host = source.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return source
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def to_milliseconds(seconds: float) -> int:
    """Seconds to wait as whole milliseconds, rounded up (for ``retry_after_ms``)."""
    return max(0, math.ceil(seconds * 1000))


class LoginThrottle:
    """Failed-login throttling per account and per source address together."""

    def __init__(
        self,
        account_policy: BackoffPolicy = ACCOUNT_POLICY,
        address_policy: BackoffPolicy = ADDRESS_POLICY,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.accounts = BackoffThrottle(account_policy, max_keys)
        self.addresses = BackoffThrottle(address_policy, max_keys)

    def check(self, account: str, source: str, now: float) -> float:
        """Seconds to wait before ``account`` may try from ``source`` (0.0: go ahead)."""
        return max(
            self.accounts.retry_after(account, now),
            self.addresses.retry_after(address_key(source), now),
        )

    def record_failure(self, account: str, source: str, now: float) -> float:
        """Count a wrong password; return the seconds to wait before the next try."""
        return max(
            self.accounts.record_failure(account, now),
            self.addresses.record_failure(address_key(source), now),
        )

    def record_success(self, account: str, source: str, now: float) -> None:
        """A correct password: the account's count starts again from zero."""
        del source, now  # the address keeps its count (see the module docstring)
        self.accounts.reset(account)

    def prune(self, now: float) -> int:
        """Forget stale keys in both keyspaces; return how many."""
        return self.accounts.prune(now) + self.addresses.prune(now)
