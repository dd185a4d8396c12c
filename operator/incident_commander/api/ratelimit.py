"""Per-client token buckets. Pure: the caller passes the time, so tests need no sleeping.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per
second. A request takes ``cost`` tokens (1 normally; more while a budget
throttles routing, which tightens that route without a second bucket). All of
this runs on the event loop thread, so no lock is needed for concurrent
requests: each ``take`` is atomic with respect to the others.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from functools import lru_cache
from typing import NamedTuple

from incident_commander.kinds.incidentpolicy.spec import RateLimit


class Verdict(NamedTuple):
    """A bucket's answer (a named tuple: one is made per request, and it is cheaper to build
    than a frozen dataclass)."""

    allowed: bool
    retry_after: float
    """Seconds until the request would be allowed (0 when allowed)."""
    remaining: float = 0.0
    """Tokens left in the bucket after this request."""
    full_in: float = 0.0
    """Seconds until the bucket is full again."""


class TokenBucket:
    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self._burst = float(limit.burst)
        self._rate = limit.rate
        self._tokens = self._burst
        self._updated = now

    def take(self, now: float, cost: float = 1.0) -> Verdict:
        # Every request comes here: comparisons, not min() and max(), and one Verdict made inline.
        self._refill(now)
        burst, rate = self._burst, self._rate
        # A cost above the burst can never be paid in one go; let it through at the refill pace.
        missing = (cost if cost < burst else burst) - self._tokens
        if missing > 0:
            left = self._tokens if self._tokens > 0.0 else 0.0
            return Verdict(False, missing / rate, left, (burst - left) / rate)
        self._tokens -= cost
        left = self._tokens if self._tokens > 0.0 else 0.0
        return Verdict(True, 0.0, left, (burst - left) / rate)

    def peek(self, now: float) -> Verdict:
        self._refill(now)
        if self._tokens >= 1.0:
            return Verdict(allowed=True, retry_after=0.0)
        return Verdict(allowed=False, retry_after=(1.0 - self._tokens) / self._rate)

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0.0:  # a clock that went back refills nothing
            tokens = self._tokens + elapsed * self._rate
            self._tokens = tokens if tokens < self._burst else self._burst
        self._updated = now


class RateLimiter:
    """One bucket per client key, rebuilt when the client's limit changes.

    Idle buckets are evicted least-recently-used beyond ``max_clients``, so the
    map stays bounded; an evicted bucket comes back full, which only ever
    errs towards letting a long-idle client through.
    """

    def __init__(self, *, max_clients: int = 100_000) -> None:
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self._max = max_clients

    def take(self, client: Hashable, limit: RateLimit, now: float, cost: float = 1.0) -> Verdict:
        bucket = self._buckets.get(client)
        if bucket is None or (bucket.limit is not limit and bucket.limit != limit):
            bucket = TokenBucket(limit, now)
            self._buckets[client] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.take(now, cost)

    def peek(self, client: Hashable, limit: RateLimit, now: float) -> Verdict:
        """Whether a request of cost 1 would be allowed now, without taking anything."""
        bucket = self._buckets.get(client)
        if bucket is None or bucket.limit != limit:
            return Verdict(allowed=True, retry_after=0.0)
        return bucket.peek(now)


def ratelimit_headers(limit: RateLimit, verdict: Verdict) -> dict[str, str]:
    """The IETF ``RateLimit-Policy`` and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers):
    the policy is ``q`` requests per ``w`` seconds (this replica's share of the client's limit);
    ``r`` requests remain now and ``t`` seconds bring the bucket back to full."""
    return {
        "RateLimit-Policy": _policy_header(limit),
        "RateLimit": f'"client";r={math.floor(verdict.remaining)};t={math.ceil(verdict.full_in)}',
    }


@lru_cache(maxsize=1024)
def _policy_header(limit: RateLimit) -> str:
    """The ``RateLimit-Policy`` value, made once per limit: it changes only with the policy."""
    return f'"client";q={limit.per_minute};w=60;burst={limit.burst}'


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so a client that obeys it succeeds."""
    return str(max(1, math.ceil(seconds)))


FAILURE_LIMIT = RateLimit(per_minute=60, burst=20)
"""Failed authentications tolerated per remote address before signature checks are deferred."""


class FailureGuard:
    """Failed authentications per remote address, so forged tokens cannot buy signature checks.

    A signature check costs about a millisecond of the event loop that also runs the reconcilers;
    an unauthenticated client could otherwise buy a thousand a second. Each failure takes a token
    from the address's bucket (``FAILURE_LIMIT``: 20 at once, then one a second); while the bucket
    is empty, Bearer tokens that are not already verified (the cache) get a 429 without a
    signature check. API keys (a SHA-256, cheap) and cached tokens still work from that address,
    so a client sharing an address with an attacker (a NAT, a proxy) can still get in.
    """

    def __init__(self, limit: RateLimit = FAILURE_LIMIT, *, max_addresses: int = 10_000) -> None:
        self._limit = limit
        self._limiter = RateLimiter(max_clients=max_addresses)

    def failed(self, address: str, now: float) -> None:
        self._limiter.take(address, self._limit, now)

    def may_verify(self, address: str, now: float) -> Verdict:
        """Allowed while the address still has failures to spend; else when it will again."""
        return self._limiter.peek(address, self._limit, now)


def share(limit: RateLimit, replicas: int) -> RateLimit:
    """One replica's part of a client's limit when ``replicas`` serve it behind one Service.

    Each replica refills at rate/N and holds burst/N (rounded down, at least 1), so the client
    gets the configured rate in total whichever replica its requests reach; a client whose
    requests all reach one replica gets only that replica's share (docs/ha.md explains the
    trade-off against a shared counter)."""
    if replicas <= 1:
        return limit
    return RateLimit(per_minute=max(1, limit.per_minute // replicas), burst=max(1, limit.burst // replicas))
