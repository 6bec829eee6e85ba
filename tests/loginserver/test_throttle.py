"""Failed-login throttling: backoff, decay, per account and per address, bounded memory."""

from __future__ import annotations

import pytest

from hopline.loginserver.throttle import (
    ACCOUNT_POLICY,
    ADDRESS_POLICY,
    BackoffPolicy,
    BackoffThrottle,
    LoginThrottle,
    address_key,
    to_milliseconds,
)

T0 = 1_000_000.0


def attempt(throttle: LoginThrottle, account: str, source: str, now: float) -> str:
    """What the login service does with a wrong password: check, then count."""
    if throttle.check(account, source, now) > 0:
        return "throttled"
    throttle.record_failure(account, source, now)
    return "wrong"


def test_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    policy = BackoffPolicy(free_failures=3, base_delay_s=2.0, max_delay_s=60.0, half_life_s=100)
    assert [policy.delay(n) for n in range(8)] == [0, 0, 0, 0, 2, 4, 8, 16]
    assert policy.delay(50) == 60.0
    assert policy.delay(10_000) == 60.0


def test_counts_halve_every_half_life() -> None:
    policy = ACCOUNT_POLICY
    assert policy.decayed(8.0, 0) == 8.0
    assert policy.decayed(8.0, policy.half_life_s) == pytest.approx(4.0)
    assert policy.decayed(8.0, 3 * policy.half_life_s) == pytest.approx(1.0)
    assert policy.decayed(8.0, -50) == 8.0  # a clock stepping back does not grow counts


def test_address_limit_is_looser_than_account_limit() -> None:
    assert ADDRESS_POLICY.free_failures > ACCOUNT_POLICY.free_failures
    assert ADDRESS_POLICY.max_delay_s <= ACCOUNT_POLICY.max_delay_s


def test_fifty_wrong_passwords_throttle_that_account_only() -> None:
    throttle = LoginThrottle()
    results = [attempt(throttle, "alice", "198.51.100.7:4000", T0 + i * 0.01) for i in range(50)]
    assert results[:5] == ["wrong"] * 5
    assert results[-1] == "throttled"
    assert results.count("wrong") <= 10  # blocked attempts are not even evaluated
    assert throttle.check("alice", "198.51.100.7:4000", T0 + 1) > 0
    assert throttle.check("alice", "203.0.113.50:1234", T0 + 1) > 0  # any address
    assert throttle.check("bob", "203.0.113.50:1234", T0 + 1) == 0  # others unaffected
    assert throttle.check("carol", "198.51.100.7:5000", T0 + 1) == 0  # even from there


def test_a_block_ends_and_grows_with_each_further_failure() -> None:
    throttle = LoginThrottle()
    for _ in range(ACCOUNT_POLICY.free_failures):
        assert throttle.record_failure("alice", "192.0.2.1", T0) == 0
    first = throttle.record_failure("alice", "192.0.2.1", T0)
    assert first == pytest.approx(1.0)
    now = T0 + first
    assert throttle.check("alice", "192.0.2.1", now) == 0
    second = throttle.record_failure("alice", "192.0.2.1", now)
    assert second == pytest.approx(2.0, rel=0.01)


def test_success_resets_the_account_but_not_the_address() -> None:
    throttle = LoginThrottle()
    for n in range(6):
        throttle.record_failure("alice", "192.0.2.1", T0 + n)
    assert throttle.accounts.failures("alice", T0 + 6) > 5
    throttle.record_success("alice", "192.0.2.1", T0 + 10)
    assert throttle.accounts.failures("alice", T0 + 10) == 0
    assert throttle.check("alice", "192.0.2.1", T0 + 10) == 0
    assert throttle.addresses.failures("192.0.2.1", T0 + 10) > 5


def test_one_address_guessing_many_accounts_is_throttled() -> None:
    throttle = LoginThrottle()
    source = "198.51.100.7:4000"
    results = [attempt(throttle, f"user{n}", source, T0) for n in range(40)]
    assert results[: ADDRESS_POLICY.free_failures] == ["wrong"] * ADDRESS_POLICY.free_failures
    assert results[-1] == "throttled"
    assert throttle.check("someone-else", source, T0) > 0
    assert throttle.check("someone-else", "198.51.100.8:4000", T0) == 0


def test_ipv6_sources_count_per_64() -> None:
    assert address_key("[2001:db8:1:2:aaaa::1]:4000") == address_key("[2001:db8:1:2::99]:5")
    assert address_key("[2001:db8:1:3::1]:4000") != address_key("[2001:db8:1:2::1]:4000")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("198.51.100.7:4000") == "198.51.100.7"
    assert address_key("[::ffff:198.51.100.7]:1") == "198.51.100.7"
    assert address_key("unix-socket") == "unix-socket"


def test_memory_is_bounded_under_a_flood_of_distinct_keys() -> None:
    throttle = BackoffThrottle(ACCOUNT_POLICY, max_keys=1000)
    for n in range(20_000):
        throttle.record_failure(f"user{n}", T0 + n * 0.001)
        assert len(throttle) <= 1000
    assert throttle.evictions >= 19_000
    assert "user19999" in throttle  # the newest are kept


def test_stale_keys_are_dropped_before_a_blocked_one() -> None:
    policy = BackoffPolicy(free_failures=1, base_delay_s=10_000, max_delay_s=10_000, half_life_s=1)
    throttle = BackoffThrottle(policy, max_keys=10)
    throttle.record_failure("victim", T0)
    throttle.record_failure("victim", T0)  # blocked for 10,000 s, oldest in the table
    for n in range(9):
        throttle.record_failure(f"k{n}", T0 + 1)  # one failure each: not blocked
    assert len(throttle) == 10
    throttle.record_failure("newcomer", T0 + 100)  # the k's have decayed to nothing
    assert "victim" in throttle
    assert throttle.retry_after("victim", T0 + 100) > 9000
    assert throttle.evictions == 0
    assert len(throttle) == 2


def test_prune_forgets_decayed_keys() -> None:
    throttle = LoginThrottle()
    throttle.record_failure("alice", "192.0.2.1", T0)
    assert len(throttle.accounts) == 1
    assert throttle.prune(T0 + 60) == 0
    assert throttle.prune(T0 + 10 * ACCOUNT_POLICY.half_life_s) == 2
    assert len(throttle.accounts) == len(throttle.addresses) == 0


def test_milliseconds_round_up() -> None:
    assert to_milliseconds(0) == 0
    assert to_milliseconds(0.0001) == 1
    assert to_milliseconds(1.5) == 1500
    assert to_milliseconds(-3) == 0


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BackoffThrottle(ACCOUNT_POLICY, max_keys=0)
