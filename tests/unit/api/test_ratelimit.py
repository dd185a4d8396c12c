from __future__ import annotations

import random

import pytest

from incident_commander.api.ratelimit import (
    FailureGuard,
    RateLimiter,
    TokenBucket,
    ratelimit_headers,
    retry_after_header,
    share,
)
from incident_commander.kinds.incidentpolicy.spec import RateLimit as Limit

LIMIT = Limit(per_minute=60, burst=5)  # one token per second


def test_burst_then_refill_at_the_rate() -> None:
    bucket = TokenBucket(LIMIT, now=0.0)
    assert all(bucket.take(0.0).allowed for _ in range(5))
    refused = bucket.take(0.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert not bucket.take(0.5).allowed
    assert bucket.take(1.0).allowed
    assert not bucket.take(1.0).allowed


def test_tokens_never_exceed_the_burst() -> None:
    bucket = TokenBucket(LIMIT, now=0.0)
    accepted = sum(bucket.take(1000.0).allowed for _ in range(20))
    assert accepted == 5


def test_accepted_count_matches_rate_over_a_long_flood() -> None:
    bucket = TokenBucket(Limit(per_minute=1200, burst=10), now=0.0)
    accepted = sum(bucket.take(i * 0.001).allowed for i in range(10_000))  # 1000 req/s for 10 s
    assert accepted == pytest.approx(10 + 20 * 10, abs=2)


def test_cost_tightens_the_rate() -> None:
    bucket = TokenBucket(LIMIT, now=0.0)
    assert bucket.take(0.0, cost=4).allowed
    refused = bucket.take(0.0, cost=4)
    assert not refused.allowed and refused.retry_after == pytest.approx(3.0)


def test_cost_above_burst_passes_only_with_a_full_bucket() -> None:
    bucket = TokenBucket(LIMIT, now=0.0)
    assert bucket.take(0.0, cost=8).allowed
    assert not bucket.take(5.0, cost=8).allowed  # in debt: -3 + 5 = 2 tokens
    assert bucket.take(8.0, cost=8).allowed


def test_limiter_keeps_clients_apart_and_follows_limit_changes() -> None:
    limiter = RateLimiter()
    assert sum(limiter.take("a", LIMIT, 0.0).allowed for _ in range(10)) == 5
    assert sum(limiter.take("b", LIMIT, 0.0).allowed for _ in range(10)) == 5
    wider = Limit(per_minute=60, burst=8)
    assert sum(limiter.take("a", wider, 0.0).allowed for _ in range(10)) == 8


def test_limiter_evicts_least_recently_used() -> None:
    limiter = RateLimiter(max_clients=2)
    for _ in range(5):
        limiter.take("a", LIMIT, 0.0)
    limiter.take("b", LIMIT, 0.0)
    limiter.take("c", LIMIT, 0.0)  # evicts "a"
    assert limiter.take("a", LIMIT, 0.0).allowed


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
)
def test_retry_after_rounds_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def test_failures_per_address_defer_signature_checks_until_they_refill() -> None:
    guard = FailureGuard(Limit(per_minute=60, burst=3))
    assert guard.may_verify("10.0.0.1", 0.0).allowed
    for _ in range(3):
        guard.failed("10.0.0.1", 0.0)
    verdict = guard.may_verify("10.0.0.1", 0.0)
    assert not verdict.allowed and verdict.retry_after == pytest.approx(1.0)
    assert guard.may_verify("10.0.0.2", 0.0).allowed  # another address is not affected
    assert guard.may_verify("10.0.0.1", 1.0).allowed  # one failure's worth refilled


def test_each_ready_replica_takes_its_share_of_a_limit() -> None:
    limit = Limit(per_minute=1200, burst=10)
    assert share(limit, 1) is limit
    assert share(limit, 3) == Limit(per_minute=400, burst=3)
    assert share(Limit(per_minute=2, burst=1), 5) == Limit(per_minute=1, burst=1)  # never zero


def test_ratelimit_headers_say_what_is_left_and_when_it_is_full() -> None:
    limit = Limit(per_minute=60, burst=5)
    bucket = TokenBucket(limit, now=0.0)
    verdict = bucket.take(0.0)
    headers = ratelimit_headers(limit, verdict)
    assert headers["RateLimit-Policy"] == '"client";q=60;w=60;burst=5'
    assert headers["RateLimit"] == '"client";r=4;t=1'


class _PlainBucket:
    """The token bucket written as plainly as possible, to compare the tuned one with."""

    def __init__(self, limit: Limit, now: float) -> None:
        self.burst, self.rate = float(limit.burst), limit.rate
        self.tokens, self.updated = self.burst, now

    def take(self, now: float, cost: float) -> tuple[bool, float, float, float]:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        missing = min(cost, self.burst) - self.tokens
        allowed = self.tokens >= cost or missing <= 0
        if allowed:
            self.tokens -= cost
        left = max(0.0, self.tokens)
        return allowed, 0.0 if allowed else missing / self.rate, left, (self.burst - left) / self.rate


@pytest.mark.parametrize("seed", range(5))
def test_the_bucket_answers_as_the_plain_algorithm_does(seed: int) -> None:
    """Times that stand still and go back, costs below, at and above the burst (a throttled route)."""
    rng = random.Random(seed)  # noqa: S311 - test data
    limit = Limit(per_minute=rng.choice((1, 60, 600, 100_000)), burst=rng.choice((1, 3, 20)))
    ours, plain = TokenBucket(limit, now=0.0), _PlainBucket(limit, now=0.0)
    now = 0.0
    for _ in range(3_000):
        now += rng.choice((0.0, 0.0, -0.5, 0.01, 0.3, 2.0, 60.0)) if rng.random() < 0.5 else rng.uniform(0, 1)
        cost = rng.choice((1.0, 1.0, 0.5, 3.0, 25.0, float(limit.burst)))
        assert tuple(ours.take(now, cost)) == plain.take(now, cost)
