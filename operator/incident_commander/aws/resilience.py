"""Our own resilience around AWS probes: full-jitter backoff and per-service circuit breakers.

botocore retries the calls other kinds make; probes use a client with botocore's
retries switched off and retry here instead, so that each attempt is visible
(timed, counted, classified) and a dead service can be cut off by its breaker
without holding up the others.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from incident_commander.aws.errors import ProbeError, classify

T = TypeVar("T")


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Full-jitter delay before retry number ``attempt`` (1 for the first retry):
    uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return float(ceiling * rng())


class ProbeFailed(Exception):
    """All attempts failed; carries the classified error of the last one."""

    def __init__(self, error: ProbeError, attempts: int) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error
        self.attempts = attempts


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    base_delay: float,
    max_delay: float,
    sleep: Callable[[float], Awaitable[None]],
    rng: Callable[[], float] = random.random,
) -> T:
    """Run ``call`` up to ``max_attempts`` times, sleeping a full-jitter backoff between
    retryable failures; a non-retryable failure (bad credentials, access denied) stops at once."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:  # every failure is classified; the last one is re-raised typed
            error = classify(exc)
            if not error.retryable or attempt >= max_attempts:
                raise ProbeFailed(error, attempt) from None
        await sleep(backoff_delay(attempt, base=base_delay, cap=max_delay, rng=rng))


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(kw_only=True)
class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failed probes; after ``cooldown``
    seconds one trial probe is let through (half-open): success closes it, failure reopens it."""

    failure_threshold: int = 3
    cooldown: float = 60.0
    failures: int = 0
    opened_at: float | None = None
    state: BreakerState = field(default=BreakerState.CLOSED)

    def allow(self, now: float) -> bool:
        """Whether a probe may run now (moving an expired open breaker to half-open)."""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if now - self.opened_at < self.cooldown:
                return False
            self.state = BreakerState.HALF_OPEN
        return True

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.state = BreakerState.CLOSED

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now
